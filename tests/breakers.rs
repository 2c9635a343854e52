//! Circuit breakers that fit the failure (`docs/guarantees.md#f2-circuit-breaker`), on real
//! servers: a hung Redis (SIGSTOP) opens its layer's breaker and the layer serves again soon after
//! SIGCONT; a hung Redis Cluster primary or a dead memcached server opens its own breaker only,
//! and the keys of the other servers keep hitting.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::time::{Duration, Instant};

use vorte_cache::{Cache, CircuitState, CircuitStats, Config, Layer};
use vorte_cache_tests::servers::{Memcached, RedisCluster, RedisServer, redis_cli};
use vorte_cache_tests::unique_prefix;

/// A cache whose only layer is `layer` as `table` describes it (L1 off, so every read reaches it).
async fn only(layer: Layer, table: &str, prefix: &str) -> Cache {
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nenabled = false\n\
         [cache.layers.{layer}]\n{table}"
    );
    Cache::from_config(&Config::from_toml_str(&toml).expect("config").cache)
        .await
        .expect("cache")
}

/// The breakers of `layer`, as `stats` reports them.
async fn circuits(cache: &Cache, layer: Layer) -> Vec<CircuitStats> {
    let stats = cache.stats();
    stats.layer(layer).expect("the layer").circuits.clone()
}

/// The hits `layer` has answered so far.
async fn hits(cache: &Cache, layer: Layer) -> u64 {
    cache.stats().layer(layer).expect("the layer").hits
}

/// Writes 60 keys `k0`..`k59`, each holding its number.
async fn write_keys(cache: &Cache) -> Vec<String> {
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        cache.set(key, &i).await.unwrap();
    }
    keys
}

/// Three rounds, 0.4 s apart (past a 0.3 s cool-down and its jitter, so each round probes the
/// server that is down): every key in `down` is skipped (a miss), every key in `up` read back.
async fn read_rounds<K: AsRef<str>>(cache: &Cache, down: &[K], up: &[K]) {
    for round in 0..3 {
        for key in down.iter().map(AsRef::as_ref) {
            assert_eq!(
                cache.get::<usize>(key).await.unwrap(),
                None,
                "{key}: skipped"
            );
        }
        for key in up.iter().map(AsRef::as_ref) {
            let i: usize = key[1..].parse().unwrap();
            let got = cache.get::<usize>(key).await.unwrap();
            assert_eq!(
                got,
                Some(i),
                "{key} (round {round}), on a server that is up"
            );
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// The one breaker of `all` that guards the server on `port`.
fn breaker_of(all: &[CircuitStats], port: u16) -> CircuitStats {
    let name = format!("127.0.0.1:{port}");
    let found: Vec<&CircuitStats> = all.iter().filter(|c| c.name.ends_with(&name)).collect();
    assert_eq!(found.len(), 1, "one breaker for {name}: {all:?}");
    found[0].clone()
}

/// The chaos row "L2 Redis hung: SIGSTOP, then SIGCONT" with `breaker_threshold = 2` and
/// `breaker_cooldown = 0.2`: while the server is stopped every read returns (a miss) within the
/// layer's timeout, the breaker opens, and after SIGCONT the layer serves again within 1 s, its
/// breaker closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_opens_the_breaker_which_closes_within_a_second_of_sigcont() {
    const TIMEOUT: Duration = Duration::from_millis(250);
    // Scheduling on a busy two-core machine, on top of the layer's timeout.
    const SLACK: Duration = Duration::from_millis(250);
    let redis = RedisServer::start();
    let prefix = unique_prefix();
    let table = format!(
        "backend = \"redis\"\nurl = {:?}\ntimeout_ms = {}\nbreaker_threshold = 2\n\
         breaker_cooldown = 0.2\n",
        redis.url(),
        TIMEOUT.as_millis()
    );
    let cache = only(Layer::L2, &table, &prefix).await;
    cache.set("k", &7_i64).await.unwrap();
    assert_eq!(cache.get::<i64>("k").await.unwrap(), Some(7));
    let before = circuits(&cache, Layer::L2).await;
    assert_eq!(before.len(), 1, "one breaker for the layer: {before:?}");
    assert_eq!(before[0].state, CircuitState::Closed);

    redis.pause();
    let stopped = Instant::now();
    let mut reads = 0;
    let mut slowest = Duration::ZERO;
    // Long enough for the breaker to open and for several jittered probes (0.16-0.24 s apart).
    while stopped.elapsed() < Duration::from_millis(1500) {
        let started = Instant::now();
        let got = cache.get::<i64>("k").await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert!(
            took <= TIMEOUT + SLACK,
            "read {reads} took {took:?} while Redis was stopped"
        );
        assert_eq!(got.unwrap(), None, "the hung layer is skipped: a miss");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let open = circuits(&cache, Layer::L2).await;
    assert_ne!(open[0].state, CircuitState::Closed, "{open:?}");
    assert_eq!(
        open[0].opened, 1,
        "it opened once and stayed open: {open:?}"
    );
    assert!(
        reads > 10,
        "most reads were refused at once ({reads} reads, slowest {slowest:?})"
    );

    redis.resume();
    let resumed = Instant::now();
    loop {
        if cache.get::<i64>("k").await.unwrap() == Some(7) {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(1),
            "L2 did not serve again within 1 s of SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = circuits(&cache, Layer::L2).await;
    assert_eq!(closed[0].state, CircuitState::Closed, "{closed:?}");
}

/// The physical names of the entries a node holds under `prefix` (`<prefix>e:<key>`), as keys.
fn keys_on(port: u16, prefix: &str) -> Vec<String> {
    let entries = format!("{prefix}e:");
    redis_cli(port, &["KEYS", &format!("{entries}*")])
        .lines()
        .filter_map(|name| name.strip_prefix(&entries).map(str::to_owned))
        .collect()
}

/// One breaker per Redis Cluster node: with one of three primaries hung (SIGSTOP, no replica,
/// and `cluster-require-full-coverage no` so that the others keep their slots), every key on the
/// other two keeps being read from L3, however many reads of the hung node's keys time out; the
/// hung node's breaker is open, the others' closed and never opened. (With one breaker for the
/// layer, the hung node's timeouts would close L3 to every key.)
///
/// A primary *killed* rather than hung is another matter, which no breaker of ours can change:
/// fred 10.1 re-syncs the whole cluster client when a node's connection drops, that sync fails
/// while `CLUSTER SLOTS` still names the dead primary (until a replica takes over), and meanwhile
/// every command fails, on every node (`docs/guarantees.md#f2-circuit-breaker`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_cluster_primary_opens_its_own_breaker_and_the_others_keep_serving() {
    let cluster = RedisCluster::start_with(3, 0, &["--cluster-require-full-coverage", "no"]);
    // The bus on a Redis of its own: riding on the cluster, it goes out with the hung primary
    // whenever that one holds its stream, and then no process reads L3 at all until it is back
    // (`docs/guarantees.md#g4-gap-detection`); this test is about the breakers.
    let bus = RedisServer::start();
    let prefix = unique_prefix();
    let table = format!(
        "backend = \"redis-cluster\"\nurls = {:?}\ntimeout_ms = 500\nbreaker_threshold = 2\n\
         breaker_cooldown = 0.3\n[cache.bus]\nurl = {:?}\n",
        cluster.urls(),
        bus.url()
    );
    let cache = only(Layer::L3, &table, &prefix).await;
    let keys = write_keys(&cache).await;
    let primaries = cluster.primaries();
    let hung_port = primaries[0];
    let on_hung = keys_on(hung_port, &prefix);
    let on_live: Vec<String> = primaries[1..]
        .iter()
        .flat_map(|port| keys_on(*port, &prefix))
        .collect();
    assert_eq!(
        on_hung.len() + on_live.len(),
        keys.len(),
        "every key on one primary"
    );
    assert!(!on_hung.is_empty() && !on_live.is_empty());

    let hung_index = cluster
        .ports()
        .iter()
        .position(|p| *p == hung_port)
        .unwrap();
    let hits_before = hits(&cache, Layer::L3).await;
    cluster.pause_node(hung_index);
    read_rounds(&cache, &on_hung, &on_live).await;
    // `stats` lists the layer: refused at once while the hung node's circuit is open, rather
    // than waiting out a listing's bound on it.
    let asked = Instant::now();
    let served = hits(&cache, Layer::L3).await - hits_before;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(served, 3 * on_live.len() as u64, "every live key hit L3");

    let all = circuits(&cache, Layer::L3).await;
    let of = |port: u16| breaker_of(&all, port);
    let hung = of(hung_port);
    assert_ne!(hung.state, CircuitState::Closed, "{all:?}");
    assert!(hung.opened >= 1, "{all:?}");
    for port in &primaries[1..] {
        let live = of(*port);
        assert_eq!(live.state, CircuitState::Closed, "{all:?}");
        assert_eq!(live.opened, 0, "{all:?}");
    }
    cluster.resume_node(hung_index);
}

/// One breaker per memcached server: with one of two servers killed, the keys of the other keep
/// hitting L2; the dead server's breaker is open, the live one's closed and never opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_memcached_server_opens_its_own_breaker_and_the_other_keeps_serving() {
    let live = Memcached::start();
    let mut dead = Memcached::start();
    let prefix = unique_prefix();
    let table = format!(
        "backend = \"memcached\"\nurls = {:?}\ntimeout_ms = 1000\nbreaker_threshold = 2\n\
         breaker_cooldown = 0.3\n",
        [live.url(), dead.url()]
    );
    let cache = only(Layer::L2, &table, &prefix).await;
    let keys = write_keys(&cache).await;
    let (on_live, on_dead): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| live.holds(&prefix, k));
    assert!(
        !on_live.is_empty() && !on_dead.is_empty(),
        "both servers hold keys"
    );

    dead.kill();
    let hits_before = hits(&cache, Layer::L2).await;
    read_rounds(&cache, &on_dead, &on_live).await;
    let served = hits(&cache, Layer::L2).await - hits_before;
    assert_eq!(served, 3 * on_live.len() as u64, "every live key hit L2");

    let all = circuits(&cache, Layer::L2).await;
    assert_ne!(
        breaker_of(&all, dead.port()).state,
        CircuitState::Closed,
        "{all:?}"
    );
    assert!(breaker_of(&all, dead.port()).opened >= 1, "{all:?}");
    assert_eq!(
        breaker_of(&all, live.port()).state,
        CircuitState::Closed,
        "{all:?}"
    );
    assert_eq!(breaker_of(&all, live.port()).opened, 0, "{all:?}");
}

/// A store that refuses a value for its size (memcached's item limit, Redis's bulk length: the
/// stores report `ValueTooLarge`) is well: the write counts it in `too_large`, not in `errors`,
/// and the layer's older value goes, as for a value over the layer's own `max_value_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_refusal_by_a_store_counts_as_too_large_not_as_an_error() {
    use vorte_cache::testing::{Op, TestStore};
    use vorte_cache::{Error, ErrorKind, Layer};
    let store = TestStore::new();
    let config = vorte_cache::Config::from_toml_str("[cache.layers.l1]\nenabled = false")
        .expect("config")
        .cache;
    let cache = vorte_cache::Cache::builder(&config)
        .store(Layer::L2, std::sync::Arc::new(store.clone()))
        .build()
        .await
        .expect("cache");
    cache.set("k", &"small").await.expect("set");
    store.fail(
        Op::Put,
        "k",
        Error::new(
            ErrorKind::ValueTooLarge,
            "SERVER_ERROR object too large for cache",
        ),
    );
    let refused = cache.set("k", &"large").await;
    assert_eq!(refused.map_err(|e| e.kind()), Err(ErrorKind::ValueTooLarge));
    let stats = cache.stats();
    let l2 = stats.layer(Layer::L2).expect("L2");
    assert_eq!((l2.too_large, l2.errors), (1, 0));
}
