//! One process of the distributed single-flight test (issue 10, chaos row "2 processes × 5,000
//! tasks miss one key with the distributed lock on", and P7 in `docs/performance.md`): it builds
//! a cache over the Redis at URL (L2, with the bus riding on it), prints `ready`, waits for `go`
//! on stdin so that every process starts at once, then makes TASKS concurrent `get_or_set` calls
//! of KEY whose loader counts its calls and sleeps LOADER_MS.
//!
//! ```text
//! vorte-lease-worker REDIS_URL KEY_PREFIX KEY TASKS [LOADER_MS [lock|nolock]]
//! ```
//!
//! `nolock` turns the distributed lock off (the peer of P7: each process loads once).
//!
//! It prints `loader_calls N` (how many times this process's loader ran), `loader_us START END`
//! (when its last load began and ended, µs from `go`; `0 0` when it ran none), then one
//! `wait_us MICROS` line per task (how long its call took, from `go`), then `done`. A call that
//! fails prints `error MESSAGE` instead of its `wait_us` line.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test worker fails loudly"
)]

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vorte_cache::{Cache, Config};

fn say(out: &mut impl Write, line: &str) {
    writeln!(out, "{line}").expect("stdout");
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let usage =
        "usage: vorte-lease-worker REDIS_URL KEY_PREFIX KEY TASKS [LOADER_MS [lock|nolock]]";
    let url = argv.next().expect(usage);
    let prefix = argv.next().expect(usage);
    let key = argv.next().expect(usage);
    let tasks: usize = argv.next().expect(usage).parse().expect("TASKS");
    let loader_ms: u64 = argv.next().map_or(50, |ms| ms.parse().expect("LOADER_MS"));
    let lock = argv.next().is_none_or(|l| l != "nolock");

    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\n"
    );
    let config = Config::from_toml_str(&toml).expect("config");
    let cache = Arc::new(Cache::from_config(&config.cache).await.expect("cache"));
    assert!(cache.has_bus(), "the bus rides on the L2 Redis");

    let mut out = std::io::stdout().lock();
    say(&mut out, "ready");
    out.flush().expect("flush");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    assert_eq!(line.trim(), "go", "the parent starts the run with `go`");

    let calls = Arc::new(AtomicU64::new(0));
    let window = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let runs: Vec<_> = (0..tasks)
        .map(|_| {
            let (cache, calls, key) = (cache.clone(), calls.clone(), key.clone());
            let window = window.clone();
            tokio::spawn(async move {
                let loaded = cache
                    .get_or_set(&key, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let us = || start.elapsed().as_micros() as u64;
                        window[0].store(us(), Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(loader_ms)).await;
                        window[1].store(us(), Ordering::SeqCst);
                        Ok::<_, std::io::Error>("loaded".to_owned())
                    })
                    .distributed_lock(lock);
                let outcome = loaded.await;
                (outcome, start.elapsed())
            })
        })
        .collect();
    let mut lines = Vec::with_capacity(tasks);
    for run in runs {
        let (outcome, waited) = run.await.expect("the task");
        lines.push(match outcome {
            Ok(_) => format!("wait_us {}", waited.as_micros()),
            Err(e) => format!("error {e}"),
        });
    }
    say(
        &mut out,
        &format!("loader_calls {}", calls.load(Ordering::SeqCst)),
    );
    say(
        &mut out,
        &format!(
            "loader_us {} {}",
            window[0].load(Ordering::SeqCst),
            window[1].load(Ordering::SeqCst)
        ),
    );
    for line in lines {
        say(&mut out, &line);
    }
    say(&mut out, "done");
    out.flush().expect("flush");
}
