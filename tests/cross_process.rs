//! Cross-process claims, proven with separate OS processes (`tests/worker.rs`); the ids are those
//! of `docs/guarantees.md`: exact counters (G5), no resurrection by a load in another process (G3),
//! lost messages dropping L1 (G4), invalidation reaching other processes' L1 (G2, with the delay
//! measured), and events delivered to every process, also after a disconnection and sharded over
//! a cluster's primaries.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vorte_cache::{Cache, Config, Vorte, on_event};
use vorte_cache_tests::servers::{RedisCluster, redis_cmd};
use vorte_cache_tests::{
    Env, Stack, shared_cluster, shared_memcached, shared_redis, unique_prefix,
};

/// A process has one installed application: the tests that build one take turns.
static APP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What this process's `#[on_event]` handlers ran for (wired only where the application is built
/// with `auto_load`).
static HEARD: std::sync::Mutex<Vec<(&str, u64)>> = std::sync::Mutex::new(Vec::new());

#[on_event("xp.tick")]
async fn heard_tick(n: u64) {
    HEARD.lock().unwrap().push(("xp.tick", n));
}

#[on_event("xp.tock")]
async fn heard_tock(n: u64) {
    HEARD.lock().unwrap().push(("xp.tock", n));
}

/// A worker process, killed on drop.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    _config: tempfile::NamedTempFile,
}

impl Worker {
    fn start(env: &Env) -> Worker {
        Worker::start_with_toml(&env.toml("", ""))
    }

    fn start_with_toml(toml: &str) -> Worker {
        let mut config = tempfile::NamedTempFile::new().expect("config file");
        config.write_all(toml.as_bytes()).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vorte-worker"))
            .arg(config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("worker starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut worker = Worker {
            child,
            stdin,
            lines,
            _config: config,
        };
        worker.expect("started");
        worker
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("send");
        self.stdin.flush().expect("flush");
    }

    /// The next line, which must start with `prefix`; the rest of it is returned.
    fn expect(&mut self, prefix: &str) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| {
                panic!("worker said nothing for 20 s while we waited for {prefix:?}: {e}")
            });
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, worker said {line:?}"))
            .trim()
            .to_owned()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

async fn counters_are_exact(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache
        .set("counter", &0i64)
        .ttl(Duration::from_secs(3600))
        .await
        .expect("set");
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&env)).collect();
    for w in &mut workers {
        w.send("incr counter 150");
    }
    for _ in 0..150 {
        cache.increment("counter", 1).await.expect("increment");
    }
    for w in &mut workers {
        w.expect("done");
    }
    let fresh = env.cache("").await;
    assert_eq!(
        fresh.get::<i64>("counter").await.expect("get"),
        Some(600),
        "{stack:?}"
    );
    workers[0].send("get counter");
    assert_eq!(workers[0].expect("value"), "600");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_exact_across_processes() {
    for stack in [
        Stack::L1Redis,
        Stack::L1Memcached,
        Stack::L1Cluster,
        Stack::Full,
    ] {
        counters_are_exact(stack).await;
    }
}

/// `docs/guarantees.md#g3-no-resurrection` across processes: a worker's load reads the old value
/// (slowly), this process deletes the key meanwhile, then the load finishes: the old value must not
/// land in any layer, in any process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_a_delete_in_another_process_never_writes_back() {
    for stack in [
        Stack::L1Redis,
        Stack::L1Memcached,
        Stack::L1Cluster,
        Stack::Full,
    ] {
        let env = Env::new(stack);
        let cache = env.cache("").await;
        let mut worker = Worker::start(&env);
        worker.send("slowload user:1");
        worker.expect("loading");
        cache.delete("user:1").await.expect("delete");
        worker.send("release");
        assert_eq!(
            worker.expect("loaded"),
            "old",
            "the caller still gets what it loaded"
        );
        // Neither this process, nor a fresh one, nor the worker itself may see it.
        assert_eq!(
            cache.get::<String>("user:1").await.expect("get"),
            None,
            "{stack:?}"
        );
        let fresh = env.cache("").await;
        assert_eq!(
            fresh.get::<String>("user:1").await.expect("get"),
            None,
            "{stack:?}"
        );
        worker.send("get user:1");
        assert_eq!(worker.expect("value"), "none", "{stack:?}");
        // And a later write is served normally.
        cache.set("user:1", &"new").await.expect("set");
        assert_eq!(
            fresh.get::<String>("user:1").await.expect("get").as_deref(),
            Some("new")
        );
        worker.send("quit");
    }

    // Without any bus, no notice can fence the worker's load: only the tombstone left by the
    // delete in the shared layer stops its write.
    let prefix = unique_prefix();
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l2]\nbackend = \"memcached\"\nurl = {:?}\n",
        shared_memcached().url()
    );
    let cache = Cache::from_config(
        &vorte_cache::Config::from_toml_str(&toml)
            .expect("config")
            .cache,
    )
    .await
    .expect("cache");
    assert!(!cache.has_bus());
    let mut worker = Worker::start_with_toml(&toml);
    worker.send("slowload user:1");
    worker.expect("loading");
    cache.delete("user:1").await.expect("delete");
    worker.send("release");
    assert_eq!(worker.expect("loaded"), "old");
    assert_eq!(
        cache.get::<String>("user:1").await.expect("get"),
        None,
        "no bus"
    );
}

/// `docs/guarantees.md#g4-gap-detection`: a receiver that comes back to find the messages after its
/// last id trimmed away has lost invalidations, so it drops its L1 instead of serving what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_lost_invalidations_drops_its_l1() {
    let env = Env::with_own_redis();
    let port = env.redis().port();
    let cache = env.cache("").await;
    cache.set("held", &"old").await.expect("set");
    let mut worker = Worker::start(&env);
    worker.send("get held");
    assert_eq!(worker.expect("value"), "\"old\"", "now in the worker's L1");

    // Freeze the worker, cut its connections, and let the delete's message be trimmed away
    // before it can read it; a later message shows the stream moved past its last id.
    worker.signal("-STOP");
    redis_cmd(port, &["CLIENT", "KILL", "TYPE", "normal"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cache.delete("held").await.expect("delete"));
    let stream = format!("{}bus", env.prefix());
    redis_cmd(port, &["XTRIM", &stream, "MAXLEN", "0"]);
    cache.set("unrelated", &1).await.expect("a later message");
    worker.signal("-CONT");

    // The worker never received the delete, yet it must not serve "old".
    worker_reads_within_10s(
        &mut worker,
        "held",
        "none",
        "the worker kept serving the old value",
    )
    .await;
}

/// Polls `get key` in the worker until it answers `value`; fails after 10 s with `why`.
async fn worker_reads_within_10s(worker: &mut Worker, key: &str, value: &str, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        worker.send(&format!("get {key}"));
        if worker.expect("value") == value {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Installs this process's application (no handlers of its own) on `env`.
async fn install(env: &Env) {
    Vorte::builder()
        .config(env.config("", ""))
        .build()
        .await
        .expect("build");
}

/// Installs this process's application on `env` and starts a worker whose L1 holds `"old"` under
/// `held` while L2 holds `"new"`, written by a cache whose messages the worker never hears.
async fn worker_with_a_stale_copy(env: &Env) -> Worker {
    install(env).await;
    let cache = Cache::global();
    cache.set("held", &"old").await.expect("set");
    let mut worker = Worker::start(env);
    worker.send("get held");
    assert_eq!(worker.expect("value"), "\"old\"", "now in the worker's L1");
    // A writer whose invalidations go to another bus: the worker never hears of this value.
    let silent = Cache::from_config(
        &env.config(
            &format!("[cache.bus]\nurl = {:?}", shared_redis().url()),
            "",
        )
        .cache,
    )
    .await
    .expect("cache");
    silent.set("held", &"new").await.expect("set");
    worker.send("get held");
    assert_eq!(worker.expect("value"), "\"old\"", "still the stale L1 copy");
    worker
}

/// `docs/guarantees.md#g4-gap-detection` for events: an event stream trimmed past what a receiver
/// read also drops its L1, since the lost event's handler may have been what invalidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_lost_events_drops_its_l1() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    let port = env.redis().port();
    let mut worker = worker_with_a_stale_copy(&env).await;

    // Freeze the worker, cut its connections, emit, and trim the event away before it is read.
    worker.signal("-STOP");
    redis_cmd(port, &["CLIENT", "KILL", "TYPE", "normal"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    vorte_cache::emit("xp.unheard", &serde_json::json!({ "n": 1 }))
        .await
        .expect("emit");
    redis_cmd(port, &["XTRIM", &event_stream(&env), "MAXLEN", "0"]);
    worker.signal("-CONT");

    // The worker drops its L1, so it reads the current value from L2.
    worker_reads_within_10s(
        &mut worker,
        "held",
        "\"new\"",
        "the worker kept serving its stale copy",
    )
    .await;
}

/// Percentile of sorted samples.
fn pct(sorted: &[u128], p: f64) -> u128 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `docs/guarantees.md#g2-invalidation` across processes: after each invalidating call returns
/// here, a worker that holds the key in its L1 stops serving it; the delay is printed (the figures
/// of `docs/consistency.md#measured-delay-g2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_the_l1_of_other_processes() {
    for stack in [Stack::L1Redis, Stack::L1Memcached, Stack::L1Cluster] {
        let env = Env::new(stack);
        let cache = env.cache("").await;
        let mut worker = Worker::start(&env);
        const ROUNDS: usize = 60;
        for op in ["delete", "delete_many", "invalidate_tag", "flush"] {
            let mut delays = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                let key = format!("{op}:{round}");
                cache
                    .set(&key, &round)
                    .tags([format!("tag:{round}")])
                    .await
                    .expect("set");
                worker.send(&format!("watch {key}"));
                worker.expect("ready");
                match op {
                    "delete" => assert!(cache.delete(&key).await.expect("delete")),
                    "delete_many" => assert_eq!(cache.delete_many(&[&key]).await.expect("dm"), 1),
                    "invalidate_tag" => cache
                        .invalidate_tag(&format!("tag:{round}"))
                        .await
                        .expect("tag"),
                    _ => cache.flush().await.expect("flush"),
                }
                let returned = unix_micros();
                let gone = worker.expect("gone");
                let gone: u128 = gone.parse().expect("micros");
                delays.push(gone.saturating_sub(returned));
            }
            delays.sort_unstable();
            println!(
                "G2 {stack:?} {op}: {ROUNDS} rounds, delay after the call returned: p50 {} µs, p99 {} µs, max {} µs",
                pct(&delays, 0.5),
                pct(&delays, 0.99),
                delays[ROUNDS - 1]
            );
        }
        worker.send("quit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_process_also_after_a_disconnection() {
    let _app = APP.lock().await;
    // A server of its own: this test kills every client connection.
    let env = Env::with_own_redis();
    // This process emits through its installed application.
    install(&env).await;
    assert!(Cache::global().has_bus());
    let mut a = Worker::start(&env);
    let mut b = Worker::start(&env);
    vorte_cache::emit("xp.ping", &serde_json::json!({ "n": 1 }))
        .await
        .expect("emit");
    assert_eq!(a.expect("event"), "1");
    assert_eq!(b.expect("event"), "1");

    // Worker `a` is frozen, and every client connection is killed meanwhile, so its connection is
    // gone when it wakes; the event emitted in between must still reach it.
    a.signal("-STOP");
    let killed = redis_cmd(env.redis().port(), &["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(killed.starts_with(':'), "{killed}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    vorte_cache::emit("xp.ping", &serde_json::json!({ "n": 2 }))
        .await
        .expect("emit after the kill");
    assert_eq!(b.expect("event"), "2");
    a.signal("-CONT");
    assert_eq!(a.expect("event"), "2", "delivered after the reconnection");
}

/// The only event stream of `env`'s prefix (one shard on a single Redis).
fn event_stream(env: &Env) -> String {
    let streams = keys_in(&redis_cmd(
        env.redis().port(),
        &["KEYS", &format!("{}bus:ev:*", env.prefix())],
    ));
    assert_eq!(
        streams.len(),
        1,
        "one event stream on a single Redis: {streams:?}"
    );
    streams[0].clone()
}

/// The keys of a `KEYS` reply (raw RESP).
fn keys_in(reply: &str) -> Vec<String> {
    reply
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.starts_with(['*', '$']))
        .map(str::to_owned)
        .collect()
}

/// Installs this process's application with only L1 and a `[cache.bus]` on `cluster`, given as a
/// cluster URL (one seed node, the others as `node=`); returns the TOML for the workers.
async fn install_with_cluster_bus(cluster: &RedisCluster, prefix: &str) -> String {
    let ports = cluster.ports();
    let nodes: Vec<String> = ports[1..]
        .iter()
        .map(|p| format!("node=127.0.0.1:{p}"))
        .collect();
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.bus]\nurl = \"redis-cluster://127.0.0.1:{}?{}\"\n",
        ports[0],
        nodes.join("&")
    );
    Vorte::builder()
        .auto_load(true)
        .config(Config::from_toml_str(&toml).expect("config"))
        .build()
        .await
        .expect("build");
    toml
}

/// With the bus on a Redis Cluster, events travel on three streams (the default), one per primary, chosen
/// by the event's name, and still reach every process, both ways, without running twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_sharded_over_the_primaries_of_a_cluster_bus() {
    let _app = APP.lock().await;
    let cluster = shared_cluster();
    let prefix = unique_prefix();
    let toml = install_with_cluster_bus(cluster, &prefix).await;
    assert!(Cache::global().has_bus());
    let mut worker = Worker::start_with_toml(&toml);

    // This process to the worker: `xp.ping`, `xp.tick` and `xp.tock` use the three shards of 3
    // (pinned in the bus's unit tests). Three streams have three readers, so the order across
    // names is not kept.
    for (event, n) in [("xp.ping", 1), ("xp.tick", 2), ("xp.tock", 3)] {
        vorte_cache::emit(event, &serde_json::json!({ "n": n }))
            .await
            .expect("emit");
    }
    let mut got: Vec<String> = (0..3).map(|_| worker.expect("")).collect();
    got.sort();
    assert_eq!(got, ["event 1", "tick 2", "tock 3"]);

    // The worker to this process. Its own handler runs before its `emit` returns.
    for (event, n, printed) in [("xp.tick", 12, "tick 12"), ("xp.tock", 13, "tock 13")] {
        worker.send(&format!("emit {event} {n}"));
        assert_eq!(worker.expect(""), printed);
        worker.expect("emitted");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let heard = HEARD.lock().unwrap().clone();
        if heard.contains(&("xp.tick", 12)) && heard.contains(&("xp.tock", 13)) {
            // And this process's own events ran here once, not again when they came back.
            for own in [("xp.tick", 2), ("xp.tock", 3)] {
                assert_eq!(heard.iter().filter(|h| **h == own).count(), 1, "{heard:?}");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker's events never ran here: {heard:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The streams: three event streams (the cluster default), one on each of the 3 primaries, and
    // no main stream, since no invalidation was sent.
    let pattern = format!("{prefix}bus*");
    let per_primary: Vec<(u16, Vec<String>)> = cluster
        .primaries()
        .into_iter()
        .map(|port| (port, keys_in(&redis_cmd(port, &["KEYS", &pattern]))))
        .collect();
    let all: Vec<&String> = per_primary.iter().flat_map(|(_, keys)| keys).collect();
    assert_eq!(all.len(), 3, "{per_primary:?}");
    for key in &all {
        assert!(
            key.starts_with(&format!("{prefix}bus:ev:")) && key.contains("/3:{"),
            "{key}"
        );
    }
    assert!(
        per_primary.iter().all(|(_, keys)| keys.len() == 1),
        "one event stream per primary: {per_primary:?}"
    );
    worker.send("quit");
}

/// As `events_reach_every_process_also_after_a_disconnection`, with the bus on a cluster of its
/// own: a frozen worker whose connections to every node were killed still gets, once it wakes,
/// the event emitted meanwhile on its shard's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_on_a_cluster_bus_reach_a_process_after_a_disconnection() {
    let _app = APP.lock().await;
    // A cluster of its own: this test kills every client connection of every node.
    let cluster = RedisCluster::start(3, 0);
    let ports = cluster.ports();
    let toml = install_with_cluster_bus(&cluster, &unique_prefix()).await;
    let mut worker = Worker::start_with_toml(&toml);
    vorte_cache::emit("xp.ping", &serde_json::json!({ "n": 1 }))
        .await
        .expect("emit");
    assert_eq!(worker.expect("event"), "1");

    worker.signal("-STOP");
    for port in &ports {
        let killed = redis_cmd(*port, &["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(killed.starts_with(':'), "{killed}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    vorte_cache::emit("xp.ping", &serde_json::json!({ "n": 2 }))
        .await
        .expect("emit after the kill");
    worker.signal("-CONT");
    assert_eq!(
        worker.expect("event"),
        "2",
        "delivered after the reconnection"
    );
    worker.send("quit");
}

/// `docs/guarantees.md#g4-gap-detection` across processes, for a receiver that lags without
/// reconnecting: the worker's event receiver is held up by a slow handler, its connection up,
/// while the events after it are trimmed away; once the handler returns, the worker must drop its
/// L1 before it runs the next event (`tests/bus_gaps.rs` has the in-process form).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_lagging_behind_a_slow_handler_drops_its_l1() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    let port = env.redis().port();
    let mut worker = worker_with_a_stale_copy(&env).await;

    vorte_cache::emit("xp.hold", &serde_json::json!({}))
        .await
        .expect("emit");
    worker.expect("holding");
    // While the worker's handler runs: an event it will never read, then one it will.
    for (event, n) in [("xp.unheard", 1), ("xp.ping", 7)] {
        vorte_cache::emit(event, &serde_json::json!({ "n": n }))
            .await
            .expect("emit");
    }
    redis_cmd(port, &["XTRIM", &event_stream(&env), "MAXLEN", "1"]);
    worker.send("release-hold");
    assert_eq!(worker.expect("event"), "7", "the event after the gap");
    worker.send("get held");
    assert_eq!(
        worker.expect("value"),
        "\"new\"",
        "the lagging worker kept serving its stale L1"
    );
    worker.send("quit");
}

/// A panicking `#[on_event]` handler in another process is caught there: that process's
/// receiver reads on, and the next event still runs (`tests/bus_gaps.rs` has the in-process
/// form, with the count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_does_not_stop_another_process_s_events() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    install(&env).await;
    let mut worker = Worker::start(&env);
    for (event, n) in [("xp.panic", 1), ("xp.ping", 2)] {
        vorte_cache::emit(event, &serde_json::json!({ "n": n }))
            .await
            .expect("emit");
    }
    assert_eq!(
        worker.expect("event"),
        "2",
        "the event after the panicking handler"
    );
    worker.send("quit");
}
