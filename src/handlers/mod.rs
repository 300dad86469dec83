//! Built-in job types, one file each, plus the generic HTTP forwarder for configured targets.
//!
//! | type | what it does |
//! |---|---|
//! | `webhook_process_job` | normalizes WhatsApp (Baileys) messages; delivers them to its HTTP target |
//! | `push_send_job` | validates a push notification and delivers it to the push gateway target |
//! | `twilio_callback` | records a call's status, forward only; delivers changes to its target |
//! | `recording_job` | turns a call's μ-law WAV into 16-bit PCM WAV and reports its duration |
//! | `send_due_reminders`, `process_sessions` | the default periodic ticks; forwarded to their HTTP target |

pub mod diag;
pub mod periodic;
pub mod push;
pub mod recording;
pub mod twilio;
pub mod whatsapp;

use serde_json::Value;

use crate::settings::WorkerSettings;
use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput, Registry};

/// The registry for a worker: every built-in job type, a generic HTTP handler for each
/// configured target without a built-in one, the diagnostic types if enabled, and the aliases.
pub fn registry(settings: &WorkerSettings) -> Registry {
    let mut r = Registry::new(settings.resolve_dotted_names);
    register_builtin(&mut r);
    for name in settings.http_targets.keys() {
        if r.resolve(name).is_none_or(|(found, _)| found != name) {
            r.register(name.clone(), http_forward);
        }
    }
    if settings.diagnostic_handlers {
        diag::register(&mut r);
    }
    for a in &settings.aliases {
        r.alias(&a.from, &a.to);
    }
    r
}

pub fn register_builtin(r: &mut Registry) {
    r.register("webhook_process_job", whatsapp::webhook_process_job);
    r.register("push_send_job", push::push_send_job);
    r.register("twilio_callback", twilio::twilio_callback);
    r.register("recording_job", recording::recording_job);
    r.register("send_due_reminders", periodic::forward_tick);
    r.register("process_sessions", periodic::forward_tick);
}

/// The handler of a configured HTTP target without a built-in type: POSTs the job's keyword
/// arguments.
pub async fn http_forward(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let body = Value::Object(input.kwargs.clone());
    match ctx.delivery.deliver_if_configured(&input, &body).await {
        Some(result) => result,
        None => Err(HandlerError::Permanent(format!(
            "no HTTP target is configured for {}",
            input.handler
        ))),
    }
}
