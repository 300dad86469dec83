//! prosaas: the background-job backbone (see ARCHITECTURE.md for the map).
//!
//! Modules in reading order:
//! - [`cli`]: the command line (`--role`, `--config`, operator subcommands);
//! - [`bench`]: `prosaas bench` scenarios (throughput, latency, round trips per job);
//! - [`commands`]: what each command line does (serve, check, jobs ...);
//! - [`settings`]: layered configuration (defaults → overlay file → environment), validated;
//! - [`telemetry`]: the tracing subscriber;
//! - [`role`]: which subsystems each role runs (the one table);
//! - [`context`]: what the supervisor builds and every subsystem receives;
//! - [`roles`]: each role's wiring: its router and its subsystems' tasks;
//! - [`app`]: the supervisor that runs a role's subsystems and shuts them down;
//! - [`worker`]: the worker runtime (executor, handlers registry, retries, recovery);
//! - [`handlers`]: the built-in job types;
//! - [`hex`]: lower-case hex, one encoder for ids and signatures;
//! - [`identity`]: this process's host and the unique name it goes by in Redis;
//! - [`version`]: the release version and the commit this binary is built from;
//! - [`audio`]: μ-law and WAV, for call recordings;
//! - [`calls`]: a call's life on the calls role: its stream, its claim, its post-call jobs, the drain;
//! - [`calls_stream`]: Twilio Media Streams sessions, their recordings, the live-call registry;
//! - [`scheduler`]: periodic entries and the leader-elected loop that fires them;
//! - [`http`]: the HTTP surface (ops endpoints, the jobs health API);
//! - [`webhooks`]: provider verification and event → job translation for the ingress;
//! - [`jobs`]: the only module that talks to Redis;
//! - [`migrate`]: `prosaas migrate audit`, what a Python RQ app's waiting jobs would meet on prosaas;
//! - [`metrics`]: the Prometheus recorder and the names of every exported metric;
//! - [`local_redis`]: the private `redis-server` the `all` role starts for local development;
//! - [`shutdown`]: turning SIGTERM/SIGINT into a cancellation.

pub mod app;
pub mod audio;
pub mod backoff;
pub mod bench;
pub mod calls;
pub mod calls_stream;
pub mod cli;
pub mod commands;
pub mod context;
pub mod handlers;
pub mod hex;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod local_redis;
pub mod mac;
pub mod metrics;
pub mod migrate;
pub mod role;
pub mod roles;
pub mod scheduler;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod version;
pub mod webhooks;
pub mod worker;
