//! `docs/guarantees.md#g4-gap-detection` where it is hardest to keep, on real `redis-server`s:
//! a receiver that lags behind a slow handler without reconnecting, a receiver that starts after
//! the cache was built, a stream whose last id went back, a publish that failed, a server that
//! stops answering, and handlers that panic or never finish.
//!
//! Several caches in this process stand in for several processes. Events from "another process"
//! are appended to the event stream by hand (`XADD`), so that the handlers of this test binary run
//! exactly when the test says; the cross-process form of the panic test is in
//! `tests/cross_process.rs`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

#[path = "bus_gaps/blackhole.rs"]
mod blackhole;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use vorte_cache::{BusStats, Cache, Vorte, on_event};
use vorte_cache_tests::servers::{RedisServer, redis_cmd};
use vorte_cache_tests::{Env, shared_redis};

use blackhole::Blackhole;

/// A process has one installed application: the tests that build one take turns.
static APP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `n` of every `gaps.heard` event this process ran (each test uses numbers of its own).
static HEARD: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// `gaps.hold` says it started, then waits to be released: a slow handler the test controls.
static HOLD_ENTERED: Notify = Notify::const_new();
static HOLD_RELEASE: Notify = Notify::const_new();

#[on_event("gaps.heard")]
async fn heard(n: u64) {
    HEARD.lock().unwrap().push(n);
}

#[on_event("gaps.hold")]
async fn hold() {
    HOLD_ENTERED.notify_one();
    HOLD_RELEASE.notified().await;
}

#[on_event("gaps.panic")]
async fn panics() {
    panic!("a handler that panics, on purpose");
}

#[on_event("gaps.stuck")]
async fn never_finishes() {
    std::future::pending::<()>().await;
}

/// What `cache`'s bus counted.
fn stats(cache: &Cache) -> BusStats {
    cache.bus_stats().expect("a cache with a bus")
}

/// Waits up to 10 s for the `gaps.heard` event numbered `n` to have run here.
async fn heard_within_10s(n: u64, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !HEARD.lock().unwrap().contains(&n) {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cache.get(key)` until it answers `want`; fails after 10 s with `why`.
async fn reads_within_10s(cache: &Cache, key: &str, want: Option<&str>, why: &str) {
    reads_within(Duration::from_secs(10), cache, key, want, why).await;
}

/// How long a bus that went silent and came back may take to deliver again: a few renewed
/// connections (each attempt given up after 2 s) and a retry pause of up to 1 s, on a machine the
/// test shares with others. A liveness bound: the claims are that it happens at all.
const AFTER_SILENCE: Duration = Duration::from_secs(30);

/// Polls `cache.get(key)` until it answers `want`; fails after `bound` with `why`.
async fn reads_within(bound: Duration, cache: &Cache, key: &str, want: Option<&str>, why: &str) {
    let deadline = Instant::now() + bound;
    loop {
        let got = cache.get::<String>(key).await.expect("get");
        if got.as_deref() == want {
            return;
        }
        assert!(Instant::now() < deadline, "{why}: still {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to 10 s for `cache` to read `"new"` under `held` (the value [`make_stale`] hid from
/// it), which it can only once it dropped its L1, and for a gap to be counted.
async fn drops_l1_within_10s(cache: &Cache, why: &str) {
    reads_within_10s(cache, "held", Some("new"), why).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(cache).gaps == 0 {
        assert!(
            Instant::now() < deadline,
            "no gap counted: {:?}",
            stats(cache)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A proxy to `env`'s Redis, a cache whose bus goes through it, and one whose bus does not (both
/// reach L2 directly).
async fn behind_a_proxy(env: &Env) -> (Blackhole, Cache, Cache) {
    let proxy = Blackhole::start(env.redis().port()).await;
    let proxied = env
        .cache(&format!("[cache.bus]\nurl = {:?}", proxy.url()))
        .await;
    let direct = env
        .cache(&format!("[cache.bus]\nurl = {:?}", env.redis().url()))
        .await;
    (proxy, proxied, direct)
}

/// Appends an event as another process would send it (another cache id, another process id).
fn publish_raw(port: u16, stream: &str, event: &str, payload: &str) {
    let message = format!(
        r#"{{"origin":1,"process":1,"kind":"event","event":"{event}","payload":{payload}}}"#
    );
    let reply = redis_cmd(port, &["XADD", stream, "*", "m", &message]);
    assert!(reply.starts_with('$'), "{reply}");
}

/// Installs an application (every handler of this binary) on `env` with extra `[cache]` lines,
/// and returns the name of its only event stream (one shard on a single Redis).
async fn install(env: &Env, cache_toml: &str) -> String {
    Vorte::builder()
        .auto_load(true)
        .config(env.config(cache_toml, ""))
        .build()
        .await
        .expect("build");
    // An event nobody handles creates the stream.
    vorte_cache::emit("gaps.nobody", &serde_json::json!({}))
        .await
        .expect("emit");
    let port = env.redis().port();
    let reply = redis_cmd(port, &["KEYS", &format!("{}bus:ev:*", env.prefix())]);
    let streams: Vec<&str> = reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with(['*', '$']))
        .collect();
    assert_eq!(streams.len(), 1, "{reply}");
    streams[0].to_owned()
}

/// A cache on `env`'s L2 whose bus is elsewhere: what it writes, `env`'s caches never hear of.
async fn silent_writer(env: &Env) -> Cache {
    let bus = format!("[cache.bus]\nurl = {:?}", shared_redis().url());
    Cache::from_config(&env.config(&bus, "").cache)
        .await
        .expect("cache")
}

/// Leaves `old` in `cache`'s L1 under `key` while L2 holds `new`, unknown to `cache`.
///
/// On a loaded machine the bus may answer a blocking read late, and the receiver then rightly
/// stops trusting L1 for a while (`docs/guarantees.md#g4-gap-detection`): the read finds `new` at
/// once. Only then, once a suspension has been counted, is the stale copy made again.
async fn make_stale(env: &Env, cache: &Cache, key: &str) {
    let writer = silent_writer(env).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cache.set(key, &"old").await.expect("set");
        writer.set(key, &"new").await.expect("set");
        let read = cache.get::<String>(key).await.expect("get");
        if read.as_deref() != Some("old")
            && stats(cache).suspensions > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(
            read.as_deref(),
            Some("old"),
            "the stale L1 copy; bus {:?}",
            stats(cache)
        );
        return;
    }
}

/// (a) A receiver held up by a slow handler, with its connection up, while the messages after its
/// position are trimmed away: it must notice when it reads again, and drop L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_lagging_behind_a_slow_handler_notices_trimmed_messages() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    let port = env.redis().port();
    let stream = install(&env, "").await;
    let cache = Cache::global();
    make_stale(&env, &cache, "held").await;
    assert_eq!(stats(&cache).gaps, 0, "nothing lost yet");

    publish_raw(port, &stream, "gaps.hold", "{}");
    tokio::time::timeout(Duration::from_secs(10), HOLD_ENTERED.notified())
        .await
        .expect("the slow handler started");
    // While it runs: a message this receiver will never read, then one it will.
    publish_raw(port, &stream, "gaps.lost", "{}");
    publish_raw(port, &stream, "gaps.heard", r#"{"n":101}"#);
    redis_cmd(port, &["XTRIM", &stream, "MAXLEN", "1"]);
    assert_eq!(
        redis_cmd(port, &["XLEN", &stream]),
        ":1\r\n",
        "only the last kept"
    );
    HOLD_RELEASE.notify_one();

    heard_within_10s(101, "the event after the gap never ran").await;
    // L1 is dropped before the batch after a gap is delivered, so this is settled now.
    assert_eq!(
        cache.get::<String>("held").await.expect("get").as_deref(),
        Some("new"),
        "the lagging receiver kept serving its stale L1"
    );
    assert_eq!(stats(&cache).gaps, 1);
}

/// (b) The bus is unreachable while the cache is built: its receivers fix their positions later,
/// and whatever was sent in between is unknown. Until the receiver of invalidations has started,
/// the cache keeps nothing in L1 (it could not hear of a change); then it counts a gap and uses
/// L1 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_starts_late_keeps_l1_suspended_until_it_starts() {
    let env = Env::with_own_redis();
    let bus = RedisServer::start();
    bus.pause();
    let config = env.config(&format!("[cache.bus]\nurl = {:?}", bus.url()), "");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    assert!(cache.has_bus());
    cache.set("held", &"old").await.expect("set");
    silent_writer(&env)
        .await
        .set("held", &"new")
        .await
        .expect("set");
    assert_eq!(
        cache.get::<String>("held").await.expect("get").as_deref(),
        Some("new"),
        "a cache that could not hear its bus served its own L1 copy"
    );
    assert_eq!(l1_hits(&cache).await, 0, "nothing read from L1");
    bus.resume();
    let why = "L1 serves once the late receiver has started";
    until_l1_serves(AFTER_SILENCE, &cache, "held", "new", why).await;
    assert!(stats(&cache).gaps >= 1, "{:?}", stats(&cache));
}

/// (c) The bus's Redis comes back from an older snapshot: the stream's last id is now behind what
/// the receiver read, and what was sent after the snapshot is gone. That is a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_last_id_went_back_is_a_gap() {
    let env = Env::with_own_redis();
    let mut bus = RedisServer::start();
    let toml = format!("[cache.bus]\nurl = {:?}", bus.url());
    let reader = env.cache(&toml).await;
    let writer = env.cache(&toml).await;
    writer.set("moving", &"1").await.expect("set");
    assert_eq!(bus.cmd(&["SAVE"]), "+OK\r\n");
    // After the snapshot: a message the reader reads, so its position is past the snapshot.
    writer.set("moving", &"2").await.expect("set");
    reader.get::<String>("moving").await.expect("get");
    writer.set("moving", &"3").await.expect("set");
    reads_within_10s(&reader, "moving", Some("3"), "the reader follows the bus").await;
    make_stale(&env, &reader, "held").await;
    assert_eq!(stats(&reader).gaps, 0, "nothing lost yet");

    // Killed and restarted on its snapshot (same directory, so `dump.rdb` is loaded).
    bus.restart();
    let stream = format!("{}bus", env.prefix());
    assert_eq!(
        bus.cmd(&["EXISTS", &stream]),
        ":1\r\n",
        "the snapshot's stream"
    );
    drops_l1_within_10s(
        &reader,
        "the receiver took a stream that went back for an intact one",
    )
    .await;
}

/// (d) A publish that fails (the bus connection went silent) is retried until it is delivered, in
/// order, and the other cache drops its copy then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_retried_until_delivered() {
    let env = Env::with_own_redis();
    let (proxy, writer, reader) = behind_a_proxy(&env).await;
    writer.set("k", &"old").await.expect("set");
    reads_within_10s(&reader, "k", Some("old"), "the reader sees the value").await;

    proxy.swallow();
    assert!(
        writer
            .delete("k")
            .await
            .expect("delete: L2 is reached directly")
    );
    writer.set("after", &"x").await.expect("a later message");
    reads_within(
        AFTER_SILENCE,
        &reader,
        "k",
        None,
        "the delete's message was never delivered",
    )
    .await;
    let counted = stats(&writer);
    assert!(counted.publish_retries >= 1, "{counted:?}");
    assert_eq!(counted.publish_dropped, 0, "{counted:?}");
    assert_eq!(stats(&reader).gaps, 0, "a retry is no gap");
}

/// (e) The server stops answering on the receiver's connection (a dead link that does not
/// close): its commands time out, it opens a new connection, and reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_connection_goes_silent_reconnects() {
    let env = Env::with_own_redis();
    let (proxy, reader, writer) = behind_a_proxy(&env).await;
    writer.set("k", &"old").await.expect("set");
    assert_eq!(
        reader.get::<String>("k").await.expect("get").as_deref(),
        Some("old")
    );
    proxy.swallow();
    // Longer than the blocking read's own deadline, so that the receiver has given up on it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(writer.delete("k").await.expect("delete"));
    reads_within(
        AFTER_SILENCE,
        &reader,
        "k",
        None,
        "the receiver hangs on its silent connection",
    )
    .await;
    assert!(stats(&reader).receiver_errors >= 1);
}

/// (f) A handler that panics is logged and counted; the receiver reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_does_not_stop_the_events_after_it() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    let port = env.redis().port();
    let stream = install(&env, "").await;
    publish_raw(port, &stream, "gaps.panic", "{}");
    publish_raw(port, &stream, "gaps.heard", r#"{"n":201}"#);
    heard_within_10s(201, "the receiver died with the panicking handler").await;
    assert_eq!(stats(&Cache::global()).handler_panics, 1);
}

/// A handler that runs past `[cache.bus] handler_timeout_ms` is abandoned, logged and counted;
/// the events after it run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_timeout_is_abandoned() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    let port = env.redis().port();
    let bus = format!(
        "[cache.bus]\nurl = {:?}\nhandler_timeout_ms = 300",
        env.redis().url()
    );
    let stream = install(&env, &bus).await;
    publish_raw(port, &stream, "gaps.stuck", "{}");
    publish_raw(port, &stream, "gaps.heard", r#"{"n":301}"#);
    heard_within_10s(301, "a handler that never finishes held up its shard").await;
    assert_eq!(stats(&Cache::global()).handler_timeouts, 1);
}

/// An event is run once even when the receiver's connection is cut while it checks the batch
/// that holds it: the blocking read hands the event on at once, and the next read, from the
/// position inclusive, checks it (here with `XINFO STREAM`: the stream was empty when the
/// receiver started, so there is no entry at its position to find again); the retry after the
/// cut must still know what was handed on. The cross-process form, with every client connection
/// killed, is `tests/cross_process.rs` `events_reach_every_process_also_after_a_disconnection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_runs_once_when_the_check_after_its_read_is_cut() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    let port = env.redis().port();
    // An application on the server itself creates the event stream, which is then emptied.
    let stream = install(&env, "").await;
    redis_cmd(port, &["XTRIM", &stream, "MAXLEN", "0"]);
    // The application under test replaces it, its bus behind the proxy.
    let proxy = Blackhole::start(port).await;
    let bus = format!("[cache.bus]\nurl = {:?}", proxy.url());
    Vorte::builder()
        .auto_load(true)
        .config(env.config(&bus, ""))
        .build()
        .await
        .expect("build");
    let cache = Cache::global();
    proxy.cut_after(b"gaps.heard", b"XINFO");
    publish_raw(port, &stream, "gaps.heard", r#"{"n":801}"#);
    heard_within_10s(801, "the event never ran").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.was_cut() || stats(&cache).receiver_errors == 0 {
        assert!(Instant::now() < deadline, "the check was never cut");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for the receiver to reconnect and read the batch again (a pause of 40 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = HEARD.lock().unwrap().iter().filter(|&&n| n == 801).count();
    assert_eq!(runs, 1, "the event ran {runs} times");
}

/// No false alarm: a receiver that started on a stream trimmed to nothing has no entry at its
/// position to find again, and the entries that come later are no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_empty_at_the_start_is_no_gap() {
    let env = Env::with_own_redis();
    let writer = env.cache("").await;
    writer.set("k", &"old").await.expect("set");
    let stream = format!("{}bus", env.prefix());
    redis_cmd(env.redis().port(), &["XTRIM", &stream, "MAXLEN", "0"]);
    let reader = env.cache("").await;
    assert_eq!(
        reader.get::<String>("k").await.expect("get").as_deref(),
        Some("old")
    );
    assert!(writer.delete("k").await.expect("delete"));
    reads_within_10s(&reader, "k", None, "the delete reaches the reader").await;
    assert_eq!(stats(&reader).gaps, 0, "a false alarm");
}

/// (d) When more messages wait for the bus than the publisher keeps, they become one flush
/// notice, counted and logged: once the bus is back, every other cache drops its L1, so even
/// those messages are not lost unnoticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_queue_that_overflows_becomes_one_flush() {
    let _app = APP.lock().await;
    let env = Env::with_own_redis();
    let (proxy, _, reader) = behind_a_proxy(&env).await;
    Vorte::builder()
        .config(env.config(&format!("[cache.bus]\nurl = {:?}", proxy.url()), ""))
        .build()
        .await
        .expect("build");
    let writer = Cache::global();
    make_stale(&env, &reader, "held").await;

    proxy.go_silent();
    // More than the 10,000 the publisher keeps; events cost no store write.
    for n in 0..10_050u64 {
        vorte_cache::emit("gaps.flood", &serde_json::json!({ "n": n }))
            .await
            .expect("emit");
    }
    let counted = stats(&writer);
    assert!(counted.publish_dropped >= 10_000, "{counted:?}");
    proxy.heal();
    reads_within(
        AFTER_SILENCE,
        &reader,
        "held",
        Some("new"),
        "the overflowing messages were lost unnoticed",
    )
    .await;
    assert_eq!(stats(&reader).gaps, 0, "a flush notice, not a gap");
}

/// The hits of `cache`'s L1 so far.
async fn l1_hits(cache: &Cache) -> u64 {
    let stats = cache.stats();
    stats.layer(vorte_cache::Layer::L1).map_or(0, |l| l.hits)
}

/// Reads `key` until `cache` answers `want` from its L1 (a notice in flight may drop the copy
/// a first read put there); fails after `bound` with `why`.
async fn until_l1_serves(bound: Duration, cache: &Cache, key: &str, want: &str, why: &str) {
    let deadline = Instant::now() + bound;
    loop {
        let before = l1_hits(cache).await;
        let got = cache.get::<String>(key).await.expect("get");
        assert_eq!(got.as_deref(), Some(want), "{why}");
        if l1_hits(cache).await > before {
            return;
        }
        assert!(Instant::now() < deadline, "{why}: L1 never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `cache` has suspended its local state once; fails after `bound` with `why`.
async fn until_suspended(cache: &Cache, bound: Duration, why: &str) {
    let since = Instant::now();
    while stats(cache).suspensions == 0 {
        assert!(since.elapsed() < bound, "{why}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (h) A process whose bus is down or hung does not serve from L1 what another process may have
/// changed meanwhile: the other's notices wait in its publisher's queue, so nothing would tell
/// this one. From the moment its receiver finds the bus gone it drops L1 and reads the shared
/// layers, until the receiver reads the bus again (`docs/guarantees.md#g4-gap-detection`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_bus_is_gone_does_not_trust_its_l1() {
    let env = Env::with_own_redis();
    for hang in [false, true] {
        let mut bus = RedisServer::start();
        let toml = format!("[cache.bus]\nurl = {:?}", bus.url());
        let (a, b) = (env.cache(&toml).await, env.cache(&toml).await);
        a.set("k", &"old").await.expect("set");
        let why = format!("hang: {hang}: B keeps the value in L1");
        until_l1_serves(Duration::from_secs(10), &b, "k", "old", &why).await;
        let errors = stats(&b).receiver_errors;
        if hang {
            bus.pause();
        } else {
            bus.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats(&b).receiver_errors == errors {
            assert!(
                Instant::now() < deadline,
                "B's receiver never found its bus gone"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // L2 takes it; its notice waits in A's queue.
        a.set("k", &"new").await.expect("set");
        assert_eq!(
            b.get::<String>("k").await.expect("get").as_deref(),
            Some("new"),
            "hang: {hang}: B served its L1 copy while its bus was gone"
        );
        if hang {
            bus.resume();
        } else {
            bus.restart();
        }
        let why = format!("hang: {hang}: B's L1 serves again once its bus is back");
        until_l1_serves(AFTER_SILENCE, &b, "k", "new", &why).await;
    }
}

/// (i) A killed bus server is noticed at once, not when a read of the stream misses its
/// deadline: the client reports the reset connection, and the process stops using L1 then. With
/// a 5 s layer timeout (the bus rides on L2), waiting for the blocking read's deadline would
/// take 5.5 s; the connection error arrives within milliseconds. Seen in the chaos suite as
/// stale reads in the first moments of a Redis or cluster node killed
/// (`docs/guarantees.md#g4-gap-detection`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bus_server_suspends_l1_at_once_not_at_the_read_deadline() {
    let mut redis = RedisServer::start();
    let toml = format!(
        "[cache]\nkey_prefix = {:?}\n[cache.layers.l1]\nmax_size = 100\n\
         [cache.layers.l2]\nbackend = \"redis\"\nurl = {:?}\ntimeout_ms = 5000\n",
        vorte_cache_tests::unique_prefix(),
        redis.url()
    );
    let config = vorte_cache::Config::from_toml_str(&toml).expect("config");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    cache.set("k", &"v").await.expect("set");
    // Let the receiver settle into its blocking read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stats(&cache).suspensions, 0);
    redis.kill();
    let why = "L1 was still trusted 2 s after the bus's server was killed";
    until_suspended(&cache, Duration::from_secs(2), why).await;
    assert_eq!(
        cache.get::<String>("k").await.expect("get"),
        None,
        "L1 served its copy (L2 is down: a miss)"
    );
    redis.restart();
}

/// (j) On a cluster, a node that dies suspends L1 at once, even one that does not hold the
/// stream of invalidations: the client resynchronises with the cluster, and while it does, the
/// other processes' notices and writes may be held up in theirs. L1 is used again once the
/// stream has been read with no connection error meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_that_dies_suspends_l1_at_once() {
    let mut cluster = vorte_cache_tests::servers::RedisCluster::start(3, 0);
    let prefix = vorte_cache_tests::unique_prefix();
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nmax_size = 100\n\
         [cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = {:?}\ntimeout_ms = 5000\n",
        cluster.urls()
    );
    let config = vorte_cache::Config::from_toml_str(&toml).expect("config");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    cache.set("k", &"v").await.expect("set");
    until_l1_serves(Duration::from_secs(10), &cache, "k", "v", "before the kill").await;
    // A primary that does not hold the stream (the others answer `MOVED` for it).
    let stream = format!("{prefix}bus");
    let ports = cluster.ports();
    let holder = ports
        .iter()
        .position(|&p| {
            vorte_cache_tests::servers::try_redis_cmd(p, None, &["TYPE", &stream])
                .is_ok_and(|t| t.contains("stream"))
        })
        .expect("a node holds the stream");
    let victim = (holder + 1) % ports.len();
    assert_eq!(stats(&cache).suspensions, 0);
    cluster.kill_node(victim);
    let killed = Instant::now();
    while stats(&cache).suspensions == 0 {
        assert!(
            killed.elapsed() < Duration::from_millis(500),
            "L1 was still trusted 500 ms after a cluster node was killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.restart_node(victim);
    // The node comes back empty ("k" may have lived there): write it until L1 serves it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = cache.set("k", &"v").await;
        let before = l1_hits(&cache).await;
        let got = cache.get::<String>("k").await.expect("get");
        if got.as_deref() == Some("v") && l1_hits(&cache).await > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "L1 never served again once the node was back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (k) A notice is applied as the blocking read of the stream returns it, not after one more
/// round trip to the server: the latency of every invalidation between processes
/// (`docs/guarantees.md#g2-invalidation`). Here B's connection to its bus
/// goes silent right after it forwards the read that holds A's notice, so a receiver that read
/// the entry again before applying it would never get that answer, and would drop its L1 copy
/// only when it stops trusting L1 (250 ms later, a suspension).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_is_applied_as_the_blocking_read_returns_it() {
    let env = Env::with_own_redis();
    let (proxy, b, a) = behind_a_proxy(&env).await;
    let key = "applied-as-read";
    a.set(key, &"old").await.expect("set");
    let why = "B keeps the value in L1";
    until_l1_serves(Duration::from_secs(10), &b, key, "old", why).await;
    // Another notice, so that the one naming the key is behind B's position (each read of the
    // stream starts at the position, inclusive), and time for B's receiver to read it.
    a.set("unrelated", &1).await.expect("set");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let suspensions = stats(&b).suspensions;
    proxy.swallow_after(key.as_bytes());
    a.delete(key).await.expect("delete");
    let deleted = Instant::now();
    while b.get::<String>(key).await.expect("get").is_some() {
        assert!(
            deleted.elapsed() < Duration::from_secs(2),
            "B still served its L1 copy 2 s after A's delete"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        stats(&b).suspensions,
        suspensions,
        "B dropped its copy only once it stopped trusting L1, {:?} after the delete: the \
         notice its read returned was not applied",
        deleted.elapsed()
    );
    assert!(proxy.swallowed(), "no reply of B's bus held A's notice");
}

/// (l) A process whose bus comes back waits before it trusts L1 again: the other processes'
/// notices of the outage are still on their way (each of their clients reconnects, then their
/// publishers retry), and a first good read of the stream does not prove that they arrived. L1
/// serves again only once the bus has answered for 400 ms
/// (`docs/guarantees.md#g4-gap-detection`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_is_trusted_again_only_once_the_bus_has_answered_for_a_while() {
    let env = Env::with_own_redis();
    let bus = RedisServer::start();
    let cache = env
        .cache(&format!("[cache.bus]\nurl = {:?}", bus.url()))
        .await;
    cache.set("k", &"v").await.expect("set");
    let why = "L1 serves before the outage";
    until_l1_serves(Duration::from_secs(10), &cache, "k", "v", why).await;
    bus.pause();
    until_suspended(
        &cache,
        Duration::from_secs(10),
        "the hung bus was never noticed",
    )
    .await;
    bus.resume();
    let resumed = Instant::now();
    // The value is read from L2 meanwhile; L1 must not serve it for 350 ms at least.
    let why = "L1 serves again once the bus is back";
    until_l1_serves(AFTER_SILENCE, &cache, "k", "v", why).await;
    let after = resumed.elapsed();
    assert!(
        after >= Duration::from_millis(350),
        "L1 served again {after:?} after the bus came back"
    );
}
