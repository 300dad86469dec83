//! Job handlers: the trait a job type implements, and the registry that maps job type names
//! (RQ function names) to handlers.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use super::http_target::Delivery;
use crate::jobs::JobStore;

pub use super::input::{HandlerError, HandlerResult, JobInput};
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// What handlers may use besides their input.
#[derive(Clone, Debug)]
pub struct HandlerContext {
    pub jobs: JobStore,
    /// HTTP targets, for types whose work (or its delivery) is done by the business app.
    pub delivery: Arc<Delivery>,
    /// Where call recordings live and where they may be downloaded from.
    pub recordings: Arc<RecordingAccess>,
}

/// The recordings directory and the rules for downloading a recording into it.
#[derive(Clone)]
pub struct RecordingAccess {
    pub dir: PathBuf,
    /// Hosts a `recording_url` may name (`*.example.com` matches subdomains), on every redirect.
    pub allowed_hosts: Vec<String>,
    pub max_download_bytes: u64,
    /// Plain `http://` allowed (tests and local development only).
    pub allow_http: bool,
    /// HTTP basic auth (account SID, auth token) sent to the URL's own host, as Twilio requires.
    pub basic_auth: Option<(String, String)>,
}

impl RecordingAccess {
    /// A directory with no downloads allowed.
    pub fn local(dir: PathBuf) -> Self {
        Self {
            dir,
            allowed_hosts: Vec::new(),
            max_download_bytes: 0,
            allow_http: false,
            basic_auth: None,
        }
    }
}

impl std::fmt::Debug for RecordingAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The auth token never reaches a log line.
        f.debug_struct("RecordingAccess")
            .field("dir", &self.dir)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_download_bytes", &self.max_download_bytes)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(user, _)| user),
            )
            .finish_non_exhaustive()
    }
}

/// A job type. `Some(value)` is stored as the job's JSON result, as RQ stores return values.
///
/// Handlers must be idempotent: delivery is at-least-once (a job whose worker dies mid-run is
/// run again), so a re-run must not repeat an external effect twice or must be harmless.
/// CPU-bound or blocking work belongs in `tokio::task::spawn_blocking`.
pub trait Handler: Send + Sync {
    fn call(&self, ctx: HandlerContext, input: JobInput) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(HandlerContext, JobInput) -> Fut + Send + Sync,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, ctx: HandlerContext, input: JobInput) -> HandlerFuture {
        Box::pin(self(ctx, input))
    }
}

/// Job type name → handler, plus aliases.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
    aliases: HashMap<String, String>,
    resolve_dotted: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("handlers", &self.names())
            .field("aliases", &self.aliases)
            .finish()
    }
}

impl Registry {
    pub fn new(resolve_dotted: bool) -> Self {
        Self {
            resolve_dotted,
            ..Self::default()
        }
    }

    pub fn register(&mut self, name: impl Into<String>, handler: impl Handler + 'static) {
        self.handlers.insert(name.into(), Arc::new(handler));
    }

    pub fn alias(&mut self, from: impl Into<String>, to: impl Into<String>) {
        self.aliases.insert(from.into(), to.into());
    }

    pub fn names(&self) -> BTreeSet<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }

    /// The handler for `job_type` and its canonical name: an exact name, then an alias, then
    /// (if enabled) the longest dotted suffix that names a handler, so that the RQ function
    /// name `server.jobs.webhook_process_job` runs `webhook_process_job`.
    pub fn resolve(&self, job_type: &str) -> Option<(&str, Arc<dyn Handler>)> {
        let exact = |name: &str| {
            self.handlers
                .get_key_value(name)
                .map(|(k, h)| (k.as_str(), h.clone()))
        };
        exact(job_type)
            .or_else(|| self.aliases.get(job_type).and_then(|to| exact(to)))
            .or_else(|| {
                if !self.resolve_dotted {
                    return None;
                }
                job_type
                    .match_indices('.')
                    .find_map(|(i, _)| exact(&job_type[i + 1..]))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok(_: HandlerContext, _: JobInput) -> HandlerResult {
        Ok(None)
    }

    #[test]
    fn names_aliases_and_dotted_paths_resolve() {
        let mut r = Registry::new(true);
        r.register("webhook_process_job", ok);
        r.register("diag.echo", ok);
        r.alias("legacy.hook", "webhook_process_job");
        let name = |t: &str| r.resolve(t).map(|(n, _)| n.to_owned());
        assert_eq!(
            name("webhook_process_job").as_deref(),
            Some("webhook_process_job")
        );
        assert_eq!(name("legacy.hook").as_deref(), Some("webhook_process_job"));
        assert_eq!(
            name("server.jobs.webhook_process_job").as_deref(),
            Some("webhook_process_job")
        );
        assert_eq!(name("server.jobs.other"), None);
        assert_eq!(name("server.jobs.diag.echo").as_deref(), Some("diag.echo"));
        let strict = {
            let mut r = Registry::new(false);
            r.register("webhook_process_job", ok);
            r
        };
        assert!(strict.resolve("server.jobs.webhook_process_job").is_none());
    }
}
