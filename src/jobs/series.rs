//! The per-minute series settle.lua counts (outcomes and the enqueue→start wait's bucket, one
//! hash a minute, kept two hours), and its reading: what the dashboard's charts show.

use std::collections::HashMap;

use serde::Serialize;

use super::error::JobError;
use super::keys::Keys;
use super::stats::Stats;

/// Upper bounds (ms) of the enqueue→start wait buckets `w0`..`w11`; `w12` is everything longer.
pub const WAIT_BUCKETS_MS: [u64; 12] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];
/// Minutes of the overview's charts.
const SERIES_MINUTES: i64 = 60;
/// The bucket of an enqueue→start wait of `secs`: the first whose bound it does not exceed, or
/// the open last one. settle.lua counts each execution under `<outcome>:<bucket>`.
pub(crate) fn wait_bucket(secs: f64) -> usize {
    let ms = (secs.max(0.0) * 1000.0) as u64;
    WAIT_BUCKETS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(WAIT_BUCKETS_MS.len())
}

/// One minute of the series.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Minute {
    /// Its start, Unix seconds.
    pub at: i64,
    pub finished: u64,
    /// Failed for good (retries are counted apart).
    pub failed: u64,
    pub retried: u64,
    /// Settled executions whose wait is known, and their median and 95th percentile (ms; a
    /// percentile is its bucket's upper bound, [`WAIT_BUCKETS_MS`], so it says "at most"; the
    /// open last bucket shows as the last bound).
    pub starts: u64,
    pub wait_p50_ms: Option<u64>,
    pub wait_p95_ms: Option<u64>,
}

impl Minute {
    /// From settle.lua's fields, `<outcome>:<wait bucket or ->` → executions.
    fn from_hash(at: i64, h: &HashMap<String, u64>) -> Self {
        let mut m = Self {
            at,
            ..Self::default()
        };
        let mut buckets = [0u64; WAIT_BUCKETS_MS.len() + 1];
        for (field, n) in h {
            let Some((kind, bucket)) = field.split_once(':') else {
                continue;
            };
            match kind {
                "ok" => m.finished += n,
                "fail" => m.failed += n,
                "retry" => m.retried += n,
                _ => {}
            }
            if let Some(b) = bucket
                .parse::<usize>()
                .ok()
                .and_then(|i| buckets.get_mut(i))
            {
                *b += n;
            }
        }
        m.starts = buckets.iter().sum();
        let quantile = |q: f64| -> Option<u64> {
            let rank = ((q * m.starts as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in buckets.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Some(WAIT_BUCKETS_MS[i.min(WAIT_BUCKETS_MS.len() - 1)]);
                }
            }
            None
        };
        if m.starts > 0 {
            m.wait_p50_ms = quantile(0.5);
            m.wait_p95_ms = quantile(0.95);
        }
        m
    }
}

impl Stats<'_> {
    /// The last [`SERIES_MINUTES`] minutes, oldest first, the current one included: one
    /// pipelined round trip.
    pub async fn series(&self) -> Result<Vec<Minute>, JobError> {
        let this_minute = self.now().timestamp().div_euclid(60);
        let minutes: Vec<i64> = (this_minute - SERIES_MINUTES + 1..=this_minute).collect();
        let mut pipe = redis::pipe();
        for m in &minutes {
            pipe.hgetall(Keys::minute(*m));
        }
        let hashes: Vec<HashMap<String, u64>> = pipe.query_async(&mut self.conn().await?).await?;
        Ok(minutes
            .iter()
            .zip(&hashes)
            .map(|(m, h)| Minute::from_hash(m * 60, h))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bucketed_for_the_settle_script() {
        assert_eq!(wait_bucket(0.002), 0);
        assert_eq!(wait_bucket(0.010), 0);
        assert_eq!(wait_bucket(0.011), 1);
        assert_eq!(wait_bucket(0.2), 3);
        assert_eq!(wait_bucket(400.0), WAIT_BUCKETS_MS.len());
        assert_eq!(wait_bucket(-1.0), 0, "a clock step back is no wait");
    }

    #[test]
    fn a_minute_reads_its_counts_and_percentiles_from_the_fields() {
        let h: HashMap<String, u64> = [
            ("ok:0", 80),
            ("ok:5", 10),
            ("fail:0", 1),
            ("retry:0", 9),
            ("requeue:-", 3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let m = Minute::from_hash(60, &h);
        assert_eq!((m.finished, m.failed, m.retried, m.starts), (90, 1, 9, 100));
        assert_eq!(m.wait_p50_ms, Some(10));
        assert_eq!(m.wait_p95_ms, Some(1_000));
        let empty = Minute::from_hash(0, &HashMap::new());
        assert_eq!((empty.starts, empty.wait_p95_ms), (0, None));
    }
}
