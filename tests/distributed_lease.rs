//! Distributed single-flight across OS processes (issue 10, chaos row "2 processes × 5,000 tasks
//! miss one key with the distributed lock on"; `docs/leases.md`): two `vorte-lease-worker`
//! processes over one real `redis-server` (L2, the bus riding on it) miss one key from 5,000
//! tasks each, started together; the loader must run once in total.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use vorte_cache_tests::{shared_redis, unique_prefix};

/// Tasks per process.
const TASKS: usize = 5_000;

/// A worker process, killed on drop.
struct Worker {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(prefix: &str, key: &str, lock: &str) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vorte-lease-worker"))
            .args([
                &shared_redis().url(),
                prefix,
                key,
                &TASKS.to_string(),
                "50",
                lock,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("worker starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Worker { child, stdout }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("stdout");
        line.trim().to_owned()
    }

    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go")
            .and_then(|()| stdin.flush())
            .expect("go");
    }

    /// Its loader calls, after checking that every task answered without an error.
    fn loader_calls(&mut self) -> u64 {
        let first = self.line();
        let calls = first
            .strip_prefix("loader_calls ")
            .unwrap_or_else(|| panic!("expected loader_calls, got {first:?}"))
            .parse()
            .expect("a count");
        let window = self.line();
        let window: Vec<u64> = window
            .strip_prefix("loader_us ")
            .unwrap_or_else(|| panic!("expected loader_us, got {window:?}"))
            .split(' ')
            .map(|us| us.parse().expect("microseconds"))
            .collect();
        let mut waits = Vec::with_capacity(TASKS);
        loop {
            let line = self.line();
            if line == "done" {
                break;
            }
            let wait = line
                .strip_prefix("wait_us ")
                .unwrap_or_else(|| panic!("a task failed: {line}"));
            waits.push(wait.parse::<u64>().expect("microseconds"));
        }
        assert_eq!(waits.len(), TASKS, "every task answered");
        // P7's figure (`docs/performance.md#p7--distributed-single-flight`), not asserted.
        waits.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let p99 = waits[waits.len() * 99 / 100];
        eprintln!(
            "waiter p99: {:.1} ms (loader 50 ms); first answer {:.1} ms, median {:.1} ms, last \
             {:.1} ms; this process's load ran {:.1}-{:.1} ms",
            ms(p99),
            ms(waits[0]),
            ms(waits[waits.len() / 2]),
            ms(waits[waits.len() - 1]),
            ms(window[0]),
            ms(window[1]),
        );
        calls
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs two workers over one key; the loader calls of both.
fn run(lock: &str) -> u64 {
    let prefix = unique_prefix();
    let mut workers = [
        Worker::start(&prefix, "hot", lock),
        Worker::start(&prefix, "hot", lock),
    ];
    for worker in &mut workers {
        assert_eq!(worker.line(), "ready", "the worker did not start");
    }
    for worker in &mut workers {
        worker.go();
    }
    workers.iter_mut().map(Worker::loader_calls).sum()
}

#[test]
fn two_processes_miss_one_key_and_the_loader_runs_once() {
    assert_eq!(run("lock"), 1, "the loader ran once over both processes");
    // The same run without the lock, P7's peer: each process loads once.
    assert_eq!(run("nolock"), 2, "without the lock each process loads");
}
