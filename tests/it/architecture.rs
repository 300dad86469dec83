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
fn periodic_enqueuing_lives_only_in_the_scheduler() {
    let scheduler = root().join("src/scheduler");
    let jobs = root().join("src/jobs");
    // The bench enqueues at a fixed rate: a load generator an operator runs by hand
    // (`prosaas bench latency`), not periodic work of the running system.
    let load_generator = root().join("src/bench");
    let mut offenders = Vec::new();
    for file in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display().to_string();
        if text.contains("start_reminder_scheduler") || text.contains("start_session_processor") {
            offenders.push(format!("{name}: a deprecated in-process starter"));
        }
        if file.starts_with(&scheduler)
            || file.starts_with(&jobs)
            || file.starts_with(&load_generator)
        {
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

/// The modules under `dir` (a crate's `src/`) and the modules each one names through `crate::`
/// or `super::` paths (outside its `#[cfg(test)]` part), file by file. A `mod` declaration is
/// not an import: a parent lists its children, and they may name what it re-exports.
fn import_graph(
    dir: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let files = rust_files(dir);
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(dir, f)).collect();
    // The deepest module a path names: `crate::jobs::keys::Keys` is `jobs::keys`.
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| known.contains(p))
    };
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(dir, file);
        if me.is_empty() {
            continue;
        }
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` it is `a` too.
        let mut parent = me.clone();
        parent.pop();
        if is_mod_rs && me.len() > 1 {
            parent = me[..me.len() - 1].to_vec();
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = code_outside_tests_and_comments(&text);
        let mut targets: BTreeSet<String> = BTreeSet::new();
        for (anchor, base) in [("crate::", Vec::new()), ("super::", parent)] {
            for path in paths_after(&code, anchor, &base) {
                if let Some(m) = resolve(&path).filter(|m| *m != me && !me.starts_with(m)) {
                    targets.insert(m.join("::"));
                }
            }
        }
        graph.insert(me.join("::"), targets);
    }
    graph
}

/// The module a file under `dir` is: `jobs/keys.rs` is `jobs::keys`, `jobs/mod.rs` is `jobs`.
fn module_of(dir: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(dir).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// A file's code before its `#[cfg(test)]` part, without comments: they name modules without
/// importing them (doc links).
fn code_outside_tests_and_comments(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or("");
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" //").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts with `anchor` in `code`, as segments from the crate's root: `base` is
/// where the anchor points (nothing for `crate::`, the parent for `super::`), each further
/// `super` climbs one more, and `use a::{b, c::d}` gives one path per item.
fn paths_after(code: &str, anchor: &str, base: &[String]) -> Vec<Vec<String>> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (i, _) in code.match_indices(anchor) {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut prefix = base.to_vec();
        let mut tail = &code[i + anchor.len()..];
        loop {
            let seg = ident(tail);
            if seg.is_empty() {
                break;
            }
            if seg == "super" {
                prefix.pop();
            } else {
                prefix.push(seg.clone());
            }
            tail = &tail[seg.len()..];
            let Some(t) = tail.strip_prefix("::") else {
                break;
            };
            tail = t;
            if let Some(group) = tail.strip_prefix('{') {
                let inside = group.split('}').next().unwrap_or("");
                for item in inside.split(',') {
                    let mut p = prefix.clone();
                    p.extend(
                        item.trim()
                            .split("::")
                            .map(ident)
                            .filter(|s| !s.is_empty() && s != "self"),
                    );
                    paths.push(p);
                }
                break;
            }
        }
        paths.push(prefix);
    }
    paths
}

/// The first import loop in `graph`, as the modules around it.
fn find_loop(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut ring = path[at..].to_vec();
            ring.push(node.to_owned());
            return Some(ring);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(ring) = visit(next, graph, path, done) {
                return Some(ring);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        if let Some(ring) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(ring);
        }
    }
    None
}

/// The dependency rule (ARCHITECTURE.md): modules import each other one way, so the code reads
/// as a stack. A new import loop fails here, naming its modules.
#[test]
fn modules_import_each_other_one_way() {
    // The check itself can fail: two files naming each other are a loop.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("a")).unwrap();
    std::fs::write(tmp.path().join("a/mod.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::write(tmp.path().join("b.rs"), "use crate::a::Other;\n").unwrap();
    std::fs::write(tmp.path().join("a/c.rs"), "use super::Other;\n").unwrap();
    let ring = find_loop(&import_graph(tmp.path())).expect("a loop in the sample");
    assert!(
        ring.contains(&"a".to_owned()) && ring.contains(&"b".to_owned()),
        "{ring:?}"
    );

    let graph = import_graph(&root().join("src"));
    assert!(
        graph.len() > 40,
        "the graph covers the tree: {}",
        graph.len()
    );
    assert!(
        graph["http::ingress"].contains("jobs"),
        "imports are read: {:?}",
        graph["http::ingress"]
    );
    if let Some(ring) = find_loop(&graph) {
        panic!(
            "an import loop: {} (see ARCHITECTURE.md, the dependency rule)",
            ring.join(" -> ")
        );
    }
}

/// The stack of ARCHITECTURE.md's dependency rule, top floor first: a module may name modules on
/// floors below its own, never one above or beside it.
const FLOORS: &[&[&str]] = &[
    &["main"],
    &["commands"],
    &["bench", "migrate"],
    &["app"],
    &["roles"],
    &["http"],
    &["handlers"],
    &["scheduler", "worker", "calls"],
    &["metrics", "context", "telemetry", "local_redis"],
    &["calls_stream"],
    &["settings", "webhooks"],
    &["jobs"],
    &[
        "role", "hex", "mac", "backoff", "audio", "cli", "shutdown", "identity",
    ],
    &["version"],
];

/// Every import between top-level modules runs down the stack: an upward or sideways arrow
/// fails here, naming the file's module and what it names.
#[test]
fn imports_run_down_the_stack() {
    let floor_of = |module: &str| -> Option<usize> {
        let top = module.split("::").next().unwrap_or(module);
        FLOORS.iter().position(|floor| floor.contains(&top))
    };
    let graph = import_graph(&root().join("src"));
    let mut offenders = Vec::new();
    for (from, tos) in &graph {
        if from.is_empty() {
            continue; // lib.rs lists the modules; that is not an import
        }
        let Some(own) = floor_of(from) else {
            offenders.push(format!(
                "{from}: not on any floor of the stack (add it to FLOORS and ARCHITECTURE.md)"
            ));
            continue;
        };
        let own_top = from.split("::").next().unwrap_or(from);
        for to in tos {
            let top = to.split("::").next().unwrap_or(to);
            if top == own_top {
                continue;
            }
            match floor_of(to) {
                Some(floor) if floor > own => {}
                Some(_) => offenders.push(format!("{from} names {to}, which is not below it")),
                None => offenders.push(format!("{from} names {to}, which is on no floor")),
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// The store's narrow capabilities stay with the one caller each is for: the leader lock with
/// the scheduler, the bench's bulk deletes with the bench, the diagnostic counter with its job
/// type, the migration audit's reads with the audit.
#[test]
fn narrow_capabilities_stay_with_their_callers() {
    let homes = [
        (".leader_lock()", "src/scheduler/"),
        (".bench()", "src/bench"),
        (".diag()", "src/handlers/diag.rs"),
        (".audit()", "src/migrate/"),
    ];
    let mut offenders = Vec::new();
    for file in rust_files(&root().join("src")) {
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        if rel.starts_with("src/jobs/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (call, home) in homes {
            if text.contains(call) && !rel.starts_with(home) {
                offenders.push(format!("{rel} calls {call}, which belongs to {home}"));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// `text` with string and character literals emptied and comments removed, line breaks kept,
/// so that braces can be counted.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' if chars.next() == Some('\n') => out.push('\n'),
                        '\\' => {}
                        '"' => break,
                        '\n' => out.push('\n'),
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            // A character literal ('{', '\'', '\n'); a lifetime ('a) has no closing quote.
            '\'' => {
                let mut look = chars.clone();
                let closes = match look.next() {
                    Some('\\') => {
                        look.next();
                        look.next() == Some('\'')
                    }
                    Some(_) => look.next() == Some('\''),
                    None => false,
                };
                if closes {
                    while chars.next() != Some('\'') {}
                    out.push_str("' '");
                } else {
                    out.push('\'');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Functions of more than `limit` lines in `text` (outside its tests) that do not say why
/// they are long (a `// Long on purpose:` comment right above them): (line, name, length).
fn long_functions(text: &str, limit: usize) -> Vec<(usize, String, usize)> {
    let raw: Vec<&str> = text.lines().collect();
    let code = code_only(text);
    let lines: Vec<&str> = code.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("#[cfg(test)]"))
        .unwrap_or(lines.len());
    let mut found = Vec::new();
    for (i, line) in lines[..end].iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let t = t.strip_prefix("const ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened, mut last) = (0i64, false, None);
        for (j, l) in lines[i..end].iter().enumerate() {
            depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
            opened |= l.contains('{');
            if !opened && l.trim_end().ends_with(';') {
                break;
            }
            if opened && depth <= 0 {
                last = Some(i + j);
                break;
            }
        }
        let Some(last) = last else { continue };
        let length = last - i + 1;
        let explained = raw[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("//") || l.trim_start().starts_with("#["))
            .any(|l| l.contains("// Long on purpose:"));
        if length > limit && !explained {
            found.push((i + 1, name, length));
        }
    }
    found
}

/// No function runs past about 60 lines without saying why (issue #17): long functions hide
/// steps that deserve names.
#[test]
fn long_functions_say_why() {
    // The check can fail, and it is not fooled by braces in strings or characters.
    let body = "    let x = 1;\n".repeat(70);
    let sample = format!("fn short() {{\n    let s = \"{{\";\n}}\n\nfn long() {{\n{body}}}\n");
    assert_eq!(
        long_functions(&sample, 60),
        vec![(5, "long".to_owned(), 72)]
    );
    let explained = format!("// Long on purpose: a sample.\n{sample}");
    assert_eq!(
        long_functions(&explained, 60).len(),
        1,
        "the comment is not above `long`"
    );
    let explained = sample.replace("fn long", "// Long on purpose: a sample.\nfn long");
    assert!(long_functions(&explained, 60).is_empty());

    // Tests too: a long test is a story told in one breath; most read better as steps with names.
    let mut offenders = Vec::new();
    let files = rust_files(&root().join("src"))
        .into_iter()
        .chain(rust_files(&root().join("tests")));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, name, length) in long_functions(&text, 60) {
            offenders.push(format!("{}:{line} {name}: {length} lines", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "split these, or say above each why it is long (`// Long on purpose: ...`):\n{}",
        offenders.join("\n")
    );
}
