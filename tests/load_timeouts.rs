//! Loader timeouts (`docs/resilience.md#loader-timeouts`): a soft timeout answers with the stale
//! value while the load goes on and stores its value; a hard timeout ends the wait with the stale
//! value or a `Timeout` error. On L1 alone and on L1 + a real Redis.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use vorte_cache::{Cache, ErrorKind, Freshness};
use vorte_cache_tests::{Env, STALE_KEEP, Stack, on_l1_and_redis, stale_entry};

/// [`stale_entry`]'s fail-safe window: 60 s.
const KEEP: Duration = STALE_KEEP;
const SLOW: Duration = Duration::from_millis(800);

/// A loader that takes `SLOW`, returns `value`, and sets `finished` when it does.
fn slow(
    value: &'static str,
    finished: &Arc<AtomicBool>,
) -> impl FnOnce() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<String, std::io::Error>> + Send>,
> + Send
+ 'static {
    let finished = finished.clone();
    move || {
        Box::pin(async move {
            tokio::time::sleep(SLOW).await;
            finished.store(true, Ordering::SeqCst);
            Ok(value.to_owned())
        })
    }
}

/// Waits out a `slow` load that went on in the background, and checks that its value landed.
async fn background_load_landed(cache: &Cache, finished: &AtomicBool, stack: Stack) {
    tokio::time::sleep(SLOW + Duration::from_millis(300)).await;
    assert!(
        finished.load(Ordering::SeqCst),
        "{stack:?}: in the background, the load went on"
    );
    assert_eq!(
        cache.get::<String>("k").await.expect("get").as_deref(),
        Some("v2"),
        "{stack:?}: the background load stored its value"
    );
}

async fn a_soft_timeout_serves_the_stale_value_and_the_load_completes(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    stale_entry(&cache, "k", &[]).await;
    let finished = Arc::new(AtomicBool::new(false));
    let got = cache
        .get_or_set("k", slow("v2", &finished))
        .ttl(Duration::from_secs(60))
        .fail_safe(KEEP)
        .soft_timeout(Duration::from_millis(50))
        .fetch()
        .await
        .expect("served");
    assert_eq!(
        (got.value.as_str(), got.freshness),
        ("v1", Freshness::Stale),
        "{stack:?}"
    );
    assert!(
        !finished.load(Ordering::SeqCst),
        "{stack:?}: answered before the load ended"
    );
    // Meanwhile, other callers are answered from the stand-in, without a load of their own.
    let runs = Arc::new(AtomicUsize::new(0));
    let meanwhile: String = cache
        .get_or_set("k", {
            let runs = runs.clone();
            move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>("v3".to_owned())
            }
        })
        .fail_safe(KEEP)
        .await
        .expect("served");
    assert_eq!(
        (meanwhile.as_str(), runs.load(Ordering::SeqCst)),
        ("v1", 0),
        "{stack:?}"
    );
    background_load_landed(&cache, &finished, stack).await;
    let stats = cache.stats();
    assert_eq!(
        (stats.loads.soft_timeouts, stats.loads.fail_safe_serves),
        (1, 1),
        "{stack:?}"
    );
    if stack != Stack::L1 {
        let other = env.cache("").await;
        assert_eq!(
            other.get::<String>("k").await.expect("get").as_deref(),
            Some("v2"),
            "{stack:?}: and in the shared layers"
        );
    }
}

async fn a_hard_timeout_without_a_stale_value_is_a_timeout_error(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let finished = Arc::new(AtomicBool::new(false));
    let err = cache
        .get_or_set("cold", slow("v", &finished))
        .hard_timeout(Duration::from_millis(100))
        .await
        .expect_err("nothing to stand in");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{stack:?}");
    assert!(!finished.load(Ordering::SeqCst));
    // Not marked `in_background`: the load was cancelled with the wait.
    tokio::time::sleep(SLOW + Duration::from_millis(200)).await;
    assert!(!finished.load(Ordering::SeqCst), "{stack:?}: cancelled");
    assert_eq!(cache.get::<String>("cold").await.expect("get"), None);
    let stats = cache.stats();
    assert_eq!(stats.loads.hard_timeouts, 1, "{stack:?}");
}

async fn a_hard_timeout_with_a_stale_value_serves_it(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    stale_entry(&cache, "k", &[]).await;
    let finished = Arc::new(AtomicBool::new(false));
    let got = cache
        .get_or_set("k", slow("v2", &finished))
        .fail_safe(KEEP)
        .hard_timeout(Duration::from_millis(100))
        .in_background()
        .fetch()
        .await
        .expect("served");
    assert_eq!(
        (got.value.as_str(), got.freshness),
        ("v1", Freshness::Stale),
        "{stack:?}"
    );
    background_load_landed(&cache, &finished, stack).await;
}

/// A soft timeout in the config applies to a call marked `in_background`; without a stale value
/// the caller waits for the load.
async fn the_config_soft_timeout_waits_when_nothing_can_stand_in(stack: Stack) {
    let env = Env::new(stack);
    let cache = env
        .cache("[cache.loads]\nsoft_timeout = 0.05\nfail_safe_max = 60")
        .await;
    let finished = Arc::new(AtomicBool::new(false));
    let got = cache
        .get_or_set("cold", slow("v", &finished))
        .in_background()
        .fetch()
        .await
        .expect("loaded");
    assert_eq!(
        (got.value.as_str(), got.freshness),
        ("v", Freshness::Fresh),
        "{stack:?}"
    );
    assert!(finished.load(Ordering::SeqCst));
}

on_l1_and_redis!(
    a_soft_timeout_serves_the_stale_value_and_the_load_completes,
    a_hard_timeout_without_a_stale_value_is_a_timeout_error,
    a_hard_timeout_with_a_stale_value_serves_it,
    the_config_soft_timeout_waits_when_nothing_can_stand_in,
);
