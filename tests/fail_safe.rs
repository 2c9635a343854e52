//! Fail-safe on each of the eight stacks (`docs/resilience.md#fail-safe`): an entry kept past its
//! TTL stands in for a loader that fails, in this process and in another one (a second cache over
//! the same servers), and never after an invalidation.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vorte_cache::{Cache, ErrorKind, Freshness};
use vorte_cache_tests::{Env, STALE_KEEP, STALE_TTL, Stack, on_every_stack, stale_entry};

on_every_stack!(
    a_failing_loader_gets_the_stale_value_in_every_process,
    no_stale_value_after_a_delete,
    no_stale_value_after_a_tag_invalidation,
    no_stale_value_after_a_flush,
    the_stale_window_outlives_a_layer_ttl_cap,
);

/// [`stale_entry`]'s TTL and fail-safe window: 300 ms and 60 s.
const TTL: Duration = STALE_TTL;
const KEEP: Duration = STALE_KEEP;

/// A call whose loader fails, counting its runs.
async fn failing_call(
    cache: &Cache,
    key: &str,
    runs: &Arc<AtomicUsize>,
) -> vorte_cache::Result<vorte_cache::Fetched<String>> {
    let runs = runs.clone();
    cache
        .get_or_set(key, move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Err::<String, _>(std::io::Error::other("the database is down"))
        })
        .ttl(TTL)
        .fail_safe(KEEP)
        .fetch()
        .await
}

async fn a_failing_loader_gets_the_stale_value_in_every_process(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    stale_entry(&cache, "k", &[]).await;
    assert_eq!(
        cache.get::<String>("k").await.expect("get"),
        None,
        "{stack:?}: a stale entry is a miss to a plain read"
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let got = failing_call(&cache, "k", &runs)
        .await
        .expect("the stale value, not the error");
    assert_eq!(got.value, "v1", "{stack:?}");
    assert_eq!(got.freshness, Freshness::Stale, "{stack:?}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "{stack:?}: the loader was tried"
    );
    let stats = cache.stats();
    assert_eq!(stats.loads.fail_safe_serves, 1, "{stack:?}");
    assert!(stats.loads.failures >= 1, "{stack:?}");
    // Cached again for the throttle period: the next call does not ask the failing source.
    let again = failing_call(&cache, "k", &runs).await.expect("served");
    assert_eq!(
        (again.value.as_str(), runs.load(Ordering::SeqCst)),
        ("v1", 1),
        "{stack:?}"
    );

    if stack.has_redis() || stack.has_file() || stack == Stack::L1S3 {
        // Another process finds the stale entry in the shared layers.
        let other = env.cache("").await;
        let other_runs = Arc::new(AtomicUsize::new(0));
        let got = failing_call(&other, "k", &other_runs)
            .await
            .expect("served in the other process");
        assert_eq!(got.value, "v1", "{stack:?}: another process");
    }
}

/// A layer's `ttl` (here every layer's, from `default_ttl`) caps how long an entry is fresh
/// there, not its fail-safe window: capped at the TTL, the window would be gone from every layer.
async fn the_stale_window_outlives_a_layer_ttl_cap(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("default_ttl = 0.3").await;
    stale_entry(&cache, "k", &[]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let got = failing_call(&cache, "k", &runs)
        .await
        .expect("the stale value, not the error");
    assert_eq!(
        (got.value.as_str(), got.freshness),
        ("v1", Freshness::Stale),
        "{stack:?}"
    );
}

/// What `invalidate` does between the entry going stale and the failing load.
async fn no_stale_value_after(stack: Stack, what: &str) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    stale_entry(&cache, "k", &["t"]).await;
    match what {
        "delete" => {
            cache.delete("k").await.expect("delete");
        }
        "tag" => cache.invalidate_tag("t").await.expect("invalidate_tag"),
        _ => cache.flush().await.expect("flush"),
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let err = failing_call(&cache, "k", &runs)
        .await
        .expect_err("after an invalidation the loader's error reaches the caller");
    assert_eq!(err.kind(), ErrorKind::Loader, "{stack:?} {what}");
    assert_eq!(cache.stats().loads.fail_safe_serves, 0, "{stack:?} {what}");
    if stack.has_redis() || stack.has_file() || stack == Stack::L1S3 {
        let other = env.cache("").await;
        let err = failing_call(&other, "k", &runs)
            .await
            .expect_err("nor in another process");
        assert_eq!(
            err.kind(),
            ErrorKind::Loader,
            "{stack:?} {what}: another process"
        );
    }
}

async fn no_stale_value_after_a_delete(stack: Stack) {
    no_stale_value_after(stack, "delete").await;
}

async fn no_stale_value_after_a_tag_invalidation(stack: Stack) {
    no_stale_value_after(stack, "tag").await;
}

async fn no_stale_value_after_a_flush(stack: Stack) {
    no_stale_value_after(stack, "flush").await;
}

/// `docs/consistency.md#stale-values-background-loads-and-refreshes`: a stale value that stands in
/// while a delete is still on its way down (L2 tombstoned, L3 not yet) may answer that concurrent
/// caller, but caching it again may not replace the tombstone it saw in L2, or the deleting
/// process would find it there after its delete returned. Deterministic, over two `TestStore`s,
/// the second cache standing in for another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_stand_in_never_replaces_a_delete_s_tombstone() {
    use vorte_cache::Layer;
    use vorte_cache::testing::{Op, TestStore};
    let (l2, l3) = (TestStore::new(), TestStore::new());
    let config = vorte_cache::Config::from_toml_str("[cache.layers.l1]\nmax_size = 100")
        .expect("config")
        .cache;
    let build = || {
        Cache::builder(&config)
            .store(Layer::L2, Arc::new(l2.clone()))
            .store(Layer::L3, Arc::new(l3.clone()))
            .build()
    };
    let (deleter, other) = (build().await.expect("cache"), build().await.expect("cache"));
    stale_entry(&deleter, "k", &[]).await;
    // The delete has tombstoned L2 and is held before it changes L3.
    let pause = l3.pause(Op::DeleteMany, "k");
    let deleting = {
        let deleter = deleter.clone();
        tokio::spawn(async move { deleter.delete("k").await })
    };
    pause.reached().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let during = failing_call(&other, "k", &runs)
        .await
        .expect("concurrent with the delete");
    assert_eq!(during.freshness, Freshness::Stale);
    pause.release();
    deleting.await.expect("the delete task").expect("delete");
    let after = failing_call(&deleter, "k", &runs).await;
    assert_eq!(
        after.map(|f| f.value).map_err(|e| e.kind()),
        Err(ErrorKind::Loader),
        "the stale value came back after the delete returned"
    );
}
