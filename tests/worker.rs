//! A separate OS process for the cross-process tests: it builds the application from the TOML file
//! named by its first argument and obeys one command per line on stdin, answering on stdout.
//!
//! - `incr KEY N`: increments KEY N times, then prints `done`;
//! - `get KEY`: prints `value JSON` or `value none`;
//! - `watch KEY`: reads KEY into L1, prints `ready`, then reads until KEY is gone and prints
//!   `gone UNIX_MICROS`;
//! - `slowload KEY`: starts `get_or_set(KEY)` whose loader prints `loading`, waits for
//!   `release`, and returns `"old"`; prints `loaded VALUE` when the call returns;
//! - `release`: lets the pending slow loader finish;
//! - `emit EVENT N`: emits EVENT with the payload `{"n": N}`, then prints `emitted`;
//! - `release-hold`: lets the pending `xp.hold` handler finish;
//! - `quit`.
//!
//! Its `#[on_event("xp.ping")]` handler prints `event N`; those of `xp.tick` and `xp.tock` print
//! `tick N` and `tock N` (the three names use the three event shards of a 3-shard bus). The
//! `xp.hold` handler prints `holding` and waits for `release-hold` (a slow handler that holds its
//! receiver up); the `xp.panic` handler panics.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test worker fails loudly"
)]

use std::io::{BufRead, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vorte_cache::{Cache, Config, Vorte, on_event};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("flush");
}

fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

#[on_event("xp.ping")]
async fn ping(n: u64) {
    say(&format!("event {n}"));
}

#[on_event("xp.tick")]
async fn tick(n: u64) {
    say(&format!("tick {n}"));
}

#[on_event("xp.tock")]
async fn tock(n: u64) {
    say(&format!("tock {n}"));
}

/// Releases the pending `xp.hold` handler.
static HOLD_RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[on_event("xp.hold")]
async fn hold() {
    say("holding");
    HOLD_RELEASE.notified().await;
}

#[on_event("xp.panic")]
async fn panics() {
    panic!("an xp.panic handler, panicking on purpose");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let path = std::env::args().nth(1).expect("usage: worker CONFIG.toml");
    let config = Config::from_toml_file(&path).expect("config");
    Vorte::builder()
        .auto_load(true)
        .config(config)
        .build()
        .await
        .expect("build");
    let cache = Cache::global();
    say("started");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut release: Option<tokio::sync::oneshot::Sender<()>> = None;
    while let Some(line) = rx.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["incr", key, n] => {
                for _ in 0..n.parse::<u64>().expect("count") {
                    cache.increment(key, 1).await.expect("increment");
                }
                say("done");
            }
            ["get", key] => match cache.get::<serde_json::Value>(key).await.expect("get") {
                Some(v) => say(&format!("value {v}")),
                None => say("value none"),
            },
            ["watch", key] => {
                assert!(
                    cache
                        .get::<serde_json::Value>(key)
                        .await
                        .expect("get")
                        .is_some(),
                    "{key} to watch"
                );
                say("ready");
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    if cache
                        .get::<serde_json::Value>(key)
                        .await
                        .expect("get")
                        .is_none()
                    {
                        say(&format!("gone {}", unix_micros()));
                        break;
                    }
                    if Instant::now() > deadline {
                        say("still-there");
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            ["slowload", key] => {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                release = Some(tx);
                let (cache, key) = (cache.clone(), key.to_string());
                tokio::spawn(async move {
                    let value = cache
                        .get_or_set(&key, || async move {
                            say("loading");
                            let _ = rx.await;
                            Ok::<_, std::io::Error>("old".to_string())
                        })
                        .await
                        .expect("get_or_set");
                    say(&format!("loaded {value}"));
                });
            }
            ["release"] => {
                if let Some(tx) = release.take() {
                    let _ = tx.send(());
                }
            }
            ["emit", event, n] => {
                let n: u64 = n.parse().expect("a number");
                vorte_cache::emit(event, &serde_json::json!({ "n": n }))
                    .await
                    .expect("emit");
                say("emitted");
            }
            ["release-hold"] => HOLD_RELEASE.notify_one(),
            ["quit"] => break,
            other => panic!("unknown command {other:?}"),
        }
    }
}
