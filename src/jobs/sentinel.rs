//! Redis behind Sentinel: finding the master, and following it when Sentinel fails over.
//!
//! The store asks the sentinels (each in turn, as Sentinel's client guide says) which node is
//! the master of its service, checks with `ROLE` that the node agrees, and sends everything
//! there. A watcher asks again every [`WATCH_EVERY`]; when the answer changes, every later
//! command goes to the new master (the old connections are dropped). A write that still
//! reaches the old master after it was demoted fails with `READONLY`: nothing is written to a
//! replica. Sentinel closes the clients of a node whose role it changes, so blocked pops end
//! and are re-issued on the new master.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use super::error::JobError;

/// How often the watcher asks the sentinels which node is the master.
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Whether `url` names a Sentinel service (`redis+sentinel://`, or `rediss+sentinel://` for TLS).
pub fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// A Sentinel-managed service: `redis+sentinel://[user:password@]h1:26379,h2:26379/<master>[/db]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels, `host:port` each.
    pub addrs: Vec<String>,
    /// The service (master) name the sentinels monitor.
    pub master: String,
    pub db: i64,
    /// Credentials of the data nodes (master and replicas).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Credentials of the sentinels themselves, when they require one.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// TLS to the sentinels and the data nodes (`rediss+sentinel://`).
    pub tls: bool,
}

impl SentinelConfig {
    /// Parses the URL form. The credentials in it are the data nodes'; sentinel credentials
    /// come from settings.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let (tls, rest) = match url.strip_prefix("rediss+sentinel://") {
            Some(rest) => (true, rest),
            None => (
                false,
                url.strip_prefix("redis+sentinel://")
                    .ok_or("expected redis+sentinel:// or rediss+sentinel://")?,
            ),
        };
        let (authority, path) = rest.split_once('/').ok_or(
            "the master name is missing: redis+sentinel://host:26379,host2:26379/<master>[/db]",
        )?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (non_empty(user), non_empty(pass)),
                None => (non_empty(u), None),
            },
            None => (None, None),
        };
        let addrs: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    h.to_owned()
                } else {
                    format!("{h}:26379")
                }
            })
            .collect();
        if addrs.is_empty() {
            return Err("no sentinel address".into());
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or_default().to_owned();
        if master.is_empty() {
            return Err("the master name is empty".into());
        }
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(d) => d
                .parse::<i64>()
                .map_err(|_| format!("database {d:?} is not a number"))?,
            None => 0,
        };
        Ok(Self {
            addrs,
            master,
            db,
            username,
            password,
            sentinel_username: None,
            sentinel_password: None,
            tls,
        })
    }

    fn node_url(
        &self,
        addr: &str,
        user: &Option<String>,
        pass: &Option<String>,
        db: i64,
    ) -> String {
        let auth = match (user, pass) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{auth}{addr}/{db}")
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// One master: the connection every command shares and the client blocking pops open theirs
/// from.
pub(crate) struct Target {
    pub(crate) conn: ConnectionManager,
    pub(crate) client: Arc<redis::Client>,
    pub(crate) addr: Arc<str>,
    /// Connections for writes followed by `WAIT` (`redis.ack_replicas`): `WAIT` blocks the
    /// connection it runs on until replicas confirm, so on the shared one every other command
    /// would queue behind it. Several, so that waits overlap; connected on first use.
    acked: Vec<ConnectionManager>,
    next_acked: std::sync::atomic::AtomicUsize,
}

/// Connections for acknowledged writes per master.
const ACKED_CONNECTIONS: usize = 4;

impl Target {
    pub(crate) fn open(
        url: &str,
        addr: &str,
        config: &ConnectionManagerConfig,
    ) -> Result<Self, JobError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        let acked = (0..ACKED_CONNECTIONS)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conn,
            client: Arc::new(client),
            addr: addr.into(),
            acked,
            next_acked: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// One of the connections for acknowledged writes, in turn.
    pub(crate) fn acked_conn(&self) -> ConnectionManager {
        let i = self.next_acked.fetch_add(1, Ordering::Relaxed) % self.acked.len();
        self.acked[i].clone()
    }
}

/// The master of a Sentinel service as this process knows it, kept current by a watcher.
pub(crate) struct Follower {
    config: SentinelConfig,
    manager: ConnectionManagerConfig,
    timeout: Duration,
    current: RwLock<Option<Arc<Target>>>,
    /// Only one discovery at a time; the rest wait for its answer.
    discovering: tokio::sync::Mutex<()>,
    failovers: AtomicU64,
    watching: std::sync::Once,
}

impl Follower {
    pub(crate) fn new(
        config: SentinelConfig,
        manager: ConnectionManagerConfig,
        timeout: Duration,
    ) -> Self {
        Self {
            config,
            manager,
            timeout,
            current: RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
            failovers: AtomicU64::new(0),
            watching: std::sync::Once::new(),
        }
    }

    fn known(&self) -> Option<Arc<Target>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The master's address, once known.
    pub(crate) fn master(&self) -> Option<String> {
        self.known().map(|t| t.addr.to_string())
    }

    /// Master changes seen since this process started.
    pub(crate) fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// The current master, discovering it first if this process has never seen one.
    pub(crate) async fn target(self: &Arc<Self>) -> Result<Arc<Target>, JobError> {
        self.watch();
        if let Some(t) = self.known() {
            return Ok(t);
        }
        let _one = self.discovering.lock().await;
        if let Some(t) = self.known() {
            return Ok(t);
        }
        let addr = self.discover().await?;
        let target = Arc::new(self.open(&addr)?);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(target.clone());
        tracing::info!(master = %addr, service = %self.config.master, "Redis master found through Sentinel");
        Ok(target)
    }

    fn open(&self, addr: &str) -> Result<Target, JobError> {
        let c = &self.config;
        let url = c.node_url(addr, &c.username, &c.password, c.db);
        Target::open(&url, addr, &self.manager)
    }

    /// Starts the watcher once, on the runtime of the first caller. It ends when the store is
    /// dropped.
    fn watch(self: &Arc<Self>) {
        self.watching.call_once(|| {
            let weak = Arc::downgrade(self);
            tokio::spawn(watch(weak));
        });
    }

    /// Asks the sentinels, in order, for the master; the first answer whose node confirms it
    /// is the master wins.
    async fn discover(&self) -> Result<String, JobError> {
        let mut last = String::from("no sentinel configured");
        for sentinel in &self.config.addrs {
            let found = async {
                let mut conn = self.sentinel_conn(sentinel).await?;
                let addr = self.ask(&mut conn, sentinel).await?;
                self.confirm(&addr, sentinel).await?;
                Ok::<_, JobError>(addr)
            };
            match found.await {
                Ok(addr) => return Ok(addr),
                Err(e) => last = format!("sentinel {sentinel}: {e}"),
            }
        }
        Err(JobError::NoMaster(format!(
            "no master for service {:?} ({last})",
            self.config.master
        )))
    }

    fn connection_config(&self) -> redis::AsyncConnectionConfig {
        redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    async fn sentinel_conn(&self, sentinel: &str) -> Result<MultiplexedConnection, JobError> {
        let c = &self.config;
        let url = c.node_url(sentinel, &c.sentinel_username, &c.sentinel_password, 0);
        Ok(redis::Client::open(url)?
            .get_multiplexed_async_connection_with_config(&self.connection_config())
            .await?)
    }

    /// The master `sentinel` names for the service, as `host:port`.
    async fn ask(
        &self,
        conn: &mut MultiplexedConnection,
        sentinel: &str,
    ) -> Result<String, JobError> {
        let answer: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.config.master)
            .query_async(conn)
            .await?;
        let (host, port) = answer.ok_or_else(|| {
            JobError::NoMaster(format!(
                "{sentinel} does not monitor {:?}",
                self.config.master
            ))
        })?;
        Ok(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    /// The node must agree that it is the master: a sentinel that has not seen a failover yet
    /// could name a node that is now a replica.
    async fn confirm(&self, addr: &str, sentinel: &str) -> Result<(), JobError> {
        let c = &self.config;
        let node = c.node_url(addr, &c.username, &c.password, c.db);
        let mut n = redis::Client::open(node)?
            .get_multiplexed_async_connection_with_config(&self.connection_config())
            .await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut n).await?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(()),
            _ => Err(JobError::NoMaster(format!(
                "{addr}, named by {sentinel}, is not a master"
            ))),
        }
    }

    /// Follows `addr` from now on.
    fn switch_to(&self, addr: &str) {
        let known = self.master();
        match self.open(addr) {
            Ok(target) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(target));
                if known.is_some() {
                    self.failovers.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        from = known.as_deref().unwrap_or("-"),
                        to = %addr,
                        "Redis failover: following the new master"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, master = %addr, "cannot open the new master"),
        }
    }
}

/// Asks one sentinel (over a connection kept between ticks) which node is the master, and
/// switches when the answer changes and the node confirms it. A sentinel that fails is left
/// for the next one.
async fn watch(follower: Weak<Follower>) {
    let mut conn: Option<(usize, MultiplexedConnection)> = None;
    let mut next = 0;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(f) = follower.upgrade() else { return };
        let count = f.config.addrs.len();
        let (i, mut c) = match conn.take() {
            Some(kept) => kept,
            None => {
                let i = next % count;
                next += 1;
                match f.sentinel_conn(&f.config.addrs[i]).await {
                    Ok(c) => (i, c),
                    Err(_) => continue,
                }
            }
        };
        let sentinel = &f.config.addrs[i];
        let Ok(addr) = f.ask(&mut c, sentinel).await else {
            continue; // the connection is dropped; the next tick tries the next sentinel
        };
        conn = Some((i, c));
        if f.master().as_deref() == Some(addr.as_str()) {
            continue;
        }
        if f.confirm(&addr, sentinel).await.is_ok() {
            f.switch_to(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let c = SentinelConfig::from_url("redis+sentinel://u:pw@h1:26379,h2:26380,h3/mymaster/2")
            .unwrap();
        assert_eq!(c.addrs, ["h1:26379", "h2:26380", "h3:26379"]);
        assert_eq!(c.master, "mymaster");
        assert_eq!(c.db, 2);
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("pw"));
        let c = SentinelConfig::from_url("redis+sentinel://:pw@h1/m").unwrap();
        assert_eq!(
            (c.username, c.password.as_deref(), c.db),
            (None, Some("pw"), 0)
        );
        for bad in [
            "redis+sentinel://h1:26379",
            "redis+sentinel://h1:26379/",
            "redis+sentinel:///m",
            "redis+sentinel://h1/m/x",
        ] {
            assert!(SentinelConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_urls_carry_the_credentials_and_tls() {
        let some = |s: &str| Some(s.to_owned());
        let c = SentinelConfig::from_url("redis+sentinel://h1/m").unwrap();
        assert_eq!(
            c.node_url("h:1", &some("u"), &some("p"), 3),
            "redis://u:p@h:1/3"
        );
        assert_eq!(c.node_url("h:1", &None, &some("p"), 0), "redis://:p@h:1/0");
        assert_eq!(c.node_url("h:1", &None, &None, 0), "redis://h:1/0");
        let tls = SentinelConfig::from_url("rediss+sentinel://:pw@h1/m").unwrap();
        assert!(tls.tls && !c.tls);
        assert_eq!(
            tls.node_url("h:1", &None, &tls.password, 0),
            "rediss://:pw@h:1/0"
        );
        assert!(is_sentinel_url("rediss+sentinel://h/m") && !is_sentinel_url("rediss://h"));
    }
}
