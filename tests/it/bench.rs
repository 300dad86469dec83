//! `prosaas bench` once per scenario at a tiny size: a smoke test that the scenarios run, report
//! sane figures and leave nothing behind. Never a timed assertion (figures live in
//! docs/BENCHMARKS.md).

use serde_json::Value;

use crate::support::{db, process};

#[test]
// Long on purpose: one table of every bench scenario against the same Redis, which must be left as
// it was.
fn every_scenario_runs_and_cleans_up_after_itself() {
    for (scenario, extra) in [
        (
            "enqueue",
            vec!["--jobs", "200", "--concurrency", "8", "--batch", "50"],
        ),
        (
            "enqueue-dedupe",
            vec!["--jobs", "200", "--concurrency", "8"],
        ),
        ("drain", vec!["--jobs", "300", "--concurrency", "16"]),
        ("e2e", vec!["--jobs", "300", "--concurrency", "16"]),
        ("latency", vec!["--rate", "200", "--duration", "1"]),
        ("webhook", vec!["--jobs", "100", "--concurrency", "4"]),
        ("calls", vec!["--concurrency", "3", "--duration", "2"]),
        ("fairness", vec!["--jobs", "300", "--concurrency", "16"]),
        ("rate-limit", vec!["--duration", "2"]),
        ("soak", vec!["--rate", "30", "--duration", "6"]),
    ] {
        let t = db();
        let mut args = vec!["bench", scenario, "--json"];
        args.extend(extra);
        let out = process::run(&args, &[("REDIS_URL", &t.url())]);
        assert!(
            out.status.success(),
            "{scenario}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let figures = report["figures"].as_array().unwrap();
        assert!(!figures.is_empty(), "{scenario}");
        for f in figures {
            assert!(f["per_sec"].as_f64().unwrap() > 0.0, "{scenario}: {f}");
            assert!(f["jobs"].as_u64().unwrap() > 0, "{scenario}: {f}");
        }
        if scenario == "fairness" {
            // Tenant B's jobs were all measured, fair and plain.
            for f in figures {
                assert_eq!(f["extra"]["tenant_b_measured"], 50, "{f}");
            }
        }
        if scenario == "enqueue" {
            // The last figure is the floor the others are read against: one bare PING per call.
            let floor = figures.last().unwrap();
            assert!(
                floor["name"].as_str().unwrap().starts_with("PING"),
                "{floor}"
            );
            // At least: the counters are the server's, and this binary's other tests share it.
            assert!(
                floor["redis_commands_per_job"].as_f64().unwrap() >= 1.0,
                "{floor}"
            );
        }
        if scenario == "soak" {
            let samples = figures[0]["extra"]["samples"].as_array().unwrap();
            assert!(samples.len() >= 2, "{samples:?}");
            for s in samples {
                assert!(s["redis_used_mb"].as_f64().unwrap() > 0.0, "{s}");
                assert!(s["rss_mb"]["worker_1"].as_f64().unwrap() > 0.0, "{s}");
            }
        }
        if scenario != "calls" && scenario != "soak" {
            assert!(
                figures[0]["redis_commands_per_job"].as_f64().unwrap() > 0.0,
                "{scenario}"
            );
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut t.connection())
            .unwrap();
        let left: Vec<&String> = keys
            .iter()
            .filter(|k| !k.starts_with("rq:worker:") && *k != "rq:workers")
            .collect();
        assert!(left.is_empty(), "{scenario} left keys behind: {left:?}");
    }
}

#[test]
fn the_bench_refuses_a_database_with_data() {
    let t = db();
    let _: () = redis::cmd("SET")
        .arg("customer:1")
        .arg("precious")
        .query(&mut t.connection())
        .unwrap();
    let out = process::run(
        &["bench", "enqueue", "--jobs", "10"],
        &[("REDIS_URL", &t.url())],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds 1 keys") && err.contains("--force"),
        "{err}"
    );
    let value: String = redis::cmd("GET")
        .arg("customer:1")
        .query(&mut t.connection())
        .unwrap();
    assert_eq!(value, "precious");
}

/// `scripts/drain-floor.py` (docs/BENCHMARKS.md, "The floor") runs, deletes exactly what it
/// wrote, and refuses a database that holds someone's data.
#[test]
fn the_drain_floor_script_runs_and_cleans_up() {
    let floor = |url: &str| {
        std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/drain-floor.py"
            ))
            .args(["--url", url, "--jobs", "300", "--batch", "16"])
            .output()
            .expect("python3 runs")
    };
    let t = db();
    let out = floor(&t.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("300 jobs, batch 16: redis_cpu_us_per_job="),
        "{stdout}"
    );
    let keys: u64 = redis::cmd("DBSIZE").query(&mut t.connection()).unwrap();
    assert_eq!(keys, 0, "the floor script left keys behind");

    let _: () = redis::cmd("SET")
        .arg("customer:1")
        .arg("precious")
        .query(&mut t.connection())
        .unwrap();
    let out = floor(&t.url());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let keys: u64 = redis::cmd("DBSIZE").query(&mut t.connection()).unwrap();
    assert_eq!(keys, 1);
}
