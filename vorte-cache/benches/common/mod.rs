//! What the benches share: the value they cache, and server child processes.

#![allow(dead_code, reason = "each bench uses a part of this module")]

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The value every bench caches: a small struct with two strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) email: String,
}

pub(crate) fn user(id: i64) -> User {
    User {
        id,
        name: "Alice Liddell".into(),
        email: "alice@example.com".into(),
    }
}

/// A free loopback port, never Redis's default 6379.
pub(crate) fn free_port() -> u16 {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    assert_ne!(port, 6379, "never the default Redis port");
    port
}

/// A server run as a child process; killed and reaped on drop.
pub(crate) struct ChildServer {
    child: Child,
}

impl ChildServer {
    /// Spawns `command`; `install` says how to get the binary when it is missing.
    pub(crate) fn spawn(command: &mut Command, install: &str) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the server ({install}): {e}"));
        ChildServer { child }
    }

    /// Polls `ready` until it holds, for at most `within`; fails if the server exits first.
    pub(crate) fn wait_until(
        &mut self,
        what: &str,
        within: Duration,
        mut ready: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !ready() {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                panic!("{what}: the server exited early with {status}");
            }
            assert!(Instant::now() < deadline, "{what}: not ready in {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
