//! Redis's clock, as this process sees it. Deadlines, due times and ages are compared across
//! hosts (a worker's deadline is read by another worker's recovery), so they are all computed on
//! one clock: Redis's `TIME`. Each process measures its offset from Redis (`TIME` halfway through
//! a round trip) and adds it to its own clock, so no script pays for `TIME` per job and a host
//! whose clock is wrong still writes deadlines in Redis's time. One script does read `TIME`:
//! a claim sent ahead behind a blocking wait (claim.lua, waker.rs), stamped when it runs.
//!
//! `PROSAAS_TEST_CLOCK_SKEW_MS` shifts this process's own clock, to test exactly that.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Default)]
pub(crate) struct RedisClock {
    /// Redis's time minus this host's, in microseconds.
    offset_micros: AtomicI64,
    synced: AtomicBool,
    /// A deliberate error in this host's clock (tests only).
    skew_micros: i64,
}

impl RedisClock {
    pub(crate) fn from_env() -> Self {
        let skew_ms: i64 = std::env::var("PROSAAS_TEST_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Self {
            skew_micros: skew_ms.saturating_mul(1000),
            ..Self::default()
        }
    }

    /// This host's clock (with the test skew).
    pub(crate) fn host_now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::microseconds(self.skew_micros)
    }

    /// Redis's time now, as well as this process knows it (its own clock until the first sync).
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.host_now() + TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Records a `TIME` reply (`secs`, `micros`) read between `sent` and `received` (host
    /// clock); returns the new offset in microseconds.
    pub(crate) fn record(
        &self,
        secs: i64,
        micros: i64,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
    ) -> i64 {
        let redis = secs.saturating_mul(1_000_000).saturating_add(micros);
        let sent = sent.timestamp_micros();
        let midway = sent + (received.timestamp_micros() - sent) / 2;
        let offset = redis - midway;
        self.offset_micros.store(offset, Ordering::Relaxed);
        self.synced.store(true, Ordering::Relaxed);
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_cancels_a_skewed_host_clock() {
        let clock = RedisClock {
            skew_micros: 20_000_000,
            ..RedisClock::default()
        };
        let sent = clock.host_now();
        let received = sent + TimeDelta::milliseconds(2);
        // Redis's true time is 20 s behind this host's skewed clock.
        let redis = (sent + TimeDelta::milliseconds(1)) - TimeDelta::seconds(20);
        let offset = clock.record(
            redis.timestamp(),
            i64::from(redis.timestamp_subsec_micros()),
            sent,
            received,
        );
        assert_eq!(offset, -20_000_000);
        let error = (clock.now() - (Utc::now())).num_milliseconds().abs();
        assert!(error < 50, "{error} ms off");
        assert!(clock.is_synced());
    }
}
