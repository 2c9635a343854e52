//! Conditional refresh (`docs/architecture.md#conditional-refresh`): a loader stores a validator
//! with its value; when the entry expires, the next load sees the stale value and the validator,
//! and may answer "not modified", which caches the stale value again with a fresh TTL without
//! producing it. On L1 alone and on L1 + a real Redis; `#[cached]` through `Cache::global()`.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vorte_cache::{Cache, cached, load};
use vorte_cache_tests::{Env, Stack, cached_now, eventually, on_l1_and_redis};

on_l1_and_redis!(
    not_modified_caches_the_stale_value_again_without_producing_it,
    a_changed_source_replaces_the_value_and_the_validator,
    one_not_modified_answers_every_waiter,
    an_invalidation_wins_over_a_concurrent_not_modified,
    an_entry_without_a_validator_is_not_kept_past_its_ttl,
    the_stale_value_kept_for_revalidation_does_not_stand_in_for_a_failure,
    an_early_refresh_revalidates_the_entry_it_replaces,
);

const TTL: Duration = Duration::from_millis(300);
const PAST_TTL: Duration = Duration::from_millis(450);

/// The origin: how many times it produced a page, and the page's current ETag.
#[derive(Default)]
struct Origin {
    produced: AtomicUsize,
    asked: AtomicUsize,
    version: AtomicUsize,
}

impl Origin {
    /// A load of `key` as an HTTP client would do it: a conditional request when the cache has
    /// a validator, a full one otherwise.
    async fn load(self: &Arc<Self>, cache: &Cache, key: &str) -> vorte_cache::Result<String> {
        let origin = self.clone();
        cache
            .get_or_set(key, move || async move {
                origin.asked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let current = format!("etag-{}", origin.version.load(Ordering::SeqCst));
                if load::validator().as_deref() == Some(current.as_str())
                    && let Some(stale) = load::not_modified::<String>()
                {
                    return Ok(stale);
                }
                origin.produced.fetch_add(1, Ordering::SeqCst);
                load::set_validator(current.clone());
                Ok::<_, std::io::Error>(format!("page at {current}"))
            })
            .ttl(TTL)
            .await
    }

    fn produced(&self) -> usize {
        self.produced.load(Ordering::SeqCst)
    }
}

/// A cache on `stack` whose `page`, loaded from a new origin with its validator, has expired.
async fn expired_page(stack: Stack) -> (Env, Cache, Arc<Origin>) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let origin = Arc::new(Origin::default());
    origin.load(&cache, "page").await.expect("load");
    tokio::time::sleep(PAST_TTL).await;
    (env, cache, origin)
}

/// How many times the origin produced the page, and how many loads of `cache` revalidated it.
fn counts(origin: &Origin, cache: &Cache) -> (usize, u64) {
    (origin.produced(), cache.stats().loads.not_modified)
}

async fn not_modified_caches_the_stale_value_again_without_producing_it(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let origin = Arc::new(Origin::default());
    assert_eq!(
        origin.load(&cache, "page").await.expect("load"),
        "page at etag-0"
    );
    assert_eq!(origin.produced(), 1);
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        cached_now(&cache, "page").await,
        None,
        "{stack:?}: expired for readers"
    );
    assert_eq!(
        origin.load(&cache, "page").await.expect("load"),
        "page at etag-0"
    );
    assert_eq!(
        origin.produced(),
        1,
        "{stack:?}: revalidated, not produced again"
    );
    assert_eq!(cache.stats().loads.not_modified, 1, "{stack:?}");
    assert_eq!(
        cached_now(&cache, "page").await.as_deref(),
        Some("page at etag-0"),
        "{stack:?}: fresh again"
    );
    if stack.has_redis() {
        // Written through like a load: another process reads it, with its validator.
        let other = env.cache("").await;
        assert_eq!(
            cached_now(&other, "page").await.as_deref(),
            Some("page at etag-0")
        );
        tokio::time::sleep(PAST_TTL).await;
        assert_eq!(
            origin.load(&other, "page").await.expect("load"),
            "page at etag-0"
        );
        assert_eq!(
            origin.produced(),
            1,
            "the other process revalidated from L2"
        );
        assert_eq!(other.stats().loads.not_modified, 1);
    } else {
        // It keeps its validator: the next expiry revalidates again.
        tokio::time::sleep(PAST_TTL).await;
        assert_eq!(
            origin.load(&cache, "page").await.expect("load"),
            "page at etag-0"
        );
        assert_eq!(counts(&origin, &cache), (1, 2));
    }
}

async fn a_changed_source_replaces_the_value_and_the_validator(stack: Stack) {
    let (_env, cache, origin) = expired_page(stack).await;
    origin.version.store(1, Ordering::SeqCst);
    assert_eq!(
        origin.load(&cache, "page").await.expect("load"),
        "page at etag-1"
    );
    assert_eq!(counts(&origin, &cache), (2, 0), "{stack:?}");
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        origin.load(&cache, "page").await.expect("load"),
        "page at etag-1"
    );
    assert_eq!(
        counts(&origin, &cache),
        (2, 1),
        "{stack:?}: the new validator was stored"
    );
}

async fn one_not_modified_answers_every_waiter(stack: Stack) {
    let (_env, cache, origin) = expired_page(stack).await;
    let cache = Arc::new(cache);
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (cache, origin) = (cache.clone(), origin.clone());
        callers.push(tokio::spawn(
            async move { origin.load(&cache, "page").await },
        ));
    }
    for caller in callers {
        assert_eq!(
            caller.await.expect("joins").expect("load"),
            "page at etag-0"
        );
    }
    assert_eq!(
        origin.asked.load(Ordering::SeqCst),
        2,
        "{stack:?}: one revalidation"
    );
    assert_eq!(counts(&origin, &cache), (1, 1), "{stack:?}");
}

async fn an_invalidation_wins_over_a_concurrent_not_modified(stack: Stack) {
    let (env, cache, _origin) = expired_page(stack).await;
    // Another process where the stack has shared layers; this one's own handle otherwise.
    let other = if stack.has_redis() {
        env.cache("").await
    } else {
        cache.clone()
    };
    let answered: String = cache
        .get_or_set("page", || async {
            assert_eq!(load::validator().as_deref(), Some("etag-0"));
            // The page is deleted at its source, and its entry invalidated, while the
            // conditional request is on its way; the source's answer is the old one.
            other.delete("page").await.expect("delete");
            let stale = load::not_modified::<String>().expect("a stale value");
            Ok::<_, std::io::Error>(stale)
        })
        .ttl(TTL)
        .await
        .expect("load");
    assert_eq!(answered, "page at etag-0", "the caller has its answer");
    assert_eq!(
        cached_now(&cache, "page").await,
        None,
        "{stack:?}: not resurrected"
    );
    assert_eq!(
        cached_now(&other, "page").await,
        None,
        "{stack:?}: nor in the other process"
    );
    if stack.has_redis() {
        let third = env.cache("").await;
        assert_eq!(
            cached_now(&third, "page").await,
            None,
            "{stack:?}: nor in L2"
        );
    }
}

async fn an_entry_without_a_validator_is_not_kept_past_its_ttl(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let plain: String = cache
        .get_or_set("plain", || async {
            Ok::<_, std::io::Error>("v1".to_owned())
        })
        .ttl(TTL)
        .await
        .expect("load");
    assert_eq!(plain, "v1");
    tokio::time::sleep(PAST_TTL).await;
    let again: String = cache
        .get_or_set("plain", || async {
            let seen = (load::validator(), load::not_modified::<String>());
            assert_eq!(seen, (None, None), "nothing kept to revalidate");
            Ok::<_, std::io::Error>("v2".to_owned())
        })
        .ttl(TTL)
        .await
        .expect("load");
    assert_eq!(again, "v2", "{stack:?}");
    assert_eq!(cache.stats().loads.not_modified, 0);
}

async fn the_stale_value_kept_for_revalidation_does_not_stand_in_for_a_failure(stack: Stack) {
    let (_env, cache, origin) = expired_page(stack).await;
    let failed = cache
        .get_or_set("page", || async {
            Err::<String, _>(std::io::Error::other("origin down"))
        })
        .ttl(TTL)
        .await;
    assert!(
        failed.is_err(),
        "{stack:?}: fail-safe is off, the error is the caller's"
    );
    // Still kept: the next load revalidates it.
    assert_eq!(
        origin.load(&cache, "page").await.expect("load"),
        "page at etag-0"
    );
    assert_eq!(counts(&origin, &cache), (1, 1), "{stack:?}");
}

async fn an_early_refresh_revalidates_the_entry_it_replaces(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let produced = Arc::new(AtomicUsize::new(0));
    let call = |produced: Arc<AtomicUsize>| {
        cache
            .get_or_set("hot-page", move || async move {
                // Given the entry still fresh: the source has not changed.
                if load::validator().as_deref() == Some("hot-etag")
                    && let Some(current) = load::not_modified::<String>()
                {
                    return Ok(current);
                }
                produced.fetch_add(1, Ordering::SeqCst);
                load::set_validator("hot-etag");
                Ok::<_, std::io::Error>("hot page".to_owned())
            })
            .ttl(Duration::from_millis(600))
            .early_refresh(0.5)
    };
    assert_eq!(call(produced.clone()).await.expect("load"), "hot page");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(call(produced.clone()).await.expect("hit"), "hot page");
    assert!(
        eventually(async || cache.stats().loads.not_modified == 1).await,
        "{stack:?}: the refresh revalidated"
    );
    assert_eq!(
        produced.load(Ordering::SeqCst),
        1,
        "{stack:?}: not produced again"
    );
    // Past the first TTL, the revalidated entry is still fresh.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        cached_now(&cache, "hot-page").await.as_deref(),
        Some("hot page"),
        "{stack:?}"
    );
}

// ===== #[cached] bodies, through Cache::global() =====

static FEED_PRODUCED: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "300ms", key = "conditional:feed:{name}")]
async fn feed(name: &'static str) -> Result<Vec<String>, std::io::Error> {
    if load::validator().as_deref() == Some("feed-etag")
        && let Some(stale) = load::not_modified::<Vec<String>>()
    {
        return Ok(stale);
    }
    FEED_PRODUCED.fetch_add(1, Ordering::SeqCst);
    load::set_validator("feed-etag");
    Ok(vec![format!("{name}: first post")])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_body_revalidates_unchanged() {
    let not_modified = || Cache::global().stats().loads.not_modified;
    let before = not_modified();
    assert_eq!(feed("news").await.expect("runs"), ["news: first post"]);
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        feed("news").await.expect("revalidates"),
        ["news: first post"]
    );
    assert_eq!(
        FEED_PRODUCED.load(Ordering::SeqCst),
        1,
        "not produced again"
    );
    assert_eq!(not_modified() - before, 1);
    assert_eq!(feed("news").await.expect("hit"), ["news: first post"]);
    assert_eq!(
        FEED_PRODUCED.load(Ordering::SeqCst),
        1,
        "a hit after the revalidation"
    );
}
