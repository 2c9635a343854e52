//! moto's S3-compatible `moto_server`, with the bucket `vorte-test` created, and a raw HTTP helper.

use std::path::Path;
use std::time::Duration;

use super::{Daemon, exchange_until_close, free_port, require_binary};

/// moto imports a lot of Python: on a loaded 2-core machine its start can take several seconds.
const MOTO_TIMEOUT: Duration = Duration::from_secs(30);

/// The bucket every [`MotoServer`] has.
const BUCKET: &str = "vorte-test";

/// `moto_server -H 127.0.0.1 -p P` (an in-memory S3 endpoint; any access key is accepted,
/// region `us-east-1`), with the bucket `vorte-test` created.
///
/// moto keeps everything in memory: [`MotoServer::kill`] / [`MotoServer::restart`] lose every
/// object (restart re-creates the empty bucket). Dropping it SIGKILLs and reaps the process and
/// removes its directory.
pub struct MotoServer {
    daemon: Daemon,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl MotoServer {
    /// Starts moto, waits until it answers HTTP, and creates the bucket `vorte-test`.
    pub fn start() -> Self {
        let program = require_binary("moto_server", "`pip install 'moto[server]'`");
        let args = Box::new(|port: u16, _dir: &Path| {
            vec![
                "-H".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                port.to_string(),
            ]
        });
        let ready = Box::new(|port: u16| {
            exchange_until_close(port, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5))
                .is_ok_and(|answer| answer.starts_with(b"HTTP/1."))
        });
        let daemon = Daemon::start("moto", program, free_port, None, MOTO_TIMEOUT, args, ready);
        let server = Self { daemon };
        server.create_bucket();
        server
    }

    fn create_bucket(&self) {
        let (status, answer) = http_request(self.port(), "PUT", &format!("/{BUCKET}"), b"");
        assert_eq!(
            status,
            200,
            "moto on {}: PUT /{BUCKET} answered:\n{answer}",
            self.endpoint()
        );
    }

    /// The port it listens on (the same after [`MotoServer::restart`]).
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `http://127.0.0.1:P`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// `vorte-test`.
    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// `us-east-1` (moto accepts any region and any credentials).
    pub fn region(&self) -> &'static str {
        "us-east-1"
    }

    /// The server process id; panics after [`MotoServer::kill`].
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Whether the process runs (not killed).
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }

    /// Its output file (moto logs requests to stderr).
    pub fn log(&self) -> &Path {
        self.daemon.log()
    }

    /// SIGKILLs the server; every bucket and object is lost.
    pub fn kill(&mut self) {
        self.daemon.stop();
    }

    /// SIGSTOPs the server (it hangs with connections open).
    pub fn pause(&self) {
        self.daemon.signal("STOP");
    }

    /// SIGCONTs a paused server.
    pub fn resume(&self) {
        self.daemon.signal("CONT");
    }

    /// Starts it again on the same port (killing it first if it still runs) and re-creates the
    /// bucket, **empty**: moto is in-memory, objects stored before are gone.
    pub fn restart(&mut self) {
        self.daemon.restart();
        self.create_bucket();
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) to 127.0.0.1:`port` and returns the status
/// code and the whole raw answer (head and body). Panics on I/O errors or a malformed answer.
///
/// It carries a dummy SigV4 `Authorization` header: moto does not check signatures, but answers
/// `403` to an *anonymous* GET of a private object.
pub fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let answer = exchange_until_close(port, &request, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("HTTP {method} {path} on 127.0.0.1:{port} failed: {e}"));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!("HTTP {method} {path} on 127.0.0.1:{port}: bad answer {answer:?}")
        });
    (status, answer)
}
