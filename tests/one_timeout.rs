//! A call waits for the layers and the bus at most one layer timeout in all
//! (`docs/resilience.md#one-timeout-per-call`): each step after the first has what the steps
//! before it left, then goes on without the caller (a fill in the background, a notice in the
//! publisher's queue). Against a store of the test's that holds a chosen call, and a real Redis
//! for the bus.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::time::Duration;

use vorte_cache::testing::{Call, Op, TestStore};
use vorte_cache::{Cache, ErrorKind};
use vorte_cache_tests::servers::RedisServer;
use vorte_cache_tests::{on_test_l2, unique_prefix};

/// L1, and L2 with a 2 s timeout at `url` (the bus rides on it), its entries kept by `l2`.
async fn open(url: &str, l2: &TestStore) -> vorte_cache::Result<Cache> {
    let prefix = PREFIX.get_or_init(unique_prefix);
    on_test_l2(url, prefix, l2, "timeout_ms = 2000").await
}

/// One prefix for the whole binary: the caches of a test share their bus streams.
static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What a test fails with when a call did not answer in time.
fn waited(what: &str) -> vorte_cache::Error {
    vorte_cache::Error::new(ErrorKind::Timeout, what.to_owned())
}

/// A miss waits for the cache at most one layer timeout in all
/// (the module docs): the slowest calls under 5 % packet loss
/// met a held read and then a held fill, and waited the layer timeout twice. The fill now has
/// what is left of one timeout after the read, then goes on in the background and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_waits_only_for_what_is_left_of_one_layer_timeout() -> vorte_cache::Result<()> {
    let redis = RedisServer::start();
    let l2 = TestStore::new();
    let cache = open(&redis.url(), &l2).await?;
    let read = l2.pause_call(Call::new(Op::Get, "k").after_effect());
    let fill = l2.pause(Op::CompareAndSet, "k");
    let call = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_set("k", || async { Ok::<_, std::io::Error>(7u32) })
                .await
        })
    };
    read.reached().await;
    // The read takes most of the timeout: 500 ms of it are left for the fill.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    read.release();
    fill.reached().await;
    let answered = tokio::time::timeout(Duration::from_millis(1500), call)
        .await
        .map_err(|_| waited("the call still waited for its fill 1.5 s after the fill began"))?
        .expect("the call's task");
    assert_eq!(answered?, 7);
    assert_eq!(cache.stats().loads.late_fills, 1, "counted");
    fill.release();
    // Released, the fill lands below L1: a new process reads it from L2.
    for _ in 0..100 {
        if open(&redis.url(), &l2).await?.get::<u32>("k").await? == Some(7) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the fill that went on in the background never landed in L2");
}

/// A `set` waits for its writes and its notice together at most one layer timeout: the notice
/// has what the writes left, then waits in the publisher's queue. Under 5 % loss the slowest
/// calls were sets whose write and notice were each held (620 ms against a 250 ms timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_waits_only_for_what_the_writes_left_of_one_layer_timeout()
-> vorte_cache::Result<()> {
    let bus = RedisServer::start();
    let l2 = TestStore::new();
    let (a, b) = (open(&bus.url(), &l2).await?, open(&bus.url(), &l2).await?);
    a.set("k", &1u32).await?;
    assert_eq!(b.get::<u32>("k").await?, Some(1), "B keeps it in L1");
    let write = l2.pause_call(Call::new(Op::Put, "k").after_effect());
    let setting = {
        let a = a.clone();
        tokio::spawn(async move { a.set("k", &2u32).await })
    };
    write.reached().await;
    // The write takes most of the timeout; then the bus stops answering.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bus.pause();
    write.release();
    let set = tokio::time::timeout(Duration::from_millis(1500), setting).await;
    bus.resume();
    set.map_err(|_| waited("the set still waited for the bus 1.5 s after its write"))?
        .expect("the set's task")?;
    // The notice waited in the queue, and reaches B once the bus is back.
    for _ in 0..250 {
        if b.get::<u32>("k").await? == Some(2) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("B kept the value the set replaced");
}
