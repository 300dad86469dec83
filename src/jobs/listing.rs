//! A page of one queue's jobs in one state, read from RQ's own structures (the queue's list, a
//! tenant's lane, or the state's registry): what the dashboard lists. A page costs one count,
//! one range of at most a page, and one pipelined read of those jobs, however long the list.

use serde::Serialize;

use super::admin::{Admin, JobDetail};
use super::error::JobError;
use super::keys::Keys;

/// A state a queue's jobs can be listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListedState {
    Queued,
    Scheduled,
    Started,
    Deferred,
    Finished,
    Failed,
    Canceled,
}

impl ListedState {
    pub const ALL: [ListedState; 7] = [
        ListedState::Queued,
        ListedState::Scheduled,
        ListedState::Started,
        ListedState::Deferred,
        ListedState::Finished,
        ListedState::Failed,
        ListedState::Canceled,
    ];

    pub fn parse(name: &str) -> Option<ListedState> {
        ListedState::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            ListedState::Queued => "queued",
            ListedState::Scheduled => "scheduled",
            ListedState::Started => "started",
            ListedState::Deferred => "deferred",
            ListedState::Finished => "finished",
            ListedState::Failed => "failed",
            ListedState::Canceled => "canceled",
        }
    }

    /// The registry (a sorted set) that holds this state's jobs; `None` for queued jobs, which
    /// wait in the queue's list.
    fn registry(self, k: &Keys, queue: &str) -> Option<String> {
        match self {
            ListedState::Queued => None,
            ListedState::Scheduled => Some(k.scheduled(queue)),
            ListedState::Started => Some(k.started(queue)),
            ListedState::Deferred => Some(k.deferred(queue)),
            ListedState::Finished => Some(k.finished(queue)),
            ListedState::Failed => Some(k.failed(queue)),
            ListedState::Canceled => Some(k.canceled(queue)),
        }
    }

    /// The order an operator reads it in: what runs next first for the waiting states (the
    /// queue's head, the soonest due), the latest first for the ended ones (their registries'
    /// scores are expiry times, which follow the end).
    pub fn newest_first(self) -> bool {
        matches!(
            self,
            ListedState::Finished | ListedState::Failed | ListedState::Canceled
        )
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct ListedPage {
    /// Entries in the list or registry in all (they may have moved on since).
    pub total: u64,
    pub offset: usize,
    pub jobs: Vec<ListedJob>,
}

/// An entry of a page: the job as it is now, or only its id when its hash is gone (deleted or
/// expired while still named in the list).
#[derive(Debug, Serialize)]
pub struct ListedJob {
    pub id: String,
    /// The registry's score for this entry: when a scheduled job is due, when a started one's
    /// heartbeat lapses, when an ended one expires (unix seconds; absent for a queue's list and
    /// for entries kept for ever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobDetail>,
}

impl Admin<'_> {
    /// `limit` jobs of `queue` in `state` from `offset` in [`ListedState::newest_first`] order;
    /// `tenant` reads that tenant's lane of a fair queue instead of the queue's own list (queued
    /// only). Two round trips: the count and the range together, then the jobs.
    pub async fn list_jobs(
        &self,
        queue: &str,
        state: ListedState,
        tenant: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<ListedPage, JobError> {
        let k = self.keys();
        let start = isize::try_from(offset).unwrap_or(isize::MAX);
        let stop = isize::try_from(offset.saturating_add(limit))
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let (total, entries) = match state.registry(k, queue) {
            Some(key) => {
                self.registry_range(&key, start, stop, state.newest_first())
                    .await?
            }
            None => {
                let key = match tenant {
                    Some(t) => k.lane(queue, t),
                    None => k.queue(queue),
                };
                let (total, ids): (u64, Vec<String>) = redis::pipe()
                    .llen(&key)
                    .lrange(&key, start, stop)
                    .query_async(&mut self.conn().await?)
                    .await?;
                (total, ids.into_iter().map(|id| (id, None)).collect())
            }
        };
        let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
        let details = self.job_details(&ids).await?;
        Ok(ListedPage {
            total,
            offset,
            jobs: entries
                .into_iter()
                .zip(details)
                .map(|((id, score), job)| ListedJob { id, score, job })
                .collect(),
        })
    }

    /// A registry's size and its members `start..=stop` with their scores (ids only: a started
    /// entry is `<id>:<execution id>` in RQ 2.0+, a bare id in 1.x; infinite scores left out).
    async fn registry_range(
        &self,
        key: &str,
        start: isize,
        stop: isize,
        rev: bool,
    ) -> Result<(u64, Vec<(String, Option<f64>)>), JobError> {
        let mut range = redis::cmd("ZRANGE");
        range.arg(key).arg(start).arg(stop);
        if rev {
            range.arg("REV");
        }
        range.arg("WITHSCORES");
        let (total, members): (u64, Vec<(String, f64)>) = redis::pipe()
            .zcard(key)
            .add_command(range)
            .query_async(&mut self.conn().await?)
            .await?;
        let entries = members
            .into_iter()
            .map(|(m, score)| {
                let id = m
                    .split_once(':')
                    .map_or(m.as_str(), |(id, _)| id)
                    .to_owned();
                (id, score.is_finite().then_some(score))
            })
            .collect();
        Ok((total, entries))
    }
}
