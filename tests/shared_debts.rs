//! An invalidation that missed a shared layer is owed by every process that hears of it, not only
//! by the one that made it (`docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back`):
//! its notice names the layers owed, and a process that receives it reads neither the keys there
//! nor the tag's old version until a delete or a new version lands. Before, only the invalidating
//! process held off; another read the older value from the layer (it had dropped its L1 copy, as
//! the notice said, and found the old value again below it) until the retry landed: the stale
//! reads of the chaos suite's Redis Cluster row just after each failover.
//!
//! Two caches stand in for two processes: one store of the test's holds L2's entries for both
//! (its hooks fail or hold the chosen call, whoever makes it), and a real Redis carries the bus.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::time::Duration;

use vorte_cache::testing::{Call, Op, Pause, TestStore};
use vorte_cache::{Cache, Error, ErrorKind};
use vorte_cache_tests::servers::RedisServer;
use vorte_cache_tests::{on_test_l2, unique_prefix};

/// L1, and L2 at `url` (the bus rides on it), its entries and tag records kept by `l2`.
async fn open(url: &str, prefix: &str, l2: &TestStore) -> vorte_cache::Result<Cache> {
    on_test_l2(url, prefix, l2, "").await
}

fn down() -> Error {
    Error::new(ErrorKind::Backend, "test store: this call fails")
}

/// Reads `key` in `cache` until `done` holds for what it returns, 5 s at most; the last value.
async fn read_until(
    cache: &Cache,
    key: &str,
    done: impl Fn(&Option<String>) -> bool,
) -> vorte_cache::Result<Option<String>> {
    let mut value = None;
    for _ in 0..250 {
        value = cache.get::<String>(key).await?;
        if done(&value) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(value)
}

/// Sets `key` to "new" with `tags` in `a` and reads it in `b`, until `b` finds it (5 s at most).
async fn write_until_read(
    a: &Cache,
    b: &Cache,
    key: &str,
    tags: &[&str],
) -> vorte_cache::Result<Option<String>> {
    let mut seen = None;
    for _ in 0..250 {
        a.set(key, &"new").tags(tags.iter().copied()).await?;
        seen = b.get::<String>(key).await?;
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(seen)
}

/// Two processes on `redis`'s bus sharing an L2 of the test's, where "k" is "old" and both
/// have read it; A's next delete of "k" there fails, and the two deletes after it (the retries,
/// A's and then B's once it hears of the debt) are held.
async fn a_delete_about_to_miss_l2(
    redis: &RedisServer,
) -> vorte_cache::Result<(Cache, Cache, Pause, Pause)> {
    let prefix = unique_prefix();
    let l2 = TestStore::new();
    let a = open(&redis.url(), &prefix, &l2).await?;
    let b = open(&redis.url(), &prefix, &l2).await?;
    a.set("k", &"old").await?;
    assert_eq!(b.get::<String>("k").await?.as_deref(), Some("old"));
    l2.fail(Op::DeleteMany, "k", down());
    let first_retry = l2.pause_call(Call::new(Op::DeleteMany, "k").nth(2));
    let second_retry = l2.pause_call(Call::new(Op::DeleteMany, "k").nth(3));
    Ok((a, b, first_retry, second_retry))
}

/// A delete that missed L2 in one process: the other, once the notice came, does not read the
/// older value from L2 while both processes' retries are held; it reads L2 again once a retry
/// landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_missed_a_layer_holds_the_key_off_it_in_every_process()
-> vorte_cache::Result<()> {
    let redis = RedisServer::start();
    let (a, b, first_retry, second_retry) = a_delete_about_to_miss_l2(&redis).await?;
    assert!(a.delete("k").await?, "the delete found the key (in L1)");
    assert_eq!(a.get::<String>("k").await?, None, "the deleting process");
    // B drops its L1 copy when the notice comes; then it must not find "old" in L2.
    let seen = read_until(&b, "k", |v| v.is_none()).await?;
    assert_eq!(
        seen, None,
        "the other process's L1 copy outlived the notice"
    );
    first_retry.reached().await;
    for _ in 0..10 {
        assert_eq!(
            b.get::<String>("k").await?,
            None,
            "the other process read the older value from the layer the delete missed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_retry.release();
    second_retry.release();
    // Delivered: a value written now reaches the other process through L2 (a retry that lands
    // after a set removes it, so the set is made again until one stays).
    let seen = write_until_read(&a, &b, "k", &[]).await?;
    assert_eq!(
        seen.as_deref(),
        Some("new"),
        "the other process still held the key off L2"
    );
    Ok(())
}

/// A tag invalidation whose new version could not be written: the other process does not trust
/// the old version the authority still holds, so the tagged entry is gone there too; once a new
/// version lands, both stamp and read entries of the tag again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidation_that_missed_its_layer_holds_in_every_process() -> vorte_cache::Result<()>
{
    let redis = RedisServer::start();
    let prefix = unique_prefix();
    let l2 = TestStore::new();
    let a = open(&redis.url(), &prefix, &l2).await?;
    let b = open(&redis.url(), &prefix, &l2).await?;
    a.set("k", &"old").tags(["t"]).await?;
    assert_eq!(b.get::<String>("k").await?.as_deref(), Some("old"));
    // A's new version is not written; the next two writes of the tag's record (the retries of
    // A and B) are held.
    l2.fail(Op::PutTag, "t", down());
    let first_retry = l2.pause_call(Call::new(Op::PutTag, "t").nth(2));
    let second_retry = l2.pause_call(Call::new(Op::PutTag, "t").nth(3));
    a.invalidate_tag("t").await?;
    assert_eq!(
        a.get::<String>("k").await?,
        None,
        "the invalidating process"
    );
    let seen = read_until(&b, "k", |v| v.is_none()).await?;
    assert_eq!(
        seen, None,
        "the other process trusted the tag's old version, which the authority still holds"
    );
    first_retry.reached().await;
    for _ in 0..10 {
        assert_eq!(b.get::<String>("k").await?, None);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_retry.release();
    second_retry.release();
    // Each process delivers a new version; the two agree once each has heard of the other's.
    let seen = write_until_read(&a, &b, "j", &["t"]).await?;
    assert_eq!(
        seen.as_deref(),
        Some("new"),
        "an entry of the tag written after it"
    );
    assert_eq!(b.get::<String>("k").await?, None);
    Ok(())
}

/// While a process's bus is out, it reads neither L1 nor the layer the bus rides on: a delete
/// another process made in the same outage may have missed that layer, and the notice that says
/// so waits in that process's queue until the bus is back. Before, the process read the older
/// value from L2 (the stale reads of the chaos suite's cluster row, just after each failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_bus_is_out_does_not_read_the_layer_the_bus_rides_on()
-> vorte_cache::Result<()> {
    let mut redis = RedisServer::start();
    let (a, b, first_retry, second_retry) = a_delete_about_to_miss_l2(&redis).await?;
    redis.kill();
    let suspended = async {
        while b.bus_stats().map_or(0, |s| s.suspensions) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), suspended)
        .await
        .expect("B never noticed its bus gone");
    // A's bus is out too: its L1 holds nothing, and its L2 delete fails; "not found" then.
    a.delete("k").await?;
    for _ in 0..10 {
        assert_eq!(
            b.get::<String>("k").await?,
            None,
            "B read, from the layer its bus rides on, the value another process's delete missed \
             while the bus was out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.restart();
    // Once the bus is back, the notice names the debt: still not read, while the retries wait.
    for _ in 0..50 {
        assert_eq!(
            b.get::<String>("k").await?,
            None,
            "B read the value A's delete missed after its bus came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_retry.release();
    second_retry.release();
    Ok(())
}
