//! The real `prosaas` binary as a child process: started with a role and an environment of our
//! choosing (nothing inherited but PATH), its log lines collected, stopped with signals. On a
//! failing test its whole log is printed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_prosaas");

/// The secrets every served process gets unless a test overrides them.
pub const TEST_SECRET: &str = "bridge-secret-for-tests";
pub const TEST_TOKEN: &str = "api-token-for-tests";
pub const TEST_TWILIO_TOKEN: &str = "twilio-token-for-tests";
pub const TEST_PUBLIC_URL: &str = "https://prosaas.example.com";

/// A command line of the binary with a clean environment.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    command_of(BIN, args, env)
}

/// A command line of `bin` (this build's binary, or another release's) with a clean environment.
pub fn command_of(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    cmd
}

/// Runs a one-shot command (CLI) to completion.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env)
        .stdin(Stdio::null())
        .output()
        .expect("run prosaas")
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

pub struct ProsaasProcess {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    label: String,
}

impl ProsaasProcess {
    /// Starts `prosaas --role <role>` serving HTTP on a free loopback port.
    pub fn start(role: &str, env: &[(&str, &str)]) -> Self {
        Self::start_args(&["--role", role], env)
    }

    pub fn start_args(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_bin(BIN, args, env)
    }

    /// Starts `bin` (another release's binary, for the upgrade tests) like [`Self::start_args`].
    pub fn start_bin(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut full_env = vec![
            ("PORT", "0"),
            ("PROSAAS__HTTP__HOST", "127.0.0.1"),
            ("INTERNAL_SECRET", TEST_SECRET),
            ("INTERNAL_API_TOKEN", TEST_TOKEN),
            ("TWILIO_AUTH_TOKEN", TEST_TWILIO_TOKEN),
            ("PUBLIC_BASE_URL", TEST_PUBLIC_URL),
        ];
        full_env.extend_from_slice(env);
        let mut child = command_of(bin, args, &full_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn prosaas");
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let streams: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stderr.take().expect("stderr")),
            Box::new(child.stdout.take().expect("stdout")),
        ];
        for stream in streams {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let (lock, cv) = &*log;
                    lock.lock().unwrap().lines.push(line);
                    cv.notify_all();
                }
                let (lock, cv) = &*log;
                lock.lock().unwrap().closed = true;
                cv.notify_all();
            });
        }
        Self {
            child,
            log,
            label: if bin == BIN {
                args.join(" ")
            } else {
                format!("{bin} {}", args.join(" "))
            },
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle`; panics with the whole log on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_after(needle, 0, timeout)
    }

    /// Like [`Self::wait_for_log`], ignoring the first `skip` lines.
    pub fn wait_for_log_after(&self, needle: &str, skip: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(line) = log.lines.iter().skip(skip).find(|l| l.contains(needle)) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let all = log.lines.join("\n");
                drop(log);
                panic!(
                    "[{}] no log line containing {needle:?} within {timeout:?}; log:\n{all}",
                    self.label
                );
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    pub fn logs(&self) -> String {
        self.log.0.lock().unwrap().lines.join("\n")
    }

    /// The loopback address the HTTP server bound (from its startup line).
    pub fn http_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("HTTP listening on ", Duration::from_secs(20));
        let addr = line
            .split("HTTP listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("cannot parse address from {line:?}"));
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr())
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit; panics with its log if it does not in time.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads drain what the process wrote last.
                let (lock, cv) = &*self.log;
                let mut log = lock.lock().unwrap();
                while !log.closed {
                    log = cv.wait_timeout(log, Duration::from_secs(2)).unwrap().0;
                    if Instant::now() > deadline + Duration::from_secs(2) {
                        break;
                    }
                }
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "[{}] still running after {timeout:?}; log:\n{}",
                    self.label,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for ProsaasProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- prosaas [{}] log ---\n{}", self.label, self.logs());
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
