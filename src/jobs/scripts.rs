//! One `Script` per atomic multi-step operation, each kept as a `.lua` file beside this one.
//!
//! `redis::Script` sends `EVALSHA` and falls back to loading the body on `NOSCRIPT`, so a
//! restarted Redis (empty script cache) costs one extra round trip, not an error.

use std::sync::LazyLock;

use redis::Script;

pub(crate) static ENQUEUE_DEDUPE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/enqueue_dedupe.lua")));
