//! RQ's `depends_on`, the producer's side: enqueue_dependent.lua's owner. A batch in which any
//! job names parents goes through that script whole (all or none); the outcome's side, where a
//! parent that ends moves its dependents on, is lua/dependents.lua inside settle and recovery.

use super::JobStore;
use super::error::JobError;
use super::job::{NewJob, rq_timestamp};
use super::scripts::{Layout, LuaScript, args, with_lanes};

pub(crate) static ENQUEUE_DEPENDENT: LuaScript = LuaScript::new(
    with_lanes!("lua/enqueue_dependent.lua"),
    &[&FIXED_ARGS, &FIELDS_PER_JOB],
);

/// enqueue_dependent.lua's arguments before its jobs.
const FIXED_ARGS: Layout = Layout {
    name: "FIXED_ARGS",
    fields: &["prefix", "now_ts", "now"],
};

/// One job's header (its parents' ids and its hash's field/value pairs follow it).
const FIELDS_PER_JOB: Layout = Layout {
    name: "FIELDS_PER_JOB",
    fields: &[
        "id", "queue", "lane", "at_front", "explicit", "unique", "ttl", "allow", "parents",
        "fields",
    ],
};

impl JobStore {
    /// Enqueues a batch of which some jobs name parents, in one script call: each job whose
    /// parents have all finished is queued; the others wait `deferred`. `ids` are the jobs' ids,
    /// in batch order. Refuses the whole batch, writing nothing, when a parent does not exist or
    /// ended in a way that can never release its dependent; with `unique`, also when a job's
    /// explicit id is queued, scheduled, started or deferred: `Ok(Err(status))` then.
    // Long on purpose: one script call: its arguments in enqueue_dependent.lua's order, and its
    // three answers read back.
    pub(crate) async fn enqueue_dependent(
        &self,
        jobs: &[NewJob],
        ids: &[String],
        unique: bool,
    ) -> Result<Result<(), String>, JobError> {
        let now = self.now();
        let ts = rq_timestamp(now);
        let mut inv = ENQUEUE_DEPENDENT.prepare_invoke();
        args!(inv, FIXED_ARGS;
            self.keys.rq_prefix(),
            &ts,
            format!("{:.6}", now.timestamp_micros() as f64 / 1e6),
        );
        for (job, id) in jobs.iter().zip(ids) {
            let (lane, fields) = self.new_job_fields(job, &ts)?;
            let o = &job.options;
            args!(inv, FIELDS_PER_JOB;
                id,
                &job.queue,
                lane.unwrap_or(""),
                if o.at_front { "1" } else { "" },
                if o.job_id.is_some() { "1" } else { "" },
                if unique && o.job_id.is_some() { "1" } else { "" },
                o.ttl.map_or(String::new(), |t| t.to_string()),
                if o.allow_dependency_failures { "1" } else { "" },
                o.depends_on.len(),
                fields.len(),
            );
            for parent in &o.depends_on {
                inv.arg(parent);
            }
            for (name, value) in &fields {
                inv.arg(*name).arg(value.as_bytes());
            }
        }
        let mut conn = self.write_conn().await?;
        let reply: Vec<String> = inv.invoke_async(&mut conn).await?;
        if let Some((wanted, wait)) = self.wait_cmd() {
            let got: u32 = wait.query_async(&mut conn).await?;
            if got < wanted {
                return Err(JobError::NotReplicated { wanted, got });
            }
        }
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Ok(())),
            Some("busy") => Ok(Err(reply.get(2).cloned().unwrap_or_default())),
            Some("refused") => {
                let parent = reply.get(1).map_or("", String::as_str);
                Err(JobError::Invalid(match reply.get(2).map(String::as_str) {
                    None | Some("") => {
                        format!("depends_on names job {parent:?}, which does not exist")
                    }
                    Some(status) => format!(
                        "depends_on names job {parent:?}, which is {status}: it would never \
                         release this job{}",
                        if status == "failed" {
                            " (allow_dependency_failures is false)"
                        } else {
                            ""
                        }
                    ),
                }))
            }
            _ => Err(JobError::Invalid(format!(
                "unexpected reply from enqueue_dependent.lua: {reply:?}"
            ))),
        }
    }
}
