//! Moving a Python RQ app's queues onto prosaas workers: `prosaas migrate audit`, which surveys
//! what waits in Redis (`audit.rs`) and says what a prosaas worker with this configuration could
//! not run as the app expects (`report.rs`: the findings, their advice, text and JSON).

pub mod audit;
pub mod report;

pub use audit::{Scope, run};
pub use report::{Finding, Kind, Report};
