//! Deterministic interleavings of the engine against the in-memory `TestStore`, whose hooks hold a
//! chosen store call while the test runs another call beside it (`docs/guarantees.md`).

use std::sync::Arc;

use vorte_cache::testing::{Op, TestStore};
use vorte_cache::{Cache, Config, Layer};

fn config(toml: &str) -> vorte_cache::CacheConfig {
    match Config::from_toml_str(toml) {
        Ok(c) => c.cache,
        Err(e) => panic!("config: {e}"),
    }
}

/// `docs/guarantees.md#g2-invalidation`: once `delete(k)` has returned, `get(k)` in the same
/// process is `None`, also when a read ran while the delete was still changing the shared
/// layers. That read took its ticket after the delete had fenced the key, found the old value in
/// L2 (not yet deleted) and back-filled it into L1, where it outlived the delete. The delete now
/// fences its keys again once every layer has changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_during_a_delete_does_not_outlive_it() -> vorte_cache::Result<()> {
    for flush in [false, true] {
        let store = TestStore::new();
        let cache = Cache::builder(&config("[cache.layers.l1]\nmax_size = 100"))
            .store(Layer::L2, Arc::new(store.clone()))
            .build()
            .await?;
        cache.set("k", &"old").await?;
        // The delete has fenced the key and emptied L1, and is held before it changes L2.
        let pause = if flush {
            store.pause(Op::Clear, "")
        } else {
            store.pause(Op::DeleteMany, "k")
        };
        let deleting = {
            let cache = cache.clone();
            tokio::spawn(async move {
                if flush {
                    cache.flush().await.map(|()| true)
                } else {
                    cache.delete("k").await
                }
            })
        };
        pause.reached().await;
        // A read that began before the delete returned may see the old value...
        let during = cache.get::<String>("k").await?;
        assert_eq!(during.as_deref(), Some("old"), "flush: {flush}");
        pause.release();
        deleting.await.expect("the delete task")?;
        // ...but nothing after it may.
        assert_eq!(
            cache.get::<String>("k").await?,
            None,
            "flush: {flush}: the value read during the delete outlived it in L1"
        );
    }
    Ok(())
}

/// `docs/guarantees.md#g1-read-your-writes` whatever the sizes and selections: a `set` that
/// skips a layer (too large for it, or not selected by `.layer(..)`) removes that layer's older
/// value, or the next `get` would read it there. The first two reproductions: L1 with
/// `max_value_bytes = 64` kept `"small"` under a later 1,000-byte value, and a write to L2 alone
/// left L1's older value in front of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_skips_a_layer_removes_its_older_value() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let cache = Cache::builder(&config(
        "[cache.layers.l1]\nmax_size = 100\nmax_value_bytes = 64",
    ))
    .store(Layer::L2, Arc::new(store.clone()))
    .build()
    .await?;
    // Too large for L1.
    cache.set("k", &"small").await?;
    let large = "x".repeat(1_000);
    cache.set("k", &large).await?;
    assert_eq!(
        cache.get::<String>("k").await?.map(|v| v.len()),
        Some(1_000)
    );
    // Not selected: L2 alone.
    cache.set("j", &1).await?;
    cache.set("j", &2).layer(Layer::L2).await?;
    assert_eq!(cache.get::<i32>("j").await?, Some(2));
    // Not selected: L1 alone; L2's older value must not come back once L1 forgets.
    cache.set("i", &1).await?;
    cache.set("i", &2).layer(Layer::L1).await?;
    assert_eq!(cache.get::<i32>("i").await?, Some(2));
    let other = Cache::builder(&config("[cache.layers.l1]\nmax_size = 100"))
        .store(Layer::L2, Arc::new(store.clone()))
        .build()
        .await?;
    assert_ne!(
        other.get::<i32>("i").await?,
        Some(1),
        "L2 kept the value a later set replaced in L1 alone"
    );
    Ok(())
}
