//! Loading in layers, the rules of each section, and what never reaches a log line.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn sentinel_settings_in_either_form() {
    let s = Settings::load(
        None,
        &env(&[
            (
                "PROSAAS__REDIS__SENTINEL__ADDRS",
                "10.0.0.1:26379, 10.0.0.2:26379",
            ),
            ("PROSAAS__REDIS__SENTINEL__MASTER", "jobs"),
            ("PROSAAS__REDIS__SENTINEL__PASSWORD", "n0de-pw"),
            ("PROSAAS__REDIS__SENTINEL__SENTINEL_PASSWORD", "s3ntinel-pw"),
            ("PROSAAS__REDIS__ACK_REPLICAS", "1"),
        ]),
    )
    .unwrap();
    let c = s.store_config();
    let sentinel = c.sentinel.clone().unwrap();
    assert_eq!(sentinel.addrs, ["10.0.0.1:26379", "10.0.0.2:26379"]);
    assert_eq!(sentinel.master, "jobs");
    assert_eq!(sentinel.password.as_deref(), Some("n0de-pw"));
    assert_eq!(sentinel.sentinel_password.as_deref(), Some("s3ntinel-pw"));
    assert_eq!(c.ack_replicas, 1);
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("n0de-pw") && !shown.contains("s3ntinel-pw"),
        "passwords stay out of logs: {shown}"
    );

    let s = Settings::load(
        None,
        &env(&[
            ("REDIS_URL", "redis+sentinel://:pw@h1:26379,h2:26379/jobs/3"),
            ("PROSAAS__REDIS__SENTINEL__SENTINEL_PASSWORD", "sp"),
        ]),
    )
    .unwrap();
    let sentinel = s.store_config().sentinel.clone().unwrap();
    assert_eq!((sentinel.master.as_str(), sentinel.db), ("jobs", 3));
    assert_eq!(sentinel.password.as_deref(), Some("pw"));
    assert_eq!(sentinel.sentinel_password.as_deref(), Some("sp"));

    let e = Settings::load(None, &env(&[("PROSAAS__REDIS__SENTINEL__ADDRS", "h:1")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis.sentinel.master"), "{e}");
    let e = format!(
        "{:#}",
        Settings::load(None, &env(&[("REDIS_URL", "redis+sentinel://h1:26379")])).unwrap_err()
    );
    assert!(e.contains("master name is missing"), "{e}");
    assert!(
        Settings::load(None, &env(&[]))
            .unwrap()
            .store_config()
            .sentinel
            .is_none()
    );
}

#[test]
fn fair_queues_from_the_environment_and_their_rules() {
    let s = Settings::load(
        None,
        &env(&[
            ("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant"),
            ("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "4"),
            ("PROSAAS__QUEUES__DEFAULT__TENANT_WEIGHTS", r#"{"acme": 3}"#),
        ]),
    )
    .unwrap();
    let fair = &s.store_config().fair_queues["default"];
    assert_eq!(fair.tenant_concurrency, 4);
    assert_eq!(fair.weights["acme"], 3);
    assert!(
        Settings::load(None, &env(&[]))
            .unwrap()
            .store_config()
            .fair_queues
            .is_empty()
    );
    for (bad, says) in [
        (
            vec![("PROSAAS__QUEUES__DEFAULT__TENANT_CONCURRENCY", "4")],
            "need fairness",
        ),
        (
            vec![
                ("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant"),
                ("PROSAAS__QUEUES__DEFAULT__TENANT_WEIGHTS", r#"{"acme": 0}"#),
            ],
            "must be 1 to 1000",
        ),
        (
            vec![
                ("PROSAAS__QUEUES__DEFAULT__FAIRNESS", "tenant"),
                ("PROSAAS__QUEUES__DEFAULT__TENANT_WEIGHTS", r#"{"a b": 2}"#),
            ],
            "not a valid tenant",
        ),
    ] {
        let e = Settings::load(None, &env(&bad)).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn rate_limits_parse_and_refuse_what_cannot_work() {
    let s = Settings::load(
        None,
        &env(&[(
            "PROSAAS__RATE_LIMITS",
            r#"[{"tenant": "*", "rate": "20/s", "burst": 5}, {"job_type": "x", "rate": "3/m"}]"#,
        )]),
    )
    .unwrap();
    assert_eq!(s.rate_limits[0].interval_ms(), Some(50.0));
    assert_eq!(s.rate_limits[0].label(), "tenant-*");
    assert_eq!(s.rate_limits[1].interval_ms(), Some(20_000.0));
    for (bad, says) in [
        (r#"[{"rate": "5/s"}]"#, "set tenant"),
        (r#"[{"tenant": "*", "rate": "5 per s"}]"#, "must be <n>/s"),
        (r#"[{"tenant": "*", "rate": "0/s"}]"#, "must be <n>/s"),
        (r#"[{"tenant": "*", "rate": "5000/s"}]"#, "more than 1000/s"),
        (r#"[{"tenant": "*", "rate": "5/s", "burst": 0}]"#, "burst"),
        (r#"[{"tenant": "a b", "rate": "5/s"}]"#, "valid tenant"),
        (
            r#"[{"tenant": "*", "rate": "5/s"}, {"tenant": "*", "rate": "6/s"}]"#,
            "used twice",
        ),
    ] {
        let e = Settings::load(None, &env(&[("PROSAAS__RATE_LIMITS", bad)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn defaults_load_and_validate() {
    let s = Settings::load(None, &env(&[])).unwrap();
    assert_eq!(s.worker.queues, ["high", "default", "low"]);
    assert_eq!(s.http.port, 8080);
    assert_eq!(
        s.redis.url(),
        (
            "redis://127.0.0.1:6379".to_string(),
            RedisUrlSource::LocalDefault
        )
    );
}

#[test]
fn environment_overrides_in_order() {
    let s = Settings::load(
        None,
        &env(&[
            ("PROSAAS__WORKER__CONCURRENCY", "32"),
            ("PROSAAS__WORKER__QUEUES", "a,b"),
            ("PROSAAS__REDIS__URL", "redis://10.0.0.1:6379"),
            ("REDIS_URL", "redis://127.0.0.1:7000/3"),
            ("PORT", "9000"),
        ]),
    )
    .unwrap();
    assert_eq!(s.worker.concurrency.get(), 32);
    assert_eq!(s.worker.queues, ["a", "b"]);
    let one = Settings::load(
        None,
        &env(&[
            ("PROSAAS__WORKER__QUEUES", "default"),
            ("PROSAAS__WORKER__BACKOFF_SECS", "5"),
        ]),
    )
    .unwrap();
    assert_eq!(
        one.worker.queues,
        ["default"],
        "a one-element list stays a list"
    );
    assert_eq!(one.worker.backoff_secs, [5]);
    assert_eq!(s.http.port, 9000);
    assert_eq!(
        s.redis.url(),
        (
            "redis://127.0.0.1:7000/3".to_string(),
            RedisUrlSource::Explicit
        )
    );
}

#[test]
fn lists_and_tables_come_from_json_in_the_environment() {
    let s = Settings::load(
        None,
        &env(&[
            (
                "PROSAAS__EXTERNAL",
                r#"[{"job_type": "server.jobs.report", "queue": "python"}]"#,
            ),
            ("PROSAAS__WORKER__QUEUES", r#"["default"]"#),
            (
                "PROSAAS__WORKER__TYPES",
                r#"{"recording_job": {"max_retries": 5, "backoff_secs": [30, 120]}}"#,
            ),
        ]),
    )
    .unwrap();
    assert_eq!(s.external.len(), 1);
    assert_eq!(s.external[0].queue, "python");
    assert_eq!(s.worker.queues, ["default"]);
    let t = &s.worker.types["recording_job"];
    assert_eq!(t.max_retries, Some(5));
    assert_eq!(t.backoff_secs.as_deref(), Some(&[30, 120][..]));
    let err = format!(
        "{:#}",
        Settings::load(None, &env(&[("PROSAAS__EXTERNAL", "[{oops")])).unwrap_err()
    );
    assert!(err.contains("PROSAAS__EXTERNAL is not valid JSON"), "{err}");
}

#[test]
fn overlay_file_applies_and_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging.toml");
    std::fs::write(&path, "[worker]\nconcurrency = 3\n").unwrap();
    let s = Settings::load(Some(&path), &env(&[])).unwrap();
    assert_eq!(s.worker.concurrency.get(), 3);
    let err = Settings::load(Some(&dir.path().join("nope.toml")), &env(&[])).unwrap_err();
    assert!(format!("{err:#}").contains("does not exist"));
}

#[test]
fn external_types_keep_their_queue_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ext.toml");
    std::fs::write(
        &path,
        "external = [{ job_type = \"legacy.report\", queue = \"python\" }]\n\
         [[scheduler.entries]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\njob_type = \"legacy.report\"\n",
    )
    .unwrap();
    let err = format!("{:#}", Settings::load(Some(&path), &env(&[])).unwrap_err());
    assert!(
        err.contains("scheduler.entries.nightly") && err.contains("queue = \"python\""),
        "{err}"
    );
    let err = format!(
        "{:#}",
        Settings::load(
            Some(&path),
            &env(&[("PROSAAS__WORKER__QUEUES", "default,python")])
        )
        .unwrap_err()
    );
    assert!(err.contains("worker.queues includes python"), "{err}");
    std::fs::write(
        &path,
        "external = [{ job_type = \"legacy.report\", queue = \"python\" }]\n\
         [[scheduler.entries]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\njob_type = \"legacy.report\"\nqueue = \"python\"\n",
    )
    .unwrap();
    let s = Settings::load(Some(&path), &env(&[])).unwrap();
    assert_eq!(s.route("legacy.report", None).unwrap(), "python");
    assert!(s.route("legacy.report", Some("default")).is_err());
    assert_eq!(s.route("diag.echo", None).unwrap(), "default");
}

#[test]
fn debug_output_never_shows_secrets() {
    let s = Settings::load(
        None,
        &env(&[
            ("REDIS_URL", "redis://:redispass@127.0.0.1:6379/0"),
            ("INTERNAL_SECRET", "bridgepass"),
            ("INTERNAL_API_TOKEN", "tokenpass"),
            (
                "PROSAAS__WORKER__HTTP_TARGETS__CRM__URL",
                "https://crm.example.com",
            ),
            ("PROSAAS__WORKER__HTTP_TARGETS__CRM__SECRET", "hmacpass"),
            ("DASHBOARD_PASSWORD", "dashpass"),
        ]),
    )
    .unwrap();
    let text = format!("{s:?}");
    for secret in [
        "redispass",
        "bridgepass",
        "tokenpass",
        "hmacpass",
        "dashpass",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("crm.example.com"));
}

#[test]
fn the_dashboard_signs_in_with_its_password_else_the_api_token() {
    let token_only = Settings::load(None, &env(&[("INTERNAL_API_TOKEN", "t")])).unwrap();
    assert_eq!(token_only.dashboard.secret(&token_only.api), Some("t"));
    let both = Settings::load(
        None,
        &env(&[("INTERNAL_API_TOKEN", "t"), ("DASHBOARD_PASSWORD", "p")]),
    )
    .unwrap();
    assert_eq!(both.dashboard.secret(&both.api), Some("p"));
    let neither = Settings::load(None, &env(&[])).unwrap();
    assert_eq!(neither.dashboard.secret(&neither.api), None);
}

#[test]
fn invalid_settings_name_the_key() {
    let cases = [
        ("PROSAAS__WORKER__CONCURRENCY", "0", "worker.concurrency"),
        ("REDIS_URL", "http://nope", "redis.url"),
        (
            "PROSAAS__SCHEDULER__LOCK_TTL_MS",
            "5000",
            "scheduler.lock_ttl_ms",
        ),
        ("PORT", "eighty", "PORT"),
        ("PROSAAS__WORKER__QUEUES", "ok,bad queue", "worker.queues"),
        ("PROSAAS__LOG__FORMAT", "xml", "xml"),
        (
            "PROSAAS__DASHBOARD__SESSION_TTL_SECS",
            "10",
            "dashboard.session_ttl_secs",
        ),
        (
            "PROSAAS__DASHBOARD__LOGIN_FAILURES_PER_MINUTE",
            "0",
            "dashboard.login_failures_per_minute",
        ),
    ];
    for (k, v, needle) in cases {
        let err = format!("{:#}", Settings::load(None, &env(&[(k, v)])).unwrap_err());
        assert!(err.contains(needle), "{k}={v}: {err}");
        assert!(!err.contains('\n'), "{k}={v}: multi-line error: {err}");
    }
}
