//! The survey: every waiting job of the audited queues (bounded per place), judged against the
//! handlers a prosaas worker with this configuration registers, and the registered Python RQ
//! workers judged by version.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};

use crate::jobs::{AuditedJob, DataProblem, JobError, JobStore, Waiting, is_valid_queue_name};
use crate::worker::handler::Registry;

use super::report::{Kind, PythonWorkers, QueueSurvey, Report, Surveyed, Tally};

/// Jobs read per round trip.
const PAGE: usize = 500;
/// Queues named in the note about queues left out.
const NAMED_LEFT_OUT: usize = 20;

/// Which queues to audit, and how far to read each.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The queues to audit (the configured worker queues unless the operator names others);
    /// `None`: every queue in `rq:queues`.
    pub queues: Option<Vec<String>>,
    /// Jobs read at most per queue and place (queued, scheduled, deferred, started).
    pub max_jobs: usize,
}

/// Surveys `scope` and judges what it finds against `registry`. Progress goes to stderr when it
/// is a terminal.
pub async fn run(jobs: &JobStore, registry: &Registry, scope: &Scope) -> Result<Report, JobError> {
    let mut tally = Tally::default();
    let mut progress = Progress::new();
    let known = jobs.audit().known_queues().await?;
    let audited = scope.queues.as_ref().unwrap_or(&known);
    let mut queues = Vec::new();
    for queue in audited {
        queues.push(
            survey_queue(
                jobs,
                registry,
                queue,
                scope.max_jobs,
                &mut tally,
                &mut progress,
            )
            .await?,
        );
    }
    progress.clear();
    let python_workers = python_workers(jobs, &mut tally).await?;
    let mut notes = Vec::new();
    let left_out: Vec<&String> = known.iter().filter(|q| !audited.contains(q)).collect();
    if !left_out.is_empty() {
        let named: Vec<&str> = left_out
            .iter()
            .take(NAMED_LEFT_OUT)
            .map(|q| q.as_str())
            .collect();
        let more = left_out.len() - named.len();
        notes.push(format!(
            "not audited (name them with --queue, or --all-queues): {}{}",
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if let Some(s) = jobs.stats().suspension().await? {
        notes.push(match s.seconds_left {
            Some(secs) => format!("workers are suspended (rq suspend) for {secs} s more"),
            None => "workers are suspended (rq suspend) until `prosaas jobs resume` or `rq resume`"
                .into(),
        });
    }
    let problems = tally.into_findings();
    Ok(Report {
        ready: problems.is_empty(),
        queues,
        problems,
        python_workers,
        notes,
    })
}

async fn survey_queue(
    jobs: &JobStore,
    registry: &Registry,
    queue: &str,
    max_jobs: usize,
    tally: &mut Tally,
    progress: &mut Progress,
) -> Result<QueueSurvey, JobError> {
    let audit = jobs.audit();
    let sizes = audit.sizes(queue).await?;
    let mut places = Vec::new();
    for (place, total) in Waiting::ALL.into_iter().zip(sizes) {
        let wanted = usize::try_from(total).unwrap_or(usize::MAX).min(max_jobs);
        let mut scanned = 0;
        while scanned < wanted {
            let page = audit
                .page(queue, place, scanned, PAGE.min(wanted - scanned))
                .await?;
            if page.is_empty() {
                break;
            }
            scanned += page.len();
            let python_only: Vec<String> = page
                .iter()
                .filter(|job| !judge(registry, queue, job, tally))
                .map(|job| job.id.clone())
                .collect();
            for (id, waiting) in python_only
                .iter()
                .zip(audit.dependents(&python_only).await?)
            {
                if waiting > 0 {
                    tally.add_many(
                        Kind::ChainThroughPythonOnly,
                        Some(queue),
                        None,
                        id,
                        1,
                        waiting,
                    );
                }
            }
            progress.show(queue, place, scanned, total);
        }
        places.push(Surveyed {
            place,
            total,
            scanned: scanned as u64,
        });
    }
    if !is_valid_queue_name(queue) {
        let total = places.iter().map(|p| p.total).sum();
        tally.add_many(Kind::QueueNameNotServed, Some(queue), None, queue, total, 0);
    }
    Ok(QueueSurvey {
        queue: queue.to_owned(),
        places,
    })
}

/// Records what a prosaas worker would do otherwise than the app expects with `job`; returns
/// whether a prosaas worker could run it at all.
fn judge(registry: &Registry, queue: &str, job: &AuditedJob, tally: &mut Tally) -> bool {
    let q = Some(queue);
    let call = match &job.call {
        Ok(call) => call,
        Err(problem) => {
            let kind = match problem {
                DataProblem::Pickled => Kind::Pickled,
                DataProblem::BoundMethod => Kind::BoundMethod,
                DataProblem::Unreadable(_) => Kind::Unreadable,
            };
            tally.add(kind, q, None, &job.id);
            return false;
        }
    };
    if registry.resolve(&call.job_type).is_none() {
        tally.add(Kind::NoHandler, q, Some(&call.job_type), &job.id);
        return false;
    }
    for (which, name) in &job.callbacks {
        if registry.resolve(name).is_none() {
            tally.add(
                Kind::UnresolvedCallback,
                q,
                Some(&format!("{which} {name}")),
                &job.id,
            );
        }
    }
    true
}

/// RQ versions prosaas's interop tests share Redis with: 1.16, every 2.x, 3.0.
fn tested_rq_version(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    matches!(
        (parts.next().flatten(), parts.next().flatten()),
        (Some(1), Some(16)) | (Some(2), Some(_)) | (Some(3), Some(0))
    )
}

async fn python_workers(
    jobs: &JobStore,
    tally: &mut Tally,
) -> Result<Vec<PythonWorkers>, JobError> {
    let mut groups: BTreeMap<(String, Vec<String>), PythonWorkers> = BTreeMap::new();
    for w in jobs.stats().workers().await? {
        let version = w.version.clone().unwrap_or_else(|| "unknown".into());
        if version.starts_with("prosaas") {
            continue;
        }
        if !tested_rq_version(&version) {
            tally.add(Kind::UntestedRqVersion, None, Some(&version), &w.name);
        }
        let g = groups
            .entry((version.clone(), w.queues.clone()))
            .or_insert_with(|| PythonWorkers {
                version,
                queues: w.queues.clone(),
                workers: 0,
                examples: Vec::new(),
            });
        g.workers += 1;
        if g.examples.len() < super::report::EXAMPLES {
            g.examples.push(w.name);
        }
    }
    Ok(groups.into_values().collect())
}

/// One line on stderr, rewritten in place, when stderr is a terminal; nothing otherwise.
struct Progress {
    on: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, queue: &str, place: Waiting, scanned: usize, total: u64) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[Kauditing {queue}: {scanned}/{total} {}",
                place.name()
            );
            let _ = err.flush();
        }
    }

    fn clear(&mut self) {
        if self.on {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobCall;

    fn job(id: &str, call: Result<&str, DataProblem>) -> AuditedJob {
        AuditedJob {
            id: id.into(),
            call: call.map(|t| JobCall {
                job_type: t.into(),
                args: Vec::new(),
                kwargs: serde_json::Map::new(),
            }),
            callbacks: Vec::new(),
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new(true);
        crate::handlers::register_builtin(&mut r);
        r.alias("app.hooks.crm", "push_send_job");
        r
    }

    #[test]
    fn each_job_is_judged_by_what_a_prosaas_worker_would_do() {
        let r = registry();
        let mut t = Tally::default();
        assert!(judge(
            &r,
            "q",
            &job("a", Ok("app.jobs.webhook_process_job")),
            &mut t
        ));
        assert!(!judge(&r, "q", &job("b", Ok("app.jobs.resize")), &mut t));
        assert!(!judge(&r, "q", &job("c", Ok("app.jobs.resize")), &mut t));
        assert!(!judge(
            &r,
            "q",
            &job("d", Err(DataProblem::Pickled)),
            &mut t
        ));
        assert!(!judge(
            &r,
            "q",
            &job("e", Err(DataProblem::BoundMethod)),
            &mut t
        ));
        let mut cb = job("f", Ok("push_send_job"));
        cb.callbacks = vec![
            ("on_success", "app.hooks.crm".into()),
            ("on_failure", "app.hooks.pager".into()),
        ];
        assert!(
            judge(&r, "q", &cb, &mut t),
            "a job whose callback is skipped still runs"
        );
        let found: Vec<(Kind, Option<String>, u64, Vec<String>)> = t
            .into_findings()
            .into_iter()
            .map(|f| (f.kind, f.subject, f.count, f.examples))
            .collect();
        assert_eq!(
            found,
            vec![
                (Kind::Pickled, None, 1, vec!["d".into()]),
                (Kind::BoundMethod, None, 1, vec!["e".into()]),
                (
                    Kind::NoHandler,
                    Some("app.jobs.resize".into()),
                    2,
                    vec!["b".into(), "c".into()]
                ),
                (
                    Kind::UnresolvedCallback,
                    Some("on_failure app.hooks.pager".into()),
                    1,
                    vec!["f".into()]
                ),
            ]
        );
    }

    #[test]
    fn rq_versions_are_tested_or_not() {
        for v in ["1.16.2", "2.0.0", "2.12.0", "3.0.0", "3.0.1"] {
            assert!(tested_rq_version(v), "{v}");
        }
        for v in ["1.15.1", "1.10.1", "3.1.0", "4.0", "unknown", ""] {
            assert!(!tested_rq_version(v), "{v}");
        }
    }
}
