//! `send_due_reminders` and `process_sessions`: the migration guide's periodic work, fired by the
//! scheduler's default entries. The work itself belongs to the business application: each job
//! forwards its tick there when `worker.http_targets.<type>` is configured, and otherwise
//! finishes saying that nothing was forwarded (so a fresh install shows the schedule running
//! without pretending to do business work).

use serde_json::{Value, json};

use crate::worker::handler::{HandlerContext, HandlerResult, JobInput};

pub async fn forward_tick(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let body = json!({"job_type": input.handler, "job_id": input.id, "args": Value::Object(input.kwargs.clone())});
    match ctx.delivery.deliver_if_configured(&input, &body).await {
        Some(result) => result.map(|r| Some(json!({"forwarded": true, "response": r}))),
        None => Ok(Some(json!({
            "forwarded": false,
            "reason": format!("no HTTP target is configured for {} (worker.http_targets.{})", input.handler, input.handler),
        }))),
    }
}
