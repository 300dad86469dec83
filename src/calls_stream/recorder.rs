//! One track of a call written to disk as it arrives: a μ-law WAV whose frames are placed by
//! their media timestamps, so a dropped chunk becomes silence and a late one lands where it
//! belongs. Memory per track is one small write buffer; the header gets its final length when
//! the recording is finished.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::audio::{self, ULAW_SILENCE, WavFormat};

const HEADER: u64 = 44;
/// μ-law at 8 kHz: one byte per frame, 8 frames per millisecond.
pub const FRAMES_PER_MS: u64 = 8;
/// A timestamp past this is refused rather than allowed to grow a huge file of silence.
pub const MAX_FRAMES: u64 = 8000 * audio::MAX_TRACK_SECS;
const SILENCE: [u8; 4096] = [ULAW_SILENCE; 4096];

pub struct TrackRecorder {
    path: PathBuf,
    out: BufWriter<File>,
    /// Frames written so far (the file's audio length).
    end: u64,
}

impl TrackRecorder {
    /// Creates the track's file; one that exists already (another stream's, a finished call's)
    /// is an error, never truncated.
    pub fn create(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::options().write(true).create_new(true).open(path)?;
        let mut out = BufWriter::with_capacity(8192, file);
        out.write_all(&audio::wav_header(WavFormat::MULAW_8K_MONO, 0))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            end: 0,
        })
    }

    /// Writes `data` at frame `at`: after silence if it starts past the end, over what is there
    /// (silence from a gap) if it is late.
    pub fn write_at(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        if at + data.len() as u64 > MAX_FRAMES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "timestamp beyond the longest recording",
            ));
        }
        if at >= self.end {
            let mut gap = at - self.end;
            while gap > 0 {
                let n = gap.min(SILENCE.len() as u64) as usize;
                self.out.write_all(&SILENCE[..n])?;
                gap -= n as u64;
            }
            self.out.write_all(data)?;
            self.end = at + data.len() as u64;
            return Ok(());
        }
        // A late chunk: rewrite its place, then continue at the end.
        self.out.seek(SeekFrom::Start(HEADER + at))?;
        self.out.write_all(data)?;
        let reached = at + data.len() as u64;
        if reached > self.end {
            self.end = reached;
        }
        self.out.seek(SeekFrom::Start(HEADER + self.end))?;
        Ok(())
    }

    /// Writes the final header and syncs the file; returns its path and length in frames.
    pub fn finish(mut self) -> io::Result<(PathBuf, u64)> {
        let len = u32::try_from(self.end)
            .map_err(|_| io::Error::other("recording too long for a WAV"))?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out
            .write_all(&audio::wav_header(WavFormat::MULAW_8K_MONO, len))?;
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        Ok((self.path, self.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_land_at_their_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        let mut r = TrackRecorder::create(&path).unwrap();
        r.write_at(0, &[1; 160]).unwrap();
        r.write_at(320, &[3; 160]).unwrap(); // the chunk at 20 ms was dropped
        r.write_at(160, &[2; 80]).unwrap(); // half of it arrives late
        let (_, frames) = r.finish().unwrap();
        assert_eq!(frames, 480);
        let wav = audio::read_wav(File::open(&path).unwrap()).unwrap();
        assert_eq!(wav.data.len(), 480);
        assert!(wav.data[..160].iter().all(|b| *b == 1));
        assert!(
            wav.data[160..240].iter().all(|b| *b == 2),
            "the late half is in place"
        );
        assert!(
            wav.data[240..320].iter().all(|b| *b == ULAW_SILENCE),
            "the rest of the gap is silence"
        );
        assert!(wav.data[320..].iter().all(|b| *b == 3));
        let mut r = TrackRecorder::create(&dir.path().join("u.wav")).unwrap();
        assert!(r.write_at(MAX_FRAMES, &[0; 10]).is_err());
        let before = std::fs::read(&path).unwrap();
        assert_eq!(
            TrackRecorder::create(&path).err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "not truncated");
    }
}
