//! `push_send_job(notification_id, business_id, user_id | token, title, body, data)`: validates a
//! push notification and delivers it to the push gateway configured as this type's HTTP target.
//! The gateway sees the job id as `Idempotency-Key`, so a re-delivered job is recognisable.

use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput};

pub async fn push_send_job(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let notification =
        crate::webhooks::push::validate(&input.kwargs).map_err(HandlerError::Permanent)?;
    match ctx
        .delivery
        .deliver_if_configured(&input, &notification)
        .await
    {
        Some(result) => result,
        None => Err(HandlerError::Permanent(
            "no push gateway is configured (set worker.http_targets.push_send_job)".into(),
        )),
    }
}
