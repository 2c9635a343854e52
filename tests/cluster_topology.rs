//! L3 `redis-cluster` through topology changes: a cluster just created, slots moving between
//! primaries (`redis-cli --cluster reshard`: `ASK`, then `MOVED`) and a replica taking over its
//! primary (`CLUSTER FAILOVER`). Every `set` goes through (redirections are followed and the
//! topology re-read), and `keys` and `flush` are complete or fail, never silently partial
//! (`docs/consistency.md#redis-cluster-topology-changes`).
#![allow(clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::sync::Arc;

use vorte_cache::{Cache, Config};
use vorte_cache_tests::servers::{RedisCluster, redis_cli, redis_cmd};
use vorte_cache_tests::unique_prefix;

/// How many keys each test writes.
const KEYS: usize = 200;

/// A cache whose only layer is L3 on `cluster`, with the default `timeout_ms` (250 ms).
///
/// The layer's timeout is 2 s rather than the default 250 ms: these tests are about redirections
/// and topology, not latency, and in CI four clusters of six nodes, a resharding and a failover
/// share two cores, where a read that times out is skipped as a miss (F1) for reasons that have
/// nothing to do with MOVED or ASK (seen once in a full CI run: 2 of 200 reads missed in one round
/// of `reads_during_resharding_find_every_key`, which passes when run alone; not proven to be a
/// timeout).
async fn l3_only(cluster: &RedisCluster, prefix: &str) -> Cache {
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nenabled = false\n\
         [cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = {urls:?}\ntimeout_ms = 2000\n",
        urls = cluster.urls(),
    );
    Cache::from_config(&Config::from_toml_str(&toml).expect("config").cache)
        .await
        .expect("cache")
}

fn key(i: usize) -> String {
    format!("k{i}")
}

fn all_keys() -> BTreeSet<String> {
    (0..KEYS).map(key).collect()
}

/// Entries under `prefix` as the servers hold them: `SCAN` on every primary, not through the
/// cache.
fn stored_entries(cluster: &RedisCluster, prefix: &str) -> usize {
    let pattern = format!("{prefix}e:*");
    cluster
        .primaries()
        .into_iter()
        .map(|p| {
            redis_cli(p, &["--scan", "--pattern", &pattern])
                .lines()
                .count()
        })
        .sum()
}

/// Writes every key with `round` in its value; each set must succeed.
async fn write_all(cache: &Cache, round: usize, during: &str) {
    for i in 0..KEYS {
        if let Err(e) = cache.set(&key(i), &format!("v{round}")).await {
            panic!("set {} (round {round}) failed {during}: {e}", key(i));
        }
    }
}

/// `keys("*")` is every key, or an error; never a subset.
async fn keys_are_complete_or_fail(cache: &Cache, during: &str) {
    match cache.keys("*").await {
        Ok(keys) => assert_complete(keys, during),
        Err(e) => eprintln!("keys(\"*\") {during} failed (allowed): {e}"),
    }
}

/// `keys("*")` on a settled cluster: every key, and no error.
async fn keys_are_complete(cache: &Cache, during: &str) {
    match cache.keys("*").await {
        Ok(keys) => assert_complete(keys, during),
        Err(e) => panic!("keys(\"*\") {during} failed: {e}"),
    }
}

fn assert_complete(keys: Vec<String>, during: &str) {
    let listed: BTreeSet<String> = keys.into_iter().collect();
    let missing: Vec<_> = all_keys().difference(&listed).cloned().collect();
    assert!(
        missing.is_empty(),
        "keys(\"*\") {during} returned {} of {KEYS} keys without an error; missing {:?}",
        listed.len(),
        &missing[..missing.len().min(10)]
    );
}

/// How many `MOVED` and `ASK` replies the nodes sent since their last `CONFIG RESETSTAT`
/// (`INFO errorstats`): proof that the traffic met redirections.
fn redirections(cluster: &RedisCluster) -> u64 {
    cluster
        .ports()
        .into_iter()
        .flat_map(|p| {
            let info = redis_cmd(p, &["INFO", "errorstats"]);
            ["MOVED", "ASK"].map(|kind| {
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("errorstat_{kind}:count=")))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
        })
        .sum()
}

/// `flush` clears every entry or fails; after an `Ok` the servers hold none under the prefix.
async fn flush_is_complete_or_fails(cache: &Cache, cluster: &RedisCluster, prefix: &str) {
    match cache.flush().await {
        Ok(()) => assert_eq!(
            stored_entries(cluster, prefix),
            0,
            "flush returned Ok and left entries behind"
        ),
        Err(e) => eprintln!("flush failed (allowed): {e}"),
    }
}

/// The reproduction: right after `redis-cli --cluster create --cluster-replicas 1`, with
/// every node reporting `cluster_state:ok`, 200 sets, `keys` and `flush`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_just_created_takes_every_set_and_lists_every_key() {
    let cluster = RedisCluster::start_fresh(3, 1);
    let prefix = unique_prefix();
    let cache = l3_only(&cluster, &prefix).await;
    write_all(&cache, 0, "on a cluster just created").await;
    assert_eq!(
        stored_entries(&cluster, &prefix),
        KEYS,
        "the servers hold every set"
    );
    keys_are_complete(&cache, "on a cluster just created").await;
    flush_is_complete_or_fails(&cache, &cluster, &prefix).await;
}

/// Slots move between primaries while the cache writes and lists: sets follow `ASK` and `MOVED`,
/// `keys` and `flush` are complete or fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_traffic_loses_no_set_and_no_key() {
    let cluster = RedisCluster::start(3, 1);
    let prefix = unique_prefix();
    let cache = l3_only(&cluster, &prefix).await;
    write_all(&cache, 0, "before resharding").await;
    let primaries = cluster.primaries();
    let (a, b) = (primaries[0], primaries[1]);
    for port in cluster.ports() {
        redis_cmd(port, &["CONFIG", "RESETSTAT"]);
    }
    let mut reshard = cluster.begin_reshard(a, b, 3000);
    let mut rounds = 0;
    while reshard.is_running() {
        rounds += 1;
        write_all(&cache, rounds, "while slots move").await;
        keys_are_complete_or_fail(&cache, "while slots move").await;
    }
    reshard.finish();
    assert!(rounds > 0, "the resharding ended before any traffic ran");
    // A last round meets the moved slots through MOVED.
    write_all(&cache, rounds + 1, "after slots moved").await;
    assert!(redirections(&cluster) > 0, "no set met a MOVED or ASK");
    keys_are_complete(&cache, "after slots moved").await;

    // A flush while slots move back: complete or an error. Counted once the reshard is over,
    // when no key can be between two primaries.
    let reshard = cluster.begin_reshard(b, a, 3000);
    let flushed = cache.flush().await;
    reshard.finish();
    match flushed {
        Ok(()) => assert_eq!(
            stored_entries(&cluster, &prefix),
            0,
            "flush during resharding returned Ok and left entries behind"
        ),
        Err(e) => eprintln!("flush during resharding failed (allowed): {e}"),
    }
}

/// A replica takes over its primary (`CLUSTER FAILOVER`) while the cache writes and lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_traffic_loses_no_set_and_no_key() {
    let cluster = Arc::new(RedisCluster::start(3, 1));
    let prefix = unique_prefix();
    let cache = l3_only(&cluster, &prefix).await;
    write_all(&cache, 0, "before the failover").await;
    let replica = cluster.replicas()[0];
    for port in cluster.ports() {
        redis_cmd(port, &["CONFIG", "RESETSTAT"]);
    }
    cluster.failover(replica);
    let mut rounds = 0;
    while !cluster.primaries().contains(&replica) || rounds < 3 {
        rounds += 1;
        write_all(&cache, rounds, "during a failover").await;
        keys_are_complete_or_fail(&cache, "during a failover").await;
        assert!(rounds < 1_000, "the replica never took over");
    }
    let settled = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || settled.wait_ok())
        .await
        .expect("wait for the cluster");
    write_all(&cache, rounds + 1, "after the failover").await;
    assert!(redirections(&cluster) > 0, "no set met a MOVED");
    keys_are_complete(&cache, "after the failover").await;
    flush_is_complete_or_fails(&cache, &cluster, &prefix).await;
}

/// Concurrent reads (coalesced into `MGET`s) while slots move: each follows `ASK` or `MOVED`
/// and finds its key; none is turned into a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_resharding_find_every_key() {
    let cluster = RedisCluster::start(3, 1);
    let prefix = unique_prefix();
    let cache = Arc::new(l3_only(&cluster, &prefix).await);
    write_all(&cache, 0, "before resharding").await;
    let primaries = cluster.primaries();
    let mut reshard = cluster.begin_reshard(primaries[0], primaries[1], 3000);
    let mut rounds = 0;
    while reshard.is_running() {
        rounds += 1;
        let readers = (0..8).map(|r| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                let mut missed = Vec::new();
                for i in (r..KEYS).step_by(8) {
                    match cache.get::<String>(&key(i)).await {
                        Ok(Some(_)) => {}
                        Ok(None) => missed.push(format!("{}: none", key(i))),
                        Err(e) => missed.push(format!("{}: {e}", key(i))),
                    }
                }
                missed
            })
        });
        let mut missed = Vec::new();
        for reader in futures_util::future::join_all(readers).await {
            missed.extend(reader.expect("a reader panicked"));
        }
        assert!(
            missed.is_empty(),
            "round {rounds}: {} of {KEYS} reads missed while slots moved: {:?}",
            missed.len(),
            &missed[..missed.len().min(10)]
        );
    }
    reshard.finish();
    assert!(rounds > 0, "the resharding ended before any read ran");
}

/// A delete the dying primary acknowledged and never sent to its replica is lost when the
/// replica takes over: the promoted node serves the deleted value again. The cache sees the
/// takeover in its routing and deletes again what it invalidated in the last 15 s, and tells the
/// other processes, which hold those keys off the layer meanwhile
/// (`docs/guarantees.md#f7-writes-a-failover-lost-are-made-again`). The loss is made certain: the
/// primary drops its replica's link just before the delete (a replica reconnects once a second at
/// most) and is killed just after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_lost_in_a_failover_is_made_again() {
    use std::time::{Duration, Instant};
    use vorte_cache_tests::servers::try_redis_cmd;
    let mut cluster = RedisCluster::start(3, 1);
    let prefix = unique_prefix();
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nmax_size = 100\n\
         [cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = {urls:?}\ntimeout_ms = 2000\n",
        urls = cluster.urls(),
    );
    let config = Config::from_toml_str(&toml).expect("config");
    let a = Cache::from_config(&config.cache).await.expect("cache");
    let b = Cache::from_config(&config.cache).await.expect("cache");
    a.set("k", &"old").await.expect("set");
    assert_eq!(
        b.get::<String>("k").await.expect("get").as_deref(),
        Some("old")
    );
    let entry = format!("{prefix}e:k");
    let ports = cluster.ports();
    let primary = cluster
        .primaries()
        .into_iter()
        .find(|&p| try_redis_cmd(p, None, &["TYPE", &entry]).is_ok_and(|t| t.contains("string")))
        .expect("a primary holds the entry");
    // Replicated before the link goes: the replica has "old". Then the replica is stopped and
    // its link dropped, so that it cannot reconnect before the primary is gone.
    redis_cmd(primary, &["WAIT", "1", "2000"]);
    let replica = cluster
        .replicas()
        .into_iter()
        .find(|&r| {
            try_redis_cmd(r, None, &["ROLE"]).is_ok_and(|role| role.contains(&primary.to_string()))
        })
        .expect("the primary's replica");
    let node = |port: u16| ports.iter().position(|&p| p == port).expect("its node");
    cluster.pause_node(node(replica));
    redis_cmd(primary, &["CLIENT", "KILL", "TYPE", "replica"]);
    assert!(
        a.delete("k").await.expect("delete"),
        "the delete found the key"
    );
    cluster.kill_node(node(primary));
    cluster.resume_node(node(replica));
    let killed = Instant::now();
    while cluster.primaries().contains(&primary) || cluster.primaries().len() < 3 {
        assert!(killed.elapsed() < Duration::from_secs(30), "no failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = Instant::now();
    let settled = cluster
        .nodes()
        .iter()
        .position(|n| n.port() != primary)
        .expect("a node");
    let probe = cluster.ports()[settled];
    while !try_redis_cmd(probe, None, &["CLUSTER", "INFO"])
        .is_ok_and(|i| i.contains("cluster_state:ok"))
    {
        assert!(
            after.elapsed() < Duration::from_secs(30),
            "the cluster never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The promoted replica holds the deleted value: the loss happened.
    let promoted = cluster
        .primaries()
        .into_iter()
        .find(|&p| try_redis_cmd(p, None, &["GET", &entry]).is_ok_and(|v| v.contains("old")));
    assert!(
        promoted.is_some(),
        "the delete reached the replica after all: no loss to test"
    );
    // The deleting process never reads the old value again.
    for _ in 0..20 {
        assert_eq!(
            a.get::<String>("k").await.expect("get"),
            None,
            "the deleting process read the value its delete removed, which the failover brought back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other process, told by the deleting one, does not either.
    for _ in 0..20 {
        assert_eq!(
            b.get::<String>("k").await.expect("get"),
            None,
            "another process read the value brought back by the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(cluster);
}
