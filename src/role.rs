//! Which subsystems each role runs: the one table that decides (`Role::subsystems`), kept at
//! the bottom of the stack so that the shared context and every subsystem can name roles
//! without importing the wiring in `roles/`. `all` is defined as the union of the others, not
//! as a fifth code path.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A deployment role, chosen once at startup from `--role` or `SERVICE_ROLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Api,
    Worker,
    Scheduler,
    Calls,
    All,
}

/// A part of the process that a role may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subsystem {
    /// `/healthz` and `/readyz`, on every role.
    OpsHttp,
    /// Webhooks, the enqueue API and `/api/jobs/*`.
    PublicApi,
    /// Claiming and running jobs.
    JobExecution,
    /// Re-queueing or failing jobs whose worker died.
    Recovery,
    /// The leader-elected periodic scheduler.
    Scheduler,
    /// The realtime call stream (Twilio Media Streams).
    Calls,
}

impl Subsystem {
    pub const ALL: [Subsystem; 6] = [
        Subsystem::OpsHttp,
        Subsystem::PublicApi,
        Subsystem::JobExecution,
        Subsystem::Recovery,
        Subsystem::Scheduler,
        Subsystem::Calls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Subsystem::OpsHttp => "ops_http",
            Subsystem::PublicApi => "public_api",
            Subsystem::JobExecution => "job_execution",
            Subsystem::Recovery => "recovery",
            Subsystem::Scheduler => "scheduler",
            Subsystem::Calls => "calls",
        }
    }

    /// Whether the subsystem runs a task of its own (the others are only routes on the HTTP
    /// listener; `Calls` is both: routes, and a task that drains live calls on shutdown).
    pub fn has_task(self) -> bool {
        matches!(
            self,
            Subsystem::JobExecution | Subsystem::Recovery | Subsystem::Scheduler | Subsystem::Calls
        )
    }
}

impl fmt::Display for Subsystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Api,
        Role::Worker,
        Role::Scheduler,
        Role::Calls,
        Role::All,
    ];

    /// The subsystems this role runs (DESIGN.md §2).
    pub fn subsystems(self) -> &'static [Subsystem] {
        use Subsystem::*;
        match self {
            Role::Api => &[OpsHttp, PublicApi],
            Role::Worker => &[OpsHttp, JobExecution, Recovery],
            Role::Scheduler => &[OpsHttp, Scheduler],
            Role::Calls => &[OpsHttp, Calls],
            Role::All => &Subsystem::ALL,
        }
    }

    /// The names of [`Self::subsystems`], for logs and health output.
    pub fn subsystem_names(self) -> Vec<&'static str> {
        self.subsystems().iter().map(|s| s.name()).collect()
    }

    pub fn runs(self, subsystem: Subsystem) -> bool {
        self.subsystems().contains(&subsystem)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
            Role::Calls => "calls",
            Role::All => "all",
        }
    }

    /// The startup line operators grep for.
    pub fn banner(self) -> &'static str {
        match self {
            Role::Api => "API mode: no background processing",
            Role::Worker => "Worker mode: job processing only",
            Role::Scheduler => "Scheduler mode: job enqueuing only",
            Role::Calls => "Calls mode: realtime only, no schedulers",
            Role::All => "All mode: every subsystem in one process",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown role name; its message lists the valid ones.
#[derive(Debug, thiserror::Error)]
#[error("invalid role {given:?}; valid roles: api, worker, scheduler, calls, all")]
pub struct UnknownRole {
    pub given: String,
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Role::ALL
            .into_iter()
            .find(|r| r.name() == lower)
            .ok_or_else(|| UnknownRole {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_role_table_holds_the_design_guarantees() {
        use Subsystem::*;
        for role in Role::ALL {
            assert!(role.runs(OpsHttp), "{role} must serve ops endpoints");
        }
        assert!(
            !Role::Api.runs(JobExecution)
                && !Role::Api.runs(Scheduler)
                && !Role::Api.runs(Recovery)
        );
        assert!(Role::Worker.runs(JobExecution) && Role::Worker.runs(Recovery));
        assert!(!Role::Worker.runs(PublicApi) && !Role::Worker.runs(Scheduler));
        assert!(Role::Scheduler.runs(Scheduler) && !Role::Scheduler.runs(JobExecution));
        assert!(Role::Calls.runs(Calls));
        assert!(!Role::Calls.runs(Scheduler) && !Role::Calls.runs(JobExecution));
        // Only the scheduler role (and all) may run periodic work.
        let schedulers: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.runs(Scheduler))
            .collect();
        assert_eq!(schedulers, [Role::Scheduler, Role::All]);
    }

    #[test]
    fn all_is_exactly_the_union_of_the_others() {
        let union: BTreeSet<Subsystem> = Role::ALL
            .into_iter()
            .filter(|r| *r != Role::All)
            .flat_map(|r| r.subsystems().iter().copied())
            .collect();
        let all: BTreeSet<Subsystem> = Role::All.subsystems().iter().copied().collect();
        assert_eq!(union, all);
        assert_eq!(all.len(), Subsystem::ALL.len());
    }

    #[test]
    fn roles_parse_case_insensitively_and_errors_list_the_valid_ones() {
        assert_eq!("Worker".parse::<Role>().unwrap(), Role::Worker);
        let err = "wrker".parse::<Role>().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid role \"wrker\"; valid roles: api, worker, scheduler, calls, all"
        );
    }
}
