//! The recordings directory's free space, a budget the calls role keeps: below
//! `recordings.min_free_bytes` new streams are refused at the upgrade and live calls stop
//! writing and finalize what they have. Measured when the role starts and every second after
//! (one `statvfs`); live calls watch the result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

#[derive(Debug)]
pub struct RecordingDisk {
    dir: PathBuf,
    floor: u64,
    free: AtomicU64,
    /// Below the floor, or not measurable: a disk we cannot read is not one to write to. Live
    /// calls watch it, so they end as soon as it turns low.
    low: watch::Sender<bool>,
}

impl RecordingDisk {
    /// Not measured yet: `low` until the first [`Self::measure`].
    pub fn new(dir: &Path, floor: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            floor,
            free: AtomicU64::new(0),
            low: watch::Sender::new(true),
        }
    }

    /// Measures the free space (of the directory, or of the nearest ancestor that exists yet:
    /// it is created with the first recording), updates the flag, and logs when the state
    /// changes. Returns the free bytes.
    pub fn measure(&self) -> std::io::Result<u64> {
        let existing = self
            .dir
            .ancestors()
            .find(|d| d.exists())
            .unwrap_or(Path::new("."));
        let measured = rustix::fs::statvfs(existing)
            .map_err(std::io::Error::from)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
        let free = *measured.as_ref().unwrap_or(&0);
        self.free.store(free, Ordering::Relaxed);
        let low = measured.is_err() || free < self.floor;
        let was = self.low.send_replace(low);
        match (&measured, was, low) {
            (Err(e), false, _) => tracing::error!(
                dir = %self.dir.display(), error = %e,
                "cannot measure the recordings disk; refusing new streams"
            ),
            (Ok(_), false, true) => tracing::warn!(
                dir = %self.dir.display(), free, floor = self.floor,
                "recordings disk below recordings.min_free_bytes: refusing new streams, live calls finalize"
            ),
            (Ok(_), true, false) => tracing::info!(
                dir = %self.dir.display(), free, floor = self.floor,
                "recordings disk has room: accepting streams"
            ),
            _ => {}
        }
        measured
    }

    pub fn is_low(&self) -> bool {
        *self.low.borrow()
    }

    /// Watches the flag: a live call ends when it turns low.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.low.subscribe()
    }

    /// Free bytes at the last measurement.
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_is_low_and_zero_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("recordings");
        let none = RecordingDisk::new(&sub, 0);
        assert!(none.is_low(), "low until measured");
        let free = none.measure().unwrap();
        assert!(free > 0, "measured on the nearest directory that exists");
        assert!(!sub.exists(), "nothing is created");
        assert!(!none.is_low());
        let all = RecordingDisk::new(&sub, u64::MAX);
        all.measure().unwrap();
        assert!(all.is_low());
    }
}
