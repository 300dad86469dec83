//! The worker runtime: the handler trait and registry type, execution policy, the executor and
//! the recovery/maintenance loop. It knows no job type: `handlers::registry` fills the registry
//! and the worker role hands it in. Redis access goes through [`crate::jobs`]; this module decides
//! what to do, `jobs` makes each step atomic.

mod callbacks;
mod claimer;
mod commands;
pub mod config;
pub mod executor;
pub mod handler;
pub mod http_target;
mod inflight;
pub mod input;
pub mod limits;
pub mod maintenance;
mod outcome;
pub mod policy;
mod webhooks;
