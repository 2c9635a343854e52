//! Instances of the example service as OS processes, and plain HTTP/1.1 to talk to them: one on
//! L1 + L4 `file` (no Redis, no bus) with its own temporary data directory and SQLite file
//! ([`Service::start`]), or several sharing a Redis (L2 and the bus) and one SQLite file
//! ([`Service::spawn`]).
//!
//! Shared by the service's tests (`dashboard_browser.rs`, `write_through.rs`,
//! `two_instances.rs`); each test binary uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use vorte_cache_tests::servers::free_port;

/// One running service process. Dropping it kills and reaps it (then removes its directory, if it
/// owns one), and prints the end of its log when the test is failing.
pub(crate) struct Service {
    /// What the test's messages call it (`"the service"`, `"A"`, ...).
    pub(crate) name: &'static str,
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub(crate) port: u16,
    log: PathBuf,
    /// The directory it owns, removed once the process is reaped ([`Service::start`]'s).
    owned_dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Starts the service with the defaults (L1 + L4 `file` under a fresh temporary directory,
    /// the SQLite file there too) on a free port, and waits until `GET /health` answers.
    pub(crate) async fn start() -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("service.db");
        let mut service = Service::spawn("the service", dir.path(), &db, None);
        service.owned_dir = Some(dir);
        service.wait_ready().await;
        service
    }

    /// Starts an instance on a free port without waiting for it: its SQLite file is `db`, its L4
    /// directory and its log are under `dir` (named after `name`, which the test's messages use),
    /// and with `redis_url` its L2 and its invalidation bus are on that Redis. `dir` must outlive
    /// the instance. Wait with [`Service::wait_ready`].
    pub(crate) fn spawn(
        name: &'static str,
        dir: &Path,
        db: &Path,
        redis_url: Option<&str>,
    ) -> Service {
        let port = free_port();
        let file_name = name.replace(' ', "-");
        let log = dir.join(format!("{file_name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_vorte-example-service"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("VORTE_SERVICE_DATA", dir.join(format!("{file_name}-data")))
            .env("VORTE_SERVICE_DB", db)
            .env("RUST_LOG", "info,vorte_example_service=debug");
        if let Some(url) = redis_url {
            command.env("REDIS_URL", url);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("the service starts");
        Service {
            name,
            child,
            port,
            log,
            owned_dir: None,
        }
    }

    /// Waits until `GET /health` answers, failing if the process exits or 60 s pass.
    pub(crate) async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("{} exited before it answered: {status}", self.name);
            }
            if let Ok((200, _)) = http(self.port, "GET", "/health", None).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within 60 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path`, which must answer 200 with JSON.
    pub(crate) async fn get(&self, path: &str) -> Value {
        self.call("GET", path, None).await
    }

    /// `PUT path` with a JSON body, which must answer 200 with JSON.
    pub(crate) async fn put(&self, path: &str, body: &Value) -> Value {
        self.call("PUT", path, Some(&body.to_string())).await
    }

    /// Any request: the status and the body, failing only when there is no HTTP answer.
    pub(crate) async fn status(&self, method: &str, path: &str, body: Option<&str>) -> u16 {
        let (status, _) = http(self.port, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", self.name));
        status
    }

    /// The cache's counters: `GET /ops/cache/stats` (the `CacheStats` JSON and `hit_rate`).
    pub(crate) async fn stats(&self) -> Value {
        self.get("/ops/cache/stats").await
    }

    /// Reads of L1 that hit, from `GET /cache/stats`.
    pub(crate) async fn l1_hits(&self) -> u64 {
        let stats = self.get("/cache/stats").await;
        stats["layers"][0]["hits"].as_u64().expect("l1 hits")
    }

    /// Sends SIGTERM and waits (at most 10 s) for the process to exit; its status.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running 10 s after SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let (status, body) = http(self.port, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", self.name));
        assert_eq!(status, 200, "{} {method} {path}: {body}", self.name);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {}'s log ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); the status and the body.
pub(crate) async fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::other("no complete answer within 10 s"))??;
    let response = String::from_utf8(response).map_err(std::io::Error::other)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {response:?}")))?;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this helper reads Content-Length bodies only: {head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
}
