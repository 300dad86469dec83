//! No Docker engine runs here, so `docker-compose.yml` is kept right by this test: every
//! prosaas service runs a valid role from the one image against the one Redis, has a
//! healthcheck, and cannot start with a default secret.

use std::collections::BTreeSet;

use prosaas::roles::Role;
use yaml_rust2::{Yaml, YamlLoader};

fn compose() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// A service's `command`, as strings.
fn command(service: &Yaml) -> Vec<&str> {
    service["command"]
        .as_vec()
        .expect("a command list")
        .iter()
        .filter_map(Yaml::as_str)
        .collect()
}

#[test]
// Long on purpose: what the services share (one image, one Redis) is gathered over all of them,
// then checked once.
fn compose_services_run_valid_roles_from_one_image_against_one_redis() {
    let doc = compose();
    let services = doc["services"].as_hash().expect("services");
    let redis = &doc["services"]["redis"];
    let cmd = command(redis);
    assert!(
        cmd.windows(2)
            .any(|w| w == ["--maxmemory-policy", "noeviction"]),
        "{cmd:?}"
    );
    assert!(
        !redis["healthcheck"]["test"].is_badvalue(),
        "redis needs a health check"
    );

    let mut images = BTreeSet::new();
    let mut urls = BTreeSet::new();
    let mut roles = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if name == "redis" || !svc["profiles"].is_badvalue() {
            continue;
        }
        let role = svc["environment"]["SERVICE_ROLE"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no SERVICE_ROLE"));
        let role: Role = role.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        roles.push((name.to_owned(), role));
        images.insert(
            svc["image"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no image"))
                .to_owned(),
        );
        // `${REDIS_URL:-<default>}`: the one Redis by default, Sentinel's URL with the ha profile.
        let url = svc["environment"]["REDIS_URL"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no REDIS_URL"));
        let default = url
            .strip_prefix("${REDIS_URL:-")
            .and_then(|u| u.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{name}: REDIS_URL must be ${{REDIS_URL:-...}}: {url}"));
        urls.insert(default.to_owned());
        a_role_service_waits_checks_and_requires_its_secrets(name, svc);
    }
    assert_eq!(images.len(), 1, "one image for every role: {images:?}");
    assert_eq!(urls.len(), 1, "one Redis for every role: {urls:?}");
    let url = urls.pop_first().unwrap();
    assert!(
        url.starts_with("redis://redis:"),
        "REDIS_URL must name the redis service: {url}"
    );
    prosaas::jobs::validate_url(&url).unwrap();

    let role_of = |svc: &str| roles.iter().find(|(n, _)| n == svc).map(|(_, r)| *r);
    assert_eq!(role_of("prosaas-api"), Some(Role::Api));
    assert_eq!(role_of("worker"), Some(Role::Worker));
    assert_eq!(role_of("scheduler"), Some(Role::Scheduler));
    assert_eq!(role_of("prosaas-calls"), Some(Role::Calls));
    assert_eq!(
        doc["services"]["worker"]["deploy"]["replicas"].as_i64(),
        Some(2)
    );
    assert_eq!(
        doc["services"]["scheduler"]["deploy"]["replicas"].as_i64(),
        Some(2)
    );
}

/// A prosaas service acknowledges writes as configured, waits for a healthy Redis, answers its
/// health check with `prosaas probe`, and takes its secrets only as required variables.
fn a_role_service_waits_checks_and_requires_its_secrets(name: &str, svc: &Yaml) {
    assert_eq!(
        svc["environment"]["PROSAAS__REDIS__ACK_REPLICAS"].as_str(),
        Some("${PROSAAS_ACK_REPLICAS:-0}"),
        "{name}"
    );
    assert_eq!(
        svc["depends_on"]["redis"]["condition"].as_str(),
        Some("service_healthy"),
        "{name} must wait for a healthy Redis"
    );
    let check: Vec<&str> = svc["healthcheck"]["test"]
        .as_vec()
        .unwrap_or_else(|| panic!("{name}: no healthcheck"))
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(check, ["CMD", "prosaas", "probe"], "{name}");
    // A secret must be given, never defaulted: a default defeats the api role's guard.
    for (var, value) in svc["environment"].as_hash().unwrap() {
        let (var, value) = (var.as_str().unwrap(), value.as_str().unwrap_or_default());
        if [
            "INTERNAL_SECRET",
            "INTERNAL_API_TOKEN",
            "TWILIO_AUTH_TOKEN",
            "PUBLIC_BASE_URL",
        ]
        .contains(&var)
        {
            assert!(
                value.starts_with(&format!("${{{var}:?")),
                "{name}: {var} must be required with ${{{var}:?...}}, not {value}"
            );
        }
    }
}

/// The `ha` profile: a replica of `redis` and three sentinels (quorum 2) monitoring it, and a
/// Sentinel URL naming exactly those sentinels.
#[test]
fn the_ha_profile_adds_a_replica_and_three_sentinels() {
    let doc = compose();
    let services = doc["services"].as_hash().expect("services");
    let in_ha = |svc: &Yaml| {
        svc["profiles"]
            .as_vec()
            .is_some_and(|p| p.iter().any(|v| v.as_str() == Some("ha")))
    };
    let replica = &doc["services"]["redis-replica"];
    assert!(in_ha(replica));
    let cmd = command(replica);
    assert!(
        cmd.windows(3)
            .any(|w| w == ["--replicaof", "redis", "6379"]),
        "{cmd:?}"
    );
    assert!(
        cmd.windows(2)
            .any(|w| w == ["--maxmemory-policy", "noeviction"]),
        "{cmd:?}"
    );

    let sentinels: Vec<&str> = services
        .iter()
        .filter(|(_, svc)| {
            svc["command"].as_vec().is_some_and(|c| {
                c.iter()
                    .any(|a| a.as_str().is_some_and(|a| a.contains("--sentinel")))
            })
        })
        .map(|(name, svc)| {
            assert!(in_ha(svc), "{name:?} must be in the ha profile");
            let script = svc["command"]
                .as_vec()
                .unwrap()
                .iter()
                .filter_map(Yaml::as_str)
                .collect::<String>();
            assert!(
                script.contains("sentinel monitor prosaas redis 6379 2"),
                "{script}"
            );
            name.as_str().unwrap()
        })
        .collect();
    assert_eq!(sentinels, ["sentinel-1", "sentinel-2", "sentinel-3"]);

    let url = doc["x-ha-redis-url"].as_str().expect("x-ha-redis-url");
    prosaas::jobs::validate_url(url).unwrap();
    let config = prosaas::jobs::SentinelConfig::from_url(url).unwrap();
    let named: Vec<String> = sentinels.iter().map(|s| format!("{s}:26379")).collect();
    assert_eq!(config.addrs, named);
    assert_eq!(config.master, "prosaas");
}

#[test]
fn the_dockerfile_builds_one_non_root_image_with_prosaas_as_entrypoint() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert_eq!(
        text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")),
        2,
        "multi-stage"
    );
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("USER 10001"), "runs as non-root");
    assert!(
        text.contains("PROSAAS__RECORDINGS__DIR=/var/lib/prosaas/recordings")
            && text.contains("chown -R 10001 /var/lib/prosaas"),
        "a writable recordings directory"
    );
    assert!(text.contains(r#"ENTRYPOINT ["prosaas"]"#));
}
