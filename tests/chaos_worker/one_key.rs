//! The rows about one key: a stampede of concurrent misses (with the distributed lock or not),
//! and `#[cached]` reads with fail-safe on while the loader fails.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use vorte_cache::Cache;

use crate::mixed::{CallRecord, TaskLog};
use crate::state::State;

/// The stampede's one key.
pub(crate) const ONE_KEY: &str = "one";

/// `--stampede-tasks` tasks call `get_or_set` on one missing key at once; the distinct values
/// they got.
pub(crate) async fn stampede(state: &'static State, cache: &Cache) -> (TaskLog, u64) {
    if state.args.after_outage {
        outage_seen(cache).await;
    }
    let go = Arc::new(tokio::sync::Barrier::new(state.args.stampede_tasks));
    let tasks: Vec<_> = (0..state.args.stampede_tasks)
        .map(|_| {
            let (cache, go) = (cache.clone(), go.clone());
            tokio::spawn(async move {
                go.wait().await;
                let start_us = state.now();
                let got = one_call(state, &cache).await;
                (start_us, state.now().saturating_sub(start_us), got)
            })
        })
        .collect();
    let mut log = TaskLog::default();
    let mut values = BTreeSet::new();
    for task in tasks {
        let Ok((start_us, latency_us, got)) = task.await else {
            panic!("a stampede task panicked");
        };
        let error = match got {
            Ok(value) => {
                values.insert(value);
                None
            }
            Err(e) => Some((format!("{:?}", e.kind()), e.to_string())),
        };
        log.calls.push(CallRecord {
            start_us,
            latency_us,
            read: true,
            get_miss: false,
            error,
            call: "GetOrSet",
        });
    }
    (log, values.len() as u64)
}

/// Waits until the cache has suspended its local state for its bus (at most 10 s). Learning of
/// an outage forgets the loads in flight (`docs/guarantees.md#g4-gap-detection`): a stampede
/// that overlaps that moment loads once more, by design, and the row is about the outage itself.
async fn outage_seen(cache: &Cache) {
    for _ in 0..1_000 {
        if cache.stats().bus.is_some_and(|bus| bus.suspensions > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cache did not see its bus go down within 10 s");
}

async fn one_call(state: &'static State, cache: &Cache) -> vorte_cache::Result<String> {
    cache
        .get_or_set(ONE_KEY, || state.load(ONE_KEY))
        .distributed_lock(state.args.distributed_lock)
        .await
}

/// Reads with fail-safe over the hot keys at `--rate` until the run ends, `#[cached]` and
/// `get_or_set` in turn; the test turns the loader's failure on and off through the database.
pub(crate) async fn fail_safe(state: &'static State, cache: &Cache, deadline_us: u64) -> TaskLog {
    #[vorte_cache::cached(key = "fs:{key}", ttl = 1, fail_safe = "60s")]
    async fn read(key: &str) -> Result<String, crate::state::LoadError> {
        crate::state::state().load(key).await
    }
    let args = &state.args;
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log = TaskLog::default();
    let mut n = 0usize;
    loop {
        ticks.tick().await;
        let start_us = state.now();
        if start_us >= deadline_us {
            return log;
        }
        let key = args.key(n % args.hot.max(1));
        n += 1;
        let error = if n.is_multiple_of(2) {
            read(&key).await.err().map(|e| ("Loader".to_owned(), e.0))
        } else {
            let load_key = key.clone();
            cache
                .get_or_set(&key, move || async move { state.load(&load_key).await })
                .ttl(Duration::from_secs(1))
                .fail_safe(args.fail_safe_max)
                .fail_safe_throttle(args.fail_safe_throttle)
                .await
                .err()
                .map(|e| (format!("{:?}", e.kind()), e.to_string()))
        };
        log.calls.push(CallRecord {
            start_us,
            latency_us: state.now().saturating_sub(start_us),
            read: true,
            get_miss: false,
            error,
            call: "FailSafe",
        });
    }
}
