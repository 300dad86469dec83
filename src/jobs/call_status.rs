//! Call state: the latest status of each call, forward only (for the Twilio job types), which
//! Media Stream owns each call, and the live calls each calls process reports (the calls role
//! writes both; the dashboard reads the reports).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::error::JobError;
use super::keys::Keys;
use super::scripts::{Layout, LuaScript, args, keys, plain};

/// How long a call's state is kept after its last change.
const CALL_TTL_SECS: u64 = 7 * 24 * 3600;

/// A call's recorded state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallState {
    pub status: String,
    pub updated_at: String,
    pub details: Value,
}

/// What [`JobStore::record_call_status`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallUpdate {
    /// The call moved forward to this status.
    Advanced(String),
    /// The status would not move the call forward; it stays at the current one.
    Unchanged(Option<String>),
}

/// What a stream's claim on its call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamClaim {
    /// This stream holds the call.
    Owned,
    /// Another live stream holds it.
    Live,
    /// The call's recording is finalized: it is not reopened.
    Finalized,
    /// (Renewing or ending) another stream took the call after this one's lease lapsed.
    Lost,
}

/// A calls process's report older than this is from a process that is gone.
const LIVE_CALLS_STALE_SECS: f64 = 20.0;

super::capability! {
    /// Call status records written by Twilio status callbacks.
    CallStatus via call_status
}

impl CallStatus<'_> {
    /// Records `status` (of rank `rank`) for `call_sid` if it is further along than the current.
    pub async fn record_call_status(
        &self,
        call_sid: &str,
        status: &str,
        rank: u8,
        details: &Value,
    ) -> Result<CallUpdate, JobError> {
        let mut inv = CALL_STATUS.prepare_invoke();
        keys!(inv, STATUS_KEYS; Keys::call(call_sid));
        args!(inv, STATUS_ARGS;
            status,
            rank,
            self.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            CALL_TTL_SECS,
            details.to_string(),
        );
        const _: () = assert!(STATUS_REPLY.len() == 2);
        let (applied, current): (i64, Option<String>) =
            inv.invoke_async(&mut self.conn().await?).await?;
        Ok(if applied == 1 {
            CallUpdate::Advanced(status.to_owned())
        } else {
            CallUpdate::Unchanged(current)
        })
    }

    /// The recorded state of a call, if any.
    pub async fn call_state(&self, call_sid: &str) -> Result<Option<CallState>, JobError> {
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(Keys::call(call_sid))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(h.get("status").map(|status| CallState {
            status: status.clone(),
            updated_at: h.get("updated_at").cloned().unwrap_or_default(),
            details: h
                .get("details")
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null),
        }))
    }

    /// Claims `call_sid` for the stream `owner` for `lease`.
    pub async fn claim_stream(
        &self,
        call_sid: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<StreamClaim, JobError> {
        self.call_stream("claim", call_sid, owner, lease).await
    }

    /// Extends the stream's lease (taking it back if it lapsed and nobody took it).
    pub async fn renew_stream(
        &self,
        call_sid: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<StreamClaim, JobError> {
        self.call_stream("renew", call_sid, owner, lease).await
    }

    /// The stream ended: with a recording, the call is marked finalized for `keep`; without,
    /// the claim is released.
    pub async fn end_stream(
        &self,
        call_sid: &str,
        owner: &str,
        recorded: bool,
        keep: Duration,
    ) -> Result<StreamClaim, JobError> {
        let op = if recorded { "end" } else { "release" };
        self.call_stream(op, call_sid, owner, keep).await
    }

    async fn call_stream(
        &self,
        op: &str,
        call_sid: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<StreamClaim, JobError> {
        let mut inv = CALL_STREAM.prepare_invoke();
        keys!(inv, STREAM_KEYS; Keys::call_stream(call_sid));
        args!(inv, STREAM_ARGS; op, owner, ttl.as_millis().max(1) as u64);
        let found: String = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(match found.as_str() {
            "owned" | "ok" => StreamClaim::Owned,
            "live" => StreamClaim::Live,
            "finalized" => StreamClaim::Finalized,
            _ => StreamClaim::Lost,
        })
    }

    /// Publishes this calls process's live calls (`calls`: JSON), replacing its last report.
    pub async fn publish_calls(&self, process: &str, calls: &Value) -> Result<(), JobError> {
        let report = serde_json::json!({
            "process": process,
            "at": self.store.unix_now(),
            "calls": calls,
        });
        let mut inv = LIVE_CALLS.prepare_invoke();
        keys!(inv, LIVE_KEYS; Keys::live_calls());
        args!(inv, LIVE_ARGS;
            process,
            report.to_string(),
            self.store.unix_now(),
            LIVE_CALLS_STALE_SECS,
            60,
        );
        let _dropped: u64 = inv.invoke_async(&mut self.conn().await?).await?;
        Ok(())
    }

    /// Withdraws this process's report (it stops taking calls).
    pub async fn withdraw_calls(&self, process: &str) -> Result<(), JobError> {
        redis::cmd("HDEL")
            .arg(Keys::live_calls())
            .arg(process)
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// The current report of every calls process, with `age_secs` (how old the report is);
    /// reports of processes that stopped reporting are left out.
    pub async fn live_calls(&self) -> Result<Vec<Value>, JobError> {
        let reports: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(Keys::live_calls())
            .query_async(&mut self.conn().await?)
            .await?;
        let now = self.store.unix_now();
        let mut out: Vec<Value> = reports
            .values()
            .filter_map(|r| serde_json::from_str::<Value>(r).ok())
            .filter_map(|mut r| {
                let age = now - r.get("at")?.as_f64()?;
                (age <= LIVE_CALLS_STALE_SECS).then(|| {
                    r["age_secs"] = Value::from(age.max(0.0).round());
                    r
                })
            })
            .collect();
        out.sort_by(|a, b| a["process"].as_str().cmp(&b["process"].as_str()));
        Ok(out)
    }
}

pub(crate) static CALL_STATUS: LuaScript = LuaScript::new(
    plain!("lua/call_status.lua"),
    &[&STATUS_KEYS, &STATUS_ARGS, &STATUS_REPLY],
);

const STATUS_KEYS: Layout = Layout {
    name: "FIXED_KEYS",
    fields: &["call"],
};

/// call_status.lua's arguments.
const STATUS_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["status", "rank", "at", "ttl", "details"],
};

/// Whether the status was recorded, and the call's status now.
const STATUS_REPLY: Layout = Layout {
    name: "REPLY",
    fields: &["recorded", "status"],
};

pub(crate) static CALL_STREAM: LuaScript =
    LuaScript::new(plain!("lua/call_stream.lua"), &[&STREAM_KEYS, &STREAM_ARGS]);

const STREAM_KEYS: Layout = Layout {
    name: "FIXED_KEYS",
    fields: &["stream"],
};

/// call_stream.lua's arguments.
const STREAM_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["op", "owner", "ms"],
};

pub(crate) static LIVE_CALLS: LuaScript =
    LuaScript::new(plain!("lua/live_calls.lua"), &[&LIVE_KEYS, &LIVE_ARGS]);

const LIVE_KEYS: Layout = Layout {
    name: "FIXED_KEYS",
    fields: &["live_calls"],
};

/// live_calls.lua's arguments.
const LIVE_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["process", "report", "now", "stale_after", "ttl"],
};
