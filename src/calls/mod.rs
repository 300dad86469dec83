//! A call's life on the calls role, from a verified stream to its finalized recording and
//! post-call jobs: `live` (one stream's loop and its bounds), `claim` (the call held once across
//! calls processes), `post_call` (finalizing and
//! enqueueing), `greeting` (what the caller hears first), and `process` (what the calls process
//! does beside its calls). The protocol, the recorder and the live-call registry it drives are
//! in `calls_stream`; the HTTP layer (`http::calls`) only checks the upgrade and hands the
//! socket over.

mod claim;
pub(crate) mod greeting;
pub mod live;
pub(crate) mod post_call;
pub mod process;
