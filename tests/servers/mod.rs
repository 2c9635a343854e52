//! Real servers for the integration tests: `redis-server` (standalone, with ACL, and a cluster),
//! `memcached` and moto's S3 server, each started on a free loopback port in a private temporary
//! directory and stopped when its handle drops.
//!
//! Every `start` is synchronous (blocking `std::process`, polling with short sleeps under a bounded
//! deadline), so it can be called from a plain `#[test]` or from inside a `#[tokio::test]`. A
//! server that does not come up panics with a message naming the server, its port and the tail of
//! its log (the temporary directory is then kept on disk so the whole log can be read).
//!
//! A missing binary is a failure, never a skip: the panic says how to install it (`.ci/run` does).
//!
//! Ports: [`free_port`] asks the kernel for a free port and never hands out the same port twice in
//! one process; if the server still fails to bind (another process took the port in between), the
//! start is retried on a fresh port. Readiness also checks, through `/proc`, that the listening
//! socket belongs to *our* child, so a foreign server on the same port is never mistaken for ours.
//!
//! Children write their stdout/stderr to files in their temporary directory, never to the test
//! output. Dropping a handle SIGKILLs and reaps the child, then removes the directory; this also
//! happens when the test panics (unwinding runs `Drop`).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test harness: a server that cannot start must fail the test loudly"
)]

mod cluster;
mod memcached;
mod moto;
mod redis;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use cluster::{RedisCluster, Reshard};
pub use memcached::{Memcached, memcached_cmd};
pub use moto::{MotoServer, http_request};
pub use redis::{RedisServer, redis_cli, redis_cmd, try_redis_cmd};

/// How long a server gets to become ready (the moto and cluster starts use longer deadlines).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two readiness probes.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// How many fresh ports a start tries before giving up.
const PORT_ATTEMPTS: usize = 5;

/// Ports this process has already handed out (never handed out twice).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free TCP port on 127.0.0.1: binds port 0, reads the port the kernel chose, closes it.
///
/// Never returns the same port twice in one process, so concurrent tests do not clash with each
/// other; a clash with another process is handled by the servers' start, which retries on a fresh
/// port when the bind fails.
pub fn free_port() -> u16 {
    loop {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for a free port");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        if handed_out().lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A free port `P` such that `P + 10000` (the Redis Cluster bus port) is free too. Both are below
/// the kernel's ephemeral range (32768+), so outgoing connections cannot grab them meanwhile.
pub fn free_cluster_port() -> u16 {
    let state = std::hash::RandomState::new();
    for attempt in 0u64..10_000 {
        let mut hasher = state.build_hasher();
        hasher.write_u64(attempt);
        hasher.write_u32(std::process::id());
        let port = 10_000 + u16::try_from(hasher.finish() % 12_000).unwrap();
        let bus = port + 10_000;
        let bindable = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        let mut ports = handed_out().lock().unwrap();
        if !ports.contains(&port) && !ports.contains(&bus) && bindable(port) && bindable(bus) {
            ports.insert(port);
            ports.insert(bus);
            return port;
        }
    }
    panic!("no free port pair (P, P+10000) for a Redis Cluster node in 10000..32000");
}

/// The absolute path of `name` on `PATH`; panics with install instructions when it is missing.
pub(crate) fn require_binary(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not on PATH: the server tests need it and never skip. Run `.ci/run` (it \
         installs every missing server), or install it by hand: {install}"
    );
}

/// Connects to 127.0.0.1:`port` with short timeouts (for probes and helper commands).
pub(crate) fn connect(port: u16, io_timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether anything accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    connect(port, Duration::from_millis(200)).is_ok()
}

/// The last `lines` lines of a text file (or a note that it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Whether process `pid` owns a socket listening on 127.0.0.1:`port` (Linux `/proc`). Off Linux
/// (no `/proc/net/tcp`) it answers `true` and the protocol probe alone decides.
pub(crate) fn pid_listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let wanted = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == wanted && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| Path::new(i) == target))
            .unwrap_or(false)
    })
}

/// Why one attempt to spawn a server failed.
pub(crate) enum SpawnError {
    /// The port was taken (the log says "Address already in use").
    AddrInUse,
    /// Anything else, with a description for the panic message.
    Other(String),
}

/// Builds the argument list of a server for a port and its directory.
pub(crate) type ArgsFn = Box<dyn Fn(u16, &Path) -> Vec<String> + Send + Sync>;
/// Protocol-level readiness probe: `true` once the server on the port answers as expected.
pub(crate) type ReadyFn = Box<dyn Fn(u16) -> bool + Send + Sync>;

/// One server process: its program and arguments, port, private directory and child.
pub(crate) struct Daemon {
    name: &'static str,
    program: PathBuf,
    args: ArgsFn,
    ready: ReadyFn,
    /// The log file the server writes itself (its stdout/stderr go to `<name>.out` next to it).
    log: PathBuf,
    timeout: Duration,
    port: u16,
    child: Option<Child>,
    // Dropped last, after `Drop::drop` has killed the child.
    dir: TempDir,
}

impl Daemon {
    /// Spawns the server and waits until it is ready, on a port `choose_port` gives (another one
    /// if the bind fails: a port found free can be taken before the server binds it). `log_name`
    /// is the server's own log file name in its directory (`None`: its stdout/stderr file).
    pub(crate) fn start(
        name: &'static str,
        program: PathBuf,
        choose_port: fn() -> u16,
        log_name: Option<&str>,
        timeout: Duration,
        args: ArgsFn,
        ready: ReadyFn,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vorte-{name}-"))
            .tempdir()
            .expect("create a temporary directory for a test server");
        let log = dir.path().join(log_name.unwrap_or(&format!("{name}.out")));
        let mut daemon = Self {
            name,
            program,
            args,
            ready,
            log,
            timeout,
            port: choose_port(),
            child: None,
            dir,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            match daemon.spawn_and_wait() {
                Ok(()) => return daemon,
                Err(SpawnError::AddrInUse) if attempt < PORT_ATTEMPTS => {
                    daemon.port = choose_port();
                }
                Err(SpawnError::AddrInUse) => daemon.fail("its port is already in use"),
                Err(SpawnError::Other(why)) => daemon.fail(&why),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Panics with the server's name, port and log tail, keeping its directory on disk.
    pub(crate) fn fail(&mut self, why: &str) -> ! {
        self.stop();
        let out = self.dir.path().join(format!("{}.out", self.name));
        let mut message = format!(
            "test server `{}` on 127.0.0.1:{} did not start: {why}\n--- {} (last lines) ---\n{}",
            self.name,
            self.port,
            self.log.display(),
            tail(&self.log, 25)
        );
        if out != self.log {
            let _ = write!(
                message,
                "\n--- {} (last lines) ---\n{}",
                out.display(),
                tail(&out, 25)
            );
        }
        self.dir.disable_cleanup(true);
        let _ = write!(message, "\n(directory kept: {})", self.dir.path().display());
        panic!("{message}");
    }

    /// One spawn on the current port, then wait until ready, exited or past the deadline.
    fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        let out_path = self.dir.path().join(format!("{}.out", self.name));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .expect("open the server's output file");
        let err = out.try_clone().expect("clone the output file handle");
        let args = (self.args)(self.port, self.dir.path());
        let child = Command::new(&self.program)
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                SpawnError::Other(format!("cannot spawn {}: {e}", self.program.display()))
            })?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + self.timeout;
        loop {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().expect("poll the server process") {
                self.child = None;
                let logs = format!("{}\n{}", tail(&self.log, 50), tail(&out_path, 50));
                return Err(if logs.contains("Address already in use") {
                    SpawnError::AddrInUse
                } else {
                    SpawnError::Other(format!("it exited early with {status}"))
                });
            }
            if pid_listens_on(pid, self.port) && (self.ready)(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SpawnError::Other(format!(
                    "not ready after {:?} (pid {pid})",
                    self.timeout
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The port it listens on (kept across restarts).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Its private temporary directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file the server writes.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The child's pid; panics if it is not running.
    pub(crate) fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("test server `{}` is not running", self.name))
            .id()
    }

    /// Whether the child is running (started and not killed).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, `"TERM"`, ...) with `kill(1)`.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// SIGKILLs and reaps the child (no-op if it is not running).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the child if it runs, then starts it again on the same port and waits until ready.
    pub(crate) fn restart(&mut self) {
        self.stop();
        // A port another process grabbed in between cannot be retried elsewhere: a few tries,
        // then a clear failure.
        for attempt in 1..=3 {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(SpawnError::AddrInUse) if attempt < 3 => std::thread::sleep(POLL * 10),
                Err(SpawnError::AddrInUse) => {
                    self.fail("restart: its port was taken by another process meanwhile")
                }
                Err(SpawnError::Other(why)) => self.fail(&format!("restart: {why}")),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a short-lived helper command (e.g. `redis-cli`) with stdout+stderr captured in a file,
/// killing it after `timeout`; returns (success, combined output).
pub(crate) fn run_captured(
    program: &Path,
    args: &[String],
    out_file: &Path,
    timeout: Duration,
) -> (bool, String) {
    let out = File::create(out_file).expect("create the command's output file");
    let err = out.try_clone().expect("clone the output file handle");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.display()));
    let deadline = Instant::now() + timeout;
    let success = loop {
        if let Some(status) = child.try_wait().expect("poll the command") {
            break status.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(POLL);
    };
    let mut text = String::new();
    let _ = File::open(out_file).and_then(|mut f| f.read_to_string(&mut text));
    (success, text)
}

/// Writes `request` to 127.0.0.1:`port` and reads the answer until the server closes the
/// connection (or `io_timeout` passes with nothing new).
pub(crate) fn exchange_until_close(
    port: u16,
    request: &[u8],
    io_timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut stream = connect(port, io_timeout)?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}
