//! Setting types that carry their unit and their rule, so a duration is a `Duration` where it is
//! used and "must be positive" is said once, by the deserializer, with the key at fault.
//!
//! The files keep their names (`heartbeat_interval_ms`) so config files and `PROSAAS__…`
//! variables read as before.

use std::time::Duration;

use serde::Deserialize;

/// A duration written in milliseconds; zero allowed (a grace period of none, a wait for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(from = "u64")]
pub struct Millis(Duration);

impl From<u64> for Millis {
    fn from(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
}

/// A duration written in milliseconds that must be positive (an interval, a timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "u64")]
pub struct PositiveMillis(Duration);

impl TryFrom<u64> for PositiveMillis {
    type Error = &'static str;

    fn try_from(ms: u64) -> Result<Self, Self::Error> {
        if ms == 0 {
            return Err("must be a positive number of milliseconds");
        }
        Ok(Self(Duration::from_millis(ms)))
    }
}

impl PositiveMillis {
    pub(super) const TEN_SECONDS: Self = Self(Duration::from_secs(10));
}

macro_rules! duration_accessors {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn get(self) -> Duration {
                self.0
            }

            /// As written, for messages and for readers that show the setting.
            pub fn as_millis(self) -> u64 {
                u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
            }
        }
    )*};
}
duration_accessors!(Millis, PositiveMillis);

/// A timeout in seconds: positive, or -1 for none (as RQ's `job_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct TimeoutSecs(i64);

impl TryFrom<i64> for TimeoutSecs {
    type Error = &'static str;

    fn try_from(secs: i64) -> Result<Self, Self::Error> {
        if secs == -1 || secs > 0 {
            Ok(Self(secs))
        } else {
            Err("must be positive seconds, or -1 for no limit")
        }
    }
}

impl TimeoutSecs {
    /// RQ's form: seconds, -1 for none.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// The limit; `None` for no limit.
    pub fn limit(self) -> Option<Duration> {
        u64::try_from(self.0).ok().map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        every: PositiveMillis,
        grace: Millis,
        timeout: TimeoutSecs,
    }

    fn parse(toml: &str) -> Result<Sample, String> {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_arrive_typed_and_zero_is_refused_where_it_cannot_work() {
        let s = parse("every = 250\ngrace = 0\ntimeout = -1").unwrap();
        assert_eq!(s.every.get(), Duration::from_millis(250));
        assert_eq!(s.every.as_millis(), 250);
        assert_eq!(s.grace.get(), Duration::ZERO);
        assert_eq!((s.timeout.secs(), s.timeout.limit()), (-1, None));

        let e = parse("every = 0\ngrace = 0\ntimeout = 1").unwrap_err();
        assert!(e.contains("positive") && e.contains("`every`"), "{e}");
        let e = parse("every = 1\ngrace = 0\ntimeout = 0").unwrap_err();
        assert!(
            e.contains("-1 for no limit") && e.contains("`timeout`"),
            "{e}"
        );
    }
}
