//! Tidy checks: the architecture's invariants, enforced as ordinary tests.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn only_the_jobs_module_talks_to_redis() {
    let jobs = root().join("src/jobs");
    let mut offenders = Vec::new();
    for file in rust_files(&root().join("src")) {
        if file.starts_with(&jobs) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let crate_path = code
                .match_indices("redis::")
                .any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
            if crate_path || code.trim_start().starts_with("use redis") {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "Redis used outside src/jobs/:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let missing: Vec<String> = rust_files(&root().join("src"))
        .into_iter()
        .chain(rust_files(&root().join("tests")))
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:?}"
    );
}

#[test]
fn every_lua_script_is_loaded_and_every_loaded_script_exists() {
    let scripts = std::fs::read_to_string(root().join("src/jobs/scripts.rs")).unwrap();
    for entry in std::fs::read_dir(root().join("src/jobs/lua")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            scripts.contains(&format!("include_str!(\"lua/{name}\")")),
            "src/jobs/lua/{name} is not loaded by scripts.rs"
        );
    }
}

#[test]
fn periodic_enqueuing_lives_only_in_the_scheduler() {
    let scheduler = root().join("src/scheduler");
    let jobs = root().join("src/jobs");
    // The latency benchmark enqueues at a fixed rate: a load generator an operator runs by
    // hand (`prosaas bench latency`), not periodic work of the running system.
    let load_generator = root().join("src/bench.rs");
    let mut offenders = Vec::new();
    for file in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display().to_string();
        if text.contains("start_reminder_scheduler") || text.contains("start_session_processor") {
            offenders.push(format!("{name}: a deprecated in-process starter"));
        }
        if file.starts_with(&scheduler) || file.starts_with(&jobs) || file == load_generator {
            continue;
        }
        if text.contains(".fire_slot(") {
            offenders.push(format!(
                "{name}: fires schedule slots outside src/scheduler/"
            ));
        }
        let enqueues = [".enqueue(", ".enqueue_many(", ".enqueue_with_dedupe("]
            .iter()
            .any(|call| text.contains(call));
        let timed = ["interval(", "sleep(", "sleep_until("]
            .iter()
            .any(|t| text.contains(t));
        if enqueues && timed {
            offenders.push(format!(
                "{name}: enqueues and runs a timer; periodic work belongs to scheduler entries"
            ));
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
