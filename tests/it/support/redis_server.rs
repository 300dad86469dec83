//! Private `redis-server`s for tests: never a Redis we did not start.
//!
//! - [`TestRedis`]: a server of the test's own (killable and restartable, for fault tests),
//!   killed on `Drop`.
//! - [`db`]: a fresh logical database on one server shared by the whole test binary; every key,
//!   RQ's global ones included, is isolated per test while tests run in parallel. Pub/sub
//!   channels are not per database; tests that need that take their own `TestRedis`.
//!
//! The shared server is a `static`, which Rust never drops, so it runs under a small shell
//! "lifeline" that kills it when our end of its stdin closes, i.e. when the test process exits
//! for any reason.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// More databases than one test binary needs, so every test gets its own.
const DATABASES: u32 = 4096;

fn server_binary() -> String {
    std::env::var("PROSAAS_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A redis-server owned by one test.
pub struct TestRedis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    lifeline: bool,
    /// Append-only file, fsynced on every write: a kill loses nothing acknowledged.
    durable: bool,
}

impl TestRedis {
    /// Starts a server on a free port, retrying with another port if it loses the port race.
    pub fn start() -> Self {
        Self::start_inner(false, false)
    }

    /// Like [`Self::start`], with an append-only file, so [`Self::up`] after [`Self::kill`]
    /// finds every acknowledged write again.
    pub fn start_durable() -> Self {
        Self::start_inner(false, true)
    }

    fn start_inner(lifeline: bool, durable: bool) -> Self {
        let mut last_err = String::new();
        for _ in 0..5 {
            let mut server = TestRedis {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir for redis-server"),
                lifeline,
                durable,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut args = server_args(self.port, self.dir.path());
        if self.durable {
            let at = args.iter().position(|a| a == "--appendonly").unwrap_or(0);
            args[at + 1] = "yes".into();
            args.extend(["--appendfsync".into(), "always".into()]);
        }
        let child = if self.lifeline {
            Command::new("sh")
                .arg("-c")
                .arg(r#""$0" "$@" & pid=$!; read _unused; kill -9 $pid"#)
                .arg(server_binary())
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        } else {
            Command::new(server_binary())
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        }
        .map_err(|e| {
            format!(
                "cannot run {}: {e}. Install it (Debian: apt-get install redis-server); .ci/run does",
                server_binary()
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port) {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited during startup ({status}); log:\n{}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server did not answer PING; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn url_db(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// SIGKILLs the server (no save), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ping(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.up();
    }

    /// Starts a killed server again on its port, with its data if it is durable.
    pub fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("restart failed: {e}"),
                // The old socket may linger briefly; try again.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("redis.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn connection(&self, db: u32) -> redis::Connection {
        redis::Client::open(self.url_db(db))
            .and_then(|c| c.get_connection())
            .expect("connect to test redis")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}",
                self.port,
                tail(&self.log(), 40)
            );
        }
        self.kill();
    }
}

fn server_args(port: u16, dir: &Path) -> Vec<String> {
    let log: PathBuf = dir.join("redis.log");
    vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        // No snapshots: nothing to litter, nothing to restore on restart.
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--databases".into(),
        DATABASES.to_string(),
        "--dir".into(),
        dir.display().to_string(),
        "--logfile".into(),
        log.display().to_string(),
    ]
}

fn ping(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

static SHARED: LazyLock<TestRedis> = LazyLock::new(|| TestRedis::start_inner(true, false));
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A logical database of the shared server, private to one test.
pub struct TestDb {
    pub db: u32,
}

/// A fresh database for this test.
pub fn db() -> TestDb {
    let db = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    assert!(db < DATABASES, "more tests than databases; raise DATABASES");
    TestDb { db }
}

impl TestDb {
    pub fn url(&self) -> String {
        SHARED.url_db(self.db)
    }

    pub fn connection(&self) -> redis::Connection {
        SHARED.connection(self.db)
    }

    /// A store on this database, configured as the binary would be.
    pub fn store(&self) -> prosaas::jobs::JobStore {
        Self::store_for(&self.url())
    }

    pub fn store_for(url: &str) -> prosaas::jobs::JobStore {
        prosaas::jobs::JobStore::connect(&prosaas::jobs::StoreConfig {
            url: url.to_owned(),
            sentinel: None,
            ack_replicas: 0,
            ack_timeout: Duration::from_millis(500),
            key_prefix: "rq".into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            fair_queues: Default::default(),
            record_current_job: false,
        })
        .expect("store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- shared redis-server log ---\n{}",
                tail(&SHARED.log(), 40)
            );
        }
    }
}
