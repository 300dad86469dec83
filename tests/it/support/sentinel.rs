//! A private Sentinel deployment for failover tests: a master, replicas and three sentinels,
//! all `redis-server` processes on free loopback ports, killed on `Drop`. Sentinels decide a
//! node is down after [`DOWN_AFTER_MS`] (quorum 2).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::redis_server::free_port;

pub const SERVICE: &str = "prosaas-ha";
pub const DOWN_AFTER_MS: u64 = 1000;

struct Node {
    child: Option<Child>,
    port: u16,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Sentinels {
    data: Vec<Node>,
    sentinels: Vec<Node>,
    dir: TempDir,
    /// (data nodes' password, sentinels' password), when they require them.
    auth: Option<(String, String)>,
}

fn spawn(args: &[String], dir: &std::path::Path) -> Child {
    Command::new(
        std::env::var("PROSAAS_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
    )
    .args(args)
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("redis-server (Debian: apt-get install redis-server; .ci/run does)")
}

fn query_as<T: redis::FromRedisValue>(
    port: u16,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> Option<T> {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let mut c = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(300))
        .ok()?;
    cmd.query(&mut c).ok()
}

fn until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Sentinels {
    /// A master with `replicas` replicas and three sentinels that all see each other and every
    /// replica (so a failover can start at once).
    pub fn start(replicas: usize) -> Self {
        Self::start_inner(replicas, None)
    }

    /// Like [`Self::start`], with `data_password` required by the master and replicas and
    /// `sentinel_password` by the sentinels.
    pub fn start_with_passwords(
        replicas: usize,
        data_password: &str,
        sentinel_password: &str,
    ) -> Self {
        Self::start_inner(
            replicas,
            Some((data_password.to_owned(), sentinel_password.to_owned())),
        )
    }

    fn start_inner(replicas: usize, auth: Option<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_pw = auth.as_ref().map(|(d, _)| d.as_str());
        let sentinel_pw = auth.as_ref().map(|(_, s)| s.as_str());
        let data = start_data_nodes(dir.path(), replicas, data_pw);
        let sentinels = start_sentinels(dir.path(), data[0].port, data_pw, sentinel_pw);
        let set = Self {
            data,
            sentinels,
            dir,
            auth,
        };
        set.wait_until_settled(replicas);
        set
    }

    /// Until every sentinel sees every replica and the two other sentinels, and every replica
    /// is in sync with the master.
    fn wait_until_settled(&self, replicas: usize) {
        for s in &self.sentinels {
            until(
                "sentinels to see every replica and each other",
                Duration::from_secs(30),
                || {
                    let replicas_seen: Vec<redis::Value> = query_as(
                        s.port,
                        self.sentinel_password(),
                        redis::cmd("SENTINEL").arg("replicas").arg(SERVICE),
                    )?;
                    let peers: Vec<redis::Value> = query_as(
                        s.port,
                        self.sentinel_password(),
                        redis::cmd("SENTINEL").arg("sentinels").arg(SERVICE),
                    )?;
                    (replicas_seen.len() == replicas && peers.len() == 2).then_some(())
                },
            );
        }
        for node in &self.data[1..] {
            until("replicas in sync", Duration::from_secs(10), || {
                let info: String = query_as(
                    node.port,
                    self.data_password(),
                    redis::cmd("INFO").arg("replication"),
                )?;
                info.contains("master_link_status:up").then_some(())
            });
        }
    }

    fn data_password(&self) -> Option<&str> {
        self.auth.as_ref().map(|(d, _)| d.as_str())
    }

    fn sentinel_password(&self) -> Option<&str> {
        self.auth.as_ref().map(|(_, s)| s.as_str())
    }

    /// `redis+sentinel://` naming the three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let auth = self
            .data_password()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        format!("redis+sentinel://{auth}{}/{SERVICE}", hosts.join(","))
    }

    /// The master's port, as the first sentinel that answers names it.
    pub fn master_port(&self) -> u16 {
        until(
            "a sentinel to name the master",
            Duration::from_secs(10),
            || {
                self.sentinels.iter().find_map(|s| {
                    let (_, port): (String, String) = query_as(
                        s.port,
                        self.sentinel_password(),
                        redis::cmd("SENTINEL")
                            .arg("get-master-addr-by-name")
                            .arg(SERVICE),
                    )?;
                    port.parse().ok()
                })
            },
        )
    }

    /// SIGKILLs the current master; returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        if let Some(node) = self.data.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
        port
    }

    /// Asks the sentinels for a graceful failover (`SENTINEL FAILOVER`).
    pub fn failover(&self) {
        let _: Option<String> = query_as(
            self.sentinels[0].port,
            self.sentinel_password(),
            redis::cmd("SENTINEL").arg("failover").arg(SERVICE),
        );
    }

    /// Waits until the sentinels name a master other than `old`, and it says it is one.
    pub fn wait_for_new_master(&self, old: u16, within: Duration) -> u16 {
        until("a new master", within, || {
            let port = self.master_port();
            let role: Vec<redis::Value> =
                query_as(port, self.data_password(), &redis::cmd("ROLE"))?;
            let is_master =
                matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master");
            (port != old && is_master).then_some(port)
        })
    }

    /// How many times the sentinels moved the master: the most `+switch-master` events any one
    /// sentinel logged (each logs every switch it learns of).
    pub fn switches(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("sentinel") && name.ends_with(".log")
            })
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .matches("+switch-master")
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                out.push_str(&format!("--- {} ---\n", path.display()));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in self.sentinels.iter_mut().chain(self.data.iter_mut()) {
            n.kill();
        }
    }
}

/// A data node's command line: no persistence, its log in `dir`, the password when there is one.
fn node_args(dir: &Path, port: u16, name: &str, password: Option<&str>) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        &format!("{name}.log"),
        "--dir",
        &dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(password.iter().flat_map(|p| {
        [
            "--requirepass".to_owned(),
            p.to_string(),
            "--masterauth".to_owned(),
            p.to_string(),
        ]
    }))
    .collect()
}

/// The master, answering, then `replicas` replicas of it; the master first.
fn start_data_nodes(dir: &Path, replicas: usize, password: Option<&str>) -> Vec<Node> {
    let master_port = free_port();
    let mut data = vec![Node {
        child: Some(spawn(&node_args(dir, master_port, "master", password), dir)),
        port: master_port,
    }];
    until("the master", Duration::from_secs(10), || {
        query_as::<String>(master_port, password, &redis::cmd("PING"))
    });
    for i in 0..replicas {
        let port = free_port();
        let mut args = node_args(dir, port, &format!("replica{i}"), password);
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ]);
        data.push(Node {
            child: Some(spawn(&args, dir)),
            port,
        });
    }
    data
}

/// Three sentinels monitoring the master, a quorum of two.
fn start_sentinels(
    dir: &Path,
    master_port: u16,
    data_pw: Option<&str>,
    sentinel_pw: Option<&str>,
) -> Vec<Node> {
    let mut sentinels = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let conf = dir.join(format!("sentinel{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile sentinel{i}.log\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {SERVICE} 5000\n\
                 sentinel parallel-syncs {SERVICE} 1\n{}",
                dir.display(),
                match (data_pw, sentinel_pw) {
                    (Some(d), Some(s)) => format!(
                        "sentinel auth-pass {SERVICE} {d}\nrequirepass {s}\nsentinel sentinel-pass {s}\n"
                    ),
                    _ => String::new(),
                }
            ),
        )
        .expect("sentinel config");
        let args = vec![conf.display().to_string(), "--sentinel".into()];
        sentinels.push(Node {
            child: Some(spawn(&args, dir)),
            port,
        });
    }
    sentinels
}
