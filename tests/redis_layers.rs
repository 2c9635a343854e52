//! Redis-specific guarantees, on servers of this binary's own; the ids are those of
//! `docs/guarantees.md`: isolation under the key prefix (G6), O(1) tag invalidation in round trips
//! (G7), ACL users from the URL with the password kept out of `Debug` (S1, S2), TLS with a private
//! CA (S2), and a Redis killed under load (F1, F2, M1).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vorte_cache::{Cache, Config, Layer, Vorte, cached};
use vorte_cache_tests::servers::{RedisCluster, RedisServer, redis_cmd};
use vorte_cache_tests::{Env, Stack, unique_prefix};

fn l2(url: &str, prefix: &str, extra: &str) -> Config {
    Config::from_toml_str(&format!(
        "[cache]\nkey_prefix = {prefix:?}\n{extra}\n[cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\ntimeout_ms = 200\n"
    ))
    .expect("config")
}

/// `cmdstat_<name>` calls from `INFO commandstats`.
fn calls(port: u16, command: &str) -> u64 {
    let info = redis_cmd(port, &["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Calls of every command except the bus receiver's reads (its blocking wait, then the checked
/// read of what arrived) and connection housekeeping, which run on their own schedule.
fn total_calls(port: u16) -> u64 {
    let info = redis_cmd(port, &["INFO", "commandstats"]);
    let background = [
        "cmdstat_xread:",
        "cmdstat_xrange:",
        "cmdstat_xinfo",
        "cmdstat_info:",
        "cmdstat_ping:",
        "cmdstat_hello:",
        "cmdstat_client",
    ];
    info.lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(|l| !background.iter().any(|b| l.starts_with(b)))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn exercise(cache: &Cache) {
    for i in 0..50 {
        cache
            .set(&format!("k:{i}"), &i)
            .tags(["t"])
            .await
            .expect("set");
    }
    assert_eq!(cache.keys("k:*").await.expect("keys").len(), 50);
    let all = cache.keys("*").await.expect("keys").len() as u64;
    assert_eq!(cache.usage().await.expect("usage").total_keys, all);
    cache.increment("n", 1).await.expect("incr");
    cache.invalidate_tag("t").await.expect("tag");
    cache.delete_many(&["k:1", "k:2"]).await.expect("dm");
    cache.flush().await.expect("flush");
    assert!(cache.keys("*").await.expect("keys").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_prefix_is_touched_and_no_global_command_is_sent() {
    let server = RedisServer::start();
    let port = server.port();
    redis_cmd(port, &["SET", "foreign:key", "keep me"]);
    redis_cmd(port, &["SET", "vorte:lookalike", "keep me too"]);
    let prefix = unique_prefix();
    let cache = Cache::from_config(&l2(&server.url(), &prefix, "").cache)
        .await
        .expect("cache");
    cache.set("before", &1).await.expect("set");
    // Every key the cache wrote starts with its prefix.
    let keys = redis_cmd(port, &["KEYS", "*"]);
    for line in keys
        .lines()
        .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
    {
        assert!(
            line.starts_with(&prefix) || line == "foreign:key" || line == "vorte:lookalike",
            "unexpected key {line}"
        );
    }
    redis_cmd(port, &["CONFIG", "RESETSTAT"]);
    exercise(&cache).await;
    for command in ["flushdb", "flushall", "keys"] {
        assert_eq!(calls(port, command), 0, "{command} was sent");
    }
    assert!(redis_cmd(port, &["GET", "foreign:key"]).contains("keep me"));
    assert!(redis_cmd(port, &["GET", "vorte:lookalike"]).contains("keep me too"));

    // The same on a cluster: every primary is scanned, nothing else is touched.
    let cluster = RedisCluster::start(3, 0);
    let urls = cluster.urls();
    for p in cluster.primaries() {
        redis_cmd(p, &["CONFIG", "RESETSTAT"]);
    }
    let prefix = unique_prefix();
    let config = Config::from_toml_str(&format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = {urls:?}\n"
    ))
    .expect("config");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    exercise(&cache).await;
    let mut scans = 0;
    for p in cluster.primaries() {
        for command in ["flushdb", "flushall", "keys"] {
            assert_eq!(calls(p, command), 0, "{command} was sent to {p}");
        }
        scans += u64::from(calls(p, "scan") > 0);
    }
    assert_eq!(scans, 3, "keys, stats and flush scan every primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_costs_the_same_round_trips_at_any_size() {
    let server = RedisServer::start();
    let port = server.port();
    let cache = Cache::from_config(&l2(&server.url(), &unique_prefix(), "").cache)
        .await
        .expect("cache");
    let mut costs = Vec::new();
    for n in [10usize, 2_000] {
        let tag = format!("size:{n}");
        for i in 0..n {
            cache
                .set(&format!("{tag}:{i}"), &i)
                .tags([tag.as_str()])
                .await
                .expect("set");
        }
        redis_cmd(port, &["CONFIG", "RESETSTAT"]);
        cache.invalidate_tag(&tag).await.expect("invalidate");
        costs.push(total_calls(port));
        let fresh = Cache::from_config(&l2(&server.url(), &unique_prefix(), "").cache)
            .await
            .expect("cache");
        drop(fresh);
        assert_eq!(
            cache.get::<usize>(&format!("{tag}:0")).await.expect("get"),
            None
        );
    }
    assert_eq!(
        costs[0], costs[1],
        "commands sent for 10 vs 2,000 tagged entries: {costs:?}"
    );
    assert!(
        costs[1] <= 3,
        "one SET of the tag record and one XADD: {costs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_work_and_passwords_stay_out_of_debug() {
    let server = RedisServer::start_with_acl("app", "s3cr3t-pw");
    let config = l2(&server.url(), &unique_prefix(), "");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    cache.set("k", &"v").await.expect("set");
    let other = Cache::from_config(&config.cache).await.expect("cache");
    assert_eq!(
        other.get::<String>("k").await.expect("get").as_deref(),
        Some("v"),
        "read back from Redis"
    );
    assert_eq!(other.stats().l2_hits, 1);
    for shown in [
        format!("{config:?}"),
        format!("{cache:?}"),
        format!("{:?}", cache.config()),
    ] {
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    }

    // A wrong password: the layer fails and is skipped, and the cache still answers. Its bus
    // (on the same Redis) cannot be heard either, so it keeps nothing in L1: another process's
    // invalidation could not reach it (`docs/guarantees.md#g4-gap-detection`).
    let wrong = server.url().replace("s3cr3t-pw", "wrong");
    let bad = Cache::from_config(&l2(&wrong, &unique_prefix(), "").cache)
        .await
        .expect("builds");
    bad.set("x", &1).await.expect("L1 takes it");
    assert_eq!(bad.get::<i32>("x").await.expect("get"), None);
    let stats = bad.stats();
    assert!(stats.layer(Layer::L2).expect("l2").errors > 0);
    assert!(bad.bus_stats().expect("a bus").suspensions >= 1);
}

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "load:{id}")]
async fn load(id: u32) -> Result<u32, std::io::Error> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    Ok(id * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_calls_never_fail_while_redis_is_down_and_the_layer_rejoins() {
    let mut env = Env::with_own_redis();
    assert_eq!(env.stack, Stack::L1Redis);
    Vorte::builder()
        .config(env.config("", ""))
        .build()
        .await
        .expect("build");
    let port = env.redis().port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (stop, answered) = (stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let id = w * 1_000 + i % 200;
                    // Never an error for a #[cached] caller, whatever Redis does.
                    assert_eq!(
                        load(id).await.expect("a #[cached] call never fails"),
                        id * 10
                    );
                    answered.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.own_redis_mut().kill();
    let killed_at = answered.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let during = answered.load(Ordering::SeqCst) - killed_at;
    assert!(
        during > 100,
        "calls kept answering while Redis was down: {during}"
    );
    let down = Cache::global().stats();
    assert!(down.layer(Layer::L2).expect("l2").errors > 0, "{down:?}");

    env.own_redis_mut().restart();
    // The layer rejoins by itself: a write reaches Redis again within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let key = format!("{}e:rejoin", env.prefix());
    loop {
        Cache::global().set("rejoin", &1).await.expect("set");
        if redis_cmd(port, &["EXISTS", &key]).starts_with(":1") {
            break;
        }
        assert!(Instant::now() < deadline, "L2 never rejoined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("no caller saw an error");
    }
    assert!(LOADS.load(Ordering::SeqCst) > 0);
}

/// A `redis-server` listening only on TLS, with a certificate from a throw-away CA.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?}");
}

fn start_tls_redis() -> TlsRedis {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=vorte-test-ca",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let port = vorte_cache_tests::servers::free_port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--dir", "."])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vorte_cache_tests::servers::port_accepts(port) {
        assert!(
            Instant::now() < deadline,
            "TLS redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedis { child, port, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_works_with_a_private_ca_and_verifies_the_server() {
    let server = start_tls_redis();
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let ca = server.dir.path().join("ca.crt");
    let trusted = format!("tls_ca_file = {:?}", ca.display().to_string());
    let config = Config::from_toml_str(&format!(
        "[cache]\nkey_prefix = {:?}\n[cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\n{trusted}\ntimeout_ms = 1000\n",
        unique_prefix()
    ))
    .expect("config");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    assert!(
        cache.has_bus(),
        "the bus rides the same TLS connection settings"
    );
    cache.set("k", &"over tls").await.expect("set");
    let other = Cache::from_config(&config.cache).await.expect("cache");
    assert_eq!(
        other.get::<String>("k").await.expect("get").as_deref(),
        Some("over tls")
    );
    assert_eq!(other.stats().l2_hits, 1, "read from Redis over TLS");

    // Without the private CA, the certificate is not trusted: the layer fails and is skipped.
    let untrusted = Config::from_toml_str(&format!(
        "[cache]\nkey_prefix = {:?}\n[cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\ntimeout_ms = 300\n",
        unique_prefix()
    ))
    .expect("config");
    let cache = Cache::from_config(&untrusted.cache).await.expect("builds");
    cache.set("k", &1).await.expect("L1 takes the write");
    let stats = cache.stats();
    assert!(stats.layer(Layer::L2).expect("l2").errors > 0, "{stats:?}");
}

/// Reads from many tasks at once, each checking it got its own key's value; returns how many.
async fn read_concurrently(cache: &Cache, keys: usize, rounds: usize) -> u64 {
    let tasks: Vec<_> = (0..keys)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let got = cache.get::<String>(&format!("c:{i}")).await.expect("get");
                    assert_eq!(got.as_deref(), Some(format!("value {i}").as_str()));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("reader");
    }
    (keys * rounds) as u64
}

async fn fill(cache: &Cache, keys: usize) {
    for i in 0..keys {
        cache
            .set(&format!("c:{i}"), &format!("value {i}"))
            .await
            .expect("set");
    }
}

const NO_L1: &str = "[cache.layers.l1]\nenabled = false";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_coalesce_into_mgets_and_each_caller_gets_its_own_value() {
    let server = RedisServer::start();
    let port = server.port();
    let cache = Cache::from_config(&l2(&server.url(), &unique_prefix(), NO_L1).cache)
        .await
        .expect("cache");
    fill(&cache, 200).await;
    redis_cmd(port, &["CONFIG", "RESETSTAT"]);
    let reads = read_concurrently(&cache, 200, 20).await;
    let (gets, mgets) = (calls(port, "get"), calls(port, "mget"));
    assert!(mgets > 0, "no MGET among {gets} GETs");
    assert!(
        gets + mgets < reads / 2,
        "{reads} concurrent reads took {gets} GETs and {mgets} MGETs"
    );

    // A lone reader is never held back: every read is one GET.
    redis_cmd(port, &["CONFIG", "RESETSTAT"]);
    for i in 0..50 {
        let got = cache.get::<String>(&format!("c:{i}")).await.expect("get");
        assert_eq!(got, Some(format!("value {i}")));
    }
    assert_eq!((calls(port, "get"), calls(port, "mget")), (50, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_reads_on_a_cluster_never_cross_a_slot() {
    let cluster = RedisCluster::start(3, 0);
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n{NO_L1}\n[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = {urls:?}\ntimeout_ms = 500\n",
        prefix = unique_prefix(),
        urls = cluster.urls(),
    );
    let cache = Cache::from_config(&Config::from_toml_str(&toml).expect("config").cache)
        .await
        .expect("cache");
    fill(&cache, 200).await;
    for port in cluster.ports() {
        redis_cmd(port, &["CONFIG", "RESETSTAT"]);
    }
    read_concurrently(&cache, 200, 10).await;
    let mgets: u64 = cluster.ports().iter().map(|&p| calls(p, "mget")).sum();
    assert!(mgets > 0, "the reads were never batched");
    let stats = cache.stats();
    let l3 = stats
        .layers
        .iter()
        .find(|l| l.layer == Layer::L3)
        .expect("l3 stats");
    assert_eq!(l3.errors, 0, "a batched read failed: {l3:?}");
}
