//! The reads behind `prosaas migrate audit`: the queues Redis knows, and a queue's waiting jobs
//! page by page with the fields a migration judges (the call and its callbacks). Only
//! reads, each bounded by the page the caller asks for; judging a job against this
//! configuration's handlers is the caller's (`src/migrate/`), which knows handlers and not Redis.

use serde::Serialize;

use super::error::JobError;
use super::job::{DataProblem, JobCall, read_data};
use super::keys::Keys;

super::capability! {
    /// Bounded reads for the migration audit.
    Audit via audit
}

/// Where a job waits for a worker, as the audit walks them: every place a job a worker will
/// take can be, besides a worker's hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// `rq:queue:<q>` (a fair queue's tenant lanes hold only prosaas's own jobs).
    Queued,
    /// `rq:scheduled:<q>`: due later (delayed jobs, retries with backoff).
    Scheduled,
    /// `rq:deferred:<q>`: waiting for parents.
    Deferred,
    /// The started registry: running now, on whichever worker; one whose worker dies is run
    /// again by the survivors.
    Started,
}

impl Waiting {
    pub const ALL: [Self; 4] = [Self::Queued, Self::Scheduled, Self::Deferred, Self::Started];

    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Deferred => "deferred",
            Self::Started => "started",
        }
    }

    fn key(self, keys: &Keys, queue: &str) -> String {
        match self {
            Self::Queued => keys.queue(queue),
            Self::Scheduled => keys.scheduled(queue),
            Self::Deferred => keys.deferred(queue),
            Self::Started => keys.started(queue),
        }
    }
}

/// RQ's callback fields, with the name RQ's API gives each.
const CALLBACKS: [(&str, &str); 3] = [
    ("on_success", "success_callback_name"),
    ("on_failure", "failure_callback_name"),
    ("on_stopped", "stopped_callback_name"),
];

/// One waiting job, as much of it as a migration judges.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditedJob {
    pub id: String,
    /// What it calls, or why only Python could.
    pub call: Result<JobCall, DataProblem>,
    /// RQ's callbacks it names: (`on_success`, import path), ...
    pub callbacks: Vec<(&'static str, String)>,
}

/// `data` and the three callback names, as one `HMGET` returns them.
type Fields = (
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// One job from its fields; `None` when its hash is gone.
fn audited(id: String, (data, success, failure, stopped): Fields) -> Option<AuditedJob> {
    let call = read_data(&data?);
    let callbacks = CALLBACKS
        .iter()
        .zip([success, failure, stopped])
        .filter_map(|((which, _), name)| name.filter(|n| !n.is_empty()).map(|n| (*which, n)))
        .collect();
    Some(AuditedJob {
        id,
        call,
        callbacks,
    })
}

impl Audit<'_> {
    /// Every queue in `rq:queues` (tenant lanes are their queue's), in name order.
    pub async fn known_queues(&self) -> Result<Vec<String>, JobError> {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().queues())
            .query_async(&mut self.conn().await?)
            .await?;
        let prefix = self.keys().queue_key_prefix();
        let mut names: Vec<String> = members
            .iter()
            .filter_map(|m| m.strip_prefix(&prefix))
            .filter(|q| !q.contains('@'))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    /// How many jobs wait in each place of `queue`, in [`Waiting::ALL`]'s order; one round trip.
    pub async fn sizes(&self, queue: &str) -> Result<Vec<u64>, JobError> {
        let keys = self.keys();
        let mut pipe = redis::pipe();
        for w in Waiting::ALL {
            let key = w.key(keys, queue);
            match w {
                Waiting::Queued => pipe.llen(key),
                _ => pipe.zcard(key),
            };
        }
        Ok(pipe.query_async(&mut self.conn().await?).await?)
    }

    /// The jobs at positions `offset..offset + count` of one place (list order, or score order
    /// for a registry), read in two round trips. A job gone between the two is left out. Pages
    /// of a place that changes meanwhile may overlap or miss a job: the audit is a survey, not a
    /// snapshot.
    pub async fn page(
        &self,
        queue: &str,
        waiting: Waiting,
        offset: usize,
        count: usize,
    ) -> Result<Vec<AuditedJob>, JobError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let key = waiting.key(self.keys(), queue);
        let (start, stop) = (offset as isize, (offset + count - 1) as isize);
        let mut conn = self.conn().await?;
        let members: Vec<String> = match waiting {
            Waiting::Queued => redis::cmd("LRANGE"),
            _ => redis::cmd("ZRANGE"),
        }
        .arg(&key)
        .arg(start)
        .arg(stop)
        .query_async(&mut conn)
        .await?;
        // Started entries are `<id>` or `<id>:<execution id>` (RQ 3.0 and prosaas).
        let ids: Vec<String> = members
            .into_iter()
            .map(|m| match m.split_once(':') {
                Some((id, _)) => id.to_owned(),
                None => m,
            })
            .collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys().job(id))
                .arg("data")
                .arg(CALLBACKS.map(|(_, field)| field).as_slice());
        }
        let rows: Vec<Fields> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .into_iter()
            .zip(rows)
            .filter_map(|(id, fields)| audited(id, fields))
            .collect())
    }

    /// How many jobs wait on each of `ids` (`rq:job:<id>:dependents`); one round trip.
    pub async fn dependents(&self, ids: &[String]) -> Result<Vec<u64>, JobError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.scard(self.keys().dependents(id));
        }
        Ok(pipe.query_async(&mut self.conn().await?).await?)
    }
}
