//! Memcached under a cache: an invalidation soon after another process's flush
//! (`docs/consistency.md#memcached-generations-and-servers`), and several servers of which one
//! dies. Each `Cache` stands for one process; there is no bus (memcached has none of its own).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::time::Duration;

use vorte_cache::{Cache, Config};
use vorte_cache_tests::servers::Memcached;
use vorte_cache_tests::unique_prefix;

/// How old a cached generation may get before the store re-reads it (`GEN_REFRESH`, 1 s), with a
/// margin.
const PAST_GEN_REFRESH: Duration = Duration::from_millis(1_100);
/// Consecutive failures that open a circuit (`store/circuit.rs`).
const THRESHOLD: usize = 5;

/// A cache on L2 memcached over `servers`, under `prefix`; `l1 = false` sends every read to L2.
async fn cache(servers: &[&Memcached], prefix: &str, l1: bool) -> Cache {
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let l1 = if l1 {
        ""
    } else {
        "[cache.layers.l1]\nenabled = false\n"
    };
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n{l1}[cache.layers.l2]\nbackend = \"memcached\"\n\
         urls = {urls:?}\ntimeout_ms = 1000\n"
    );
    let config = Config::from_toml_str(&toml).expect("config").cache;
    let cache = Cache::from_config(&config).await.expect("cache");
    assert!(!cache.has_bus());
    cache
}

/// Two processes on `server`: A has just flushed, and B still holds the generation from before
/// it (read within the last `GEN_REFRESH`).
async fn b_behind_a_flush_of_a(server: &Memcached, prefix: &str) -> (Cache, Cache) {
    let a = cache(&[server], prefix, true).await;
    let b = cache(&[server], prefix, true).await;
    assert_eq!(b.get::<i64>("warm").await.unwrap(), None);
    a.flush().await.unwrap();
    (a, b)
}

/// `docs/guarantees.md#g2-invalidation`: B's cached generation is older than A's flush; B's
/// delete must still reach the entry A wrote after it, or B itself reads the deleted value once
/// it re-reads the generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_soon_after_another_process_flush_is_not_lost() {
    let server = Memcached::start();
    let prefix = unique_prefix();
    let (a, b) = b_behind_a_flush_of_a(&server, &prefix).await;
    a.set("k", &1).await.unwrap();
    b.delete("k").await.unwrap();
    tokio::time::sleep(PAST_GEN_REFRESH).await;
    assert_eq!(
        b.get::<i64>("k").await.unwrap(),
        None,
        "the deleting process reads what it deleted"
    );
    let fresh = cache(&[&server], &prefix, true).await;
    assert_eq!(fresh.get::<i64>("k").await.unwrap(), None);
}

/// `docs/guarantees.md#g2-invalidation`, for tags: B's new version must land in the generation A
/// flushed to, or the entries A stamped after the flush stay valid for every process that reads
/// the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidation_soon_after_another_process_flush_is_not_lost() {
    let server = Memcached::start();
    let prefix = unique_prefix();
    let (a, b) = b_behind_a_flush_of_a(&server, &prefix).await;
    a.set("k", &1).tags(["t"]).await.unwrap();
    b.invalidate_tag("t").await.unwrap();
    tokio::time::sleep(PAST_GEN_REFRESH).await;
    let fresh = cache(&[&server], &prefix, true).await;
    assert_eq!(
        fresh.get::<i64>("k").await.unwrap(),
        None,
        "an entry of an invalidated tag is served"
    );
    assert_eq!(b.get::<i64>("k").await.unwrap(), None);
}

/// 100 keys over two servers, and which of them live on the first.
async fn keys_over(live: &Memcached, other: &Memcached, prefix: &str) -> (Vec<String>, Vec<bool>) {
    let writer = cache(&[live, other], prefix, false).await;
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        writer.set(key, &i).await.unwrap();
    }
    let on_live: Vec<bool> = keys.iter().map(|k| live.holds(prefix, k)).collect();
    let on_other = keys.iter().filter(|k| other.holds(prefix, k)).count();
    assert_eq!(
        on_live.iter().filter(|l| **l).count() + on_other,
        keys.len()
    );
    assert!(
        on_live.iter().any(|l| *l) && on_other > 0,
        "both servers hold keys"
    );
    (keys, on_live)
}

/// `docs/guarantees.md#f1-a-failing-layer-is-skipped`: a `delete_many` whose keys lie on a live and
/// a dead server deletes every key on the live one (it used to stop at the first failing chunk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_many_with_a_dead_server_deletes_every_key_on_the_live_one() {
    let live = Memcached::start();
    let mut dead = Memcached::start();
    let prefix = unique_prefix();
    let (keys, on_live) = keys_over(&live, &dead, &prefix).await;
    let deleter = cache(&[&live, &dead], &prefix, true).await;
    dead.kill();
    deleter.delete_many(&keys).await.unwrap();
    let fresh = cache(&[&live, &dead], &prefix, false).await;
    for (key, on_live) in keys.iter().zip(on_live) {
        if on_live {
            assert_eq!(fresh.get::<usize>(key).await.unwrap(), None, "{key}");
        }
    }
}

/// `docs/guarantees.md#f2-circuit-breaker`, per memcached server: with one server dead, the keys
/// on the other keep being read and written however many calls fail on the dead one, and the dead
/// one's calls fail at once (its own circuit opens), naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_opens_its_own_circuit_and_the_live_one_keeps_serving() {
    let live = Memcached::start();
    let mut dead = Memcached::start();
    let prefix = unique_prefix();
    let (keys, on_live) = keys_over(&live, &dead, &prefix).await;
    let cache = cache(&[&live, &dead], &prefix, false).await;
    dead.kill();
    let dead_label = format!("127.0.0.1:{}", dead.port());
    let mut dead_errors = Vec::new();
    // Each round fails on every key of the dead server, then works on every key of the live one.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|i| on_live[*i]);
    for round in 0..3 {
        for i in order.iter().copied() {
            let (key, on_live) = (&keys[i], &on_live[i]);
            let value = round * 1_000 + i;
            let written = cache.set(key, &value).await;
            if *on_live {
                assert!(written.is_ok(), "{key} (round {round}): {written:?}");
                assert_eq!(cache.get::<usize>(key).await.unwrap(), Some(value), "{key}");
            } else {
                dead_errors.push(written.expect_err("a key on the dead server"));
            }
        }
    }
    assert!(
        dead_errors.len() > THRESHOLD,
        "enough failures to open a circuit"
    );
    for err in &dead_errors {
        assert!(err.message().contains(&dead_label), "{err}");
    }
    assert!(
        dead_errors
            .iter()
            .any(|e| e.message().contains("circuit open")),
        "the dead server's circuit never opened"
    );
}
