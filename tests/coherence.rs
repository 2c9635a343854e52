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

/// Two caches over one `TestStore` in L2: two processes sharing a Redis, without a bus.
async fn two_processes(store: &TestStore) -> vorte_cache::Result<(Cache, Cache)> {
    Ok((process(store).await?, process(store).await?))
}

/// One cache with L1 and the given stores: one process of several over the same stores.
async fn open_over(stores: [(Layer, TestStore); 2]) -> vorte_cache::Result<Cache> {
    let cfg = config("[cache.layers.l1]\nmax_size = 100");
    let mut builder = Cache::builder(&cfg);
    for (layer, store) in stores {
        builder = builder.store(layer, Arc::new(store));
    }
    builder.build().await
}

/// One cache with L1 and `store` in L2.
async fn process(store: &TestStore) -> vorte_cache::Result<Cache> {
    Cache::builder(&config("[cache.layers.l1]\nmax_size = 100"))
        .store(Layer::L2, Arc::new(store.clone()))
        .build()
        .await
}

/// `docs/guarantees.md#g3-no-resurrection` refuses only the loads that began before a delete.
/// The fourth reproduction: after `delete(k)`, every load for the tombstone's 60 s failed
/// its compare-and-set (it expected an empty slot and found the tombstone), so nothing was cached,
/// not even in L1, and the loader ran on every call. A load now expects exactly what it saw in
/// the shared layers when it began (the delete's tombstone): it is cached as usual, in every
/// layer, while a load that began before the delete still cannot write back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_after_a_delete_is_cached() -> vorte_cache::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let store = TestStore::new();
    let (a, b) = two_processes(&store).await?;
    a.set("k", &"v0").await?;
    a.delete("k").await?;
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        let v: String = a
            .get_or_set("k", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>("v1".to_owned())
            })
            .await?;
        assert_eq!(v, "v1");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the loader ran on every call after the delete: nothing was cached"
    );
    assert_eq!(
        b.get::<String>("k").await?.as_deref(),
        Some("v1"),
        "the load after the delete did not reach the shared layer"
    );

    // A load that began before another process's delete still cannot write back.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loading = {
        let a = a.clone();
        tokio::spawn(async move {
            a.get_or_set("j", || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok::<_, std::io::Error>("old".to_owned())
            })
            .await
        })
    };
    started_rx.await.expect("the loader starts");
    b.delete("j").await?;
    let _ = release_tx.send(());
    let loaded: String = loading.await.expect("the load task")?;
    assert_eq!(loaded, "old", "its own caller gets what it loaded");
    assert_eq!(
        process(&store).await?.get::<String>("j").await?,
        None,
        "a load that began before the delete wrote its value back"
    );
    Ok(())
}

/// `docs/guarantees.md#g2-invalidation` across processes: a `set` from another process that lands
/// while this process's own slower `set` of the key is between its layers is not lost in this
/// process's L1. A's set had put L2 and was waiting on L4; B's set put L2 after it and announced
/// itself; A applied the notice (nothing in L1 yet), then inserted its own older value into L1
/// and served it for the L1 TTL while every other process read B's. A set's L1 insert is now
/// refused when another process's notice of the key arrived after the set recorded itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_set_from_another_process_is_not_lost_in_l1() -> vorte_cache::Result<()> {
    let redis = vorte_cache_tests::servers::RedisServer::start();
    let (l2, l4) = (TestStore::new(), TestStore::new());
    let toml = format!(
        "[cache]\nkey_prefix = \"xset\"\n[cache.layers.l1]\nmax_size = 100\n[cache.bus]\nurl = {:?}",
        redis.url()
    );
    let cfg = config(&toml);
    let open = || {
        Cache::builder(&cfg)
            .store(Layer::L2, Arc::new(l2.clone()))
            .store(Layer::L4, Arc::new(l4.clone()))
            .build()
    };
    let (a, b) = (open().await?, open().await?);
    // A probe key in A's L1 that B then deletes: once A no longer has it, A has applied every
    // notice B sent before the delete.
    a.set("probe", &0).await?;
    // A's set: L2 written, its L4 put held.
    let held = l4.pause(Op::Put, "k");
    let setting = {
        let a = a.clone();
        tokio::spawn(async move { a.set("k", &"from a").await })
    };
    held.reached().await;
    b.set("k", &"from b").await?;
    b.delete("probe").await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while a.get::<i32>("probe").await?.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never received B's notices"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    held.release();
    setting.await.expect("A's set task")?;
    let shared = b.get::<String>("k").await?;
    assert_eq!(
        shared.as_deref(),
        Some("from b"),
        "L2 holds B's later write"
    );
    assert_eq!(
        a.get::<String>("k").await?,
        shared,
        "A's L1 kept its own older value over B's later set"
    );
    Ok(())
}

/// `docs/consistency.md#cleanup-never-removes-a-newer-write`: a read that finds a useless entry
/// (corrupt here; expired or invalidated alike) no longer removes it unconditionally. It removed
/// whatever was there by then: here the tombstone another process's delete wrote meanwhile, after
/// which a load that began before that delete could write its old value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cleaning_up_does_not_remove_a_later_tombstone() -> vorte_cache::Result<()> {
    use vorte_cache::store::{Slot, Store};
    use vorte_cache::testing::Call;
    let store = TestStore::new();
    let (a, b) = two_processes(&store).await?;
    store
        .put(
            Slot::Entry("k"),
            bytes::Bytes::from_static(b"not an envelope"),
            std::time::Duration::from_secs(60),
        )
        .await?;
    // A has read the corrupt bytes and not yet acted on them.
    let read = store.pause_call(Call::new(Op::Get, "k").after_effect());
    let reading = {
        let a = a.clone();
        tokio::spawn(async move { a.get::<String>("k").await })
    };
    read.reached().await;
    b.delete("k").await?;
    read.release();
    assert_eq!(reading.await.expect("the read task")?, None);
    let left = store.get(Slot::Entry("k")).await?;
    assert!(
        left.as_deref()
            .is_some_and(vorte_cache::store::is_tombstone),
        "the read's clean-up removed the delete's tombstone: {left:?}"
    );
    Ok(())
}

/// `docs/guarantees.md#g5-exact-counters` for reads: after concurrent increments from two
/// processes, no layer keeps an older count in front of the authority. The authority (L3 here)
/// decides each increment by compare-and-set, but each process then copied its result into L2 with
/// a plain put, in no order: A's copy of 1, held, landed after B's copy of 2. Copies below L1 are
/// now invalidated (a new tombstone), so reads fall through to the authority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_copies_never_hold_an_older_count() -> vorte_cache::Result<()> {
    let (l2, l3) = (TestStore::new(), TestStore::new());
    let open = || open_over([(Layer::L2, l2.clone()), (Layer::L3, l3.clone())]);
    let (a, b) = (open().await?, open().await?);
    // A's copy of its result into L2, held before it is written.
    let held = l2.pause(Op::Put, "c");
    let mut incrementing = {
        let a = a.clone();
        tokio::spawn(async move { a.increment("c", 1).await })
    };
    tokio::select! {
        () = held.reached() => {}
        done = &mut incrementing => {
            // No plain copy below L1: nothing to hold.
            assert_eq!(done.expect("A's increment task")?, 1);
        }
    }
    assert_eq!(b.increment("c", 1).await?, 2);
    held.release();
    if !incrementing.is_finished() {
        assert_eq!(incrementing.await.expect("A's increment task")?, 1);
    }
    assert_eq!(
        open().await?.get::<i64>("c").await?,
        Some(2),
        "a later reader got an older count"
    );
    Ok(())
}

/// `docs/guarantees.md#g3-no-resurrection` across a `flush`: a back-fill (or a load) in another
/// process that began before the flush cannot re-fill the shared layers it cleared. Flush left no
/// tombstone, and B's compare-and-set expecting the empty L2 it had seen succeeded on the slot the
/// flush had just emptied, so every process read the pre-flush value from L2 afterwards. Entries
/// below L1 now carry the cache's flush epoch, checked like a tag, and `flush` moves it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_began_before_a_flush_does_not_survive_it() -> vorte_cache::Result<()> {
    let (l2, l4) = (TestStore::new(), TestStore::new());
    let open = || open_over([(Layer::L2, l2.clone()), (Layer::L4, l4.clone())]);
    let (a, b) = (open().await?, open().await?);
    a.set("k", &"old").await?;
    // L2 evicted it (memory pressure); L4 still has it.
    {
        use vorte_cache::store::{Slot, Store};
        l2.delete(Slot::Entry("k")).await?;
    }
    // B found "k" in L4 and is about to back-fill L2, which it saw empty.
    let held = l2.pause(Op::CompareAndSet, "k");
    let reading = {
        let b = b.clone();
        tokio::spawn(async move { b.get::<String>("k").await })
    };
    held.reached().await;
    a.flush().await?;
    held.release();
    assert_eq!(
        reading.await.expect("B's read")?.as_deref(),
        Some("old"),
        "B's read began before the flush"
    );
    assert_eq!(
        open().await?.get::<String>("k").await?,
        None,
        "a back-fill that began before the flush re-filled L2 after it"
    );
    Ok(())
}

/// Waits (10 s at most, else fails with `what`) until a new process over `store` misses `key`:
/// a retry in the background has delivered an owed invalidation. A new process each time: one
/// that read the old value would keep it in its L1.
async fn until_a_new_process_misses(
    store: &TestStore,
    key: &str,
    what: &str,
) -> vorte_cache::Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while process(store).await?.get::<String>(key).await?.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back`: a delete that fails on
/// one layer still returns `Ok` (the others took it), but that layer no longer serves the deleted
/// value: the key is not read there until a retry in the background has delivered the delete,
/// and the retry does deliver it (the layer's stats count both). Before, the delete was logged and
/// forgotten, and the very next `get` in the deleting process read the value back from L2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_failed_on_a_layer_is_retried_and_that_layer_is_not_read_meanwhile()
-> vorte_cache::Result<()> {
    let store = TestStore::new();
    let a = process(&store).await?;
    a.set("k", &"old").await?;
    store.fail(
        Op::DeleteMany,
        "k",
        vorte_cache::Error::backend("out of memory"),
    );
    assert!(a.delete("k").await?, "L1 held the key");
    assert_eq!(
        a.get::<String>("k").await?,
        None,
        "the deleting process read the deleted value back from the layer that missed the delete"
    );
    let pending = |s: &vorte_cache::CacheStats| {
        s.layers
            .iter()
            .find(|l| l.layer == Layer::L2)
            .map(|l| (l.recovery_pending, l.recovered))
    };
    until_a_new_process_misses(&store, "k", "the delete never reached L2").await?;
    assert_eq!(pending(&a.stats()), Some((0, 1)));
    Ok(())
}

/// The same for a `flush` that failed on a layer: the call reports the error, the layer is not
/// read at all until a retried clear has emptied it, and the retry does empty it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_failed_on_a_layer_is_retried_and_that_layer_is_not_read_meanwhile()
-> vorte_cache::Result<()> {
    use vorte_cache::store::{Slot, Store};
    let store = TestStore::new();
    let (a, _) = two_processes(&store).await?;
    a.set("k", &"old").await?;
    store.fail(Op::Clear, "", vorte_cache::Error::backend("unreachable"));
    assert!(
        a.flush().await.is_err(),
        "a flush that missed a layer says so"
    );
    assert_eq!(
        a.get::<String>("k").await?,
        None,
        "the layer that missed the flush was read"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.get(Slot::Entry("k")).await?.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flush never reached L2"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let l2 = a.stats().layers.into_iter().find(|l| l.layer == Layer::L2);
    assert_eq!(l2.map(|l| (l.recovery_pending, l.recovered)), Some((0, 1)));
    Ok(())
}

/// A cache whose L4 is `store`, written behind (queue of `queue`), with L1 settings `l1`.
async fn write_behind_over(
    store: &TestStore,
    queue: usize,
    l1: &str,
) -> vorte_cache::Result<Cache> {
    let cfg = config(&format!(
        "[cache.layers.l1]\n{l1}\n[cache.layers.l4]\nbackend = \"file\"\npath = \"unused\"\nwrite_policy = \"behind\"\nwrite_behind_queue = {queue}"
    ));
    Cache::builder(&cfg)
        .store(Layer::L4, Arc::new(store.clone()))
        .build()
        .await
}

/// Waits until `store` holds something under `key` that `probe` reads as `want`.
async fn until_l4_reads(store: &TestStore, key: &str, want: i64) -> vorte_cache::Result<()> {
    let probe = process_l4(store).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while probe.get::<i64>(key).await? != Some(want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "L4 never read {want} under {key}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A cache with L4 alone over `store`, written through: what any other process reads there.
async fn process_l4(store: &TestStore) -> vorte_cache::Result<Cache> {
    let cfg = config("[cache.layers.l1]\nenabled = false");
    Cache::builder(&cfg)
        .store(Layer::L4, Arc::new(store.clone()))
        .build()
        .await
}

/// Write-behind loses no write: more than 10,000 distinct keys written while a write of `k`
/// waited in the queue collapsed the fence into a floor, and the writer silently dropped every
/// queued write below it, so L4 kept `k`'s previous value (the review's reproduction). A queued
/// write is now superseded only by a later write or a delete of its own key.
#[tokio::test(flavor = "current_thread")]
async fn write_behind_drops_no_write_when_many_keys_are_written() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let cache = write_behind_over(&store, 20_000, "max_size = 100").await?;
    cache.set("k", &1i64).await?;
    until_l4_reads(&store, "k", 1).await?;
    // No await reaches the writer until all of these are queued (one thread).
    cache.set("k", &2i64).await?;
    for i in 0..10_001 {
        cache.set(&format!("other:{i}"), &i).await?;
    }
    until_l4_reads(&store, "k", 2).await
}

/// `docs/guarantees.md#g1-read-your-writes` with a write-behind layer: a write still waiting for
/// L4 is what a read finds there, not L4's older value, when L1 no longer has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_write_is_what_a_read_finds_below_l1() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let cache = write_behind_over(&store, 1_000, "ttl = 0.05").await?;
    cache.set("k", &1i64).await?;
    until_l4_reads(&store, "k", 1).await?;
    // The writer has read what L4 holds and is about to replace it.
    let held = store.pause(Op::CompareAndSet, "k");
    cache.set("k", &2i64).await?;
    held.reached().await;
    // L1 forgets "k" (its TTL is 50 ms; L4's is the default 300 s).
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let read = cache.get::<i64>("k").await;
    held.release();
    assert_eq!(
        read?,
        Some(2),
        "a read found L4's older value under a queued write"
    );
    Ok(())
}

/// `docs/guarantees.md#g3-no-resurrection` for write-behind, across processes: a write queued in
/// one process before another process deleted the key does not land after the delete. The writer
/// wrote it unconditionally, and its check for deletes afterwards only knew of this process's own.
/// It now leaves alone a layer that holds something newer than the write (a later write, or the
/// tombstone of a later delete), by compare-and-set against what it looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_write_does_not_land_after_another_process_deletes_the_key()
-> vorte_cache::Result<()> {
    let store = TestStore::new();
    let a = write_behind_over(&store, 1_000, "max_size = 100").await?;
    let b = process_l4(&store).await?;
    // A's writer is held at its first call for "k": its look at L4, or (a writer that does not
    // look) its write.
    let (look, write) = (store.pause(Op::Get, "k"), store.pause(Op::Put, "k"));
    a.set("k", &1i64).await?;
    tokio::select! {
        () = look.reached() => {}
        () = write.reached() => {}
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    b.delete("k").await?;
    look.release();
    write.release();
    // The writer is done once an unrelated later write has landed (one queue, in order).
    a.set("later", &0i64).await?;
    until_l4_reads(&store, "later", 0).await?;
    assert_eq!(
        process_l4(&store).await?.get::<i64>("k").await?,
        None,
        "a write queued before another process's delete landed after it"
    );
    Ok(())
}

/// `docs/guarantees.md#g1-read-your-writes` through single-flight: a caller that starts after a
/// `set` returned never receives the value of a load that began before it. It joined the older
/// load (found by the history checker, `docs/history.md`). A set now detaches the key's loads in
/// flight, as an invalidation does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_after_a_set_never_receives_a_load_that_began_before_it() -> vorte_cache::Result<()>
{
    let store = TestStore::new();
    let cache = process(&store).await?;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loading = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_set("k", || async move {
                    let _ = started_tx.send(());
                    let _ = release_rx.await;
                    Ok::<_, std::io::Error>("old".to_owned())
                })
                .await
        })
    };
    started_rx.await.expect("the loader starts");
    // A set that L1 does not take (L2 alone), so the next caller misses L1.
    cache.set("k", &"new").layer(Layer::L2).await?;
    let after = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_set("k", || async {
                    Ok::<_, std::io::Error>("loaded".to_owned())
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let _ = release_tx.send(());
    assert_eq!(loading.await.expect("the first load")?, "old");
    assert_eq!(
        after.await.expect("the later call")?,
        "new",
        "a caller after the set received a load that began before it"
    );
    Ok(())
}

/// Found by the model (`docs/model.md#gaps-in-the-planned-fixes`): a read's back-fill never
/// replaces a tombstone. A read in another process that ran while a delete had tombstoned L2 but
/// not yet L4 found the old value in L4 and back-filled L2 expecting the tombstone it had seen
/// there, the delete's own: L2 then served the deleted value to every process after the delete
/// returned. Only a load, whose value the loader made after its ticket, may replace a tombstone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_fill_never_replaces_a_delete_s_tombstone() -> vorte_cache::Result<()> {
    use vorte_cache::testing::Call;
    let (l2, l4) = (TestStore::new(), TestStore::new());
    let open = || open_over([(Layer::L2, l2.clone()), (Layer::L4, l4.clone())]);
    let (a, b) = (open().await?, open().await?);
    a.set("k", &"old").await?;
    // A's delete has tombstoned L2 and is held before it reaches L4.
    let deleting_l4 = l4.pause(Op::DeleteMany, "k");
    let l2_done = l2.pause_call(Call::new(Op::DeleteMany, "k").after_effect());
    let deleting = {
        let a = a.clone();
        tokio::spawn(async move { a.delete("k").await })
    };
    l2_done.reached().await;
    l2_done.release();
    deleting_l4.reached().await;
    // B's read meanwhile: L2 holds the tombstone, L4 the old value.
    assert_eq!(b.get::<String>("k").await?.as_deref(), Some("old"));
    deleting_l4.release();
    deleting.await.expect("the delete")?;
    assert_eq!(
        open().await?.get::<String>("k").await?,
        None,
        "a back-fill replaced the delete's tombstone in L2"
    );
    Ok(())
}

/// Found by the model: the delete's second fence also detaches the key's flight. A load that
/// joined after the delete's first detach read the old value from L2 before the tombstone landed;
/// a caller after the delete returned joined it and received the deleted value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_after_a_delete_never_joins_a_load_that_read_before_it_finished()
-> vorte_cache::Result<()> {
    use vorte_cache::testing::Call;
    let store = TestStore::new();
    let cache = process(&store).await?;
    cache.set("k", &"old").layer(Layer::L2).await?;
    let held_delete = store.pause(Op::DeleteMany, "k");
    let deleting = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.delete("k").await })
    };
    held_delete.reached().await;
    // A load that has read "old" from L2 and not yet answered.
    let held_read = store.pause_call(Call::new(Op::Get, "k").after_effect());
    let early = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_set("k", || async {
                    Ok::<_, std::io::Error>("early".to_owned())
                })
                .await
        })
    };
    held_read.reached().await;
    held_delete.release();
    deleting.await.expect("the delete")?;
    let after = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_set("k", || async { Ok::<_, std::io::Error>("new".to_owned()) })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    held_read.release();
    let _ = early.await.expect("the early load")?;
    assert_eq!(
        after.await.expect("the later call")?,
        "new",
        "a caller after the delete received what a load read before the delete finished"
    );
    Ok(())
}

/// Found by the model: a `set` fences again once the layers below hold the new value. A read
/// that took its ticket after the set's first record, but read L2 before the set's put landed,
/// copied the older value into L1 after the set's own insert: the next `get` returned it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_during_a_set_does_not_outlive_it_in_l1() -> vorte_cache::Result<()> {
    use vorte_cache::testing::Call;
    let store = TestStore::new();
    let cache = process(&store).await?;
    cache.set("k", &"old").layer(Layer::L2).await?;
    let held_put = store.pause(Op::Put, "k");
    let setting = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.set("k", &"new").await })
    };
    held_put.reached().await;
    // A read that has found "old" in L2 and not yet copied it into L1.
    let held_read = store.pause_call(Call::new(Op::Get, "k").after_effect());
    let reading = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get::<String>("k").await })
    };
    held_read.reached().await;
    held_put.release();
    setting.await.expect("the set")?;
    held_read.release();
    let _ = reading.await.expect("the read")?;
    assert_eq!(
        cache.get::<String>("k").await?.as_deref(),
        Some("new"),
        "a read that ran during the set put the older value back into L1"
    );
    Ok(())
}

/// `docs/guarantees.md#f1-a-failing-layer-is-skipped` for tags: when the tag versions cannot be
/// read (their layer is down), a tagged `set` or `get_or_set` goes on without the cache instead
/// of failing. `set().tags()` returned the layer's error, and `get_or_set().tags()` failed before
/// its loader ran. Nothing unverifiable is cached, and the key's older value is removed, so a
/// later read misses rather than reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_write_goes_on_when_tag_versions_are_unavailable() -> vorte_cache::Result<()> {
    let store = TestStore::new();
    let cache = process(&store).await?;
    cache.set("k", &"old").await?;
    let down = || vorte_cache::Error::backend("tag versions unavailable");
    store.fail(Op::GetTag, "t", down());
    cache.set("k", &"new").tags(["t"]).await?;
    assert_ne!(
        cache.get::<String>("k").await?.as_deref(),
        Some("old"),
        "the older value outlived a set that returned Ok"
    );
    store.fail(Op::GetTag, "t", down());
    let loaded: String = cache
        .get_or_set("j", || async {
            Ok::<_, std::io::Error>("loaded".to_owned())
        })
        .tags(["t"])
        .await?;
    assert_eq!(loaded, "loaded");
    Ok(())
}

/// `docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back` for tags: an
/// `invalidate_tag` while the layer holding tag records is down returns `Ok`, like a delete that
/// missed a layer. The invalidating process treats the tag's entries as invalid at once (also
/// those it wrote before, in L1), and a retry writes the new version once the layer is back, after
/// which no process reads the tag's old entries. Before, the call returned the layer's error and
/// nothing was retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidation_that_missed_its_layer_is_retried_and_holds_meanwhile()
-> vorte_cache::Result<()> {
    let store = TestStore::new();
    let a = process(&store).await?;
    a.set("k", &"old").tags(["t"]).await?;
    store.set_unavailable(true);
    a.invalidate_tag("t").await?;
    assert_eq!(
        a.get::<String>("k").await?,
        None,
        "the invalidating process read the tag's old entry from its L1"
    );
    // Written while the tag is owed: stamped with the local version, valid here.
    a.set("j", &"during").tags(["t"]).await?;
    assert_eq!(a.get::<String>("j").await?.as_deref(), Some("during"));
    store.set_unavailable(false);
    assert_eq!(a.get::<String>("k").await?, None);
    until_a_new_process_misses(&store, "k", "the tag's new version never reached L2").await?;
    // The tag's record, and the older value of "j", which the set during the outage owed to L2.
    // Each is counted just after it lands, so a new process may miss "k" an instant before the
    // count moves: read it until it does (10 s at most).
    let mut recovered = None;
    for _ in 0..500 {
        recovered = a
            .stats()
            .layers
            .iter()
            .find(|l| l.layer == Layer::L2)
            .map(|l| l.recovered);
        if recovered == Some(2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(recovered, Some(2), "both deliveries are counted on L2");
    assert_eq!(a.get::<String>("k").await?, None);
    Ok(())
}

/// A layer that answers a read with another key's entry is read once more before the entry is
/// called corrupt. fred's cluster client did, while slots moved: its replies came back shifted by
/// one, so `get("k27")` received `k29`'s entry, and the read became a miss counted as corruption
/// (`reads_during_resharding_find_every_key` failed about one run in five;
/// `docs/resilience.md#open-findings`, 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_for_another_key_is_read_again_not_taken_for_corruption() -> vorte_cache::Result<()>
{
    use std::time::Duration;
    use vorte_cache::store::{Slot, Store};
    use vorte_cache::testing::Call;
    let store = TestStore::new();
    let writer = process(&store).await?;
    writer.set("a", &"value of a").await?;
    writer.set("b", &"value of b").await?;
    let missing = || vorte_cache::Error::new(vorte_cache::ErrorKind::Backend, "no entry");
    let a = store.get(Slot::Entry("a")).await?.ok_or_else(missing)?;
    let b = store.get(Slot::Entry("b")).await?.ok_or_else(missing)?;
    let ttl = Duration::from_secs(60);
    // The first read of "a" answers b's entry; by the time it is answered, "a" holds its own.
    store.put(Slot::Entry("a"), b, ttl).await?;
    let first = store.pause_call(Call::new(Op::Get, "a").after_effect());
    let reader = process(&store).await?;
    let reading = {
        let reader = reader.clone();
        tokio::spawn(async move { reader.get::<String>("a").await })
    };
    first.reached().await;
    store.put(Slot::Entry("a"), a, ttl).await?;
    first.release();
    assert_eq!(
        reading.await.expect("the read's task")?.as_deref(),
        Some("value of a"),
        "the mixed-up answer became a miss"
    );
    let l2 = reader.stats();
    assert_eq!(l2.layer(Layer::L2).map(|l| l.corrupt), Some(0));
    Ok(())
}

/// A write-behind write that fails leaves the layer holding the older value: the process that
/// wrote must not read that back once its L1 copy is gone (G1). The layer owes the key a delete,
/// as for a delete that missed it (F3), and reads skip it there until the delete lands. Seen in
/// the chaos suite's object-store row: a process read its own older value after moto's restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_behind_write_does_not_bring_the_older_value_back() -> vorte_cache::Result<()>
{
    let store = TestStore::new();
    let cache = write_behind_over(&store, 64, "ttl = 0.05").await?;
    cache.set("k", &1_i64).await?;
    until_l4_reads(&store, "k", 1).await?;
    // The writer's next write of "k" fails, whichever call it makes.
    let down = || vorte_cache::Error::new(vorte_cache::ErrorKind::Backend, "store down");
    store.fail(Op::CompareAndSet, "k", down());
    store.fail(Op::Put, "k", down());
    let tried = || store.calls(Op::CompareAndSet, "k") + store.calls(Op::Put, "k");
    let before = tried();
    // The delete the layer now owes is held, so the older value stays there.
    let retry = store.pause(Op::DeleteMany, "k");
    cache.set("k", &2_i64).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tried() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer never tried"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Past the L1 copy's 50 ms.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_ne!(
        cache.get::<i64>("k").await?,
        Some(1),
        "the writer read back the value its own set replaced"
    );
    retry.release();
    Ok(())
}
