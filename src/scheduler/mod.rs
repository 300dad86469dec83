//! Periodic jobs: entries from configuration, and the leader loop that fires their slots.
//!
//! One process leads through the TTL lock in `jobs` (acquired with `SET NX PX`, renewed every
//! `renew_interval`, never deleted); the others stand by and try every `renew_interval`, so a
//! crashed leader is replaced within `lock_ttl + renew_interval`. Every fire of an entry is a
//! slot (entry + scheduled time) enqueued through the fenced de-dupe script: it happens only
//! while this process holds the lock, and at most once per slot even across leaders. After an
//! outage only the newest missed slot of each entry fires; the skipped ones are counted and
//! logged. This is the only place in prosaas that enqueues periodically.

pub mod schedule;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::jobs::{Enqueued, Fired, JobOptions, JobStore, Leadership, NewJob, is_valid_queue_name};
use crate::metrics as m;
use crate::settings::{EntrySettings, SchedulerSettings};
use schedule::Schedule;

/// Most missed slots counted for the log line; beyond that the count says "at least".
const SKIP_COUNT_CAP: u64 = 100_000;
/// How soon a slot that failed to fire is tried again.
const RETRY_FAILED_SLOT: Duration = Duration::from_millis(500);

/// One periodic job.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub schedule: Schedule,
    pub queue: String,
    pub job_type: String,
    pub args: Map<String, Value>,
    pub options: JobOptions,
}

/// Parses and checks the configured entries: unique names, a valid schedule each.
pub fn entries(settings: &SchedulerSettings) -> anyhow::Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::with_capacity(settings.entries.len());
    for e in &settings.entries {
        out.push(entry(e)?);
    }
    let mut names: Vec<&str> = out.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("scheduler.entries: the name {:?} is used twice", w[0]);
    }
    Ok(out)
}

fn entry(e: &EntrySettings) -> anyhow::Result<Entry> {
    let name = &e.name;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("scheduler.entries: name {name:?} must be 1+ characters of [A-Za-z0-9_-]");
    }
    let schedule = match (&e.every, &e.cron) {
        (Some(every), None) => Schedule::every(every),
        (None, Some(cron)) => Schedule::cron(cron, &e.timezone),
        _ => bail!("scheduler.entries.{name}: set exactly one of every or cron"),
    }
    .map_err(|msg| anyhow::anyhow!("scheduler.entries.{name}: {msg}"))?;
    if !is_valid_queue_name(&e.queue) {
        bail!(
            "scheduler.entries.{name}: queue {:?} is not a valid queue name",
            e.queue
        );
    }
    let probe = NewJob::new(&e.queue, &e.job_type, e.args.clone()).with_options(e.options.clone());
    if let Err(err) = crate::jobs::check_job(&probe) {
        bail!("scheduler.entries.{name}: {err}");
    }
    if !e.options.depends_on.is_empty() {
        // Each slot is fired through the de-dupe lock, which takes one job, not a chain.
        bail!("scheduler.entries.{name}: options.depends_on is not supported on a schedule entry");
    }
    Ok(Entry {
        name: name.clone(),
        schedule,
        queue: e.queue.clone(),
        job_type: e.job_type.clone(),
        args: e.args.clone(),
        options: e.options.clone(),
    })
}

/// How long a fired slot's marker is kept: long enough that no leader, however stale, reaches
/// back to it (ten periods, between an hour and a week).
fn slot_ttl_secs(schedule: &Schedule, slot: DateTime<Utc>) -> u64 {
    let period = schedule
        .next_after(slot)
        .map_or(3600, |n| (n - slot).num_seconds().max(1));
    u64::try_from(period.saturating_mul(10))
        .unwrap_or(u64::MAX)
        .clamp(3600, 7 * 86_400)
}

fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// The leader loop of one scheduler process.
pub struct Scheduler {
    pub store: JobStore,
    /// This process's owner token; names it in the lock and in health output.
    pub token: String,
    pub entries: Vec<Entry>,
    pub lock_ttl: Duration,
    pub renew_interval: Duration,
    pub tick_interval: Duration,
}

enum Tick {
    /// `at` is the time the tick evaluated the schedule at.
    Done {
        next_due: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    Fenced {
        holder: String,
    },
}

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            token = %self.token,
            entries = self.entries.len(),
            lock_ttl = ?self.lock_ttl,
            renew = ?self.renew_interval,
            "scheduler standing by for the lock"
        );
        let mut leading: Option<u64> = None;
        // The highest cycle seen: Redis's counter may restart with Redis's data, this does not.
        let mut seen_cycle = 0;
        // Entry → newest slot (ms) fired or, for a new entry, the time it was first seen.
        let mut cursors: HashMap<String, i64> = HashMap::new();
        // Missed slots skipped per entry by this process (shown on the dashboard).
        let mut skipped: HashMap<String, u64> = HashMap::new();
        let mut next_renew = Instant::now();
        let mut next_eval = Instant::now();
        loop {
            let wake = if leading.is_some() {
                next_renew.min(next_eval)
            } else {
                next_renew
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= next_renew {
                next_renew = Instant::now() + self.renew_interval;
                let (now_leading, gained) = self
                    .contend(leading.is_some(), &mut seen_cycle, &mut cursors)
                    .await;
                leading = now_leading;
                if gained {
                    next_eval = Instant::now();
                }
            }
            metrics::gauge!(m::SCHEDULER_LEADER).set(if leading.is_some() { 1.0 } else { 0.0 });
            let Some(cycle) = leading else { continue };
            if Instant::now() < next_eval {
                continue;
            }
            match self.tick(&mut cursors, &mut skipped, cycle).await {
                Tick::Done { next_due, at } => next_eval = self.next_evaluation(next_due, at),
                Tick::Fenced { holder } => {
                    tracing::warn!(holder = %holder, "Lost scheduler lock: it is held by {holder:?}; stopped enqueuing");
                    leading = None;
                }
            }
        }
        // The lock is left to expire: deleting it could release a lock that a new leader took.
        tracing::info!(token = %self.token, "scheduler stopped");
        Ok(())
    }

    /// One lock attempt: where we stand after it (`Some(cycle)` while leading) and whether
    /// leadership was gained just now (the caller then evaluates at once).
    async fn contend(
        &self,
        was_leading: bool,
        seen_cycle: &mut u64,
        cursors: &mut HashMap<String, i64>,
    ) -> (Option<u64>, bool) {
        let attempt = self
            .store
            .leader_lock()
            .acquire_or_renew_leadership(&self.token, self.lock_ttl, *seen_cycle)
            .await;
        if let Ok(Leadership::Acquired { cycle } | Leadership::Renewed { cycle }) = &attempt {
            *seen_cycle = (*seen_cycle).max(*cycle);
        }
        match attempt {
            // `Acquired` is always a gain, even for a process that believes it leads: the
            // lock vanished (a Redis restart) and was taken anew.
            Ok(Leadership::Acquired { cycle }) => (self.gain(cycle, cursors).await, true),
            // Still ours after a failed renewal made us stand by: a gain too.
            Ok(Leadership::Renewed { cycle }) if !was_leading => {
                (self.gain(cycle, cursors).await, true)
            }
            Ok(Leadership::Renewed { cycle }) => (Some(cycle), false),
            Ok(Leadership::HeldBy(holder)) => {
                if was_leading {
                    tracing::warn!(holder = %holder, "Lost scheduler lock: it is held by {holder}");
                }
                (None, false)
            }
            Err(e) => {
                if was_leading {
                    tracing::warn!(error = %e, "Lost scheduler lock: renewal failed; no more enqueuing until it is taken again");
                } else {
                    tracing::debug!(error = %e, "lock attempt failed");
                }
                (None, false)
            }
        }
    }

    /// When to evaluate the entries next: the next due slot, at most a tick away.
    fn next_evaluation(&self, next_due: Option<DateTime<Utc>>, at: DateTime<Utc>) -> Instant {
        let tick = Instant::now() + self.tick_interval;
        match next_due {
            // A slot that was already due when the tick evaluated failed to fire (Redis
            // trouble): retry it shortly rather than in a tight loop.
            Some(due) if due <= at => tick.min(Instant::now() + RETRY_FAILED_SLOT),
            Some(due) => {
                let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tick.min(Instant::now() + wait)
            }
            None => tick,
        }
    }

    /// Takes up leadership: logs the gain and loads where the previous leader stopped. `None`
    /// (stand by) if that state cannot be read.
    async fn gain(&self, cycle: u64, cursors: &mut HashMap<String, i64>) -> Option<u64> {
        tracing::info!(token = %self.token, cycle, "Lock acquired for cycle {cycle}");
        match self.store.leader_lock().schedule_state().await {
            Ok(state) => {
                // Keep what we fired ourselves if Redis lost its record of it.
                for (entry, slot) in state {
                    let c = cursors.entry(entry).or_insert(slot);
                    *c = (*c).max(slot);
                }
                Some(cycle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the schedule state; standing by");
                None
            }
        }
    }

    /// Fires every due slot (the newest per entry) and records the tick.
    // Long on purpose: one pass over the entries with its report; the per-entry decision is in
    // `schedule.rs`.
    async fn tick(
        &self,
        cursors: &mut HashMap<String, i64>,
        skipped_total: &mut HashMap<String, u64>,
        cycle: u64,
    ) -> Tick {
        let now = Utc::now();
        let mut report = Vec::with_capacity(self.entries.len());
        let mut next_due: Option<DateTime<Utc>> = None;
        for e in &self.entries {
            let cursor = *cursors
                .entry(e.name.clone())
                .or_insert_with(|| now.timestamp_millis());
            let cursor_t = ms_to_utc(cursor);
            if let Some(next) = e.schedule.next_after(cursor_t)
                && next <= now
                && let Some(newest) = e.schedule.latest_at_or_before(now)
            {
                let skipped = e.schedule.count_between(cursor_t, newest, SKIP_COUNT_CAP);
                if skipped > 0 {
                    *skipped_total.entry(e.name.clone()).or_default() += skipped;
                    metrics::counter!(m::SCHEDULER_SKIPPED_SLOTS, "entry" => e.name.clone())
                        .increment(skipped);
                    tracing::warn!(
                        entry = %e.name, skipped,
                        "Skipped {skipped} missed slots of {}; firing only the newest ({})",
                        e.name, newest.to_rfc3339()
                    );
                }
                match self.fire(e, newest).await {
                    Ok(Fired::Slot(Enqueued::New(id))) => {
                        metrics::counter!(m::JOBS_ENQUEUED, "source" => "scheduler", "job_type" => e.job_type.clone()).increment(1);
                        tracing::info!(entry = %e.name, slot = %newest.to_rfc3339(), job_id = %id, "Fired {}", e.name);
                        cursors.insert(e.name.clone(), newest.timestamp_millis());
                    }
                    Ok(Fired::Slot(Enqueued::Duplicate(id))) => {
                        tracing::debug!(entry = %e.name, job_id = %id, "slot already fired by a previous leader");
                        cursors.insert(e.name.clone(), newest.timestamp_millis());
                    }
                    Ok(Fired::Fenced { holder }) => return Tick::Fenced { holder },
                    Err(err) => {
                        // The cursor stays: the next tick tries this slot again.
                        tracing::warn!(entry = %e.name, error = %err, "cannot fire; retrying next tick");
                    }
                }
            }
            let last = cursors.get(&e.name).copied().map(ms_to_utc);
            let next = last.and_then(|l| e.schedule.next_after(l));
            if let Some(n) = next {
                next_due = Some(next_due.map_or(n, |d| d.min(n)));
            }
            report.push(json!({
                "name": e.name,
                "schedule": e.schedule.describe(),
                "next_fire": next.map(|n| n.to_rfc3339()),
                "last_fire": last.filter(|l| *l <= now).map(|l| l.to_rfc3339()),
                "skipped_slots": skipped_total.get(&e.name).copied().unwrap_or(0),
            }));
        }
        if let Err(err) = self
            .store
            .leader_lock()
            .record_tick(&self.token, cycle, &Value::Array(report))
            .await
        {
            tracing::warn!(error = %err, "cannot record the tick");
        }
        Tick::Done { next_due, at: now }
    }

    async fn fire(&self, e: &Entry, slot: DateTime<Utc>) -> Result<Fired, crate::jobs::JobError> {
        let mut options = e.options.clone();
        options
            .meta
            .insert("schedule_entry".into(), Value::String(e.name.clone()));
        options
            .meta
            .insert("scheduled_for".into(), Value::String(slot.to_rfc3339()));
        let job = NewJob::new(&e.queue, &e.job_type, e.args.clone()).with_options(options);
        self.store
            .leader_lock()
            .fire_slot(
                &self.token,
                &e.name,
                slot.timestamp_millis(),
                job,
                slot_ttl_secs(&e.schedule, slot),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::settings::Settings;

    /// Settings from an overlay file, with the entries checked as `main` checks them at startup.
    fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
        let s = Settings::load(Some(path), &HashMap::new())?;
        entries(&s.scheduler)?;
        Ok(s)
    }

    #[test]
    fn scheduler_entries_are_checked_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "name = \"a\"\ncron = \"61 * * * *\"\njob_type = \"t\"",
                "scheduler.entries.a: cron",
            ),
            (
                "name = \"a\"\nevery = \"10 minutes\"\njob_type = \"t\"",
                "unknown unit",
            ),
            (
                "name = \"a\"\njob_type = \"t\"",
                "exactly one of every or cron",
            ),
            (
                "name = \"a\"\nevery = \"1s\"\ncron = \"* * * * *\"\njob_type = \"t\"",
                "exactly one",
            ),
            (
                "name = \"a\"\ncron = \"0 9 * * *\"\ntimezone = \"Moon/Base\"\njob_type = \"t\"",
                "unknown time zone",
            ),
            (
                "name = \"a b\"\nevery = \"1s\"\njob_type = \"t\"",
                "name \"a b\"",
            ),
            (
                "name = \"a\"\nevery = \"1s\"\njob_type = \"t\"\nqueue = \"x y\"",
                "queue",
            ),
            (
                "name = \"a\"\nevery = \"1s\"\njob_type = \"t\"\noptions = { timeout = 0 }",
                "timeout",
            ),
            (
                "name = \"a\"\nevery = \"1s\"\njob_type = \"t\"\noptions = { depends_on = [\"p\"] }",
                "scheduler.entries.a: options.depends_on is not supported",
            ),
        ];
        for (i, (entry, needle)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("e{i}.toml"));
            std::fs::write(&path, format!("[[scheduler.entries]]\n{entry}\n")).unwrap();
            let err = format!("{:#}", load(&path).unwrap_err());
            assert!(err.contains(needle), "{entry}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let path = dir.path().join("dup.toml");
        std::fs::write(
            &path,
            "[[scheduler.entries]]\nname = \"a\"\nevery = \"1s\"\njob_type = \"t\"\n[[scheduler.entries]]\nname = \"a\"\nevery = \"2s\"\njob_type = \"t\"\n",
        )
        .unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains("\"a\" is used twice"), "{err}");
        // The shipped defaults are valid and name the guide's periodic work.
        let s = Settings::load(None, &HashMap::new()).unwrap();
        entries(&s.scheduler).unwrap();
        let names: Vec<&str> = s
            .scheduler
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["send-due-reminders", "process-sessions"]);
    }
}
