//! One instance of the example service as an OS process on L1 + L4 `file` (no Redis, no bus),
//! with its own temporary data directory and SQLite file, and plain HTTP/1.1 to talk to it.
//!
//! Shared by the single-instance tests (`dashboard_browser.rs`, `write_through.rs`); each test
//! binary uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use vorte_cache_tests::servers::free_port;

/// One running service process. Dropping it kills and reaps it (then removes its directory),
/// and prints the end of its log when the test is failing.
pub(crate) struct Service {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub(crate) port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service with the defaults (L1 + L4 `file` under a fresh temporary directory,
    /// the SQLite file there too) on a free port, and waits until `GET /health` answers.
    pub(crate) async fn start() -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("service.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vorte-example-service"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("VORTE_SERVICE_DATA", dir.path().join("data"))
            .env("VORTE_SERVICE_DB", dir.path().join("service.db"))
            .env("RUST_LOG", "info,vorte_example_service=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("the service starts");
        let mut service = Service {
            child,
            port,
            log,
            _dir: dir,
        };
        service.wait_ready().await;
        service
    }

    /// Waits until `GET /health` answers, failing if the process exits or 60 s pass.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("the service exited before it answered: {status}");
            }
            if let Ok((200, _)) = http(self.port, "GET", "/health", None).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not answer within 60 s"
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
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        status
    }

    /// The cache's counters: `GET /ops/cache/stats` (the `CacheStats` JSON and `hit_rate`).
    pub(crate) async fn stats(&self) -> Value {
        self.get("/ops/cache/stats").await
    }

    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let (status, body) = http(self.port, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {body}");
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
            eprintln!("--- last lines of the service's log ---");
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
