//! A layer served by a store of your own: `Cache::builder(..).store(layer, store)`.
//!
//! The store here is the crate's in-memory `TestStore`; that every real backend keeps the same
//! store contract is `tests/store_contract.rs`.

use std::sync::Arc;

use vorte_cache::testing::{Op, TestStore};
use vorte_cache::{Cache, Config, ErrorKind, Layer};

fn config(toml: &str) -> vorte_cache::CacheConfig {
    match Config::from_toml_str(toml) {
        Ok(c) => c.cache,
        Err(e) => panic!("config: {e}"),
    }
}

/// A cache (a process, as far as L2 goes) whose L2 is `store`.
async fn over(config: &vorte_cache::CacheConfig, store: &TestStore) -> vorte_cache::Result<Cache> {
    Cache::builder(config)
        .store(Layer::L2, Arc::new(store.clone()))
        .build()
        .await
}

#[tokio::test]
async fn a_store_of_your_own_serves_a_layer_and_is_shared() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let config = config("[cache.layers.l1]\nmax_size = 100");
    let one = Cache::builder(&config)
        .store(Layer::L2, Arc::new(store.clone()))
        .build()
        .await?;
    one.set("user:1", &"Alice").await?;
    assert_eq!(
        store.calls(Op::Put, "user:1"),
        1,
        "the write went to the store"
    );

    // Another cache over the same store (another process, as far as L2 goes) reads it there.
    let two = Cache::builder(&config)
        .store(Layer::L2, Arc::new(store.clone()))
        .build()
        .await?;
    assert_eq!(two.get::<String>("user:1").await?.as_deref(), Some("Alice"));
    assert_eq!(
        store.calls(Op::Get, "user:1"),
        1,
        "read from L2 once, then L1"
    );
    assert_eq!(two.get::<String>("user:1").await?.as_deref(), Some("Alice"));
    assert_eq!(store.calls(Op::Get, "user:1"), 1);
    let stats = two.stats();
    assert_eq!(stats.l2_hits, 1);
    assert_eq!(stats.l1_hits, 1);
    Ok(())
}

/// The store replaces the backend the configuration names for the layer (nothing listens at that
/// address, and nothing connects to it), and the layer's other settings still apply.
#[tokio::test]
async fn a_store_given_for_a_configured_layer_keeps_its_settings() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let config = config(
        "[cache.layers.l1]\nmax_size = 100\n\
         [cache.layers.l2]\nbackend = \"memcached\"\nurl = \"memcached://127.0.0.1:1\"\n\
         max_value_bytes = 64",
    );
    let cache = Cache::builder(&config)
        .store(Layer::L2, Arc::new(store.clone()))
        .build()
        .await?;
    cache.set("small", &"ok").await?;
    cache.set("large", &"x".repeat(200)).await?;
    assert_eq!(store.calls(Op::Put, "small"), 1);
    assert_eq!(
        store.calls(Op::Put, "large"),
        0,
        "over the layer's max_value_bytes"
    );
    let l2 = cache
        .stats()
        .layers
        .into_iter()
        .find(|l| l.layer == Layer::L2);
    assert_eq!(l2.map(|l| l.too_large), Some(1));
    assert_eq!(
        cache.get::<String>("large").await?.map(|s| s.len()),
        Some(200),
        "L1 took it"
    );
    Ok(())
}

#[tokio::test]
async fn a_store_for_l1_or_two_for_one_layer_is_a_config_error() {
    let config = config("[cache.layers.l1]\nmax_size = 100");
    let l1 = Cache::builder(&config)
        .store(Layer::L1, Arc::new(TestStore::new()))
        .build()
        .await;
    assert_eq!(l1.map(|_| ()).map_err(|e| e.kind()), Err(ErrorKind::Config));
    let twice = Cache::builder(&config)
        .store(Layer::L3, Arc::new(TestStore::new()))
        .store(Layer::L3, Arc::new(TestStore::new()))
        .build()
        .await;
    let err = twice.map(|_| ()).err();
    assert_eq!(err.as_ref().map(|e| e.kind()), Some(ErrorKind::Config));
    assert!(
        err.is_some_and(|e| e.to_string().contains("two stores given for l3")),
        "the message names the layer"
    );
}

/// `stats()` reads counters only: it asks no store, however often a dashboard calls it. What the
/// layers hold is `usage()`, which asks each (a listing and its usage figures).
#[tokio::test]
async fn stats_ask_no_store_and_usage_asks_each() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let cache = Cache::builder(&config("[cache.layers.l1]\nmax_size = 100"))
        .store(Layer::L2, Arc::new(store.clone()))
        .build()
        .await?;
    cache.set("user:1", &"Alice").await?;
    assert_eq!(
        cache.get::<String>("user:1").await?.as_deref(),
        Some("Alice")
    );
    let asked = || {
        [Op::Usage, Op::List, Op::Get]
            .map(|op| store.calls(op, if op == Op::Get { "user:1" } else { "" }))
    };
    let before = asked();
    for _ in 0..100 {
        let stats = cache.stats();
        assert_eq!(stats.l1_hits, 1);
        assert!(stats.layer(Layer::L2).is_some());
    }
    assert_eq!(asked(), before, "stats() called the store");
    let usage = cache.usage().await?;
    assert_eq!(usage.total_keys, 1);
    assert_eq!(usage.layer(Layer::L2).map(|l| l.keys), Some(1));
    let after = asked();
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "usage() did not ask the store: {before:?} -> {after:?}"
    );
    Ok(())
}

/// `keys()` is every live key or an error, never a silent subset
/// (`docs/consistency.md#redis-cluster-topology-changes`): a listed key whose read fails (a layer
/// out, a slot moving) cannot be told live, so the call fails instead of leaving it out.
#[tokio::test]
async fn keys_fails_rather_than_drop_a_listed_key_it_cannot_read() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let config = config("[cache.layers.l1]\nmax_size = 100");
    let writer = over(&config, &store).await?;
    writer.set("user:1", &"Alice").await?;
    writer.set("user:2", &"Bob").await?;
    // Another process: its L1 is empty, so only L2's listing and reads can answer.
    let reader = over(&config, &store).await?;
    store.fail(
        Op::Get,
        "user:2",
        vorte_cache::Error::new(ErrorKind::Backend, "the slot is moving"),
    );
    match reader.keys("*").await {
        Ok(keys) => assert!(
            keys.iter().any(|k| k == "user:2"),
            "keys() left out a key it could not read: {keys:?}"
        ),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Backend, "{e}"),
    }
    Ok(())
}

/// A failed read is the listing's only when it is a read of a listed key: another call's read
/// that fails while `keys()` tells its keys live (here held at that moment, so the two overlap
/// every run) leaves the listing whole (`docs/consistency.md#redis-cluster-topology-changes`).
#[tokio::test]
async fn keys_is_not_failed_by_another_calls_error_meanwhile() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let config = config("[cache.layers.l1]\nmax_size = 100");
    let writer = over(&config, &store).await?;
    writer.set("user:1", &"Alice").await?;
    // Another process: its L1 is empty, so the listing reads `user:1` from L2.
    let reader = over(&config, &store).await?;
    let liveness_read = store.pause(Op::Get, "user:1");
    let listing = tokio::spawn({
        let reader = reader.clone();
        async move { reader.keys("user:*").await }
    });
    liveness_read.reached().await;
    store.fail(
        Op::Get,
        "session:9",
        vorte_cache::Error::new(ErrorKind::Backend, "another call's failure"),
    );
    // The other call: its failed read is skipped (a miss to it), and counted.
    assert_eq!(reader.get::<String>("session:9").await?, None);
    assert_eq!(reader.stats().layer(Layer::L2).map(|l| l.errors), Some(1));
    liveness_read.release();
    let keys = listing.await.expect("the listing task")?;
    assert_eq!(keys, ["user:1"]);
    Ok(())
}
