//! `vorte-cache tail` against real servers: a cache of the test invalidates keys, a tag, flushes
//! and emits an event; the running `tail --json` prints each with that cache's bus id and a lag,
//! and Ctrl-C ends it with exit 0 (`docs/cli.md#tail`).
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

mod live_support;
mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vorte_cache::{Config, Vorte};
use vorte_cache_tests::Stack;

use live_support::command;
use support::Setup;

/// `emit` publishes through the process's installed application: one test at a time installs
/// its own.
static APPLICATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Hands each line `from` prints to the returned channel, from a thread of its own.
fn lines(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for `child` to exit, at most `within`.
fn exit_of(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// Starts `vorte-cache <args>` (a `tail`) and waits until it follows the bus; the process and its
/// stdout's lines.
fn start_tail(setup: &Setup, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = command(setup)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail starts");
    let stdout = lines(child.stdout.take().expect("stdout"));
    let stderr = lines(child.stderr.take().expect("stderr"));
    // It reads the bus from the moment it says so.
    let ready = stderr
        .recv_timeout(Duration::from_secs(15))
        .expect("tail says it follows the bus");
    assert!(ready.contains("following the bus"), "{ready}");
    (child, stdout)
}

/// The next `n` lines, waiting at most 10 s in all.
async fn next_lines(stdout: mpsc::Receiver<String>, n: usize) -> Vec<String> {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut printed = Vec::new();
        while printed.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(line) => printed.push(line),
                Err(_) => break,
            }
        }
        printed
    })
    .await
    .expect("read")
}

/// Ctrl-C (SIGINT): `tail` exits 0.
async fn interrupt(mut child: Child) {
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let code = tokio::task::spawn_blocking(move || exit_of(&mut child, Duration::from_secs(10)))
        .await
        .expect("waited");
    assert_eq!(code, Some(0));
}

async fn tail_prints_each_invalidation_and_event_with_its_origin(stack: Stack) {
    let setup = Setup::new(stack, "");
    let (child, stdout) = start_tail(&setup, &["--json", "tail"]);

    let sender = setup.cache().await;
    let sender_id = sender.bus_origin().expect("a bus");
    sender.delete_many(&["x", "y", "z"]).await.expect("delete");
    sender.invalidate_tag("team:7").await.expect("tag");
    sender.flush().await.expect("flush");
    let app_id = {
        let _one_at_a_time = APPLICATION.lock().await;
        let app = Vorte::builder()
            .config(Config::from_toml_str(&setup.toml).expect("config parses"))
            .build()
            .await
            .expect("application");
        vorte_cache::emit("user.renamed", &json!({ "id": 7 }))
            .await
            .expect("emit");
        app.cache().bus_origin().expect("a bus")
    };

    let mut printed: Vec<Value> = next_lines(stdout, 4)
        .await
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    // Events travel on a stream of their own: not ordered with the invalidations.
    printed.sort_by_key(|line| line["kind"].as_str().unwrap_or_default().to_owned());
    let shown: Vec<(Value, Value, Value)> = printed
        .iter()
        .map(|l| (l["kind"].clone(), l["subject"].clone(), l["origin"].clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (json!("event"), json!("user.renamed"), json!(app_id)),
            (json!("flush"), Value::Null, json!(sender_id)),
            (json!("keys"), json!("x"), json!(sender_id)),
            (json!("tag"), json!("team:7"), json!(sender_id)),
        ]
    );
    assert_eq!(printed[2]["keys"], json!(["x", "y", "z"]));
    assert_eq!(printed[2]["key_count"], 3);
    for line in &printed {
        let lag = line["lag_ms"].as_f64().unwrap_or(-1.0);
        assert!(lag >= 0.0, "{line}");
        assert!(
            line["at"].as_str().is_some_and(|at| at.ends_with('Z')),
            "{line}"
        );
    }

    interrupt(child).await;
}

// The stacks with a bus: L2 redis, L3 redis-cluster, and memcached with a `[cache.bus]`.
vorte_cache_tests::on_every_stack!(@stack l1_redis, L1Redis, tail_prints_each_invalidation_and_event_with_its_origin);
vorte_cache_tests::on_every_stack!(@stack l1_cluster, L1Cluster, tail_prints_each_invalidation_and_event_with_its_origin);
vorte_cache_tests::on_every_stack!(@stack l1_memcached, L1Memcached, tail_prints_each_invalidation_and_event_with_its_origin);

/// Without `--json`: one line per notice, time, kind, subject (every key of a `delete_many`; a
/// flush names the prefix), origin and lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_readable_lines() {
    let setup = Setup::new(Stack::L1Redis, "");
    let (child, stdout) = start_tail(&setup, &["tail"]);
    let sender = setup.cache().await;
    let origin = sender.bus_origin().expect("a bus");
    sender.delete_many(&["a", "b"]).await.expect("delete");
    sender.flush().await.expect("flush");
    let printed = next_lines(stdout, 2).await;
    assert_eq!(printed.len(), 2, "{printed:?}");
    let keys: Vec<&str> = printed[0].split_whitespace().collect();
    assert!(keys[0].ends_with('Z'), "{keys:?}");
    assert_eq!(keys[1..6], ["keys", "a,", "b", "origin", origin.as_str()]);
    assert_eq!((keys[6], keys[8]), ("lag", "ms"), "{keys:?}");
    assert!(keys[7].parse::<u64>().is_ok(), "{keys:?}");
    let flush = format!(
        "flush  everything under {:?}  origin {origin}  lag ",
        setup.env.prefix()
    );
    assert!(printed[1].contains(&flush), "{}", printed[1]);
    interrupt(child).await;
}

/// A configuration with no bus (L1 + a directory) has nothing to follow: a clear error, exit 3.
#[test]
fn tail_without_a_bus_is_a_configuration_error() {
    let setup = Setup::new(Stack::L1File, "");
    let output = command(&setup)
        .args(["--json", "tail"])
        .output()
        .expect("tail runs");
    assert_eq!(output.status.code(), Some(3));
    let error: Value = serde_json::from_slice(&output.stderr).expect("a JSON error");
    assert_eq!(error["error"]["kind"], "config");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no invalidation bus"), "{message}");
    assert!(output.stdout.is_empty());
}
