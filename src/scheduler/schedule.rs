//! When an entry fires: a fixed interval (slots aligned to the Unix epoch, so every replica
//! agrees on them) or a cron expression evaluated in a time zone.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every `period`, at multiples of it since the epoch (`every = "60s"` fires at :00 of each
    /// minute, UTC).
    Every(Duration),
    /// A cron expression (5 fields, or 6 with seconds first) in a time zone.
    Cron {
        cron: Box<Cron>,
        tz: Tz,
        text: String,
    },
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`.
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("every = {text:?}: expected a number and a unit, like \"60s\""))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => {
            return Err(format!(
                "every = {text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ));
        }
    };
    if ms < 1000 {
        return Err(format!("every = {text:?}: the shortest interval is 1s"));
    }
    Ok(Duration::from_millis(ms))
}

impl Schedule {
    pub fn every(text: &str) -> Result<Self, String> {
        parse_every(text).map(Schedule::Every)
    }

    pub fn cron(text: &str, timezone: &str) -> Result<Self, String> {
        let tz = Tz::from_str(timezone).map_err(|_| format!("unknown time zone {timezone:?}"))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(text)
            .map_err(|e| format!("cron = {text:?}: {e}"))?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            tz,
            text: text.to_owned(),
        })
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(p) => {
                let p = i64::try_from(p.as_millis()).ok()?;
                let ms = t.timestamp_millis();
                Utc.timestamp_millis_opt((ms.div_euclid(p) + 1) * p)
                    .single()
            }
            Schedule::Cron { cron, tz, .. } => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }

    /// The newest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(p) => {
                let p = i64::try_from(p.as_millis()).ok()?;
                let ms = t.timestamp_millis();
                Utc.timestamp_millis_opt(ms.div_euclid(p) * p).single()
            }
            Schedule::Cron { cron, tz, .. } => cron
                .find_previous_occurrence(&t.with_timezone(tz), true)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }

    /// Slots strictly between `after` and `before`, counted up to `cap`.
    pub fn count_between(&self, after: DateTime<Utc>, before: DateTime<Utc>, cap: u64) -> u64 {
        if let Schedule::Every(p) = self {
            let p = i64::try_from(p.as_millis()).unwrap_or(i64::MAX);
            let first = after.timestamp_millis().div_euclid(p) + 1;
            let last = (before.timestamp_millis() - 1).div_euclid(p);
            return u64::try_from(last - first + 1).unwrap_or(0).min(cap);
        }
        let mut n = 0;
        let mut t = after;
        while n < cap {
            match self.next_after(t) {
                Some(next) if next < before => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }

    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(p) => format!("every {p:?}"),
            Schedule::Cron { text, tz, .. } => format!("cron {text} ({tz})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn intervals_parse_and_align_to_the_epoch() {
        assert_eq!(parse_every("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_every("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_every("1500ms").unwrap(), Duration::from_millis(1500));
        for bad in ["60", "5 minutes", "10x", "500ms", "s", ""] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        let s = Schedule::every("60s").unwrap();
        let t = utc("2026-11-28T10:00:30Z");
        assert_eq!(s.next_after(t), Some(utc("2026-11-28T10:01:00Z")));
        assert_eq!(
            s.next_after(utc("2026-11-28T10:01:00Z")),
            Some(utc("2026-11-28T10:02:00Z"))
        );
        assert_eq!(s.latest_at_or_before(t), Some(utc("2026-11-28T10:00:00Z")));
        assert_eq!(
            s.latest_at_or_before(utc("2026-11-28T10:01:00Z")),
            Some(utc("2026-11-28T10:01:00Z"))
        );
        // 10:00 → 10:10: the slots 10:01 … 10:09 lie strictly between.
        assert_eq!(
            s.count_between(
                utc("2026-11-28T10:00:00Z"),
                utc("2026-11-28T10:10:00Z"),
                1000
            ),
            9
        );
        assert_eq!(
            s.count_between(
                utc("2026-11-28T10:00:00Z"),
                utc("2026-11-28T10:01:00Z"),
                1000
            ),
            0
        );
        assert_eq!(
            s.count_between(utc("2026-11-28T10:00:00Z"), utc("2026-11-28T12:00:00Z"), 10),
            10
        );
    }

    #[test]
    fn cron_with_seconds_and_time_zones() {
        let every5 = Schedule::cron("0 */5 * * * *", "UTC").unwrap();
        assert_eq!(
            every5.next_after(utc("2026-11-28T10:02:00Z")),
            Some(utc("2026-11-28T10:05:00Z"))
        );
        let daily9 = Schedule::cron("0 9 * * *", "Asia/Jerusalem").unwrap();
        // 09:00 in Jerusalem in November is 07:00 UTC (UTC+2).
        assert_eq!(
            daily9.next_after(utc("2026-11-28T06:00:00Z")),
            Some(utc("2026-11-28T07:00:00Z"))
        );
        // In July (IDT, UTC+3) it is 06:00 UTC.
        assert_eq!(
            daily9.next_after(utc("2026-07-01T00:00:00Z")),
            Some(utc("2026-07-01T06:00:00Z"))
        );
        assert_eq!(
            daily9.latest_at_or_before(utc("2026-11-28T08:00:00Z")),
            Some(utc("2026-11-28T07:00:00Z"))
        );
        assert!(Schedule::cron("61 * * * *", "UTC").is_err());
        assert!(Schedule::cron("0 9 * * *", "Mars/Olympus").is_err());
    }

    #[test]
    fn dst_edges_neither_repeat_nor_vanish() {
        // New York springs forward on 2026-03-08: 02:00 → 03:00 local. A 02:30 daily job has no
        // 02:30 that day; it must not fire twice or loop, and the next day is normal again.
        let s = Schedule::cron("30 2 * * *", "America/New_York").unwrap();
        let before = utc("2026-03-08T05:00:00Z"); // 00:00 EST
        let next = s.next_after(before).unwrap();
        assert!(next > before);
        let after = s.next_after(next).unwrap();
        assert_eq!(after, utc("2026-03-09T06:30:00Z"), "02:30 EDT on the 9th");
        assert!(after - next >= chrono::Duration::hours(23));
        // Falling back on 2026-11-01: 01:30 happens twice locally; an hourly-at-:30 schedule
        // must move forward through it, never backward.
        let hourly = Schedule::cron("30 * * * *", "America/New_York").unwrap();
        let mut t = utc("2026-11-01T04:00:00Z");
        let mut seen = Vec::new();
        for _ in 0..4 {
            t = hourly.next_after(t).unwrap();
            seen.push(t);
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen[0], utc("2026-11-01T04:30:00Z"));
    }
}
