//! Early refresh (`docs/resilience.md#early-refresh`): a hit late in an entry's TTL starts one
//! background load, so a hot key never expires in front of its callers. Eager refresh (a fraction
//! of the TTL) and XFetch (probabilistic, from the measured load time), on L1 alone and on L1 + a
//! real Redis.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vorte_cache::{Cache, Freshness, GetOrSet};
use vorte_cache_tests::{Env, Stack, on_l1_and_redis};

type Loader = Box<
    dyn FnOnce() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<usize, std::io::Error>> + Send>,
        > + Send,
>;

/// A loader that takes `took` and returns the number of loads so far.
fn counting(runs: &Arc<AtomicUsize>, took: Duration) -> Loader {
    let runs = runs.clone();
    Box::new(move || {
        Box::pin(async move {
            tokio::time::sleep(took).await;
            Ok(runs.fetch_add(1, Ordering::SeqCst) + 1)
        })
    })
}

fn call<'a>(
    cache: &'a Cache,
    runs: &Arc<AtomicUsize>,
    took: Duration,
) -> GetOrSet<'a, usize, Loader> {
    cache
        .get_or_set("hot", counting(runs, took))
        .ttl(Duration::from_millis(600))
}

async fn a_hit_late_in_the_ttl_refreshes_in_the_background(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let first = call(&cache, &runs, Duration::ZERO)
        .early_refresh(0.5)
        .await
        .expect("load");
    assert_eq!(first, 1);
    // Before half the TTL: a plain hit.
    let early = call(&cache, &runs, Duration::ZERO)
        .early_refresh(0.5)
        .await
        .expect("hit");
    assert_eq!((early, runs.load(Ordering::SeqCst)), (1, 1), "{stack:?}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Past half: the hit answers at once with the value it found, and starts one refresh.
    let late = call(&cache, &runs, Duration::from_millis(50))
        .early_refresh(0.5)
        .fetch()
        .await
        .expect("hit");
    assert_eq!(
        (late.value, late.freshness),
        (1, Freshness::Fresh),
        "{stack:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "{stack:?}: one refresh");
    assert_eq!(
        cache.get::<usize>("hot").await.expect("get"),
        Some(2),
        "{stack:?}"
    );
    assert_eq!(cache.stats().loads.early_refreshes, 1, "{stack:?}");
}

/// Calls the hot key every 10 ms for `span` with `refresh` set; returns (loads, early
/// refreshes, calls that were answered stale).
async fn hammer(
    cache: &Cache,
    span: Duration,
    refresh: impl Fn(GetOrSet<'_, usize, Loader>) -> GetOrSet<'_, usize, Loader>,
) -> (usize, u64, usize) {
    let runs = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut stale = 0;
    while started.elapsed() < span {
        let got = refresh(call(cache, &runs, Duration::from_millis(60)))
            .fetch()
            .await
            .expect("served");
        if got.freshness == Freshness::Stale {
            stale += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A refresh started by the last calls may still be loading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refreshes = cache.stats().loads.early_refreshes;
    (runs.load(Ordering::SeqCst), refreshes, stale)
}

/// Over several TTLs, every load after the first is a background refresh: no caller ever
/// waited for a load of the hot key.
async fn a_hot_key_never_expires_in_front_of_its_callers(stack: Stack) {
    let env = Env::new(stack);
    for (name, eager) in [("eager", true), ("xfetch", false)] {
        let cache = env.cache(&format!("key_prefix = \"er-{name}:\"")).await;
        let (runs, refreshes, stale) = hammer(&cache, Duration::from_millis(2_500), |c| {
            if eager {
                c.early_refresh(0.7)
            } else {
                c.xfetch(2.0)
            }
        })
        .await;
        assert!(
            runs >= 3,
            "{stack:?} {name}: refreshed over four TTLs ({runs} loads)"
        );
        assert_eq!(
            runs as u64 - 1,
            refreshes,
            "{stack:?} {name}: every load after the first ran in the background"
        );
        assert_eq!(stale, 0, "{stack:?} {name}");
    }
}

on_l1_and_redis!(
    a_hit_late_in_the_ttl_refreshes_in_the_background,
    a_hot_key_never_expires_in_front_of_its_callers,
);
