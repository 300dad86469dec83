//! Every Redis key prosaas reads or writes is built here and nowhere else.
//!
//! RQ's keys (under a configurable prefix, `rq` by default, as `RQ_KEY_PREFIX` does in RQ 3.0)
//! follow `shared/rq-protocol.md` §2 byte for byte, so Python RQ and its tools read them.
//! prosaas's own keys live outside RQ's prefix so RQ never misreads them:
//!
//! | key | type | what |
//! |---|---|---|
//! | `job_lock:<dedupe key>` | string | de-dupe lock; value = the job id it admitted; TTL = dedupe TTL |
//! | `prosaas:scheduler:lock` | string | scheduler leader lock; value = owner token; PX TTL, never deleted |
//! | `prosaas:scheduler:health` | hash | `last_tick` (RFC 3339), `holder`, `cycle`, `entries` (JSON), written by the leader |
//! | `prosaas:scheduler:cycle` | string | counter of lock acquisitions ("Lock acquired for cycle N") |
//! | `prosaas:scheduler:entries` | hash | entry name → newest fired slot (Unix ms), forward only |
//! | `job_lock:schedule:<entry>:<slot ms>` | string | a fired slot (the de-dupe lock of its job) |
//! | `prosaas:worker:<w>:inbox` | list | ids a worker's blocking wake-up moved off a queue, not yet claimed |
//! | `prosaas:maintenance:<q>` | string | short lock: which worker runs recovery for a queue now |
//! | `prosaas:prune:<q>:lock`, `prosaas:prune:lock` | string | which worker prunes queue `q`'s registries, or the shared sets, this interval (`SET NX PX worker.prune_interval_ms`, left to expire) |
//! | `prosaas:prune:<q>` | hash | where the pruning walks of `q`'s canceled, deferred and scheduled registries (and, for `q` = '', of `rq:queues`, `rq:groups` and each group) stand (built in Lua, prune.lua) |
//! | `prosaas:inboxes` | set | worker names that may own an inbox (recovery returns dead workers' ids) |
//! | `prosaas:paused` | set | queues no prosaas worker claims from (`prosaas jobs pause`); Python RQ's workers do not read it |
//! | `prosaas:call:<call sid>` | hash | latest call status (forward only), its time and details; 7-day TTL |
//! | `prosaas:call:<call sid>:stream` | string | the call's one live Media Stream: its owner token while live (a lease of a minute, renewed), then `finalized` for `api.twilio_dedupe_ttl_secs` once recorded, so no other stream takes or reopens the call |
//! | `prosaas:diag:executions` | hash | job id → executions, written only by the `diag.count` job type |
//! | `prosaas:worker:<w>:running` | set | `<id>:<execution id>` of the jobs a worker runs (claim.lua adds, settle.lua removes, built in Lua); a dead worker's is swept for orphans |
//! | `prosaas:fair:<q>:ring` | zset | tenants of fair queue `q` with queued jobs → their pass in the round robin (`''` is the queue's own list) |
//! | `prosaas:fair:<q>:running` | hash | tenant → its jobs of `q` started and not settled (claim.lua adds; settle, recovery subtract; lane_recount.lua recounts; built in Lua only) |
//! | `prosaas:fair:<q>:queued` | string | jobs waiting in all of fair queue `q`'s tenant lanes (every script that pushes onto a lane or pops one keeps it, built in Lua in lanes.lua; `enqueue_many` adds in its `MULTI`; lane_depth.lua counts it when missing), so health counts any number of lanes in one read |
//! | `prosaas:fair:<q>:weights` | hash | tenant → weight in the round robin (written by workers at registration; absent = 1) |
//! | `prosaas:fair:<q>:state` | hash | `vt`: the round robin's current pass |
//! | `prosaas:fair:<q>:bell` | list | up to 16 tokens that wake idle workers when a lane gets a job |
//! | `prosaas:rate:<limit>[:<tenant>]` | string | a rate limit's bucket: its GCRA theoretical arrival time (Unix ms); PX until it no longer matters |
//! | `prosaas:minute:<unix minute>` | hash | the dashboard's series: `<outcome>:<wait bucket>` (`ok`, `fail`, `retry`, `requeue`; the enqueue→start wait's bucket, `-` unknown) → executions settled in that minute, counted by settle.lua (built in Lua); 2-hour TTL |
//! | `prosaas:dashboard:session:<id>` | string | a signed-in dashboard session; TTL = the session's; signing out deletes it |
//! | `prosaas:calls:live` | hash | calls process → JSON of its live calls and when it said so (every 5 s; a field older than 20 s is dropped by the next report, live_calls.lua; the key expires a minute after the last) |
//! | `prosaas:unstarted:<job id>` | string | a de-duplicated job with a wait TTL has not started yet; TTL = its lock's (built in Lua too: claim.lua, delete_job.lua) |
//!
//! prosaas also writes fields RQ ignores into job hashes: `attempts` (claims so far),
//! `last_error` (the error of the latest failed attempt that was retried), `enqueued_by`
//! (`prosaas`), `dedupe_lock` (the lock that admitted it) and `lane` (the tenant whose lane of a
//! fair queue it waits in: the RQ queue `<q>@<tenant>`, built in Lua too, in lanes.lua),
//! `rate_slot` and `deferred_reason` (a job a rate limit deferred: the slot it holds, and why).

/// Key builder for one key prefix. Cheap to clone; built once per [`super::JobStore`].
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// RQ's prefix including its trailing colon, e.g. `rq:`. Shared: the store, and with it
    /// this, is cloned per request and per job.
    rq: std::sync::Arc<str>,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            rq: format!("{prefix}:").into(),
        }
    }

    /// The prefix as RQ writes it, with its trailing colon (`rq:`).
    pub(crate) fn rq_prefix(&self) -> &str {
        &self.rq
    }

    /// `rq:queues`: a set whose members are full queue keys, never bare names.
    pub(crate) fn queues(&self) -> String {
        format!("{}queues", self.rq)
    }

    /// The member prefix of `rq:queues`, used to turn members back into queue names.
    pub(crate) fn queue_key_prefix(&self) -> String {
        format!("{}queue:", self.rq)
    }

    pub(crate) fn queue(&self, queue: &str) -> String {
        format!("{}queue:{queue}", self.rq)
    }

    /// A tenant's lane of a fair queue: an RQ queue of its own (`rq:queue:<q>@<tenant>`), so
    /// `rq info` counts its jobs. Queue names cannot hold `@`, so the first one splits.
    pub(crate) fn lane(&self, queue: &str, tenant: &str) -> String {
        format!("{}queue:{queue}@{tenant}", self.rq)
    }

    /// The fair queue's round robin: tenants with queued jobs, scored by pass (see lanes.lua).
    pub(crate) fn fair_ring(queue: &str) -> String {
        format!("prosaas:fair:{queue}:ring")
    }

    /// Tenant → weight in a fair queue's round robin.
    pub(crate) fn fair_weights(queue: &str) -> String {
        format!("prosaas:fair:{queue}:weights")
    }

    /// The round robin's current pass (`vt`) of a fair queue.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn fair_state(queue: &str) -> String {
        format!("prosaas:fair:{queue}:state")
    }

    /// Tenant → its started jobs of a fair queue with a tenant cap.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn fair_running(queue: &str) -> String {
        format!("prosaas:fair:{queue}:running")
    }

    /// Tokens that wake idle workers of a fair queue.
    pub(crate) fn fair_bell(queue: &str) -> String {
        format!("prosaas:fair:{queue}:bell")
    }

    /// The jobs waiting in a fair queue's lanes (see lanes.lua's `lanes_queued`).
    pub(crate) fn fair_queued(queue: &str) -> String {
        format!("prosaas:fair:{queue}:queued")
    }

    /// A rate limit's bucket (its GCRA arrival time, ms): one per limit, or per limit and tenant.
    pub(crate) fn rate_bucket(limit: &str, tenant: Option<&str>) -> String {
        match tenant {
            Some(t) => format!("prosaas:rate:{limit}:{t}"),
            None => format!("prosaas:rate:{limit}"),
        }
    }

    pub(crate) fn job(&self, id: &str) -> String {
        format!("{}job:{id}", self.rq)
    }

    /// RQ's result stream of a job.
    pub(crate) fn results(&self, id: &str) -> String {
        format!("{}results:{id}", self.rq)
    }

    /// Started registry; RQ 2.0+ calls it `wip`. Members are `<job id>:<execution id>`.
    pub(crate) fn started(&self, queue: &str) -> String {
        format!("{}wip:{queue}", self.rq)
    }

    pub(crate) fn finished(&self, queue: &str) -> String {
        format!("{}finished:{queue}", self.rq)
    }

    pub(crate) fn failed(&self, queue: &str) -> String {
        format!("{}failed:{queue}", self.rq)
    }

    pub(crate) fn scheduled(&self, queue: &str) -> String {
        format!("{}scheduled:{queue}", self.rq)
    }

    pub(crate) fn deferred(&self, queue: &str) -> String {
        format!("{}deferred:{queue}", self.rq)
    }

    /// RQ 3.0's ready registry: dependents whose dependencies are met, on their way to the queue
    /// (a Python worker that died between its two steps leaves them here).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn ready(&self, queue: &str) -> String {
        format!("{}ready:{queue}", self.rq)
    }

    /// The ids of the jobs that wait for job `id`.
    pub(crate) fn dependents(&self, id: &str) -> String {
        format!("{}job:{id}:dependents", self.rq)
    }

    /// The ids job `id` waits for. The double colon is RQ's (its prefix already ends in one),
    /// in every version since 1.2: matched byte for byte.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn dependencies(&self, id: &str) -> String {
        format!("{}job::{id}:dependencies", self.rq)
    }

    /// RQ 3.0's groups (`Group.create`): the names of the groups that have jobs.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn groups(&self) -> String {
        format!("{}groups", self.rq)
    }

    /// One RQ 3.0 group's job ids.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn group(&self, name: &str) -> String {
        format!("{}group:{name}", self.rq)
    }

    /// RQ 3.0's rate limit `key` (`RateLimit(key, concurrency)`): its configuration hash
    /// (`concurrency`).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn rate_limit(&self, key: &str) -> String {
        format!("{}rl:{key}", self.rq)
    }

    /// The jobs holding one of rate limit `key`'s slots (queued or running), by promotion time.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn rate_allowed(&self, key: &str) -> String {
        format!("{}rl:{key}:allowed", self.rq)
    }

    /// The jobs waiting for one of rate limit `key`'s slots (status `rate_limited`), oldest first.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn rate_waiting(&self, key: &str) -> String {
        format!("{}rl:{key}:rate_limited", self.rq)
    }

    /// Canceled registry (RQ never prunes it; prune.lua drops entries whose job is gone).
    pub(crate) fn canceled(&self, queue: &str) -> String {
        format!("{}canceled:{queue}", self.rq)
    }

    /// RQ's per-queue scheduler lock (value: the promoting process's name, a PID for RQ).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn rq_scheduler_lock(&self, queue: &str) -> String {
        format!("{}scheduler-lock:{queue}", self.rq)
    }

    /// `rq suspend`'s flag: while it exists no worker starts a job (claim.lua checks it).
    pub(crate) fn suspended(&self) -> String {
        format!("{}suspended", self.rq)
    }

    /// RQ 2.10+'s record of a scheduler process, which its lock's value names.
    pub(crate) fn rq_scheduler(&self, name: &str) -> String {
        format!("{}scheduler:{name}", self.rq)
    }

    /// The channel RQ's tools send a worker its commands on (`rq/command.py`).
    pub(crate) fn pubsub(&self, worker: &str) -> String {
        format!("{}pubsub:{worker}", self.rq)
    }

    pub(crate) fn worker(&self, name: &str) -> String {
        format!("{}worker:{name}", self.rq)
    }

    /// `rq:workers`: full worker keys of every live worker.
    pub(crate) fn workers(&self) -> String {
        format!("{}workers", self.rq)
    }

    /// `rq:workers:<q>`: full worker keys of the workers on one queue (what `rq info` reads).
    pub(crate) fn workers_of(&self, queue: &str) -> String {
        format!("{}workers:{queue}", self.rq)
    }

    /// The de-dupe key of one schedule slot (its lock is [`Self::dedupe_lock`] of it): every
    /// leader, old or new, names a slot the same way, so a slot is admitted once.
    pub(crate) fn schedule_slot(entry: &str, slot_ms: i64) -> String {
        format!("schedule:{entry}:{slot_ms}")
    }

    /// What `prosaas bench` may delete: its queue and registries, its jobs and results (ids
    /// `bench-*`), its de-dupe locks, workers and their inboxes, and this process's scheduler.
    pub(crate) fn bench_patterns(&self, queue: &str, pid: u32) -> Vec<String> {
        let p = &self.rq;
        vec![
            format!("{p}*:{queue}"),
            // Tenant lanes of the bench queue, and its round robin's keys.
            format!("{p}queue:{queue}@*"),
            format!("prosaas:fair:{queue}:*"),
            format!("prosaas:rate:{queue}-*"),
            format!("{p}job:bench-*"),
            format!("{p}results:bench-*"),
            format!("{p}worker:bench-*"),
            self.rq_scheduler(&pid.to_string()),
            Self::dedupe_lock("bench:*"),
            Self::maintenance_lock(queue),
            "prosaas:worker:bench-*".to_owned(),
            // Its workers' pruning: the queue's lock and cursors, and the shared ones (a lock
            // and a cursor: deleting them lets a pass come early, nothing more).
            format!("prosaas:prune:{queue}*"),
            Self::prune_shared_lock().to_owned(),
            "prosaas:prune:".to_owned(),
            // The bench runs only on an empty database: every minute counted is its own.
            "prosaas:minute:*".to_owned(),
        ]
    }

    pub(crate) fn dedupe_lock(dedupe_key: &str) -> String {
        format!("job_lock:{dedupe_key}")
    }

    pub(crate) fn call(call_sid: &str) -> String {
        format!("prosaas:call:{call_sid}")
    }

    /// The call's Media Stream claim (call_stream.lua).
    pub(crate) fn call_stream(call_sid: &str) -> String {
        format!("prosaas:call:{call_sid}:stream")
    }

    pub(crate) fn scheduler_lock() -> &'static str {
        "prosaas:scheduler:lock"
    }

    pub(crate) fn scheduler_health() -> &'static str {
        "prosaas:scheduler:health"
    }

    /// Counts lock acquisitions: the `N` of "Lock acquired for cycle N".
    pub(crate) fn scheduler_cycle() -> &'static str {
        "prosaas:scheduler:cycle"
    }

    /// The paused queues: claim.lua takes nothing from them.
    pub(crate) fn paused() -> &'static str {
        "prosaas:paused"
    }

    /// Set of workers that may own an inbox; recovery walks it to find dead workers' inboxes.
    pub(crate) fn inboxes() -> &'static str {
        "prosaas:inboxes"
    }

    /// The ids a worker's blocking wake-up moved off a queue, not yet claimed.
    pub(crate) fn inbox(worker: &str) -> String {
        format!("prosaas:worker:{worker}:inbox")
    }

    /// Which worker runs recovery for `queue` now.
    pub(crate) fn maintenance_lock(queue: &str) -> String {
        format!("prosaas:maintenance:{queue}")
    }

    /// Which worker prunes a queue's registries this interval (left to expire).
    pub(crate) fn prune_lock(queue: &str) -> String {
        format!("prosaas:prune:{queue}:lock")
    }

    /// Where the pruning walks of a queue's registries stand (`''`: of `rq:queues`).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "built in Lua only (keys.lua); named here for the test"
        )
    )]
    pub(crate) fn prune_cursors(queue: &str) -> String {
        format!("prosaas:prune:{queue}")
    }

    /// Which worker prunes the shared sets (`rq:workers`, `rq:queues`) this interval.
    pub(crate) fn prune_shared_lock() -> &'static str {
        "prosaas:prune:lock"
    }

    /// Job id → executions, written only by the `diag.count` job type.
    pub(crate) fn diag_executions() -> &'static str {
        "prosaas:diag:executions"
    }

    /// The executions a worker runs (claim.lua and settle.lua build the same name).
    pub(crate) fn running(worker: &str) -> String {
        format!("prosaas:worker:{worker}:running")
    }

    /// Marks a de-duplicated job with a wait TTL that has not started (see enqueue_dedupe.lua).
    pub(crate) fn unstarted(job_id: &str) -> String {
        format!("prosaas:unstarted:{job_id}")
    }

    /// The dashboard's counters of one minute (settle.lua builds the same name).
    pub(crate) fn minute(unix_minute: i64) -> String {
        format!("prosaas:minute:{unix_minute}")
    }

    /// A signed-in dashboard session.
    pub(crate) fn dashboard_session(id: &str) -> String {
        format!("prosaas:dashboard:session:{id}")
    }

    /// Calls process → its live calls.
    pub(crate) fn live_calls() -> &'static str {
        "prosaas:calls:live"
    }

    /// Entry name → the newest slot (Unix ms) fired for it.
    pub(crate) fn scheduler_entries() -> &'static str {
        "prosaas:scheduler:entries"
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn rq_layout_matches_the_protocol_note() {
        let k = Keys::new("rq");
        assert_eq!(k.queues(), "rq:queues");
        assert_eq!(k.queue("default"), "rq:queue:default");
        assert_eq!(k.job("abc"), "rq:job:abc");
        assert_eq!(k.started("default"), "rq:wip:default");
        assert_eq!(k.finished("q"), "rq:finished:q");
        assert_eq!(k.failed("q"), "rq:failed:q");
        assert_eq!(k.scheduled("q"), "rq:scheduled:q");
        assert_eq!(k.deferred("q"), "rq:deferred:q");
        assert_eq!(k.ready("q"), "rq:ready:q");
        assert_eq!(k.dependents("a"), "rq:job:a:dependents");
        assert_eq!(k.dependencies("a"), "rq:job::a:dependencies");
        assert_eq!(
            Keys::dedupe_lock("webhook:baileys:X"),
            "job_lock:webhook:baileys:X"
        );
    }

    /// keys.lua's builders evaluated with `args` standing for their parameters, as Lua would.
    fn lua_keys(args: &dyn Fn(&str) -> &'static str) -> Vec<(String, String)> {
        use crate::jobs::scripts::{KeyPart, key_builders};
        key_builders()
            .iter()
            .map(|(name, builder)| {
                let value: String = builder
                    .parts
                    .iter()
                    .map(|part| match part {
                        KeyPart::Literal(l) => l.trim_matches('\'').to_owned(),
                        KeyPart::Param(n) => args(builder.params[*n]).to_owned(),
                    })
                    .collect();
                ((*name).to_owned(), value)
            })
            .collect()
    }

    #[test]
    fn keys_lua_builds_every_key_as_keys_rs_does() {
        let k = Keys::new("pfx");
        let arg = |name: &str| match name {
            "p" => "pfx:",
            "q" => "q1",
            "id" => "j1",
            "w" => "w1",
            "tenant" => "t1",
            "name" => "n1",
            "m" => "29000000",
            "key" => "k1",
            other => panic!("keys.lua parameter {other} has no test value"),
        };
        let rust = |name: &str| -> String {
            match name {
                "queues" => k.queues(),
                "queue" => k.queue("q1"),
                "lane" => k.lane("q1", "t1"),
                "job" => k.job("j1"),
                "results" => k.results("j1"),
                "started" => k.started("q1"),
                "finished" => k.finished("q1"),
                "failed" => k.failed("q1"),
                "scheduled" => k.scheduled("q1"),
                "deferred" => k.deferred("q1"),
                "ready" => k.ready("q1"),
                "dependents" => k.dependents("j1"),
                "dependencies" => k.dependencies("j1"),
                "canceled" => k.canceled("q1"),
                "groups" => k.groups(),
                "group" => k.group("n1"),
                "rate_limit" => k.rate_limit("k1"),
                "rate_allowed" => k.rate_allowed("k1"),
                "rate_waiting" => k.rate_waiting("k1"),
                "worker" => k.worker("w1"),
                "workers" => k.workers(),
                "workers_of" => k.workers_of("q1"),
                "rq_scheduler_lock" => k.rq_scheduler_lock("q1"),
                "rq_scheduler" => k.rq_scheduler("n1"),
                "suspended" => k.suspended(),
                "pubsub" => k.pubsub("w1"),
                "fair_ring" => Keys::fair_ring("q1"),
                "fair_state" => Keys::fair_state("q1"),
                "fair_weights" => Keys::fair_weights("q1"),
                "fair_running" => Keys::fair_running("q1"),
                "fair_queued" => Keys::fair_queued("q1"),
                "fair_bell" => Keys::fair_bell("q1"),
                "running" => Keys::running("w1"),
                "unstarted" => Keys::unstarted("j1"),
                "minute" => Keys::minute(29_000_000),
                "prune_cursors" => Keys::prune_cursors("q1"),
                "paused" => Keys::paused().to_owned(),
                other => panic!("keys.lua builds Key.{other}, which keys.rs does not name"),
            }
        };
        let built = lua_keys(&arg);
        assert!(built.len() >= 26, "keys.lua read as {} keys", built.len());
        for (name, value) in built {
            assert_eq!(value, rust(&name), "Key.{name} differs from keys.rs");
        }
    }

    #[test]
    fn prefix_is_configurable_like_rq_key_prefix() {
        let k = Keys::new("tenant7");
        assert_eq!(k.queue("high"), "tenant7:queue:high");
        assert_eq!(k.queue_key_prefix(), "tenant7:queue:");
    }
}
