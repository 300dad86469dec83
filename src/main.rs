//! The `prosaas` executable: parse, load settings, run. All logic lives in the library.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use prosaas::cli::{Cli, Command};
use prosaas::roles::Role;
use prosaas::settings::Settings;
use prosaas::{commands, telemetry};

/// Exit status for bad configuration or usage, as clap uses for usage errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let role = match resolve_role(
        cli.role.as_deref(),
        env.get("SERVICE_ROLE").map(String::as_str),
    ) {
        Ok(role) => role,
        Err(msg) => return fail(EXIT_CONFIG, &msg),
    };
    let settings = match Settings::load(cli.config.as_deref(), &env) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_CONFIG, &format!("invalid configuration: {e:#}")),
    };
    // The scheduler owns its entry types and their rules; an invalid entry stops every role, as
    // any other invalid setting does, before anything connects.
    if let Err(e) = prosaas::scheduler::entries(&settings.scheduler) {
        return fail(EXIT_CONFIG, &format!("invalid configuration: {e:#}"));
    }
    // The internet-facing roles refuse to start unable to authenticate what they take; `all`
    // (development, small installs) answers 503 on what it cannot authenticate instead.
    let missing = match role {
        Role::Api => settings.api.missing_secrets(),
        Role::Calls => settings.api.missing_calls_secrets(),
        _ => Vec::new(),
    };
    if !missing.is_empty() && !settings.api.allow_missing_secrets {
        return fail(
            EXIT_CONFIG,
            &format!(
                "invalid configuration: the {role} role needs {} (or api.allow_missing_secrets = true for development)",
                missing.join(", ")
            ),
        );
    }
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, &format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => commands::serve(role, settings).await,
            Some(Command::Check) => commands::check(&settings).await,
            Some(Command::Probe { live }) => commands::probe(&settings, live).await,
            Some(Command::Jobs(cmd)) => commands::jobs(cmd, &settings).await,
            Some(Command::Migrate(cmd)) => commands::migrate(cmd, &settings).await,
            Some(Command::Bench(b)) => commands::bench(b, &settings).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, &format!("{e:#}")),
    }
}

/// `--role` wins over `SERVICE_ROLE`; the default is `all`.
fn resolve_role(flag: Option<&str>, env: Option<&str>) -> Result<Role, String> {
    match (flag, env.filter(|v| !v.is_empty())) {
        (Some(r), _) => r.parse().map_err(|e| format!("{e} (from --role)")),
        (None, Some(r)) => r.parse().map_err(|e| format!("{e} (from SERVICE_ROLE)")),
        (None, None) => Ok(Role::All),
    }
}

/// Prints one line and returns the status: errors here are for operators, not stack traces.
fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("prosaas: {}", msg.replace('\n', " "));
    ExitCode::from(code)
}
