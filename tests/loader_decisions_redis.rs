//! `#[cached]` bodies that adapt and revalidate, with the global cache on L1 + a real Redis: what
//! the body decided is what another process (a second cache over the same Redis) finds in L2
//! (`docs/architecture.md#adaptive-loads`, `docs/architecture.md#conditional-refresh`). One test,
//! because it installs the process-wide application.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vorte_cache::{Layer, Vorte, cached, load};
use vorte_cache_tests::{Env, Stack, cached_now};

static PRODUCED: AtomicUsize = AtomicUsize::new(0);

/// A private note stays in this process's L1; a public one goes to every layer, with a validator.
#[cached(ttl = "300ms", key = "decisions:note:{id}")]
async fn note(id: u32) -> Result<String, std::io::Error> {
    if load::validator().as_deref() == Some("note-etag")
        && let Some(stale) = load::not_modified::<String>()
    {
        return Ok(stale);
    }
    PRODUCED.fetch_add(1, Ordering::SeqCst);
    if id.is_multiple_of(2) {
        load::layers([Layer::L1]);
    } else {
        load::set_validator("note-etag");
    }
    Ok(format!("note {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_body_decides_and_revalidates_over_redis() {
    let env = Env::new(Stack::L1Redis);
    let app = Vorte::builder()
        .auto_load(false)
        .config(env.config("", ""))
        .build()
        .await
        .expect("build");
    let other = env.cache("").await;

    assert_eq!(note(2).await.expect("runs"), "note 2");
    assert_eq!(
        cached_now(app.cache(), "decisions:note:2").await.as_deref(),
        Some("note 2")
    );
    assert_eq!(
        cached_now(&other, "decisions:note:2").await,
        None,
        "L1 only: not in Redis"
    );

    assert_eq!(note(1).await.expect("runs"), "note 1");
    assert_eq!(
        cached_now(&other, "decisions:note:1").await.as_deref(),
        Some("note 1")
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(note(1).await.expect("revalidates"), "note 1");
    assert_eq!(
        PRODUCED.load(Ordering::SeqCst),
        2,
        "revalidated, not produced again"
    );
    assert_eq!(app.cache().stats().loads.not_modified, 1);
    assert_eq!(
        cached_now(&other, "decisions:note:1").await.as_deref(),
        Some("note 1"),
        "the re-cached value is written through to Redis"
    );
}
