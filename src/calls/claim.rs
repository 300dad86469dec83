//! A call's claim across calls processes (`call_stream.lua`): taken once the stream's start is
//! verified, renewed while the call lasts, and at its end marked finalized (so no stream reopens
//! the call) or released (nothing was recorded).

use std::time::Duration;

use crate::calls_stream::registry::CallSlot;
use crate::context::AppContext;
use crate::jobs::StreamClaim;

/// How long a stream's claim on its call lasts unless renewed (every third of it): a calls
/// process that dies holds its calls no longer than this.
const CALL_LEASE: Duration = Duration::from_secs(60);
/// A claim that Redis does not answer in time is taken on this process's word alone (the call
/// goes on; its files are created exclusively, so nothing is overwritten).
const CLAIM_WITHIN: Duration = Duration::from_secs(2);

/// How often a live call renews its claim: a third of the lease.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(CALL_LEASE.as_secs() / 3);

/// Binds a verified start's call to this stream: on this process, then across calls processes
/// through Redis. `Err(reason)` when another stream has the call, or had it and finalized it.
pub(super) async fn take(
    ctx: &AppContext,
    slot: &mut CallSlot,
    call_sid: &str,
    owner: &str,
) -> Result<(), &'static str> {
    if !slot.bind(call_sid) {
        return Err("live");
    }
    let claim = ctx.jobs.call_status();
    match tokio::time::timeout(
        CLAIM_WITHIN,
        claim.claim_stream(call_sid, owner, CALL_LEASE),
    )
    .await
    {
        Ok(Ok(StreamClaim::Owned)) => Ok(()),
        Ok(Ok(StreamClaim::Live | StreamClaim::Lost)) => Err("live"),
        Ok(Ok(StreamClaim::Finalized)) => Err("finalized"),
        Ok(Err(e)) => {
            tracing::warn!(call_sid, error = %e, "cannot claim the call in Redis; recording it on this process's word");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                call_sid,
                "Redis did not answer the call's claim in time; recording it on this process's word"
            );
            Ok(())
        }
    }
}

pub(super) async fn renew(ctx: &AppContext, call_sid: &str, owner: &str) {
    let claim = ctx.jobs.call_status();
    match tokio::time::timeout(
        CLAIM_WITHIN,
        claim.renew_stream(call_sid, owner, CALL_LEASE),
    )
    .await
    {
        Ok(Ok(StreamClaim::Owned)) => {}
        Ok(Ok(_)) => tracing::warn!(
            call_sid,
            "another stream took this call's claim while it lapsed; this one records on"
        ),
        Ok(Err(e)) => tracing::debug!(call_sid, error = %e, "cannot renew the call's claim"),
        Err(_) => tracing::debug!(call_sid, "renewing the call's claim timed out"),
    }
}

/// The call ended: its claim marked finalized for `api.twilio_dedupe_ttl_secs` when it recorded
/// something, released when not. Bounded; a claim not ended runs out with its lease.
pub(super) async fn end(ctx: &AppContext, call_sid: &str, owner: &str, recorded: bool) {
    let keep = Duration::from_secs(ctx.settings.api.twilio_dedupe_ttl_secs);
    let status = ctx.jobs.call_status();
    let end = status.end_stream(call_sid, owner, recorded, keep);
    if !matches!(tokio::time::timeout(CLAIM_WITHIN, end).await, Ok(Ok(_))) {
        tracing::debug!(call_sid, "cannot end the call's claim; its lease runs out");
    }
}
