//! The resilience arguments of `#[cached]` (`fail_safe`, `hard_timeout`, `soft_timeout`,
//! `early_refresh`), through `Cache::global()`: each changes what a caller of the function gets.
//!
//! Every test has its own function and keys: the tests run concurrently and share the
//! process-wide cache.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use vorte_cache::{Cache, ErrorKind, cached};
use vorte_cache_tests::eventually;

#[derive(Debug)]
enum MyErr {
    /// The body's own failure.
    Source,
    /// The cache's answer, such as a hard timeout.
    Cache(vorte_cache::Error),
}

impl From<vorte_cache::Error> for MyErr {
    fn from(e: vorte_cache::Error) -> Self {
        MyErr::Cache(e)
    }
}

// ===== fail_safe =====

static FAIL_SAFE_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Succeeds on its first call, then fails.
#[cached(ttl = "300ms", fail_safe = "60s", key = "resilience:fail-safe:{id}")]
async fn failing_after_first(id: u32) -> Result<String, MyErr> {
    match FAIL_SAFE_CALLS.fetch_add(1, Ordering::SeqCst) {
        0 => Ok(format!("v1 of {id}")),
        _ => Err(MyErr::Source),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_safe_serves_the_stale_value_when_the_body_fails() {
    assert_eq!(
        failing_after_first(1).await.ok().as_deref(),
        Some("v1 of 1")
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let after_ttl = failing_after_first(1).await;
    assert_eq!(
        FAIL_SAFE_CALLS.load(Ordering::SeqCst),
        2,
        "the expired entry ran the body again"
    );
    assert_eq!(
        after_ttl.ok().as_deref(),
        Some("v1 of 1"),
        "the body failed, so the stale value stands in for its error"
    );
}

// ===== hard_timeout =====

static HARD_FINISHED: AtomicBool = AtomicBool::new(false);

#[cached(ttl = 60, hard_timeout = "100ms", key = "resilience:hard:{id}")]
async fn slower_than_the_hard_timeout(id: u32) -> Result<String, MyErr> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    HARD_FINISHED.store(true, Ordering::SeqCst);
    Ok(id.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hard_timeout_without_a_stale_value_is_the_error_type_from_a_timeout() {
    let got = slower_than_the_hard_timeout(1).await;
    assert!(
        !HARD_FINISHED.load(Ordering::SeqCst),
        "the call ended before the body did"
    );
    match got {
        Err(MyErr::Cache(e)) => assert_eq!(e.kind(), ErrorKind::Timeout, "{e}"),
        other => panic!("expected MyErr::Cache(a Timeout error), got {other:?}"),
    }
}

// ===== soft_timeout =====

static SOFT_CALLS: AtomicUsize = AtomicUsize::new(0);
static SOFT_FINISHED: AtomicBool = AtomicBool::new(false);

/// Answers at once the first time; every later run takes 500 ms.
#[cached(
    ttl = "1s",
    fail_safe = "60s",
    soft_timeout = "50ms",
    key = "resilience:soft:{id}"
)]
async fn slow_after_first(id: u32) -> Result<String, MyErr> {
    if SOFT_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Ok(format!("v1 of {id}"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    SOFT_FINISHED.store(true, Ordering::SeqCst);
    Ok(format!("v2 of {id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_timeout_serves_the_stale_value_and_the_body_value_lands_later() {
    assert_eq!(slow_after_first(1).await.ok().as_deref(), Some("v1 of 1"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = slow_after_first(1).await;
    assert!(
        !SOFT_FINISHED.load(Ordering::SeqCst),
        "the caller did not wait for the slow body"
    );
    assert_eq!(stale.ok().as_deref(), Some("v1 of 1"), "the stale value");
    let landed = eventually(async || {
        Cache::global()
            .get::<String>("resilience:soft:1")
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some("v2 of 1")
    })
    .await;
    assert!(landed, "the body went on in the background and cached v2");
    assert_eq!(SOFT_CALLS.load(Ordering::SeqCst), 2, "one background run");
}

// ===== early_refresh =====

static EARLY_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Returns the number of runs so far; every run after the first takes 300 ms.
#[cached(ttl = "2s", early_refresh = 0.5, key = "resilience:early:{id}")]
async fn refreshed_early(id: u32) -> (u32, usize) {
    let run = EARLY_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if run > 1 {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (id, run)
}

#[tokio::test(flavor = "multi_thread")]
async fn early_refresh_reloads_in_the_background_after_the_fraction_of_the_ttl() {
    assert_eq!(refreshed_early(1).await, (1, 1));
    assert_eq!(refreshed_early(1).await, (1, 1), "a plain hit before half");
    assert_eq!(EARLY_CALLS.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        refreshed_early(1).await,
        (1, 1),
        "past half the TTL, the hit answers with what it found (a caller that waited for the \
         refresh would get run 2)"
    );
    let refreshed = eventually(async || {
        Cache::global()
            .get::<(u32, usize)>("resilience:early:1")
            .await
            .ok()
            .flatten()
            == Some((1, 2))
    })
    .await;
    assert!(
        refreshed,
        "the body ran again with no caller and its value landed"
    );
    assert_eq!(EARLY_CALLS.load(Ordering::SeqCst), 2, "one refresh");
}
