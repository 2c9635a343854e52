//! The coarse clock's thread (`vorte-clock`, see `vorte-cache/src/clock.rs` and the `Cache`
//! docs) runs only while a cache that reads the clock lives, and starts again with the next one.
//!
//! One test in its own binary: it watches the process's threads, which other tests' caches
//! would disturb.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::time::{Duration, Instant};

use vorte_cache::{Cache, Config};
use vorte_cache_tests::{shared_redis, unique_prefix};

/// Whether this process has a thread named `vorte-clock` (Linux: `/proc/self/task/*/comm`).
fn clock_thread_runs() -> bool {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .any(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == "vorte-clock")
        })
}

/// Waits up to a second for the clock thread to be `running`.
async fn assert_clock_thread(running: bool, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while clock_thread_runs() != running {
        assert!(
            Instant::now() < deadline,
            "{when}: the clock thread should be {}",
            if running { "running" } else { "gone" }
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn cache(toml: &str) -> Cache {
    let config = Config::from_toml_str(toml).expect("config parses");
    Cache::from_config(&config.cache)
        .await
        .expect("cache builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_thread_runs_only_while_a_cache_lives() {
    assert_clock_thread(false, "before any cache").await;

    let first = cache("").await;
    assert_clock_thread(true, "with an L1 cache").await;
    let second = cache("").await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_clock_thread(true, "while a second cache lives").await;
    drop(second);
    assert_clock_thread(false, "once the last cache is dropped").await;

    // A new cache starts it again, and L1 expiry works on it: with no write in between, only the
    // thread moves the clock past the entry's deadline.
    let again = cache("").await;
    assert_clock_thread(true, "with a new cache").await;
    again
        .set("k", "v")
        .ttl(Duration::from_millis(100))
        .await
        .expect("set");
    assert_eq!(
        again.get::<String>("k").await.unwrap().as_deref(),
        Some("v")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        again.get::<String>("k").await.unwrap(),
        None,
        "the L1 entry expired"
    );
    drop(again);
    assert_clock_thread(false, "once that cache is dropped").await;

    // Without L1, a Redis layer's read batches hold it.
    let redis_only = cache(&format!(
        "[cache]\nkey_prefix = {:?}\n[cache.layers.l1]\nenabled = false\n\
         [cache.layers.l2]\nbackend = \"redis\"\nurl = {:?}\n",
        unique_prefix(),
        shared_redis().url()
    ))
    .await;
    assert_clock_thread(true, "with a Redis-only cache").await;
    redis_only.set("k", "v").await.expect("set");
    assert_eq!(
        redis_only.get::<String>("k").await.unwrap().as_deref(),
        Some("v")
    );
    drop(redis_only);
    assert_clock_thread(false, "once the Redis-only cache is dropped").await;
}
