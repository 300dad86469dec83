//! The job model and its RQ-compatible encoding (`shared/rq-protocol.md` §1.2, §3.0).
//!
//! A job is stored as RQ stores it with its JSON serializer: the hash field `data` holds
//! zlib-compressed JSON `[job_type, null, [], {args}]`, timestamps use RQ's exact format
//! (`%Y-%m-%dT%H:%M:%S.ffffffZ`, which Python's `utcparse` requires), and ids match
//! `[A-Za-z0-9_-]+` because a Python worker that pops any other id crashes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::JobError;

/// RQ's default job timeout in seconds (`Queue.DEFAULT_TIMEOUT`).
pub const DEFAULT_TIMEOUT_SECS: i64 = 180;

/// The longest a TTL may be: 100 years. Redis refuses an `EXPIRE` whose deadline overflows its
/// millisecond clock, and inside a settle or recovery script that refusal would fail the whole
/// batch on every retry; no job system needs to keep anything longer.
pub const MAX_TTL_SECS: i64 = 3_155_760_000;

/// The longest a job may run (a week): longer work belongs in smaller jobs, and a bound keeps the
/// deadline arithmetic far from overflow.
pub(crate) const MAX_TIMEOUT_SECS: i64 = 7 * 24 * 3600;

/// The `enqueued_by` hash field of the jobs prosaas enqueues (RQ has no such field).
pub(crate) const ENQUEUED_BY_PROSAAS: &str = "prosaas";

/// The most retries a job may ask for.
pub(crate) const MAX_RETRIES: u32 = 100;

/// A TTL read back from a job hash (Python RQ, or anyone, may have written it): RQ treats any
/// negative value as "no expiry", so it becomes `-1`; anything past [`MAX_TTL_SECS`] is cut to it.
pub(crate) fn stored_ttl(v: i64) -> i64 {
    if v < 0 { -1 } else { v.min(MAX_TTL_SECS) }
}
/// Longest id we accept; RQ has no limit, but ids land in log lines and keys.
const MAX_ID_LEN: usize = 128;

/// A job to enqueue. `args` become the Python call's keyword arguments.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub queue: String,
    pub job_type: String,
    pub args: Map<String, Value>,
    pub options: JobOptions,
}

impl NewJob {
    pub fn new(
        queue: impl Into<String>,
        job_type: impl Into<String>,
        args: Map<String, Value>,
    ) -> Self {
        Self {
            queue: queue.into(),
            job_type: job_type.into(),
            args,
            options: JobOptions::default(),
        }
    }

    pub fn with_options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the job's tenant: `meta["tenant"]`, where Python RQ code reads it too
    /// (`job.meta["tenant"]`). An error when the meta already names another tenant.
    pub fn set_tenant(&mut self, tenant: &str) -> Result<(), JobError> {
        match self.options.meta.get(TENANT) {
            Some(Value::String(t)) if t != tenant => Err(JobError::Invalid(format!(
                "tenant {tenant:?} differs from meta.tenant {t:?}"
            ))),
            _ => {
                self.options
                    .meta
                    .insert(TENANT.into(), Value::String(tenant.to_owned()));
                Ok(())
            }
        }
    }

    /// The job's tenant (`meta["tenant"]`), if it names one.
    pub fn tenant(&self) -> Option<&str> {
        self.options.meta.get(TENANT).and_then(Value::as_str)
    }
}

/// The `meta` key that names a job's tenant.
pub const TENANT: &str = "tenant";

/// Whether `tenant` is a usable tenant name: 1-128 characters of `[A-Za-z0-9_.:@-]` (it ends up
/// in keys and metric labels of tenant-aware features).
pub fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= MAX_ID_LEN
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

/// Per-job options. Every field maps to an RQ job-hash field of the same meaning.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// Explicit id; generated (UUID v4) when absent. Must match `[A-Za-z0-9_-]+`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub job_id: Option<String>,
    /// Push to the head of the queue instead of the tail.
    #[serde(default)]
    pub at_front: bool,
    /// Seconds the job may run; `-1` means no limit. RQ's default (180) when absent.
    #[serde(default)]
    pub timeout: Option<i64>,
    /// Seconds a finished job (hash, result, registry entry) is kept; `-1` forever, `0` not at all.
    #[serde(default)]
    #[schema(minimum = -1, maximum = 3_155_760_000_i64)]
    pub result_ttl: Option<i64>,
    /// Seconds a failed job is kept; `-1` forever. RQ's default is one year.
    #[serde(default)]
    #[schema(minimum = -1, maximum = 3_155_760_000_i64)]
    pub failure_ttl: Option<i64>,
    /// Seconds the job may wait in the queue before its hash expires.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3_155_760_000_i64)]
    pub ttl: Option<i64>,
    /// Retries after the first attempt; the worker's per-type default applies when absent.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Seconds to wait before each retry (the last one repeats), as RQ's `retry_intervals`.
    #[serde(default)]
    pub retry_intervals: Option<Vec<u64>>,
    /// Free-form metadata (tenant id, business id, source), stored as RQ's JSON `meta`.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Ids of jobs this one waits for (RQ's `depends_on`): it stays `deferred` until every one
    /// has finished (or failed, with `allow_dependency_failures`), then joins its queue. Each
    /// must exist, or be an earlier job of the same batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100)]
    pub depends_on: Vec<String>,
    /// Run once the parents have ended even if some failed (RQ's
    /// `Dependency(allow_failure=True)`); a canceled or stopped parent still holds it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_dependency_failures: bool,
}

/// The most parents one job may name.
pub(crate) const MAX_PARENTS: usize = 100;

/// Checks a job as `enqueue` would, without writing it (for configuration validation).
pub fn check_job(job: &NewJob) -> Result<(), JobError> {
    job.validate()
}

/// Whether `id` is a job id every RQ version accepts.
pub fn is_valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Queue names end up inside keys and in `rq:queues` members; keep them to a safe alphabet.
pub fn is_valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ID_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl NewJob {
    // Long on purpose: one check per rule, in the order the errors are reported.
    pub(crate) fn validate(&self) -> Result<(), JobError> {
        if !is_valid_queue_name(&self.queue) {
            return Err(JobError::Invalid(format!(
                "queue name {:?} must be 1-128 characters of [A-Za-z0-9_.-]",
                self.queue
            )));
        }
        if self.job_type.is_empty()
            || self.job_type.len() > 256
            || self
                .job_type
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(JobError::Invalid(format!(
                "job type {:?} must be 1-256 characters without whitespace",
                self.job_type
            )));
        }
        let o = &self.options;
        if let Some(id) = &o.job_id
            && !is_valid_job_id(id)
        {
            return Err(JobError::Invalid(format!(
                "job id {id:?} must be 1-128 characters of [A-Za-z0-9_-] (RQ workers reject others)"
            )));
        }
        if let Some(t) = o.timeout
            && t != -1
            && !(1..=MAX_TIMEOUT_SECS).contains(&t)
        {
            return Err(JobError::Invalid(format!(
                "timeout {t} must be 1 to {MAX_TIMEOUT_SECS} seconds, or -1 for no limit"
            )));
        }
        if let Some(n) = o.max_retries
            && n > MAX_RETRIES
        {
            return Err(JobError::Invalid(format!(
                "max_retries {n} must be at most {MAX_RETRIES}"
            )));
        }
        for (name, v) in [("result_ttl", o.result_ttl), ("failure_ttl", o.failure_ttl)] {
            if let Some(v) = v
                && !(-1..=MAX_TTL_SECS).contains(&v)
            {
                return Err(JobError::Invalid(format!(
                    "{name} {v} must be -1 (forever), 0 or positive seconds up to {MAX_TTL_SECS}"
                )));
            }
        }
        if let Some(t) = o.ttl
            && !(1..=MAX_TTL_SECS).contains(&t)
        {
            return Err(JobError::Invalid(format!(
                "ttl {t} must be positive seconds up to {MAX_TTL_SECS}"
            )));
        }
        match o.meta.get(TENANT) {
            None => {}
            Some(Value::String(t)) if is_valid_tenant(t) => {}
            Some(other) => {
                return Err(JobError::Invalid(format!(
                    "tenant {other} must be 1-128 characters of [A-Za-z0-9_.:@-]"
                )));
            }
        }
        if o.depends_on.len() > MAX_PARENTS {
            return Err(JobError::Invalid(format!(
                "depends_on names {} jobs; at most {MAX_PARENTS}",
                o.depends_on.len()
            )));
        }
        for parent in &o.depends_on {
            if !is_valid_job_id(parent) {
                return Err(JobError::Invalid(format!(
                    "depends_on id {parent:?} must be 1-128 characters of [A-Za-z0-9_-]"
                )));
            }
            if o.job_id.as_ref() == Some(parent) {
                return Err(JobError::Invalid(format!(
                    "job {parent:?} cannot depend on itself"
                )));
            }
        }
        if o.allow_dependency_failures && o.depends_on.is_empty() {
            return Err(JobError::Invalid(
                "allow_dependency_failures needs depends_on".into(),
            ));
        }
        if let Some(iv) = &o.retry_intervals
            && (iv.is_empty()
                || iv.len() > MAX_RETRIES as usize
                || iv.iter().any(|&i| i > MAX_TTL_SECS as u64))
        {
            return Err(JobError::Invalid(format!(
                "retry_intervals must list 1 to {MAX_RETRIES} intervals of at most {MAX_TTL_SECS} seconds"
            )));
        }
        Ok(())
    }

    /// The job hash fields as RQ's `Job.to_dict` writes them for a freshly queued job. `ts` is
    /// [`rq_timestamp`] of now, formatted once by the caller (a batch shares it).
    pub(crate) fn hash_fields<'a>(
        &'a self,
        ts: &'a str,
    ) -> Result<Vec<(&'static str, Field<'a>)>, JobError> {
        let o = &self.options;
        let num = |v: i64| Field::Owned(v.to_string().into_bytes());
        let mut fields: Vec<(&'static str, Field<'a>)> = Vec::with_capacity(15);
        fields.push((
            "data",
            Field::Owned(encode_data(&self.job_type, &self.args)?),
        ));
        fields.push(("origin", Field::Borrowed(self.queue.as_bytes())));
        // Marks a job whose missing `retries_left` means "the type's policy": a job Python RQ
        // enqueued without `Retry` is run once, as RQ runs it.
        fields.push((
            "enqueued_by",
            Field::Borrowed(ENQUEUED_BY_PROSAAS.as_bytes()),
        ));
        fields.push(("status", Field::Borrowed(b"queued")));
        fields.push(("created_at", Field::Borrowed(ts.as_bytes())));
        fields.push(("enqueued_at", Field::Borrowed(ts.as_bytes())));
        fields.push((
            "description",
            Field::Owned(description(&self.job_type, &self.args).into_bytes()),
        ));
        fields.push(("timeout", num(o.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS))));
        if let Some(v) = o.result_ttl {
            fields.push(("result_ttl", num(v)));
        }
        if let Some(v) = o.failure_ttl {
            fields.push(("failure_ttl", num(v)));
        }
        if let Some(v) = o.ttl {
            fields.push(("ttl", num(v)));
        }
        if !o.meta.is_empty() {
            let meta = serde_json::to_vec(&o.meta).map_err(json_err)?;
            fields.push(("meta", Field::Owned(meta)));
        }
        if let Some(first) = o.depends_on.first() {
            // RQ writes the list and, for older readers, its first id alone.
            let ids = serde_json::to_vec(&o.depends_on).map_err(json_err)?;
            fields.push(("dependency_ids", Field::Owned(ids)));
            fields.push(("dependency_id", Field::Borrowed(first.as_bytes())));
            if o.allow_dependency_failures {
                fields.push(("allow_dependency_failures", Field::Borrowed(b"1")));
            }
            // Read when the last parent's outcome pushes the job (RQ's field of that name).
            if o.at_front {
                fields.push(("enqueue_at_front", Field::Borrowed(b"1")));
            }
        }
        if let Some(n) = o.max_retries {
            fields.push(("retries_left", num(i64::from(n))));
            let intervals = o.retry_intervals.clone().unwrap_or_else(|| vec![0]);
            let intervals = serde_json::to_vec(&intervals).map_err(json_err)?;
            fields.push(("retry_intervals", Field::Owned(intervals)));
        }
        Ok(fields)
    }
}

/// A job hash value: most are the job's own strings or constants, so only what is computed is
/// allocated (a batch of 1,000 jobs used to allocate 7,000 small vectors).
#[derive(Debug)]
pub(crate) enum Field<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Field<'_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Field::Borrowed(b) => b,
            Field::Owned(v) => v,
        }
    }
}

impl redis::ToRedisArgs for Field<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg(self.as_bytes());
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "shaped for map_err(json_err)"
)]
fn json_err(e: serde_json::Error) -> JobError {
    JobError::Invalid(format!("cannot encode as JSON: {e}"))
}

/// RQ's timestamp format: UTC, six fraction digits, literal `Z` (never `+00:00`).
pub fn rq_timestamp(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    // Written field by field: chrono's `format` parses its pattern on every call, which showed
    // in profiles of enqueue (a timestamp per job).
    let mut s = String::with_capacity(27);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        // A leap second's nanoseconds run past 1e9; chrono prints its fraction the same way.
        t.nanosecond() % 1_000_000_000 / 1000
    );
    s
}

/// Parses RQ's timestamp format (1-6 fraction digits, or none), as `rq.utils.utcparse` does.
pub fn parse_rq_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.fZ")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ"))
        .ok()?;
    Some(naive.and_utc())
}

/// Whole seconds from an RQ timestamp to `now` (0 for one in the future); `None` when it is
/// empty or unreadable.
pub fn age_secs(at: &str, now: DateTime<Utc>) -> Option<u64> {
    parse_rq_timestamp(at).map(|t| u64::try_from((now - t).num_seconds()).unwrap_or(0))
}

/// zlib(JSON `[func, null, [], kwargs]`): what RQ's JSONSerializer plus compression writes.
pub(crate) fn encode_data(job_type: &str, args: &Map<String, Value>) -> Result<Vec<u8>, JobError> {
    let json = serde_json::to_vec(&(job_type, Value::Null, [(); 0], args)).map_err(json_err)?;
    Ok(super::zlib::compress(&json))
}

/// The call a job hash describes.
#[derive(Clone, Debug, PartialEq)]
pub struct JobCall {
    pub job_type: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
}

/// Why a job's `data` cannot be run outside Python, or cannot be read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataProblem {
    /// RQ's default serializer: a Python pickle, which only Python can load in general.
    Pickled,
    /// `[func, instance, ...]` with a non-null instance: a bound method.
    BoundMethod,
    /// Neither RQ JSON nor a pickle (or too large to inflate).
    Unreadable(String),
}

impl std::fmt::Display for DataProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pickled => f.write_str(
                "data is a Python pickle (RQ's default serializer); prosaas reads jobs made with RQ's JSONSerializer",
            ),
            Self::BoundMethod => {
                f.write_str("bound-method jobs (non-null instance) cannot be run outside Python")
            }
            Self::Unreadable(reason) => f.write_str(reason),
        }
    }
}

/// Reads `data` as RQ does: zlib if it inflates, else the raw bytes; then the JSON 4-array.
pub(crate) fn read_data(raw: &[u8]) -> Result<JobCall, DataProblem> {
    let json = super::zlib::decompress(raw).or_raw(raw).ok_or_else(|| {
        DataProblem::Unreadable(format!(
            "data inflates past {} MiB",
            super::zlib::MAX_INFLATED >> 20
        ))
    })?;
    // Every pickle protocol RQ has written (2 and up) starts with PROTO, 0x80.
    if json.first() == Some(&0x80) {
        return Err(DataProblem::Pickled);
    }
    let (func, instance, args, kwargs): (String, Value, Vec<Value>, Map<String, Value>) =
        serde_json::from_slice(&json)
            .map_err(|e| DataProblem::Unreadable(format!("data is not RQ JSON: {e}")))?;
    if !instance.is_null() {
        return Err(DataProblem::BoundMethod);
    }
    Ok(JobCall {
        job_type: func,
        args,
        kwargs,
    })
}

/// [`read_data`], with the job's id on the error.
pub(crate) fn decode_data(id: &str, raw: &[u8]) -> Result<JobCall, JobError> {
    read_data(raw).map_err(|problem| JobError::Corrupt {
        id: id.to_owned(),
        reason: problem.to_string(),
    })
}

/// A job as stored, decoded for operators and tests.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobInfo {
    pub id: String,
    pub status: String,
    pub origin: String,
    pub job_type: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub description: Option<String>,
    pub created_at: Option<String>,
    pub enqueued_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub worker_name: Option<String>,
    pub timeout: Option<i64>,
    pub retries_left: Option<u32>,
    pub meta: Map<String, Value>,
}

impl JobInfo {
    /// The job's tenant (`meta["tenant"]`), whoever enqueued it.
    pub fn tenant(&self) -> Option<&str> {
        self.meta.get(TENANT).and_then(Value::as_str)
    }

    /// Decodes an `HGETALL` of `rq:job:<id>`; `None` when the hash is empty (no such job).
    pub(crate) fn from_hash(
        id: &str,
        mut h: std::collections::HashMap<String, Vec<u8>>,
    ) -> Result<Option<Self>, JobError> {
        if h.is_empty() {
            return Ok(None);
        }
        let data = h.remove("data").ok_or_else(|| JobError::Corrupt {
            id: id.to_owned(),
            reason: "no data field".into(),
        })?;
        let call = decode_data(id, &data)?;
        let mut text = |k: &str| {
            h.remove(k)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .filter(|s| !s.is_empty())
        };
        let meta = match text("meta") {
            Some(m) => serde_json::from_str(&m).unwrap_or_default(),
            None => Map::new(),
        };
        Ok(Some(Self {
            id: id.to_owned(),
            // RQ's Job.restore maps a missing status to `created`.
            status: text("status").unwrap_or_else(|| "created".into()),
            origin: text("origin").unwrap_or_default(),
            job_type: call.job_type,
            args: call.args,
            kwargs: call.kwargs,
            description: text("description"),
            created_at: text("created_at"),
            enqueued_at: text("enqueued_at"),
            started_at: text("started_at"),
            ended_at: text("ended_at"),
            worker_name: text("worker_name"),
            timeout: text("timeout").and_then(|t| t.parse().ok()),
            retries_left: text("retries_left").and_then(|t| t.parse().ok()),
            meta,
        }))
    }
}

/// Python-style call text for `rq info` and dashboards: `func(k=v, ...)`, each value cut at 75.
fn description(job_type: &str, args: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(job_type.len() + 2 + args.len() * 16);
    out.push_str(job_type);
    out.push('(');
    for (i, (k, v)) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let text = v.to_string();
        out.push_str(k);
        out.push('=');
        if text.chars().count() > 75 {
            out.extend(text.chars().take(75));
            out.push_str("...");
        } else {
            out.push_str(&text);
        }
    }
    out.push(')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn ttls_are_bounded_at_enqueue_and_when_read_back() {
        let with = |o: JobOptions| NewJob::new("default", "t", Map::new()).with_options(o);
        for o in [
            JobOptions {
                result_ttl: Some(MAX_TTL_SECS),
                failure_ttl: Some(-1),
                ttl: Some(MAX_TTL_SECS),
                ..Default::default()
            },
            JobOptions {
                result_ttl: Some(0),
                failure_ttl: Some(MAX_TTL_SECS),
                ..Default::default()
            },
        ] {
            assert!(check_job(&with(o.clone())).is_ok(), "{o:?}");
        }
        for (o, name) in [
            (
                JobOptions {
                    result_ttl: Some(MAX_TTL_SECS + 1),
                    ..Default::default()
                },
                "result_ttl",
            ),
            (
                JobOptions {
                    failure_ttl: Some(i64::MAX),
                    ..Default::default()
                },
                "failure_ttl",
            ),
            (
                JobOptions {
                    ttl: Some(MAX_TTL_SECS + 1),
                    ..Default::default()
                },
                "ttl",
            ),
        ] {
            let err = check_job(&with(o)).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains("up to 3155760000"),
                "{err}"
            );
        }
        assert_eq!(stored_ttl(i64::MAX), MAX_TTL_SECS);
        assert_eq!(stored_ttl(-5), -1);
        assert_eq!(stored_ttl(-1), -1);
        assert_eq!(stored_ttl(0), 0);
        assert_eq!(stored_ttl(500), 500);
    }

    #[test]
    fn timestamp_matches_chronos_own_format() {
        // Instants across years, months and sub-second digits, a microsecond apart and not.
        let mut t = 1_600_000_000_123_456_i64;
        for _ in 0..2000 {
            let at = DateTime::from_timestamp_micros(t).unwrap();
            assert_eq!(
                rq_timestamp(at),
                at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            );
            t += 86_400_000_000 / 3 + 7_919;
        }
    }

    #[test]
    fn data_that_inflates_past_the_limit_is_corrupt_not_allocated() {
        use std::io::Write;
        // A JSON array opening followed by 65 MiB of spaces, as a crafted job hash could hold.
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![b' '; 1 << 20];
        enc.write_all(b"[\"t\", null, [], {}").unwrap();
        for _ in 0..=(crate::jobs::zlib::MAX_INFLATED >> 20) {
            enc.write_all(&chunk).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let err = decode_data("j", &bomb).unwrap_err();
        assert!(err.to_string().contains("inflates past 64 MiB"), "{err}");
    }

    #[test]
    fn data_says_why_python_alone_can_run_it() {
        // pickle.dumps(('app.tasks.resize', None, (), {}), protocol=5), zlib'd as RQ stores it.
        let pickle = b"\x80\x05\x95\x1e\x00\x00\x00\x00\x00\x00\x00(\x8c\x10app.tasks.resize\x94N)}\x94t\x94.";
        let z = crate::jobs::zlib::compress(pickle);
        assert_eq!(read_data(&z), Err(DataProblem::Pickled));
        assert_eq!(read_data(pickle), Err(DataProblem::Pickled));
        let bound = br#"["resize", {"id": 3}, [], {}]"#;
        assert_eq!(read_data(bound), Err(DataProblem::BoundMethod));
        assert!(
            matches!(read_data(b"{}"), Err(DataProblem::Unreadable(r)) if r.contains("not RQ JSON"))
        );
        let err = decode_data("j", &z).unwrap_err().to_string();
        assert!(
            err.contains("Python pickle") && err.contains("JSONSerializer"),
            "{err}"
        );
    }

    #[test]
    fn timestamp_has_six_digits_and_z() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T14:47:17.189202123+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rq_timestamp(t), "2026-11-28T14:47:17.189202Z");
        let whole = DateTime::parse_from_rfc3339("2026-01-02T03:04:05+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rq_timestamp(whole), "2026-01-02T03:04:05.000000Z");
        assert_eq!(
            parse_rq_timestamp("2026-01-02T03:04:05.000000Z"),
            Some(whole)
        );
        assert_eq!(parse_rq_timestamp("2026-01-02T03:04:05Z"), Some(whole));
        assert_eq!(parse_rq_timestamp("2026-01-02T03:04:05+00:00"), None);
    }

    #[test]
    fn data_round_trips_and_reads_rqs_own_bytes() {
        let a = args(json!({"notification_id": 7}));
        let enc = encode_data("myapp.jobs.send_push", &a).unwrap();
        let call = decode_data("x", &enc).unwrap();
        assert_eq!(call.job_type, "myapp.jobs.send_push");
        assert_eq!(call.kwargs, a);
        // The exact bytes Python RQ 3.0 wrote for this call (rq-protocol.md §3.0.2).
        let hex = "789c8b56caad4c2c28d0cbca4f2ad62b4ecd4b892f282dce50d251c82bcdc9d151888ed551a856cacb2fc94ccb4c4e2cc9cccf8bcf4c51b25230af8d050060e5144e";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(decode_data("push-7", &bytes).unwrap(), call);
        // Uncompressed JSON is accepted too, as RQ's fallback does.
        let raw = br#"["f",null,[1],{"k":"v"}]"#;
        assert_eq!(decode_data("y", raw).unwrap().args, vec![json!(1)]);
        assert!(decode_data("z", br#"["f",{"obj":1},[],{}]"#).is_err());
    }

    #[test]
    fn ids_and_queues_follow_rqs_alphabet() {
        assert!(is_valid_job_id("push-7_A"));
        assert!(!is_valid_job_id("a.b"));
        assert!(!is_valid_job_id("a:b"));
        assert!(!is_valid_job_id(""));
        assert!(!is_valid_job_id(&"x".repeat(129)));
        assert!(is_valid_queue_name("default"));
        assert!(!is_valid_queue_name("de fault"));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut j = NewJob::new("default", "t", Map::new());
        j.options.timeout = Some(0);
        assert!(j.validate().unwrap_err().to_string().contains("timeout 0"));
        j.options.timeout = Some(-1);
        j.options.job_id = Some("a.b".into());
        assert!(j.validate().unwrap_err().to_string().contains("job id"));
    }

    #[test]
    fn description_is_python_like_and_bounded() {
        let d = description("f", &args(json!({"b": "x".repeat(100), "a": 1})));
        assert!(d.starts_with("f(a=1, b=\"xxxx"));
        assert!(d.ends_with("...)"));
    }
}
