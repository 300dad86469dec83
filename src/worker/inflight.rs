//! What a worker runs now, and the numbering of its busy/idle decisions (several tasks record
//! them and their Redis calls can arrive in any order; the scripts keep the newest number).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::jobs::{ClaimedJob, Execution, WorkerState};

/// How a running job's task is ended from outside: RQ's stop-job (the job ends `stopped`, never
/// retried) or kill-horse (a failure, retried as its policy allows, as RQ's killed work-horse).
#[derive(Clone, Debug, Default)]
pub(super) struct Halt {
    token: CancellationToken,
    killed: Arc<AtomicBool>,
}

impl Halt {
    pub(super) fn stop(&self) {
        self.token.cancel();
    }

    pub(super) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Waits for a halt; `true` when it was a kill.
    pub(super) async fn halted(&self) -> bool {
        self.token.cancelled().await;
        self.killed.load(Ordering::Acquire)
    }
}

/// The executions this worker runs, and the numbering of its state decisions.
///
/// `rq info` shows a worker busy or idle. Several tasks decide that (the claim loop, the
/// settler) and their Redis calls can arrive in any order, so each decision is numbered here,
/// under this lock, and the scripts keep the newest.
#[derive(Default)]
pub(super) struct Inflight {
    pub(super) executions: HashMap<String, Execution>,
    /// Job id → what ends its task from outside (RQ's stop-job and kill-horse commands).
    pub(super) stops: HashMap<String, Halt>,
    /// A claim is on its way: its jobs are not in `executions` yet, so "idle" would be wrong.
    claiming: bool,
    seq: u64,
    last: Option<WorkerState>,
    /// The number of the last "busy" a claim wrote (it got jobs): while no decision came after
    /// it, Redis says busy already and the next claim need not decide anything.
    busy_written: Option<u64>,
    /// Since when nothing has run (`None` while something runs or before anything ran).
    empty_since: Option<Instant>,
}

/// How long a worker must have had nothing to run before `rq info` is told it is idle: a worker
/// fed a job every millisecond or so (a steady producer) would otherwise write "idle" after each
/// job and "busy" before the next, three commands each.
pub(super) const IDLE_MARK_AFTER: Duration = Duration::from_millis(50);

impl Inflight {
    pub(super) fn decide(&mut self, state: WorkerState) -> (WorkerState, u64) {
        self.seq += 1;
        self.last = Some(state);
        (state, self.seq)
    }

    /// Before sending a claim: the number its "busy" will carry, or 0 when the worker is busy in
    /// Redis already by the newest decision (a claim per job on a busy worker would otherwise
    /// read and write the registration each time: three commands of a job's twenty-five at
    /// concurrency 1).
    pub(super) fn begin_claim(&mut self) -> u64 {
        self.claiming = true;
        if self.busy_written == Some(self.seq) {
            return 0;
        }
        self.decide(WorkerState::Busy).1
    }

    /// A claim numbered `seq` took jobs, so it wrote "busy" (claim.lua writes it then).
    pub(super) fn wrote_busy(&mut self, seq: u64) {
        if seq > 0 {
            self.busy_written = Some(seq);
        }
    }

    /// What Redis says may no longer be the newest decision (the registration was written
    /// again, or a suspended claim must write `suspended`): the next claim decides again.
    pub(super) fn forget_written(&mut self) {
        self.busy_written = None;
    }

    /// After a claim: records its jobs, each with the token that stops it (in the order
    /// claimed). Nothing is decided here: a decision that is never written would block the
    /// later one; the claim loop records "idle" (via [`Self::idle_now`]) once the worker has had
    /// nothing to run for [`IDLE_MARK_AFTER`].
    pub(super) fn end_claim(&mut self, claimed: &[ClaimedJob]) -> Vec<Halt> {
        self.claiming = false;
        let mut stops = Vec::with_capacity(claimed.len());
        for job in claimed {
            self.executions
                .insert(job.execution.member(), job.execution.clone());
            let stop = Halt::default();
            self.stops.insert(job.execution.id.clone(), stop.clone());
            stops.push(stop);
        }
        if !self.executions.is_empty() {
            self.empty_since = None;
        } else if self.empty_since.is_none() {
            self.empty_since = Some(Instant::now());
        }
        stops
    }

    /// A job's task ended: it no longer runs here, and no stop can reach it.
    pub(super) fn ended(&mut self, execution: &Execution) {
        self.executions.remove(&execution.member());
        self.stops.remove(&execution.id);
        if self.executions.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    /// When "idle" is due for a worker with nothing running that is not idle yet.
    pub(super) fn idle_due_at(&self) -> Option<Instant> {
        if self.last == Some(WorkerState::Idle) || !self.executions.is_empty() {
            return None;
        }
        self.empty_since.map(|since| since + IDLE_MARK_AFTER)
    }

    /// When to look again whether the worker is idle: when it is due, `None` when "idle" is
    /// decided already, otherwise (something runs) a mark's interval from now.
    pub(super) fn idle_mark_at(&self) -> Option<Instant> {
        if self.last == Some(WorkerState::Idle) {
            return None;
        }
        Some(
            self.idle_due_at()
                .unwrap_or_else(|| Instant::now() + IDLE_MARK_AFTER),
        )
    }

    /// "Idle", numbered, if nothing has run for [`IDLE_MARK_AFTER`] and no claim is under way.
    pub(super) fn idle_now(&mut self) -> Option<(WorkerState, u64)> {
        let quiet = self
            .empty_since
            .is_some_and(|since| since.elapsed() >= IDLE_MARK_AFTER);
        (quiet
            && self.executions.is_empty()
            && !self.claiming
            && self.last != Some(WorkerState::Idle))
        .then(|| self.decide(WorkerState::Idle))
    }
}

pub(super) type Running = Arc<Mutex<Inflight>>;

pub(super) fn lock(r: &Running) -> std::sync::MutexGuard<'_, Inflight> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy worker's claims decide nothing while Redis already says busy by the newest
    /// decision; any later decision, a suspension or a new registration makes the next claim
    /// decide again.
    #[test]
    fn a_claim_decides_busy_only_when_redis_may_not_say_it() {
        let mut i = Inflight::default();
        let first = i.begin_claim();
        assert!(first > 0, "nothing written yet");
        i.end_claim(&[]);
        assert!(
            i.begin_claim() > first,
            "the first claim got nothing: it wrote nothing"
        );
        let written = i.seq;
        i.wrote_busy(written);
        assert_eq!(i.begin_claim(), 0, "busy already");
        assert_eq!(i.begin_claim(), 0);
        i.wrote_busy(0);
        assert_eq!(
            i.begin_claim(),
            0,
            "a claim that decided nothing changes nothing"
        );

        i.claiming = false;
        i.empty_since = Some(Instant::now() - IDLE_MARK_AFTER);
        assert_eq!(i.idle_now(), Some((WorkerState::Idle, written + 1)));
        let after_idle = i.begin_claim();
        assert_eq!(after_idle, written + 2, "idle was decided since");
        i.wrote_busy(after_idle);
        i.claiming = false;
        i.empty_since = Some(Instant::now() - IDLE_MARK_AFTER);
        assert_eq!(i.idle_now(), Some((WorkerState::Idle, after_idle + 1)));
        assert!(i.begin_claim() > 0, "idle was decided since");

        i.wrote_busy(i.seq);
        i.forget_written();
        assert!(i.begin_claim() > 0, "suspended, or registered again");
    }

    /// "Idle" is decided only once nothing has run for a moment: a job that ends and is followed
    /// by the next within milliseconds (a steady producer) leaves Redis saying busy, with no
    /// decision either way; a worker that stays empty is marked idle once.
    #[test]
    fn idle_waits_until_nothing_has_run_for_a_moment() {
        let mut i = Inflight::default();
        let busy = i.begin_claim();
        let job = Execution {
            id: "j1".into(),
            ..Execution::default()
        };
        i.end_claim(&[]);
        i.executions.insert(job.member(), job.clone());
        i.wrote_busy(busy);
        assert!(i.idle_now().is_none(), "a job runs");
        let running_check = i.idle_mark_at().expect("checked again later");
        assert!(running_check > Instant::now(), "not at once");

        i.ended(&job);
        assert!(i.idle_now().is_none(), "empty for a moment only");
        let due = i.idle_mark_at().expect("idle is due later");
        assert!(due > Instant::now() && due <= Instant::now() + IDLE_MARK_AFTER);
        assert_eq!(i.begin_claim(), 0, "the next job's claim writes nothing");
        i.end_claim(&[]);

        i.empty_since = Some(Instant::now() - IDLE_MARK_AFTER);
        assert_eq!(i.idle_now(), Some((WorkerState::Idle, busy + 1)));
        assert!(i.idle_now().is_none(), "decided once");
        assert!(i.idle_mark_at().is_none(), "nothing more to mark");
    }
}
