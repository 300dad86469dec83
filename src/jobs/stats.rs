//! Read-only views for health checks, metrics and the CLI: queue depths and registry sizes as
//! RQ counts them, and the scheduler's lock and last tick. Nothing here writes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::error::JobError;
use super::keys::Keys;
use super::scripts::{self, Layout, LuaScript, args, plain, with_lanes};

/// One queue's numbers, read from RQ's list and registries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// Ids waiting on `rq:queue:<q>` and, on a fair queue, in its tenant lanes.
    pub queued: u64,
    /// Entries in the started registry (`rq:wip:<q>`), including any whose worker died and
    /// that recovery has not yet handled.
    pub started: u64,
    /// Finished jobs still within their result TTL.
    pub finished: u64,
    /// Failed jobs still within their failure TTL.
    pub failed: u64,
    /// Jobs waiting for a time (delayed jobs, retries with backoff).
    pub scheduled: u64,
    /// Jobs waiting for dependencies.
    pub deferred: u64,
    /// Seconds the longest-deferred job has waited for its dependencies (unknown for jobs
    /// RQ < 2.8 deferred: it scored them by expiry).
    pub oldest_deferred_secs: Option<u64>,
    /// Deferred jobs none of whose parents can still end (gone, canceled, stopped, failed
    /// without `allow_dependency_failures`): nothing will ever run them. Counted among the
    /// [`DEFERRED_CHECKED`] oldest deferrals, so a floor.
    pub stranded: u64,
    /// One of them, to look at with `prosaas jobs show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stranded_example: Option<String>,
    /// Seconds the job at the head of the queue has waited since it was enqueued.
    pub oldest_queued_secs: Option<u64>,
    /// Registered workers (prosaas's or Python RQ's) listening on the queue.
    pub workers: u64,
    /// Paused (`prosaas jobs pause`): no prosaas worker takes its jobs.
    pub paused: bool,
    /// A fair queue's tenants: absent for a queue without lanes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenants: Option<TenantStats>,
}

/// A fair queue's lanes, bounded whatever the number of tenants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantStats {
    /// Tenants with queued jobs.
    pub with_work: u64,
    /// Jobs queued in their lanes (part of the queue's `queued`).
    pub queued: u64,
    /// `false` when there were more lanes or started jobs than one read looks at
    /// ([`MAX_WALKED_LANES`], [`MAX_WALKED_STARTED`]): the numbers then cover the first of them.
    pub complete: bool,
    /// The tenant whose oldest queued job has waited longest, and for how long (seconds).
    pub oldest_tenant: Option<String>,
    pub oldest_queued_secs: Option<u64>,
    /// The busiest tenants (queued + running), at most [`MAX_LISTED_TENANTS`].
    pub busiest: Vec<TenantRow>,
}

/// One tenant of a fair queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantRow {
    pub tenant: String,
    pub queued: u64,
    pub running: u64,
    pub oldest_queued_secs: Option<u64>,
}

/// The age of a deferral scored `score` (RQ ≥ 2.8: the time it was deferred). An RQ < 2.8
/// score is an expiry (`now + ttl`, or `+inf`): in the future, so no age.
fn deferral_age(score: &str, now: f64) -> Option<u64> {
    let at = score.parse::<f64>().ok().filter(|s| s.is_finite())?;
    let age = now - at;
    (age >= 0.0).then_some(age as u64)
}

/// The most tenants per queue that health, metrics and `jobs stats` list.
pub const MAX_LISTED_TENANTS: usize = 10;
/// The most lanes one read looks at.
pub(crate) const MAX_WALKED_LANES: usize = 1000;
/// The most started jobs one read looks at for tenants' running counts.
pub(crate) const MAX_WALKED_STARTED: usize = 5000;

/// The scheduler as seen from Redis. All fields are `None`/`false` until a scheduler has run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SchedulerHealth {
    /// When the leader last evaluated the schedule (RFC 3339), if ever.
    pub last_tick: Option<String>,
    /// Whether some scheduler currently holds the leader lock.
    pub lock_held: bool,
    /// The lock's owner token (names the holding process), when held.
    pub holder: Option<String>,
    /// Whole seconds left on the lock (rounded up), when held.
    pub lock_ttl: Option<u64>,
    /// Milliseconds left on the lock, when held.
    pub lock_ttl_ms: Option<u64>,
    /// Lock acquisitions so far (the `N` of "Lock acquired for cycle N") as of the last tick.
    pub cycle: Option<u64>,
    /// Per entry `{name, schedule, next_fire, last_fire, skipped_slots}` as of the last tick
    /// (`skipped_slots`: missed slots the current leader passed over).
    pub entries: Vec<serde_json::Value>,
}

/// What health reads in one bounded step.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub queues: BTreeMap<String, QueueStats>,
    /// Queues in `rq:queues` beyond the listing's bound ([`MAX_LISTED_QUEUES`]), not in `queues`.
    pub queues_unlisted: u64,
    pub scheduler: SchedulerHealth,
    pub suspension: Option<Suspension>,
}

/// Numbers of the queues a listing names ([`Stats::queue_listing`]).
pub struct QueueListing {
    pub queues: BTreeMap<String, QueueStats>,
    /// Queues left out by the bound.
    pub unlisted: u64,
}

/// Workers are suspended: no job starts while `rq:suspended` exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Suspension {
    /// Seconds until the suspension lapses; absent when it lasts until resumed.
    pub seconds_left: Option<u64>,
}

/// The most worker registrations health reads for the versions they run.
const MAX_LISTED_WORKERS: usize = 1000;

/// The most queues health and metrics list besides the configured ones.
pub(crate) const MAX_LISTED_QUEUES: usize = 100;

super::capability! {
    /// Read-only counts for health, metrics and `jobs stats`.
    Stats via stats
}

impl Stats<'_> {
    /// Numbers for `also` (configured queues that may not exist yet) and the queues in
    /// `rq:queues`, at most [`MAX_LISTED_QUEUES`] in all unless `also` alone is longer: after
    /// listing the queues, three pipelined round trips (counts, heads, tenant lanes).
    pub async fn queue_stats(
        &self,
        also: &[String],
    ) -> Result<BTreeMap<String, QueueStats>, JobError> {
        Ok(self.queue_listing(also).await?.queues)
    }

    /// [`Stats::queue_stats`], and how many queues in `rq:queues` the bound left out.
    // Long on purpose: three pipelines and their decoding, which must stay in step command by
    // command.
    pub async fn queue_listing(&self, also: &[String]) -> Result<QueueListing, JobError> {
        let mut conn = self.conn().await?;
        let (members, paused): (Vec<String>, BTreeSet<String>) = redis::pipe()
            .smembers(self.keys().queues())
            .smembers(Keys::paused())
            .query_async(&mut conn)
            .await?;
        let prefix = self.keys().queue_key_prefix();
        // Configured queues always; others (made by Python RQ or older clients) in name order up
        // to the bound, so an unauthenticated health call stays small whatever Redis holds.
        let mut names: BTreeSet<String> = also.iter().cloned().collect();
        // A tenant lane (`<q>@<tenant>`) is counted with its queue, never listed on its own.
        let others: BTreeSet<&str> = members
            .iter()
            .filter_map(|m| m.strip_prefix(&prefix))
            .filter(|q| !q.contains('@'))
            .collect();
        let mut unlisted = 0;
        for q in others {
            if names.contains(q) {
                continue;
            }
            if names.len() >= MAX_LISTED_QUEUES.max(also.len()) {
                unlisted += 1;
                continue;
            }
            names.insert(q.to_owned());
        }
        if names.is_empty() {
            return Ok(QueueListing {
                queues: BTreeMap::new(),
                unlisted,
            });
        }
        let now = self.now().timestamp();
        let mut pipe = redis::pipe();
        for q in &names {
            let k = &self.keys();
            pipe.llen(k.queue(q))
                .zcard(k.started(q))
                .zcard(k.finished(q))
                .zcount(k.finished(q), 0, now)
                .zcard(k.failed(q))
                .zcount(k.failed(q), 0, now)
                .zcard(k.scheduled(q))
                .zcard(k.deferred(q));
        }
        let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        // The head of each queue is its oldest job: one more round trip for their ages, and for
        // the workers listening.
        let mut heads = redis::pipe();
        for q in &names {
            heads
                .cmd("EVALSHA")
                .arg(QUEUE_HEAD.get_hash())
                .arg(HEAD_KEYS.len());
            args!(heads, HEAD_KEYS;
                self.keys().queue(q),
                self.keys().workers_of(q),
                self.keys().deferred(q),
            );
            args!(heads, HEAD_ARGS; self.keys().rq_prefix(), DEFERRED_CHECKED);
        }
        const _: () = assert!(HEAD_REPLY.len() == 5);
        let heads: Vec<(String, u64, String, u64, String)> =
            scripts::query_loading(&mut conn, &QUEUE_HEAD, &heads).await?;
        let mut lanes = redis::pipe();
        for q in &names {
            lanes.cmd("EVALSHA").arg(LANE_STATS.get_hash()).arg(0);
            args!(lanes, LANE_ARGS;
                self.keys().rq_prefix(),
                q,
                MAX_LISTED_TENANTS,
                MAX_WALKED_LANES,
                MAX_WALKED_STARTED,
                if self.store.fairness(q).is_some() { "1" } else { "0" },
            );
        }
        let lanes: Vec<Vec<redis::Value>> =
            scripts::query_loading(&mut conn, &LANE_STATS, &lanes).await?;
        let now_dt = self.now();
        let now_exact = now_dt.timestamp_micros() as f64 / 1e6;
        let age = |at: &str| super::job::age_secs(at, now_dt);
        // Finished/failed entries scored in the past have outlived their TTL and only wait for
        // maintenance to prune them; RQ does not count them either.
        let queues = names
            .into_iter()
            .zip(counts.chunks_exact(8))
            .zip(heads)
            .zip(lanes)
            .map(|(((q, c), head), lanes)| {
                let (head, workers, oldest_deferred, stranded, example) = head;
                let tenants = tenant_stats(&lanes, &age);
                let oldest_queued_secs = age(&head).max(
                    tenants
                        .as_ref()
                        .and_then(|t: &TenantStats| t.oldest_queued_secs),
                );
                let stats = QueueStats {
                    queued: c[0] + tenants.as_ref().map_or(0, |t| t.queued),
                    started: c[1],
                    finished: c[2].saturating_sub(c[3]),
                    failed: c[4].saturating_sub(c[5]),
                    scheduled: c[6],
                    deferred: c[7],
                    oldest_deferred_secs: deferral_age(&oldest_deferred, now_exact),
                    stranded,
                    stranded_example: (!example.is_empty()).then_some(example),
                    oldest_queued_secs,
                    workers,
                    paused: paused.contains(&q),
                    tenants,
                };
                (q, stats)
            })
            .collect();
        Ok(QueueListing { queues, unlisted })
    }

    /// Queue numbers, the scheduler and the suspension, read together within `within`.
    pub async fn health_snapshot(
        &self,
        also: &[String],
        within: std::time::Duration,
    ) -> Result<Snapshot, JobError> {
        super::bounded(within, async {
            let (listing, scheduler, suspension) = tokio::try_join!(
                self.queue_listing(also),
                self.scheduler_health(),
                self.suspension()
            )?;
            Ok(Snapshot {
                queues: listing.queues,
                queues_unlisted: listing.unlisted,
                scheduler,
                suspension,
            })
        })
        .await
    }

    /// How many registered workers (prosaas's and Python RQ's) run each version, as their
    /// registrations say (`prosaas 0.2.0 (commit 1a2b3c4)`, `1.16.2`): a mixed fleet during a
    /// deploy shows as two entries. At most [`MAX_LISTED_WORKERS`] registrations are read.
    pub async fn worker_versions(&self) -> Result<BTreeMap<String, u64>, JobError> {
        let workers: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(self.keys().workers())
            .arg(MAX_LISTED_WORKERS)
            .query_async(&mut self.conn().await?)
            .await?;
        let mut pipe = redis::pipe();
        for w in &workers {
            pipe.hget(w, "version");
        }
        let versions: Vec<Option<String>> = pipe.query_async(&mut self.conn().await?).await?;
        let mut out = BTreeMap::new();
        for v in versions.into_iter().flatten() {
            *out.entry(v).or_insert(0) += 1;
        }
        Ok(out)
    }

    /// Whether workers are suspended (`rq suspend`), and for how long yet when it has a duration.
    pub async fn suspension(&self) -> Result<Option<Suspension>, JobError> {
        let ttl: i64 = redis::cmd("TTL")
            .arg(self.keys().suspended())
            .query_async(&mut self.conn().await?)
            .await?;
        // TTL: -2 no such key, -1 no expiry, else seconds left.
        Ok(match ttl {
            -2 => None,
            secs => Some(Suspension {
                seconds_left: u64::try_from(secs).ok(),
            }),
        })
    }

    /// The leader lock and the leader's last tick, in one round trip.
    pub async fn scheduler_health(&self) -> Result<SchedulerHealth, JobError> {
        type TickFields = (Option<String>, Option<u64>, Option<String>);
        let (holder, pttl, (last_tick, cycle, entries)): (Option<String>, i64, TickFields) =
            redis::pipe()
                .get(Keys::scheduler_lock())
                .pttl(Keys::scheduler_lock())
                .cmd("HMGET")
                .arg(Keys::scheduler_health())
                .arg(&["last_tick", "cycle", "entries"])
                .query_async(&mut self.conn().await?)
                .await?;
        let ttl_ms = u64::try_from(pttl).ok();
        Ok(SchedulerHealth {
            last_tick,
            lock_held: holder.is_some(),
            lock_ttl: holder.as_ref().and(ttl_ms.map(|ms| ms.div_ceil(1000))),
            lock_ttl_ms: holder.as_ref().and(ttl_ms),
            holder,
            cycle,
            entries: entries
                .and_then(|e| serde_json::from_str(&e).ok())
                .unwrap_or_default(),
        })
    }
}

/// Decodes lane_stats.lua's answer; `None` for a queue without lanes.
fn tenant_stats(reply: &[redis::Value], age: &dyn Fn(&str) -> Option<u64>) -> Option<TenantStats> {
    let text = |v: &redis::Value| redis::from_redis_value::<String>(v.clone()).unwrap_or_default();
    let num = |v: &redis::Value| redis::from_redis_value::<u64>(v.clone()).unwrap_or(0);
    let (head, rows) = reply.split_first_chunk::<{ LANE_REPLY_HEAD.len() }>()?;
    let [lanes, queued, complete, oldest_at, oldest_tenant] = head;
    let stats = TenantStats {
        with_work: num(lanes),
        queued: num(queued),
        complete: num(complete) == 1,
        oldest_queued_secs: age(&text(oldest_at)),
        oldest_tenant: Some(text(oldest_tenant)).filter(|t| !t.is_empty()),
        busiest: rows
            .chunks_exact(FIELDS_PER_TENANT.len())
            .filter_map(|r| r.first_chunk::<{ FIELDS_PER_TENANT.len() }>())
            .map(|[tenant, queued, running, oldest_at]| TenantRow {
                tenant: text(tenant),
                queued: num(queued),
                running: num(running),
                oldest_queued_secs: age(&text(oldest_at)),
            })
            .collect(),
    };
    (stats.with_work > 0 || !stats.busiest.is_empty()).then_some(stats)
}

pub(crate) static QUEUE_HEAD: LuaScript = LuaScript::new(
    plain!("lua/queue_head.lua"),
    &[&HEAD_KEYS, &HEAD_ARGS, &HEAD_REPLY],
);

const HEAD_KEYS: Layout = Layout {
    name: "FIXED_KEYS",
    fields: &["queue", "workers_of", "deferred"],
};

/// queue_head.lua's arguments.
const HEAD_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "deferred_checked"],
};

/// The head job's `enqueued_at` ('' for an empty queue), the live workers listening, the
/// oldest deferral's score, and the stranded jobs among the oldest deferrals.
const HEAD_REPLY: Layout = Layout {
    name: "REPLY",
    fields: &[
        "enqueued_at",
        "live_workers",
        "oldest_deferred",
        "stranded",
        "stranded_example",
    ],
};

/// The oldest deferred jobs per queue that health checks for stranded ones.
pub const DEFERRED_CHECKED: usize = 20;

pub(crate) static LANE_STATS: LuaScript = LuaScript::new(
    with_lanes!("lua/lane_stats.lua"),
    &[&LANE_ARGS, &LANE_REPLY_HEAD, &FIELDS_PER_TENANT],
);

/// lane_stats.lua's arguments.
const LANE_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &[
        "prefix",
        "queue",
        "top",
        "most_lanes",
        "most_started",
        "fair",
    ],
};

/// The totals that open lane_stats.lua's reply.
const LANE_REPLY_HEAD: Layout = Layout {
    name: "REPLY_HEAD",
    fields: &["lanes", "queued", "complete", "oldest_at", "oldest_tenant"],
};

/// One listed tenant in lane_stats.lua's reply.
const FIELDS_PER_TENANT: Layout = Layout {
    name: "FIELDS_PER_TENANT",
    fields: &["tenant", "queued", "running", "oldest_at"],
};
