//! Adaptive caching (`docs/architecture.md#adaptive-loads`): a loader decides, from the value
//! it produced, the entry's TTL, tags and layers, or not to cache it, through `vorte_cache::load`.
//! On L1 alone and on L1 + a real Redis, for `get_or_set`; `#[cached]` bodies through
//! `Cache::global()`.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vorte_cache::{Cache, Freshness, Layer, cached, load};
use vorte_cache_tests::{Env, Stack, cached_now, eventually, on_l1_and_redis, stale_entry};

on_l1_and_redis!(
    the_loader_shortens_the_ttl,
    tags_added_by_the_loader_invalidate_the_entry,
    the_loader_chooses_the_layers,
    skip_answers_every_waiter_and_writes_nothing,
    skip_leaves_the_stale_value_in_place,
    single_flight_writes_once_with_the_adapted_ttl,
    an_early_refresh_adapts_too,
    a_load_left_running_by_a_soft_timeout_adapts_too,
    skip_under_a_distributed_lock_lets_the_next_process_load,
    a_tag_invalidated_during_the_load_refuses_the_tags_the_loader_adds,
);

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);

async fn the_loader_shortens_the_ttl(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let online: String = cache
        .get_or_set("user:online", || async {
            let user = "online".to_owned();
            assert!(load::ttl(SHORT), "inside a load");
            Ok::<_, std::io::Error>(user)
        })
        .ttl(LONG)
        .await
        .expect("load");
    let offline: String = cache
        .get_or_set("user:offline", || async {
            Ok::<_, std::io::Error>("offline".to_owned())
        })
        .ttl(LONG)
        .await
        .expect("load");
    assert_eq!((online.as_str(), offline.as_str()), ("online", "offline"));
    assert_eq!(
        cached_now(&cache, "user:online").await.as_deref(),
        Some("online")
    );
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert_eq!(
        cached_now(&cache, "user:online").await,
        None,
        "{stack:?}: the adapted TTL"
    );
    assert_eq!(
        cached_now(&cache, "user:offline").await.as_deref(),
        Some("offline"),
        "{stack:?}: the call's TTL"
    );
    if stack.has_redis() {
        // Another process reads the entry from L2, with the call's TTL, not the adapted one.
        let other = env.cache("").await;
        assert_eq!(cached_now(&other, "user:online").await, None);
        assert_eq!(
            cached_now(&other, "user:offline").await.as_deref(),
            Some("offline")
        );
    }
    assert!(!load::ttl(SHORT), "outside a load, nothing to adapt");
}

async fn tags_added_by_the_loader_invalidate_the_entry(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    for (key, region) in [("shop:1", "eu"), ("shop:2", "us")] {
        let v: String = cache
            .get_or_set(key, || async move {
                // The region is known only once the shop is loaded.
                load::tags([format!("region:{region}")]);
                Ok::<_, std::io::Error>(region.to_owned())
            })
            .tags(["shops"])
            .ttl(LONG)
            .await
            .expect("load");
        assert_eq!(v, region);
    }
    cache.invalidate_tag("region:eu").await.expect("invalidate");
    assert_eq!(
        cached_now(&cache, "shop:1").await,
        None,
        "{stack:?}: the loader's tag"
    );
    assert_eq!(cached_now(&cache, "shop:2").await.as_deref(), Some("us"));
    cache.invalidate_tag("shops").await.expect("invalidate");
    assert_eq!(
        cached_now(&cache, "shop:2").await,
        None,
        "{stack:?}: the call's tag stays"
    );
}

/// Loads `value` under `key`, its loader choosing `layers`.
async fn load_into(cache: &Cache, key: &str, layers: &'static [Layer], value: &str) -> String {
    let value = value.to_owned();
    cache
        .get_or_set(key, move || async move {
            load::layers(layers.iter().copied());
            Ok::<_, std::io::Error>(value)
        })
        .ttl(LONG)
        .await
        .expect("load")
}

async fn the_loader_chooses_the_layers(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    assert_eq!(
        load_into(&cache, "big", &[Layer::L1], "in l1 only").await,
        "in l1 only"
    );
    assert_eq!(
        cached_now(&cache, "big").await.as_deref(),
        Some("in l1 only")
    );
    if stack.has_redis() {
        let other = env.cache("").await;
        assert_eq!(cached_now(&other, "big").await, None, "not in L2");
        assert_eq!(
            load_into(&cache, "shared", &[Layer::L2], "in l2 only").await,
            "in l2 only"
        );
        assert_eq!(
            cached_now(&other, "shared").await.as_deref(),
            Some("in l2 only")
        );
    } else {
        // No enabled layer among those chosen: answered, not cached, and no error.
        assert_eq!(
            load_into(&cache, "nowhere", &[Layer::L2], "answered").await,
            "answered"
        );
        assert_eq!(cached_now(&cache, "nowhere").await, None);
    }
}

/// Eight concurrent callers of `key`, whose loader takes 200 ms, calls `decide` and returns its
/// run number: what each caller got, and how many loads ran.
async fn eight_callers(
    cache: &Arc<Cache>,
    key: &'static str,
    decide: fn() -> bool,
) -> (Vec<usize>, usize) {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (cache, runs) = (cache.clone(), runs.clone());
        callers.push(tokio::spawn(async move {
            cache
                .get_or_set(key, move || async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    assert!(decide(), "inside a load");
                    Ok::<_, std::io::Error>(n)
                })
                .ttl(LONG)
                .await
        }));
    }
    let mut got = Vec::new();
    for caller in callers {
        got.push(caller.await.expect("joins").expect("load"));
    }
    (got, runs.load(Ordering::SeqCst))
}

async fn skip_answers_every_waiter_and_writes_nothing(stack: Stack) {
    let env = Env::new(stack);
    let cache = Arc::new(env.cache("").await);
    let (got, runs) = eight_callers(&cache, "search:empty", load::skip).await;
    assert_eq!(
        (got, runs),
        (vec![1; 8], 1),
        "{stack:?}: the waiters got the leader's value"
    );
    assert_eq!(cache.get::<usize>("search:empty").await.expect("get"), None);
    if stack.has_redis() {
        let other = env.cache("").await;
        assert_eq!(other.get::<usize>("search:empty").await.expect("get"), None);
    }
}

async fn skip_leaves_the_stale_value_in_place(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    stale_entry(&cache, "quote", &[]).await;
    let skipped: String = cache
        .get_or_set("quote", || async {
            load::skip();
            Ok::<_, std::io::Error>("v2, not cached".to_owned())
        })
        .ttl(SHORT)
        .fail_safe(LONG)
        .await
        .expect("load");
    assert_eq!(skipped, "v2, not cached");
    // The stale v1 is still there: a failing loader gets it.
    let fetched = cache
        .get_or_set("quote", || async {
            Err::<String, _>(std::io::Error::other("source down"))
        })
        .ttl(SHORT)
        .fail_safe(LONG)
        .fetch()
        .await
        .expect("fail-safe");
    assert_eq!(
        (fetched.value.as_str(), fetched.freshness),
        ("v1", Freshness::Stale),
        "{stack:?}"
    );
}

async fn single_flight_writes_once_with_the_adapted_ttl(stack: Stack) {
    let env = Env::new(stack);
    let cache = Arc::new(env.cache("").await);
    let (got, runs) = eight_callers(&cache, "flight", || load::ttl(SHORT)).await;
    assert_eq!((got, runs), (vec![1; 8], 1), "{stack:?}");
    assert_eq!(cache.get::<usize>("flight").await.expect("get"), Some(1));
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert_eq!(
        cache.get::<usize>("flight").await.expect("get"),
        None,
        "{stack:?}"
    );
}

async fn an_early_refresh_adapts_too(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let call = |runs: Arc<AtomicUsize>| {
        cache
            .get_or_set("refreshed", move || async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                if n > 1 {
                    load::tags(["refreshed-values"]);
                }
                Ok::<_, std::io::Error>(n)
            })
            .ttl(Duration::from_millis(600))
            .early_refresh(0.5)
    };
    assert_eq!(call(runs.clone()).await.expect("load"), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        call(runs.clone()).await.expect("hit"),
        1,
        "the hit that starts the refresh"
    );
    assert!(
        eventually(async || cache.get::<usize>("refreshed").await.ok().flatten() == Some(2)).await,
        "{stack:?}: the refresh stored its value"
    );
    cache
        .invalidate_tag("refreshed-values")
        .await
        .expect("invalidate");
    assert_eq!(
        cache.get::<usize>("refreshed").await.expect("get"),
        None,
        "{stack:?}: the refresh's tag was stamped"
    );
}

async fn a_load_left_running_by_a_soft_timeout_adapts_too(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    stale_entry(&cache, "slow", &[]).await;
    let fetched = cache
        .get_or_set("slow", || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            load::tags(["slow-values"]);
            Ok::<_, std::io::Error>("v2".to_owned())
        })
        .ttl(LONG)
        .fail_safe(LONG)
        .soft_timeout(Duration::from_millis(50))
        .fetch()
        .await
        .expect("stand-in");
    assert_eq!(
        (fetched.value.as_str(), fetched.freshness),
        ("v1", Freshness::Stale)
    );
    assert!(
        eventually(async || cached_now(&cache, "slow").await.as_deref() == Some("v2")).await,
        "{stack:?}: the background load stored its value"
    );
    cache
        .invalidate_tag("slow-values")
        .await
        .expect("invalidate");
    assert_eq!(
        cached_now(&cache, "slow").await,
        None,
        "{stack:?}: with the loader's tag"
    );
}

// ===== #[cached] bodies, through Cache::global() =====

static SEARCH_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Caches only non-empty results, and a result with many hits for less long.
#[cached(ttl = 60, key = "adaptive:search:{query}")]
async fn search(query: &'static str) -> Result<Vec<String>, std::io::Error> {
    SEARCH_RUNS.fetch_add(1, Ordering::SeqCst);
    let hits: Vec<String> = query
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    if hits.is_empty() {
        load::skip();
    } else if hits.len() > 2 {
        load::ttl(SHORT);
    }
    Ok(hits)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_body_adapts_unchanged() {
    let global = Cache::global();
    assert!(search(" ").await.expect("runs").is_empty());
    assert_eq!(
        global
            .get::<Vec<String>>("adaptive:search: ")
            .await
            .expect("get"),
        None,
        "skipped"
    );
    assert!(search(" ").await.expect("runs").is_empty());
    assert_eq!(
        SEARCH_RUNS.load(Ordering::SeqCst),
        2,
        "a skipped result runs again"
    );
    assert_eq!(search("a b c").await.expect("runs").len(), 3);
    assert_eq!(search("a b").await.expect("runs").len(), 2);
    assert_eq!(SEARCH_RUNS.load(Ordering::SeqCst), 4);
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert_eq!(
        global
            .get::<Vec<String>>("adaptive:search:a b c")
            .await
            .expect("get"),
        None,
        "adapted TTL"
    );
    assert!(
        global
            .get::<Vec<String>>("adaptive:search:a b")
            .await
            .expect("get")
            .is_some(),
        "the function's TTL"
    );
}

static PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Negative caching: an absent profile is cached for `negative_ttl`, unless the body says
/// otherwise from the value.
#[cached(ttl = 60, negative_ttl = 60, key = "adaptive:profile:{id}")]
async fn profile(id: u32) -> Result<Option<String>, std::io::Error> {
    PROFILE_RUNS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        load::ttl(SHORT); // a missing profile may appear soon: its absence is cached briefly
        return Ok(None);
    }
    Ok(Some(format!("profile {id}")))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adapted_ttl_replaces_the_negative_ttl() {
    assert_eq!(profile(0).await.expect("runs"), None);
    assert_eq!(profile(0).await.expect("hit"), None);
    assert_eq!(
        PROFILE_RUNS.load(Ordering::SeqCst),
        1,
        "the absence is cached"
    );
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert_eq!(profile(0).await.expect("runs"), None);
    assert_eq!(
        PROFILE_RUNS.load(Ordering::SeqCst),
        2,
        "for the adapted TTL, not negative_ttl"
    );
}

async fn skip_under_a_distributed_lock_lets_the_next_process_load(stack: Stack) {
    let env = Env::new(stack);
    let (a, b) = (env.cache("").await, env.cache("").await);
    let runs = Arc::new(AtomicUsize::new(0));
    let call = |cache: &Cache, runs: Arc<AtomicUsize>| {
        let cache = cache.clone();
        async move {
            cache
                .get_or_set("locked", move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    load::skip();
                    Ok::<_, std::io::Error>("uncached".to_owned())
                })
                .ttl(LONG)
                .distributed_lock(true)
                .await
        }
    };
    let (first, second) = tokio::join!(call(&a, runs.clone()), call(&b, runs.clone()));
    assert_eq!(first.expect("load"), "uncached");
    assert_eq!(second.expect("load"), "uncached");
    // The lease ended without a value: the other process ran its own load.
    assert_eq!(runs.load(Ordering::SeqCst), 2, "{stack:?}");
    assert_eq!(cached_now(&a, "locked").await, None);
    assert_eq!(cached_now(&b, "locked").await, None);
}

async fn a_tag_invalidated_during_the_load_refuses_the_tags_the_loader_adds(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let v: String = cache
        .get_or_set("shop:3", || async {
            // The loader read the shop before its region's data was invalidated (here, in this
            // process: another's reaches it as a bus notice), and learns the region (its tag)
            // only from that old read.
            cache.invalidate_tag("region:ap").await.expect("invalidate");
            load::tags(["region:ap"]);
            Ok::<_, std::io::Error>("read before the invalidation".to_owned())
        })
        .ttl(LONG)
        .await
        .expect("load");
    assert_eq!(
        v, "read before the invalidation",
        "the caller has its answer"
    );
    assert_eq!(
        cached_now(&cache, "shop:3").await,
        None,
        "{stack:?}: a tag stamped after its invalidation would keep the old value"
    );
}
