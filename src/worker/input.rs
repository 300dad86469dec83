//! What a handler receives and how it fails: the types both the handler registry and the HTTP
//! targets use (kept apart from `handler.rs`, which holds the HTTP targets in its context).

use serde_json::{Map, Value};

/// What a handler is given for one execution.
#[derive(Clone, Debug)]
pub struct JobInput {
    pub id: String,
    /// The job type as stored (may be an alias or a dotted RQ name).
    pub job_type: String,
    /// The name of the handler it resolved to.
    pub handler: String,
    pub queue: String,
    /// Positional arguments (Python callers may use them; prosaas itself only writes kwargs).
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// 1 on the first attempt.
    pub attempt: u32,
}

impl JobInput {
    /// A required string keyword argument, or a permanent failure naming it.
    pub fn str_arg(&self, name: &str) -> Result<&str, HandlerError> {
        match self.kwargs.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(HandlerError::Permanent(format!(
                "argument {name} must be a string, got {other}"
            ))),
            None => Err(HandlerError::Permanent(format!("missing argument {name}"))),
        }
    }
}

/// Why an execution failed, which decides whether it is tried again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth another attempt (a dependency was down, a timeout).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way every time (bad input, a 4xx from the target): no retry.
    #[error("{0}")]
    Permanent(String),
}

pub type HandlerResult = Result<Option<Value>, HandlerError>;
