//! The memcached store on its own (opened with `store::open`, as the cache opens it), against
//! real `memcached` servers of this binary's own: values and names, flush by generation, native
//! compare-and-set, expiry, servers that die, restart or start late, several servers, and the
//! bounded connection pool.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vorte_cache::config::{
    BackendConfig, BreakerConfig, LayerConfig, MemcachedConfig, Secret, WritePolicy,
};
use vorte_cache::{ErrorKind, Layer, Slot, Store, Usage};
use vorte_cache_tests::servers::Memcached;

const TIMEOUT: Duration = Duration::from_millis(500);
const LONG: Duration = Duration::from_secs(300);
/// How old a cached generation may get before the store re-reads it (`GEN_REFRESH`, 1 s).
const GEN_REFRESH: Duration = Duration::from_secs(1);
/// The longest an open circuit refuses calls before a probe: the default `breaker_cooldown`
/// (0.5 s) with its +20 % jitter (`store/circuit.rs`).
const CIRCUIT_COOLDOWN: Duration = Duration::from_millis(600);
/// The most connections the store opens to one server (`MAX_CONNECTIONS`).
const MAX_CONNECTIONS: u64 = 16;

fn layer(urls: &[String], timeout: Duration) -> LayerConfig {
    LayerConfig {
        backend: BackendConfig::Memcached(MemcachedConfig {
            urls: urls.iter().map(|u| Secret::new(u.as_str())).collect(),
        }),
        ttl: None,
        timeout,
        max_value_bytes: None,
        compression: None,
        write: WritePolicy::Through,
        sweep: None,
        breaker: BreakerConfig::default(),
    }
}

async fn store_with(urls: &[String], prefix: &str, timeout: Duration) -> Arc<dyn Store> {
    vorte_cache::store::open(Layer::L2, &layer(urls, timeout), prefix)
        .await
        .expect("open")
}

async fn store(urls: &[String], prefix: &str) -> Arc<dyn Store> {
    store_with(urls, prefix, TIMEOUT).await
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// `STAT <name>` of the server's `stats`.
fn stat(server: &Memcached, name: &str) -> u64 {
    let stats = server.cmd("stats\r\n");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[tokio::test]
async fn put_get_delete_overwrite() {
    let server = Memcached::start();
    let s = store(&[server.url()], "t1:").await;
    let e = Slot::Entry("user:1");
    assert_eq!(s.get(e).await.unwrap(), None);
    s.put(e, b("one"), LONG).await.unwrap();
    assert_eq!(s.get(e).await.unwrap(), Some(b("one")));
    s.put(e, b("two"), LONG).await.unwrap();
    assert_eq!(s.get(e).await.unwrap(), Some(b("two")));
    // An entry and a tag of the same name are distinct.
    s.put(Slot::Tag("user:1"), b("tag"), LONG).await.unwrap();
    assert_eq!(s.get(e).await.unwrap(), Some(b("two")));
    assert_eq!(s.get(Slot::Tag("user:1")).await.unwrap(), Some(b("tag")));
    assert!(s.delete(e).await.unwrap());
    assert!(!s.delete(e).await.unwrap());
    assert_eq!(s.get(e).await.unwrap(), None);
    // Binary values with CR/LF survive; empty values too.
    let raw = Bytes::from_static(b"\x00\r\nEND\r\n\xff");
    s.put(e, raw.clone(), LONG).await.unwrap();
    assert_eq!(s.get(e).await.unwrap(), Some(raw));
    s.put(e, Bytes::new(), LONG).await.unwrap();
    assert_eq!(s.get(e).await.unwrap(), Some(Bytes::new()));
    assert_eq!(s.list("").await.unwrap(), Vec::<String>::new());
    assert_eq!(s.usage().await.unwrap(), Usage::default());
    assert_eq!(s.backend(), "memcached");
    assert!(!format!("{s:?}").contains("memcached://"));
}

#[tokio::test]
async fn long_and_non_ascii_keys_round_trip() {
    let server = Memcached::start();
    let s = store(&[server.url()], "t2:").await;
    let long_a = "a".repeat(300);
    let long_b = format!("{}b", "a".repeat(299));
    let keys = [
        long_a.as_str(),
        long_b.as_str(),
        "ключ",
        "with space",
        "with space ",
        "tab\t",
        "nl\r\n",
        "plain",
    ];
    for (i, k) in keys.iter().enumerate() {
        s.put(Slot::Entry(k), b(&format!("v{i}")), LONG)
            .await
            .unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            s.get(Slot::Entry(k)).await.unwrap(),
            Some(b(&format!("v{i}"))),
            "{k:?}"
        );
    }
    for k in keys {
        assert!(s.delete(Slot::Entry(k)).await.unwrap(), "{k:?}");
        assert_eq!(s.get(Slot::Entry(k)).await.unwrap(), None);
    }
}

#[tokio::test]
async fn clear_hides_only_this_prefix() {
    let server = Memcached::start();
    let s = store(&[server.url()], "t3:").await;
    let other = store(&[server.url()], "t3x:").await;
    let peer = store(&[server.url()], "t3:").await; // another process, same prefix
    s.put(Slot::Entry("k"), b("old"), LONG).await.unwrap();
    s.put(Slot::Tag("tag"), b("old-tag"), LONG).await.unwrap();
    other.put(Slot::Entry("k"), b("kept"), LONG).await.unwrap();
    assert_eq!(server.cmd("set t3:direct 0 0 3\r\nraw\r\n"), "STORED\r\n");
    assert_eq!(peer.get(Slot::Entry("k")).await.unwrap(), Some(b("old")));

    assert_eq!(s.clear().await.unwrap(), 0);
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), None);
    assert_eq!(s.get(Slot::Tag("tag")).await.unwrap(), None);
    s.put(Slot::Entry("k"), b("new"), LONG).await.unwrap();
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(b("new")));
    // Other keys are untouched.
    assert_eq!(other.get(Slot::Entry("k")).await.unwrap(), Some(b("kept")));
    assert_eq!(
        server.cmd("get t3:direct\r\n"),
        "VALUE t3:direct 0 3\r\nraw\r\nEND\r\n"
    );
    // The other process sees the flush within GEN_REFRESH.
    tokio::time::sleep(GEN_REFRESH + Duration::from_millis(50)).await;
    assert_eq!(peer.get(Slot::Entry("k")).await.unwrap(), Some(b("new")));
    // A second flush, and a flush from the peer, work the same way.
    peer.clear().await.unwrap();
    assert_eq!(peer.get(Slot::Entry("k")).await.unwrap(), None);
    tokio::time::sleep(GEN_REFRESH + Duration::from_millis(50)).await;
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), None);
}

#[tokio::test]
async fn compare_and_set_semantics() {
    let server = Memcached::start();
    let s = store(&[server.url()], "t4:").await;
    assert!(s.has_compare_and_set());
    let cas = |exp: Option<Bytes>, new: &str| {
        let s = &s;
        let new = b(new);
        async move {
            s.compare_and_set("n", exp.as_ref(), new, LONG)
                .await
                .unwrap()
        }
    };
    // Absent expected on a missing key: stored.
    assert_eq!(cas(None, "1").await, Some(true));
    assert_eq!(s.get(Slot::Entry("n")).await.unwrap(), Some(b("1")));
    // Absent expected on an existing key: refused.
    assert_eq!(cas(None, "x").await, Some(false));
    // Matching value: swapped.
    assert_eq!(cas(Some(b("1")), "2").await, Some(true));
    assert_eq!(s.get(Slot::Entry("n")).await.unwrap(), Some(b("2")));
    // Mismatch: refused, value kept.
    assert_eq!(cas(Some(b("1")), "3").await, Some(false));
    assert_eq!(s.get(Slot::Entry("n")).await.unwrap(), Some(b("2")));
    // Expected a value on a missing key: refused.
    s.delete(Slot::Entry("n")).await.unwrap();
    assert_eq!(cas(Some(b("2")), "4").await, Some(false));
    assert_eq!(s.get(Slot::Entry("n")).await.unwrap(), None);

    // Exact under concurrency: 8 tasks × 25 increments through CAS loops.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    loop {
                        let cur = s.get(Slot::Entry("c")).await.unwrap();
                        let n: u64 = cur
                            .as_ref()
                            .map_or(0, |c| std::str::from_utf8(c).unwrap().parse().unwrap());
                        let next = b(&(n + 1).to_string());
                        if s.compare_and_set("c", cur.as_ref(), next, LONG)
                            .await
                            .unwrap()
                            == Some(true)
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get(Slot::Entry("c")).await.unwrap(), Some(b("200")));
}

/// A delete's marker is unique, and every marker begins with `vorte-tombstone`: tombstoning a
/// tombstone, whichever delete left it, reports no entry (`Store::tombstone`).
#[tokio::test]
async fn tombstoning_a_tombstone_reports_no_entry() {
    let server = Memcached::start();
    let s = store(&[server.url()], "t4t:").await;
    let first = b("vorte-tombstone:first");
    let second = b("vorte-tombstone:second");
    assert_eq!(
        s.tombstone("k", first.clone(), LONG).await.unwrap(),
        Some(false)
    );
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(first));
    assert_eq!(
        s.tombstone("k", second.clone(), LONG).await.unwrap(),
        Some(false),
        "another delete's tombstone is no entry"
    );
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(second));
    s.put(Slot::Entry("k"), b("value"), LONG).await.unwrap();
    assert_eq!(
        s.tombstone("k", b("vorte-tombstone:third"), LONG)
            .await
            .unwrap(),
        Some(true)
    );
    // A value that merely contains the prefix later on is an entry.
    s.put(Slot::Entry("k"), b("x-vorte-tombstone"), LONG)
        .await
        .unwrap();
    assert_eq!(
        s.tombstone("k", b("vorte-tombstone:fourth"), LONG)
            .await
            .unwrap(),
        Some(true)
    );
}

/// A fill expects the exact bytes its load saw (a tombstone, an expired entry): its
/// compare-and-set swaps only while those bytes are there, and of two fills that saw them, one
/// wins (`Store::compare_and_set`).
#[tokio::test]
async fn compare_and_set_expecting_a_tombstone_or_an_expired_entry() {
    let server = Memcached::start();
    let s = store(&[server.url()], "t4c:").await;
    let tombstone = b("vorte-tombstone:1");
    let expired = b("an envelope past its expiry");
    for seen in [&tombstone, &expired] {
        s.put(Slot::Entry("k"), seen.clone(), LONG).await.unwrap();
        assert_eq!(
            s.compare_and_set("k", Some(seen), b("fill"), LONG)
                .await
                .unwrap(),
            Some(true)
        );
        assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(b("fill")));
        // The bytes changed since the load: another delete's tombstone, or a set.
        for meanwhile in [b("vorte-tombstone:2"), b("a newer value")] {
            s.put(Slot::Entry("k"), seen.clone(), LONG).await.unwrap();
            s.put(Slot::Entry("k"), meanwhile.clone(), LONG)
                .await
                .unwrap();
            assert_eq!(
                s.compare_and_set("k", Some(seen), b("fill"), LONG)
                    .await
                    .unwrap(),
                Some(false)
            );
            assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(meanwhile));
        }
        // Two fills that saw the same bytes: exactly one swaps.
        s.put(Slot::Entry("k"), seen.clone(), LONG).await.unwrap();
        let (one, two) = tokio::join!(
            s.compare_and_set("k", Some(seen), b("one"), LONG),
            s.compare_and_set("k", Some(seen), b("two"), LONG)
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        assert_eq!([one, two].iter().filter(|r| **r == Some(true)).count(), 1);
        let won = if one == Some(true) {
            b("one")
        } else {
            b("two")
        };
        assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(won));
    }
}

#[tokio::test]
async fn entries_expire() {
    let server = Memcached::start();
    let s = store(&[server.url()], "t5:").await;
    s.put(Slot::Entry("short"), b("v"), Duration::from_secs(1))
        .await
        .unwrap();
    s.put(Slot::Entry("ms"), b("v"), Duration::from_millis(10))
        .await
        .unwrap();
    s.put(Slot::Entry("long"), b("v"), LONG).await.unwrap();
    s.put(
        Slot::Entry("month"),
        b("v"),
        Duration::from_secs(40 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(s.get(Slot::Entry("short")).await.unwrap(), Some(b("v")));
    // Memcached's clock ticks in whole seconds: a 1 s entry is gone within 2 s.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(s.get(Slot::Entry("short")).await.unwrap(), None);
    assert_eq!(s.get(Slot::Entry("ms")).await.unwrap(), None);
    assert_eq!(s.get(Slot::Entry("long")).await.unwrap(), Some(b("v")));
    // An absolute expiry 40 days ahead is still in the future.
    assert_eq!(s.get(Slot::Entry("month")).await.unwrap(), Some(b("v")));
}

#[tokio::test]
async fn dead_server_fails_fast_and_recovers() {
    let mut server = Memcached::start();
    let s = store(&[server.url()], "t6:").await;
    s.put(Slot::Entry("k"), b("v"), LONG).await.unwrap();
    // Several idle connections in the pool.
    let gets: Vec<_> = (0..4).map(|_| s.get(Slot::Entry("k"))).collect();
    for r in futures_util::future::join_all(gets).await {
        assert_eq!(r.unwrap(), Some(b("v")));
    }
    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = s.get(Slot::Entry("k")).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Backend | ErrorKind::Timeout),
            "{err:?}"
        );
        assert!(started.elapsed() < TIMEOUT + Duration::from_millis(250));
        let err = s.put(Slot::Entry("k"), b("w"), LONG).await.unwrap_err();
        assert!(matches!(
            err.kind(),
            ErrorKind::Backend | ErrorKind::Timeout
        ));
        assert!(s.clear().await.is_err());
    }
    server.restart();
    // The failures opened the server's circuit: it lets a probe through after its cooldown, and
    // the server is back, on the same port (memcached forgot everything).
    tokio::time::sleep(CIRCUIT_COOLDOWN + Duration::from_millis(100)).await;
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), None);
    s.put(Slot::Entry("k"), b("again"), LONG).await.unwrap();
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(b("again")));
}

#[tokio::test]
async fn stale_pooled_connections_are_replaced() {
    let mut server = Memcached::start();
    let s = store(&[server.url()], "t7:").await;
    let gets: Vec<_> = (0..6).map(|_| s.get(Slot::Entry("k"))).collect();
    for r in futures_util::future::join_all(gets).await {
        r.unwrap();
    }
    // Restart between two calls: the idle connections are dead, yet the next call works.
    server.restart();
    s.put(Slot::Entry("k"), b("v"), LONG).await.unwrap();
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(b("v")));
}

#[tokio::test]
async fn server_down_at_start_up() {
    let mut server = Memcached::start();
    server.kill();
    let s = store(&[server.url()], "t8:").await;
    let err = s.get(Slot::Entry("k")).await.unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::Backend | ErrorKind::Timeout
    ));
    server.restart();
    s.put(Slot::Entry("k"), b("v"), LONG).await.unwrap();
    assert_eq!(s.get(Slot::Entry("k")).await.unwrap(), Some(b("v")));
}

#[tokio::test]
async fn several_servers_share_the_keys() {
    let a = Memcached::start();
    let b2 = Memcached::start();
    let urls = [a.url(), b2.url()];
    let s = store(&urls, "t9:").await;
    // The same servers in the other order: the same placement.
    let t = store(&[b2.url(), a.url()], "t9:").await;
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    for k in &keys {
        s.put(Slot::Entry(k), b(k), LONG).await.unwrap();
    }
    for k in &keys {
        assert_eq!(t.get(Slot::Entry(k)).await.unwrap(), Some(b(k)));
    }
    // Each server holds its share of the entries, plus its generation record.
    let on_a = stat(&a, "curr_items") - 1;
    let on_b = stat(&b2, "curr_items") - 1;
    assert_eq!(on_a + on_b, 60);
    assert!(on_a > 10 && on_a < 50, "{on_a} of 60 on the first server");
    s.clear().await.unwrap();
    for k in &keys {
        assert_eq!(s.get(Slot::Entry(k)).await.unwrap(), None);
    }
    assert_eq!(
        s.compare_and_set("k1", None, b("x"), LONG).await.unwrap(),
        Some(true)
    );
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    let err = vorte_cache::store::open(
        Layer::L2,
        &layer(&["memcached://h:x".to_owned()], TIMEOUT),
        "p:",
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("cache.layers.l2.urls[0]"), "{err}");
    let err = vorte_cache::store::open(Layer::L2, &layer(&[], TIMEOUT), "p:")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// 500 calls at once open at most `MAX_CONNECTIONS` connections to the server, and every one of
/// them is answered (a call waits for a free connection within its timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_pool_is_bounded_under_many_concurrent_calls() {
    let server = Memcached::start();
    let s = store_with(&[server.url()], "t10:", Duration::from_secs(10)).await;
    s.put(Slot::Entry("k"), b("v"), LONG).await.unwrap();
    // Every `stats` query is a connection of its own, counted in `total_connections`.
    let before = stat(&server, "total_connections");
    let calls: Vec<_> = (0..500)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                if i % 5 == 0 {
                    s.put(Slot::Entry("k"), b("v"), LONG).await.map(|()| None)
                } else {
                    s.get(Slot::Entry("k")).await
                }
            })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap().unwrap();
        assert!(answer.is_none_or(|v| v == b("v")));
    }
    let opened = stat(&server, "total_connections") - before - 1;
    assert!(
        opened <= MAX_CONNECTIONS,
        "{opened} connections opened for 500 concurrent calls (bound: {MAX_CONNECTIONS})"
    );
    // The pool is reused: a second burst keeps within the same bound, counted from the start
    // (minus the two `stats` connections since).
    let gets: Vec<_> = (0..200).map(|_| s.get(Slot::Entry("k"))).collect();
    for r in futures_util::future::join_all(gets).await {
        assert_eq!(r.unwrap(), Some(b("v")));
    }
    let opened = stat(&server, "total_connections") - before - 2;
    assert!(
        opened <= MAX_CONNECTIONS,
        "{opened} connections after two bursts"
    );
}
