//! The one integration-test binary. Every test talks to a real `redis-server` that the harness
//! started (never one it did not start), and multi-process behaviour runs the real binary.
//!
//! Modules:
//! - `support`: private Redis servers (db per test, kill/restart), the binary as a process, the worker in-process;
//! - `api`: the api role: webhook de-dupe, Twilio signatures, internal/admin API, hostile input, metrics;
//! - `architecture`: tidy checks on the source tree (Redis only in `src/jobs/`, docs on files);
//! - `bench`: every `prosaas bench` scenario once at a tiny size (a smoke test, never timed);
//! - `calls`: the calls role with a Twilio Media Streams client: recordings, post-call jobs, SIGTERM;
//! - `cli`: the operator commands (`jobs stats|enqueue`, `check`);
//! - `dashboard`: the operator dashboard: sessions, CSRF, sign-in limits, what workers record for it, pages in headless Chromium;
//! - `compose`: `docker-compose.yml` runs valid roles from one image against one Redis;
//! - `dedup`: atomic de-duplication under concurrency, TTL expiry and lapsed locks;
//! - `dependencies`: `depends_on` declared by prosaas: chains, fan-ins, each parent outcome, refusals, stranded jobs;
//! - `edge`: the public edge under hostile clients: auth before body, budgets, caps, timeouts;
//! - `enqueue`: the RQ job layout byte by byte, batches, queue stats, scheduler health;
//! - `failure`: Redis outages of several TTLs, skewed clocks, retry policies in recovery;
//! - `fleet`: several real worker processes: exactly-once draining, kill -9 recovery, SIGTERM;
//! - `health`: `/api/jobs/health` through a Redis outage, without restarting prosaas;
//! - `job_types`: built-in job types and HTTP targets against a real HTTP server;
//! - `local_redis`: the `all` role's private redis-server;
//! - `roles`: each role boots only its subsystems; bad roles and bad config exit 2;
//! - `rq_interop`: Python RQ 3.0 / 2.12 / 1.16 and prosaas sharing queues, `rq info`, a mixed fleet;
//! - `scheduler`: replicated schedulers: failover bound, paused leaders, random restarts, Redis restart;
//! - `steady`: what expires leaves Redis: registries pruned, keys and memory settle;
//! - `upgrade`: the previous release and this build on one Redis, upgrading and rolling back;
//! - `worker`: the worker in-process: RQ-recorded outcomes, retries, timeouts, priorities.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "tests inspect Redis directly to check what prosaas wrote"
)]
#![allow(
    unreachable_pub,
    reason = "helpers are pub within this one test binary"
)]

mod support;

mod api;
mod architecture;
mod bench;
mod calls;
mod cli;
mod compose;
mod dashboard;
mod dedup;
mod dependencies;
mod edge;
mod enqueue;
mod failure;
mod fair;
mod fleet;
mod ha;
mod health;
mod job_types;
mod local_redis;
mod roles;
mod rq_interop;
mod scheduler;
mod steady;
mod upgrade;
mod worker;
