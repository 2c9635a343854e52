//! A caller waiting on another caller's load of its key waits at most `load_wait_timeout`, then
//! loads the value itself (`docs/guarantees.md#f6-a-hung-load-blocks-its-waiters-for-a-bounded-time`):
//! a hung loader does not block every caller of that key forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use vorte_cache::Cache;
use vorte_cache_tests::{Env, Stack};

/// A guard against a test that hangs: far longer than any wait the test expects.
const HANG: Duration = Duration::from_secs(60);

/// Leads a load of `key` that never finishes; returns once the load has begun.
async fn hang_a_load(cache: &Cache, key: &'static str) -> tokio::task::JoinHandle<()> {
    let started = Arc::new(Notify::new());
    let leader = tokio::spawn({
        let (cache, started) = (cache.clone(), started.clone());
        async move {
            let _ = cache
                .get_or_set(key, || async move {
                    started.notify_one();
                    std::future::pending::<Result<u64, std::io::Error>>().await
                })
                .await;
        }
    });
    started.notified().await;
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_stop_waiting_for_a_hung_load_and_share_one_load_of_their_own() {
    let env = Env::new(Stack::L1);
    let cache = env.cache("load_wait_timeout = 0.2").await;
    let hung = hang_a_load(&cache, "k").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set("k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(7u64)
                    })
                    .await
            })
        })
        .collect();
    for waiter in waiters {
        let answer = tokio::time::timeout(HANG, waiter)
            .await
            .expect("a caller still waits for the hung load");
        assert_eq!(answer.expect("task").expect("loads"), 7);
    }
    hung.abort();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the callers that gave up share one load"
    );
    let stats = cache.stats();
    assert_eq!(stats.load_wait_timeouts, 3);
    assert_eq!(cache.get::<u64>("k").await.expect("get"), Some(7));
}
