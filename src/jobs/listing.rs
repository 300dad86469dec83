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

/// Which list: a queue's jobs in a state; `lane` reads that tenant's lane of a fair queue
/// instead of the queue's own list (queued only).
#[derive(Clone, Copy, Debug)]
pub struct Listed<'a> {
    pub queue: &'a str,
    pub state: ListedState,
    pub lane: Option<&'a str>,
}

impl Admin<'_> {
    /// `limit` jobs of the list `of` from `offset` in [`ListedState::newest_first`] order. Two
    /// round trips: the count and the range together, then the jobs.
    pub async fn list_jobs(
        &self,
        of: &Listed<'_>,
        offset: usize,
        limit: usize,
    ) -> Result<ListedPage, JobError> {
        let Listed {
            queue,
            state,
            lane: tenant,
        } = *of;
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

/// What a filtered list keeps: every given condition must hold (type and tenant exactly, the
/// error text anywhere in the job's error or last retried error, ignoring case).
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub job_type: Option<String>,
    pub tenant: Option<String>,
    pub error: Option<String>,
}

impl JobFilter {
    pub fn is_empty(&self) -> bool {
        self.job_type.is_none() && self.tenant.is_none() && self.error.is_none()
    }

    fn keeps(&self, job: &JobDetail) -> bool {
        let error_has = |needle: &str| {
            let needle = needle.to_lowercase();
            let failed = match &job.result {
                Some(super::admin::JobResult::Failed { error }) => Some(error.as_str()),
                _ => None,
            };
            [failed, job.last_error.as_deref()]
                .into_iter()
                .flatten()
                .any(|e| e.to_lowercase().contains(&needle))
        };
        self.job_type
            .as_ref()
            .is_none_or(|t| *t == job.info.job_type)
            && self
                .tenant
                .as_deref()
                .is_none_or(|t| job.info.tenant() == Some(t))
            && self.error.as_deref().is_none_or(error_has)
    }
}

/// A filtered page: the jobs kept among the entries looked at, and where to look on.
#[derive(Debug, Serialize)]
pub struct FilteredPage {
    pub total: u64,
    pub offset: usize,
    /// Entries looked at, from `offset`.
    pub looked: usize,
    /// Where the next look starts; `None` once the list's end was reached.
    pub next_offset: Option<usize>,
    pub jobs: Vec<ListedJob>,
}

/// Entries read per round trip while filtering.
const FILTER_WINDOW: usize = 100;

/// Job ids that start with a prefix, from a bounded walk of the keyspace.
#[derive(Debug, Serialize)]
pub struct IdMatches {
    pub ids: Vec<String>,
    /// `SCAN` calls made, each asked to look at [`SCAN_COUNT`] keys (Redis's hint, not exact).
    pub scan_calls: u64,
    pub scan_count: u64,
    /// Keys in the database (`DBSIZE`), to set the walk against.
    pub keys_in_db: u64,
    /// Whether it walked the whole keyspace (else more may match).
    pub complete: bool,
}

/// Keys each `SCAN` call of an id search is asked to look at.
const SCAN_COUNT: u64 = 1000;

impl Admin<'_> {
    /// Up to `limit` jobs of the list `of` that `filter` keeps, looking at no more than
    /// `max_look` entries from `offset`: a window of [`FILTER_WINDOW`] per two round trips.
    pub async fn filter_jobs(
        &self,
        of: &Listed<'_>,
        offset: usize,
        limit: usize,
        filter: &JobFilter,
        max_look: usize,
    ) -> Result<FilteredPage, JobError> {
        let (mut jobs, mut looked, mut total) = (Vec::new(), 0, 0);
        let mut at_end = false;
        'windows: while jobs.len() < limit && looked < max_look {
            let window = FILTER_WINDOW.min(max_look - looked);
            let page = self.list_jobs(of, offset + looked, window).await?;
            total = page.total;
            at_end = page.jobs.len() < window;
            for entry in page.jobs {
                // A full page stops right after its last job: the next look starts there.
                if jobs.len() == limit {
                    at_end = false;
                    break 'windows;
                }
                looked += 1;
                if entry.job.as_ref().is_some_and(|j| filter.keeps(j)) {
                    jobs.push(entry);
                }
            }
            if at_end {
                break;
            }
        }
        Ok(FilteredPage {
            total,
            offset,
            looked,
            next_offset: (!at_end).then_some(offset + looked),
            jobs,
        })
    }

    /// Up to `limit` ids of jobs that start with `prefix` (which must be a valid job id), from
    /// at most `max_calls` `SCAN` calls.
    pub async fn find_ids(
        &self,
        prefix: &str,
        limit: usize,
        max_calls: u64,
    ) -> Result<IdMatches, JobError> {
        if !super::is_valid_job_id(prefix) {
            return Err(JobError::Invalid(format!(
                "{prefix:?} is not a job id prefix"
            )));
        }
        let head = self.keys().job("");
        // Job ids hold no glob characters, so the prefix matches itself.
        let pattern = format!("{head}{prefix}*");
        let mut conn = self.conn().await?;
        let keys_in_db: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
        let (mut cursor, mut calls, mut ids) = (0u64, 0u64, Vec::new());
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            calls += 1;
            // `rq:job:<id>:dependents` and the like are a job's, not jobs.
            ids.extend(
                keys.iter()
                    .filter_map(|k| k.strip_prefix(&head))
                    .filter(|id| !id.contains(':'))
                    .map(str::to_owned),
            );
            cursor = next;
            if cursor == 0 || ids.len() >= limit || calls >= max_calls {
                break;
            }
        }
        ids.sort();
        let more = ids.len() > limit;
        ids.truncate(limit);
        Ok(IdMatches {
            ids,
            scan_calls: calls,
            scan_count: SCAN_COUNT,
            keys_in_db,
            complete: cursor == 0 && !more,
        })
    }
}
