//! What the migration audit found, as an operator reads it (text) or a script does (JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::jobs::Waiting;

/// Example job ids kept per finding.
pub const EXAMPLES: usize = 3;

/// A kind of problem: something the app expects that a prosaas worker would not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Made with RQ's default (pickle) serializer.
    Pickled,
    /// A bound method: `[func, instance, ...]` with an instance.
    BoundMethod,
    /// `data` neither RQ JSON nor a pickle.
    Unreadable,
    /// A function name no handler (nor alias, nor dotted suffix) answers.
    NoHandler,
    /// A callback name no handler answers: the job would run, the callback would be skipped.
    UnresolvedCallback,
    /// A job only Python can run that other jobs wait on: on a prosaas worker it fails, and its
    /// dependents wait forever.
    ChainThroughPythonOnly,
    /// A queue name prosaas does not accept, so no prosaas worker can serve it.
    QueueNameNotServed,
    /// A Python RQ worker of a version prosaas is not tested with on a shared Redis.
    UntestedRqVersion,
}

impl Kind {
    /// What happens on a prosaas worker, and what to do about it.
    pub fn advice(self) -> &'static str {
        match self {
            Self::Pickled => {
                "a prosaas worker fails these at once: enqueue with RQ's JSONSerializer (Queue(..., serializer=JSONSerializer)), and let Python workers drain what is already pickled"
            }
            Self::BoundMethod => {
                "instance methods cannot run outside Python: enqueue a module-level function instead"
            }
            Self::Unreadable => {
                "a prosaas worker fails these at once: look at one with `prosaas jobs show`"
            }
            Self::NoHandler => {
                "a prosaas worker fails these at once (no handler is registered): add a handler, map the name in worker.aliases, or keep this job type on Python workers ([[external]])"
            }
            Self::UnresolvedCallback => {
                "the job runs but prosaas skips this callback (logged, counted in prosaas_callbacks_unresolved_total): register a handler under the name or map it in worker.aliases"
            }
            Self::ChainThroughPythonOnly => {
                "these fail on a prosaas worker and the jobs that depend on them then wait forever (see the kinds above for why each fails)"
            }
            Self::QueueNameNotServed => {
                "prosaas accepts queue names of 1-128 characters of [A-Za-z0-9_.-] only: move these jobs to a queue so named"
            }
            Self::UntestedRqVersion => {
                "prosaas shares Redis with RQ 1.16, 2.x and 3.0: upgrade these workers before sharing queues"
            }
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Pickled => "pickled job",
            Self::BoundMethod => "bound method",
            Self::Unreadable => "unreadable job",
            Self::NoHandler => "no handler",
            Self::UnresolvedCallback => "unresolved callback",
            Self::ChainThroughPythonOnly => "chain through a Python-only job",
            Self::QueueNameNotServed => "queue name prosaas cannot serve",
            Self::UntestedRqVersion => "untested RQ version",
        }
    }
}

/// One kind of problem in one queue, about one name where the kind has one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// The queue, or none for the fleet (a worker's version).
    pub queue: Option<String>,
    /// The function or callback name, or the version.
    pub subject: Option<String>,
    /// Jobs (or workers) found so.
    pub count: u64,
    /// The first few found.
    pub examples: Vec<String>,
    /// Jobs that wait on these ones (chains only).
    #[serde(skip_serializing_if = "is_zero")]
    pub dependents: u64,
    pub advice: &'static str,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How much of one place of a queue the audit read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Surveyed {
    pub place: Waiting,
    pub total: u64,
    pub scanned: u64,
}

/// One queue's survey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueSurvey {
    pub queue: String,
    pub places: Vec<Surveyed>,
}

/// Registered Python RQ workers of one version on one set of queues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PythonWorkers {
    pub version: String,
    pub queues: Vec<String>,
    pub workers: u64,
    pub examples: Vec<String>,
}

/// The audit's answer: `ready` when nothing was found that a prosaas worker would do otherwise
/// than the app expects.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub ready: bool,
    pub queues: Vec<QueueSurvey>,
    pub problems: Vec<Finding>,
    pub python_workers: Vec<PythonWorkers>,
    /// What the audit did not look at, and states worth knowing (a suspension).
    pub notes: Vec<String>,
}

/// Findings as they accumulate, one per (kind, queue, subject).
#[derive(Debug, Default)]
pub(super) struct Tally {
    found: BTreeMap<(Kind, Option<String>, Option<String>), Finding>,
}

impl Tally {
    pub(super) fn add(&mut self, kind: Kind, queue: Option<&str>, subject: Option<&str>, id: &str) {
        self.add_many(kind, queue, subject, id, 1, 0);
    }

    pub(super) fn add_many(
        &mut self,
        kind: Kind,
        queue: Option<&str>,
        subject: Option<&str>,
        example: &str,
        count: u64,
        dependents: u64,
    ) {
        let key = (kind, queue.map(str::to_owned), subject.map(str::to_owned));
        let f = self.found.entry(key).or_insert_with(|| Finding {
            kind,
            queue: queue.map(str::to_owned),
            subject: subject.map(str::to_owned),
            count: 0,
            examples: Vec::new(),
            dependents: 0,
            advice: kind.advice(),
        });
        f.count += count;
        f.dependents += dependents;
        if f.examples.len() < EXAMPLES && !f.examples.iter().any(|e| e == example) {
            f.examples.push(example.to_owned());
        }
    }

    /// By kind, then queue, then the most jobs first.
    pub(super) fn into_findings(self) -> Vec<Finding> {
        let mut all: Vec<Finding> = self.found.into_values().collect();
        all.sort_by(|a, b| {
            (a.kind, &a.queue, std::cmp::Reverse(a.count), &a.subject).cmp(&(
                b.kind,
                &b.queue,
                std::cmp::Reverse(b.count),
                &b.subject,
            ))
        });
        all
    }
}

/// The report as an operator reads it on a terminal.
pub fn text(r: &Report) -> String {
    let mut out = format!("migration audit: {}\n\n", verdict(r));
    for q in &r.queues {
        let places: Vec<String> = q
            .places
            .iter()
            .map(|p| {
                if p.scanned < p.total {
                    format!("{} {} (first {} read)", p.total, p.place.name(), p.scanned)
                } else {
                    format!("{} {}", p.total, p.place.name())
                }
            })
            .collect();
        let _ = writeln!(out, "queue {}: {}", q.queue, places.join(", "));
    }
    problems_text(&r.problems, &mut out);
    if !r.python_workers.is_empty() {
        let _ = writeln!(out, "\nPython RQ workers:");
        for w in &r.python_workers {
            let _ = writeln!(
                out,
                "  rq {} on {}: {} worker{} (e.g. {})",
                w.version,
                w.queues.join(", "),
                w.workers,
                plural(w.workers),
                w.examples.join(", ")
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in &r.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    out
}

fn verdict(r: &Report) -> String {
    if r.ready {
        return "READY: nothing found that a prosaas worker would run otherwise than the app expects".into();
    }
    let jobs: u64 = r
        .problems
        .iter()
        // A chain's jobs are counted under the kind that makes them Python-only.
        .filter(|f| f.queue.is_some() && f.kind != Kind::ChainThroughPythonOnly)
        .map(|f| f.count)
        .sum();
    format!(
        "NOT READY: {} problem{} ({jobs} job{} affected)",
        r.problems.len(),
        plural(r.problems.len() as u64),
        plural(jobs)
    )
}

/// Each kind with its advice once, then one line per queue and subject.
fn problems_text(problems: &[Finding], out: &mut String) {
    if !problems.is_empty() {
        let _ = writeln!(out, "\nproblems:");
    }
    let mut last_kind = None;
    for f in problems {
        if last_kind != Some(f.kind) {
            let _ = writeln!(out, "\n  {} — {}", f.kind.title(), f.kind.advice());
            last_kind = Some(f.kind);
        }
        let _ = write!(out, "    {}", f.queue.as_deref().unwrap_or("(workers)"));
        if let Some(s) = &f.subject {
            let _ = write!(out, "  {s}");
        }
        let noun = if f.kind == Kind::UntestedRqVersion {
            "worker"
        } else {
            "job"
        };
        let _ = write!(out, "  {} {noun}{}", f.count, plural(f.count));
        if f.dependents > 0 {
            let _ = write!(out, ", {} waiting on them", f.dependents);
        }
        let _ = writeln!(out, "  e.g. {}", f.examples.join(", "));
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
