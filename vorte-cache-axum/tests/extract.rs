//! The cache in handlers over real HTTP: `State<Cache>`, a state struct of the application's
//! own through `FromRef`, the `CacheHandle` extractor, and the clear 500 of a state without a
//! cache (`docs/web.md#the-cache-in-handlers`).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

mod http_client;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::get;
use http_client::{get as http_get, serve};
use vorte_cache::Cache;
use vorte_cache_axum::{AppCache, CacheHandle, MissingCache};

async fn l1_cache() -> Cache {
    Cache::from_config(&Default::default())
        .await
        .expect("cache")
}

/// Counts visits in the cache: each call is one `increment`.
async fn count(cache: &Cache) -> String {
    match cache.increment("visits", 1).await {
        Ok(n) => format!("visit {n}"),
        Err(e) => format!("error {e}"),
    }
}

#[derive(Clone)]
struct AppState {
    cache: AppCache,
    name: &'static str,
}

impl FromRef<AppState> for AppCache {
    fn from_ref(state: &AppState) -> AppCache {
        state.cache.clone()
    }
}

impl FromRef<AppState> for Cache {
    fn from_ref(state: &AppState) -> Cache {
        state
            .cache
            .get()
            .cloned()
            .expect("the test state holds a cache")
    }
}

#[tokio::test]
async fn the_cache_as_state_and_through_the_extractor_is_the_same_cache() {
    let cache = l1_cache().await;
    // The state is the cache itself: State<Cache> and CacheHandle both work.
    let app = Router::new()
        .route(
            "/state",
            get(|State(cache): State<Cache>| async move { count(&cache).await }),
        )
        .route(
            "/handle",
            get(|CacheHandle(cache): CacheHandle| async move { count(&cache).await }),
        )
        .with_state(cache.clone());
    let addr = serve(app).await;
    assert_eq!(http_get(addr, "/state", &[]).await.text(), "visit 1");
    assert_eq!(http_get(addr, "/handle", &[]).await.text(), "visit 2");
    assert_eq!(cache.get::<i64>("visits").await.expect("get"), Some(2));
}

#[tokio::test]
async fn a_state_struct_of_the_application_serves_both_through_from_ref() {
    let cache = l1_cache().await;
    let state = AppState {
        cache: AppCache::new(cache.clone()),
        name: "shop",
    };
    let app = Router::new()
        .route(
            "/handle",
            get(
                |CacheHandle(cache): CacheHandle, State(state): State<AppState>| async move {
                    format!("{} {}", state.name, count(&cache).await)
                },
            ),
        )
        .route(
            "/state",
            get(|State(cache): State<Cache>| async move { count(&cache).await }),
        )
        .with_state(state);
    let addr = serve(app).await;
    let reply = http_get(addr, "/handle", &[]).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "shop visit 1"));
    assert_eq!(http_get(addr, "/state", &[]).await.text(), "visit 2");
    assert_eq!(cache.get::<i64>("visits").await.expect("get"), Some(2));
}

#[tokio::test]
async fn a_state_without_a_cache_answers_a_clear_500() {
    let state = AppState {
        cache: AppCache::none(),
        name: "no cache",
    };
    let app = Router::new()
        .route(
            "/handle",
            get(|CacheHandle(cache): CacheHandle| async move { count(&cache).await }),
        )
        .route("/alive", get(|| async { "alive" }))
        .with_state(state);
    let addr = serve(app).await;
    let reply = http_get(addr, "/handle", &[]).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.text(), MissingCache::MESSAGE);
    assert!(reply.text().contains("holds no cache"));
    // The server goes on answering.
    assert_eq!(http_get(addr, "/alive", &[]).await.text(), "alive");
}
