//! How a Lua script is owned: each atomic multi-step operation is one `.lua` file, loaded by
//! exactly one Rust file beside it (its owner), which alone builds the script's arguments and
//! reads its reply. The order of a script's arguments is a contract between two languages, so
//! the owner names it: a [`Layout`] per group of arguments (and per reply row), listed under the
//! same name in the script's header (`-- FIXED_ARGS: prefix, worker, now`) and declared there
//! as a Lua constant (`local FIXED_ARGS = 3`); a test holds the three together. [`args!`] (and
//! [`keys!`]) push one group and fail to compile when they push a different number of values
//! than its layout names; a reply row is read into an array of the layout's length.
//!
//! Keys are spelled in `lua/keys.lua` (the Lua half of `keys.rs`, checked against it) and nowhere
//! else in Lua: a script calls `Key.job(p, id)`, which is inlined when the script is loaded
//! ([`expand_keys`]), so no script spells a key of its own and none pays for the spelling at run
//! time. `lua/lanes.lua` (tenant lanes) goes in front of the scripts that put jobs on queues or
//! take them off, and `lua/dependents.lua` (RQ's `depends_on`) after it for those that end jobs.
//!
//! `redis::Script` sends `EVALSHA` and falls back to loading the body on `NOSCRIPT`, so a
//! restarted Redis (empty script cache) costs one extra round trip, not an error. Scripts derive
//! job and registry keys from the RQ prefix instead of declaring them in KEYS: which jobs a
//! claim touches is only known once it pops them. That limits prosaas to standalone Redis (no
//! Cluster), as RQ itself is.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{LazyLock, OnceLock};

use redis::Script;

/// A script's source, as it is: every `Key.<name>(...)` in it is expanded when it is loaded.
macro_rules! plain {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/jobs/", $path))
    };
}

/// A script's source with the given files of `src/jobs/` in front, in order.
macro_rules! with_preludes {
    ([$($prelude:literal),+], $path:literal) => {
        concat!(
            $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/jobs/", $prelude)),)+
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/jobs/", $path))
        )
    };
}

/// A script's source with `lua/lanes.lua` in front: the script puts jobs on queues or takes them
/// off, and every such script must agree on where a tenant's jobs wait.
macro_rules! with_lanes {
    ($path:literal) => {
        $crate::jobs::scripts::with_preludes!(["lua/lanes.lua"], $path)
    };
}

/// Pushes one group of a script's arguments, in its layout's order; a group of a different
/// length than the layout names does not compile.
macro_rules! args {
    ($inv:expr, $layout:expr; $($value:expr),+ $(,)?) => {{
        const _: () = assert!(
            [$($crate::jobs::scripts::args!(@one $value)),+].len() == $layout.len(),
            "the values pushed differ in number from the layout's names"
        );
        $( $inv.arg($value); )+
    }};
    (@one $value:expr) => {
        ()
    };
}

/// Pushes a script's KEYS, in its layout's order, checked as [`args!`] checks arguments.
macro_rules! keys {
    ($inv:expr, $layout:expr; $($value:expr),+ $(,)?) => {{
        const _: () = assert!(
            [$($crate::jobs::scripts::args!(@one $value)),+].len() == $layout.len(),
            "the keys pushed differ in number from the layout's names"
        );
        $( $inv.key($value); )+
    }};
}

/// A script's source with `lua/lanes.lua`, `lua/dependents.lua` and `lua/rate_slots.lua` in
/// front: the script ends jobs, and a job that ends moves its waiting dependents onto their
/// queues and frees its RQ rate-limit slot in the same step.
macro_rules! with_endings {
    ($path:literal) => {
        $crate::jobs::scripts::with_preludes!(
            ["lua/lanes.lua", "lua/dependents.lua", "lua/rate_slots.lua"],
            $path
        )
    };
}

pub(crate) use {args, keys, plain, with_endings, with_lanes, with_preludes};

/// One named group of a script's arguments, or one row of its reply, in order: the names the
/// script's header lists under `name`, which is also the Lua constant holding its length.
pub(crate) struct Layout {
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "read by the tests that hold scripts to their layouts"
        )
    )]
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [&'static str],
}

impl Layout {
    pub(crate) const fn len(&self) -> usize {
        self.fields.len()
    }
}

/// A script as its file holds it (preludes in front), the layouts its owner declares for it,
/// and, from its first use, its source with every key expanded and the `redis::Script` of it.
pub(crate) struct LuaScript {
    template: &'static str,
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "read by the tests that hold scripts to their layouts"
        )
    )]
    layouts: &'static [&'static Layout],
    loaded: OnceLock<(String, Script)>,
}

impl LuaScript {
    pub(crate) const fn new(template: &'static str, layouts: &'static [&'static Layout]) -> Self {
        Self {
            template,
            layouts,
            loaded: OnceLock::new(),
        }
    }

    fn loaded(&self) -> &(String, Script) {
        self.loaded.get_or_init(|| {
            // The tests expand every script; should one not expand, keys.lua's functions run
            // in front of it instead: the same keys, at the cost of defining them per call.
            let source = expand_keys(self.template)
                .unwrap_or_else(|_| format!("{}{}", key_prelude(), self.template));
            let script = Script::new(&source);
            (source, script)
        })
    }

    /// The full source, keys expanded: what `SCRIPT LOAD` is sent.
    pub(crate) fn source(&self) -> &str {
        &self.loaded().0
    }
}

impl Deref for LuaScript {
    type Target = Script;

    fn deref(&self) -> &Script {
        &self.loaded().1
    }
}

/// keys.lua as runnable Lua: its `Key` table of builders.
fn key_prelude() -> &'static str {
    plain!("lua/keys.lua")
}

/// One of keys.lua's builders: its parameters, and its expression's parts in order.
pub(crate) struct KeyBuilder {
    pub(crate) params: Vec<&'static str>,
    pub(crate) parts: Vec<KeyPart>,
}

/// A part of a key builder's expression: a quoted Lua literal, or its n-th parameter.
pub(crate) enum KeyPart {
    Literal(&'static str),
    Param(usize),
}

/// keys.lua's builders by name: each of its `function Key.<name>(<params>) return <a .. b> end`
/// lines (keys.lua holds nothing else but comments and the table).
pub(crate) fn key_builders() -> &'static BTreeMap<&'static str, KeyBuilder> {
    static BUILDERS: LazyLock<BTreeMap<&'static str, KeyBuilder>> = LazyLock::new(|| {
        key_prelude()
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("function Key.")?;
                let (name, rest) = rest.split_once('(')?;
                let (params, body) = rest.split_once(") return ")?;
                let params: Vec<&str> = params.split(',').map(str::trim).collect();
                let parts = body
                    .strip_suffix(" end")?
                    .split(" .. ")
                    .map(|part| match params.iter().position(|p| *p == part) {
                        Some(n) => KeyPart::Param(n),
                        None => KeyPart::Literal(part),
                    })
                    .collect();
                Some((name, KeyBuilder { params, parts }))
            })
            .collect()
    });
    &BUILDERS
}

/// Inlines every `Key.<name>(args)` of a script as its builder's concatenation, arguments in
/// parentheses: keys are spelled once (keys.lua) and cost a script nothing at run time, where
/// defining keys.lua's functions would cost each call a closure per key (measured: +18 % of the
/// Lua side of a drained job). Fails on an unknown builder, a wrong argument count or an
/// unbalanced call.
fn expand_keys(template: &str) -> Result<String, String> {
    let builders = key_builders();
    let mut out = String::with_capacity(template.len() + template.len() / 4);
    let mut rest = template;
    while let Some(at) = rest.find("Key.") {
        let joined = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        let after = &rest[at + "Key.".len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let (name, call) = after.split_at(name_len);
        let builder = builders.get(name).filter(|_| !joined);
        let (Some(builder), Some(args_and_rest)) = (builder, call.strip_prefix('(')) else {
            // Not a call of a builder (a comment's mention, another table's field): as it is.
            out.push_str("Key.");
            rest = after;
            continue;
        };
        let (args, after_call) =
            split_call(args_and_rest).ok_or_else(|| format!("Key.{name}: unbalanced call"))?;
        if args.len() != builder.params.len() {
            return Err(format!(
                "Key.{name} takes {} arguments, given {}",
                builder.params.len(),
                args.len()
            ));
        }
        out.push('(');
        for (n, part) in builder.parts.iter().enumerate() {
            if n > 0 {
                out.push_str(" .. ");
            }
            match part {
                KeyPart::Literal(literal) => out.push_str(literal),
                KeyPart::Param(p) => {
                    let arg = args[*p];
                    let simple = arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if simple {
                        out.push_str(arg);
                    } else {
                        out.push('(');
                        out.push_str(arg);
                        out.push(')');
                    }
                }
            }
        }
        out.push(')');
        rest = after_call;
    }
    out.push_str(rest);
    Ok(out)
}

/// The arguments of a call whose opening parenthesis is just behind `text`, split at its own
/// commas (not those nested in brackets or strings), and the text after its closing one.
fn split_call(text: &str) -> Option<(Vec<&str>, &str)> {
    let mut args = Vec::new();
    let (mut depth, mut start, mut quote) = (0usize, 0, None);
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')') if depth == 0 => {
                args.push(text[start..i].trim());
                return Some((args, &text[i + 1..]));
            }
            (None, ')' | ']' | '}') => depth = depth.checked_sub(1)?,
            (None, ',') if depth == 0 => {
                args.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// Runs a pipeline of `EVALSHA` calls of one script, loading the script and running the
/// pipeline again if Redis answers `NOSCRIPT` (a restarted Redis): every call of the first run
/// then failed, so nothing ran twice.
pub(crate) async fn query_loading<T: redis::FromRedisValue>(
    conn: &mut redis::aio::ConnectionManager,
    script: &LuaScript,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<T> {
    match pipe.query_async(conn).await {
        Err(e) if e.code() == Some("NOSCRIPT") => {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script.source())
                .query_async::<String>(conn)
                .await?;
            pipe.query_async(conn).await
        }
        other => other,
    }
}

/// Every script prosaas runs, for the tests that hold each to its file and its layouts.
#[cfg(test)]
pub(crate) fn all() -> Vec<&'static LuaScript> {
    use super::{admin, call_status, dedup, dependencies, leader_lock, ops, prune, stats};
    vec![
        &ops::claim::CLAIM,
        &ops::settle::SETTLE,
        &ops::heartbeat::HEARTBEAT,
        &ops::recover::RECOVER,
        &ops::promote::PROMOTE,
        &ops::release_inbox::RELEASE_INBOX,
        &ops::rate_limit::RATE_LIMIT,
        &ops::lane_recount::LANE_RECOUNT,
        &ops::lane_depth::LANE_DEPTH,
        &dedup::ENQUEUE_DEDUPE,
        &dependencies::ENQUEUE_DEPENDENT,
        &stats::LANE_STATS,
        &stats::QUEUE_HEAD,
        &admin::REQUEUE_FAILED,
        &admin::DELETE_JOB,
        &admin::CANCEL_JOB,
        &admin::STOP_JOB,
        &call_status::CALL_STATUS,
        &call_status::CALL_STREAM,
        &call_status::LIVE_CALLS,
        &prune::PRUNE,
        &leader_lock::LEADER_LOCK,
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::*;

    const PRELUDES: [&str; 5] = [
        "lua/keys.lua",
        "lua/lanes.lua",
        "lua/clock.lua",
        "lua/dependents.lua",
        "lua/rate_slots.lua",
    ];

    fn jobs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/jobs")
    }

    /// Every `.lua` file under `src/jobs`, relative to it.
    fn lua_files(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                lua_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "lua") {
                let rel = path.strip_prefix(jobs_dir()).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    /// The script's own text, after the lanes, clock, dependents and rate-slot preludes.
    fn own_text(script: &LuaScript) -> &'static str {
        let lanes = super::plain!("lua/lanes.lua");
        let clock = super::plain!("lua/clock.lua");
        let dependents = super::plain!("lua/dependents.lua");
        let rate_slots = super::plain!("lua/rate_slots.lua");
        let text = script
            .template
            .strip_prefix(lanes)
            .unwrap_or(script.template);
        let text = text.strip_prefix(clock).unwrap_or(text);
        let text = text.strip_prefix(dependents).unwrap_or(text);
        text.strip_prefix(rate_slots).unwrap_or(text)
    }

    #[test]
    fn every_script_expands_its_keys_whole() {
        for script in all() {
            let first_line = own_text(script).lines().next().unwrap_or_default();
            let expanded =
                expand_keys(script.template).unwrap_or_else(|e| panic!("{e}, in: {first_line}"));
            assert_eq!(script.source(), expanded, "{first_line}");
            for line in expanded.lines() {
                let code = line.split("--").next().unwrap_or_default();
                assert!(
                    !code.contains("Key."),
                    "a key left to run time in ({first_line}): {line}"
                );
            }
        }
    }

    #[test]
    fn a_key_call_becomes_its_concatenation() {
        let lua =
            "local a = Key.job(p, ARGV[i + 1]) .. Key.fair_ring(q)\n-- Key.job is in keys.lua";
        assert_eq!(
            expand_keys(lua).unwrap(),
            "local a = (p .. 'job:' .. (ARGV[i + 1])) .. ('prosaas:fair:' .. q .. ':ring')\n\
             -- Key.job is in keys.lua"
        );
        assert_eq!(
            expand_keys("Key.lane(p, q, h[4], x)").unwrap_err(),
            "Key.lane takes 3 arguments, given 4"
        );
        assert!(expand_keys("Key.job(p, f(id)").is_err());
        assert_eq!(
            expand_keys("Key.queue(p, ',)')").unwrap(),
            "(p .. 'queue:' .. (',)'))"
        );
    }

    /// The names listed under `name` in the script's header: `-- NAME: a, b, c`, continued on
    /// the comment lines that follow while the list ends with a comma.
    fn header_fields(text: &str, name: &str) -> Option<Vec<String>> {
        let mut lines = text.lines().take_while(|l| l.starts_with("--"));
        let first = lines.find_map(|l| l.strip_prefix(&format!("-- {name}: ")))?;
        let mut list = first.trim().to_owned();
        for line in lines {
            if !list.ends_with(',') {
                break;
            }
            list.push(' ');
            list.push_str(line.trim_start_matches('-').trim());
        }
        Some(list.split(',').map(|f| f.trim().to_owned()).collect())
    }

    /// The value of `local NAME = <n>` in the script's code.
    fn lua_constant(text: &str, name: &str) -> Option<usize> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("local {name} = ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The largest literal `ARGV[n]` the script's code (not its comments) reads.
    fn largest_literal_argv(text: &str) -> usize {
        text.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .flat_map(|l| l.split("ARGV[").skip(1))
            .filter_map(|rest| rest.split(']').next()?.parse::<usize>().ok())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn every_script_file_is_one_scripts_source_and_every_script_has_a_file() {
        let mut files = Vec::new();
        lua_files(&jobs_dir(), &mut files);
        let mut unowned: BTreeSet<String> = files
            .into_iter()
            .filter(|f| !PRELUDES.contains(&f.as_str()))
            .collect();
        for script in all() {
            let text = own_text(script);
            let file = unowned
                .iter()
                .find(|f| std::fs::read_to_string(jobs_dir().join(f)).unwrap() == text)
                .cloned();
            let file = file.unwrap_or_else(|| {
                panic!(
                    "a script's source is no file's (or two scripts share one): {}",
                    &text[..80]
                )
            });
            unowned.remove(&file);
        }
        assert!(unowned.is_empty(), "scripts no Rust file owns: {unowned:?}");
    }

    #[test]
    fn every_layout_matches_its_scripts_header_and_constant() {
        for script in all() {
            let text = own_text(script);
            let first_line = text.lines().next().unwrap_or_default();
            assert!(
                !script.layouts.is_empty(),
                "a script without a layout: {first_line}"
            );
            for layout in script.layouts {
                let listed = header_fields(text, layout.name).unwrap_or_else(|| {
                    panic!(
                        "no `-- {}:` line in the header of: {first_line}",
                        layout.name
                    )
                });
                assert_eq!(
                    listed, layout.fields,
                    "{} differs between the script's header and its owner ({first_line})",
                    layout.name
                );
                assert_eq!(
                    lua_constant(text, layout.name),
                    Some(layout.len()),
                    "`local {} = {}` missing or different in: {first_line}",
                    layout.name,
                    layout.len()
                );
            }
            let fixed = script
                .layouts
                .iter()
                .find(|l| l.name == "FIXED_ARGS")
                .map_or(0, |l| l.len());
            assert!(
                largest_literal_argv(text) <= fixed,
                "a script reads ARGV past its FIXED_ARGS by number: {first_line}"
            );
        }
    }

    #[test]
    fn every_layout_line_of_a_header_has_an_owner_layout() {
        for script in all() {
            let text = own_text(script);
            let named: Vec<&str> = script.layouts.iter().map(|l| l.name).collect();
            for line in text.lines().take_while(|l| l.starts_with("--")) {
                let Some((label, _)) = line.trim_start_matches("-- ").split_once(": ") else {
                    continue;
                };
                if !label.is_empty() && label.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    assert!(
                        named.contains(&label),
                        "{label} is listed in a header but no owner declares it: {line}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_script_spells_a_key_of_its_own() {
        let mut files = Vec::new();
        lua_files(&jobs_dir(), &mut files);
        for file in files.iter().filter(|f| f.as_str() != "lua/keys.lua") {
            let text = std::fs::read_to_string(jobs_dir().join(file)).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("--").next().unwrap_or_default();
                let spelled = ["'prosaas:", "'job_lock:", "'rq:"]
                    .iter()
                    .any(|k| code.contains(k))
                    || ["p .. '", "ARGV[1] .. '", "prefix .. '"]
                        .iter()
                        .any(|k| code.contains(k));
                assert!(
                    !spelled,
                    "{file}:{}: a key spelled outside lua/keys.lua: {line}",
                    n + 1
                );
            }
        }
    }
}
