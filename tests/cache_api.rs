//! The whole Cache API on each of the eight stacks of `tests/lib.rs` (`on_every_stack!`): L1 alone;
//! L1 + L4 `file` or `s3`; L1 + L2 `redis` or `memcached`; L1 + L3 `redis-cluster`; L1 + L2 + L3;
//! all four layers. Then behaviours that need one particular stack, each on that stack. The
//! guarantees these tests prove are listed, each with its tests, in `docs/guarantees.md`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vorte_cache::{Cache, ErrorKind, Layer};
use vorte_cache_tests::{Env, Stack, on_every_stack};

on_every_stack!(
    read_your_writes,
    str_values_read_as_string,
    entries_expire_in_every_layer,
    delete_and_exists,
    increment_is_exact_and_typed,
    keys_lists_live_keys_by_glob,
    delete_many_counts,
    seed_tags_example,
    tag_invalidated_entries_are_not_listed,
    get_or_set_runs_the_loader_once_for_10k_tasks,
    single_flight_holds_when_loads_are_short,
    loader_errors_are_returned_and_never_cached,
    a_load_that_began_before_a_delete_never_writes_back,
    a_load_that_began_before_a_tag_invalidation_never_writes_back,
    a_caller_after_an_invalidation_never_receives_a_load_that_began_before_it,
    type_mismatch_is_an_error_and_the_value_stays,
    bad_input_is_a_typed_error,
    stats_count_hits_misses_and_keys,
    schema_additions_are_tolerated,
    arc_reads_share_one_decoded_value,
    json_and_lz4_round_trip,
    layer_selection_writes_only_there,
    every_future_is_send,
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
}

/// A stack whose layers below L1 are shared, so a second cache on the same environment stands in
/// for another process (or a restarted one).
fn shared(stack: Stack) -> bool {
    stack != Stack::L1
}

/// The first layer below L1, and the last one, with their backends.
fn shallowest(stack: Stack) -> (Layer, &'static str) {
    match stack {
        Stack::L1 => (Layer::L1, "memory"),
        Stack::L1File => (Layer::L4, "file"),
        Stack::L1Redis | Stack::L1RedisCluster | Stack::Full => (Layer::L2, "redis"),
        Stack::L1Cluster => (Layer::L3, "redis-cluster"),
        Stack::L1Memcached => (Layer::L2, "memcached"),
        Stack::L1S3 => (Layer::L4, "s3"),
    }
}

fn deepest(stack: Stack) -> (Layer, &'static str) {
    match stack {
        Stack::L1 => (Layer::L1, "memory"),
        Stack::L1File | Stack::Full => (Layer::L4, "file"),
        Stack::L1Redis => (Layer::L2, "redis"),
        Stack::L1Cluster | Stack::L1RedisCluster => (Layer::L3, "redis-cluster"),
        Stack::L1Memcached => (Layer::L2, "memcached"),
        Stack::L1S3 => (Layer::L4, "s3"),
    }
}

fn hits(stats: &vorte_cache::CacheStats, layer: Layer) -> u64 {
    stats.layer(layer).map_or(0, |l| l.hits)
}

async fn read_your_writes(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let alice = User {
        id: 1,
        name: "Alice".into(),
    };
    cache
        .set("user:1", &alice)
        .ttl(Duration::from_secs(300))
        .await
        .expect("set");
    assert_eq!(
        cache.get::<User>("user:1").await.expect("get"),
        Some(alice.clone())
    );
    let bob = User {
        id: 1,
        name: "Bob".into(),
    };
    cache.set("user:1", &bob).await.expect("overwrite");
    assert_eq!(cache.get::<User>("user:1").await.expect("get"), Some(bob));
    assert_eq!(cache.get::<User>("user:2").await.expect("get"), None);
}

async fn str_values_read_as_string(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache.set("k", &"text").await.expect("set &str");
    cache.set("k2", "unsized str").await.expect("set str");
    assert_eq!(
        cache.get::<String>("k").await.expect("get").as_deref(),
        Some("text")
    );
    assert_eq!(
        cache.get::<String>("k2").await.expect("get").as_deref(),
        Some("unsized str")
    );
}

async fn entries_expire_in_every_layer(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache
        .set("short", &1u8)
        .ttl(Duration::from_millis(150))
        .await
        .expect("set");
    assert_eq!(cache.get::<u8>("short").await.expect("get"), Some(1));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(cache.get::<u8>("short").await.expect("get"), None);
    assert!(!cache.exists("short").await.expect("exists"));
    if shared(stack) {
        // Written to the deepest layer only: after expiry, no layer may return it, and it is
        // removed from that layer.
        let (deep, _) = deepest(stack);
        cache
            .set("l4-only", &2u8)
            .ttl(Duration::from_millis(150))
            .layer(deep)
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.get::<u8>("l4-only").await.expect("get"), None);
        assert_eq!(
            cache
                .usage()
                .await
                .expect("usage")
                .layer(deep)
                .expect("deepest layer")
                .keys,
            0
        );
    }
}

async fn delete_and_exists(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache.set("user:1", &1).await.expect("set");
    assert!(cache.exists("user:1").await.expect("exists"));
    assert!(cache.delete("user:1").await.expect("delete"));
    assert!(!cache.exists("user:1").await.expect("exists"));
    assert!(!cache.delete("user:1").await.expect("delete again"));
    assert_eq!(cache.get::<i32>("user:1").await.expect("get"), None);
}

async fn increment_is_exact_and_typed(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache
        .set("counter", &0i64)
        .ttl(Duration::from_secs(3600))
        .await
        .expect("set");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.increment("counter", 1).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("increment");
    }
    assert_eq!(cache.get::<i64>("counter").await.expect("get"), Some(200));
    assert_eq!(
        cache.increment("counter", -50).await.expect("decrement"),
        150
    );
    assert_eq!(
        cache
            .increment("fresh", 5)
            .await
            .expect("missing starts at 0"),
        5
    );

    cache.set("name", &"alice").await.expect("set");
    let err = cache
        .increment("name", 1)
        .await
        .expect_err("not an integer");
    assert_eq!(err.kind(), ErrorKind::NotAnInteger);
    assert_eq!(
        cache.get::<String>("name").await.expect("get").as_deref(),
        Some("alice")
    );

    cache.set("big", &i64::MAX).await.expect("set");
    let err = cache.increment("big", 1).await.expect_err("overflow");
    assert_eq!(err.kind(), ErrorKind::NotAnInteger);
    assert_eq!(cache.get::<i64>("big").await.expect("get"), Some(i64::MAX));
}

async fn keys_lists_live_keys_by_glob(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    for k in ["user:1", "user:2", "user:10", "product:1"] {
        cache.set(k, &k).await.expect("set");
    }
    cache
        .set("user:gone", &0)
        .ttl(Duration::from_millis(50))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        cache.keys("user:*").await.expect("keys"),
        ["user:1", "user:10", "user:2"]
    );
    assert_eq!(
        cache.keys("user:?").await.expect("keys"),
        ["user:1", "user:2"]
    );
    assert_eq!(
        cache.keys("*:[12]").await.expect("keys"),
        ["product:1", "user:1", "user:2"]
    );
    assert_eq!(
        cache.keys("nothing*").await.expect("keys"),
        Vec::<String>::new()
    );
    let err = cache.keys("user:[12").await.expect_err("unclosed [");
    assert_eq!(err.kind(), ErrorKind::InvalidGlob);
}

async fn delete_many_counts(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    for k in ["user:1", "user:2", "user:3"] {
        cache.set(k, &1).await.expect("set");
    }
    let keys = cache.keys("user:*").await.expect("keys");
    assert_eq!(cache.delete_many(&keys).await.expect("delete_many"), 3);
    assert_eq!(
        cache
            .delete_many(&["user:1", "never"])
            .await
            .expect("again"),
        0
    );
    assert!(cache.keys("user:*").await.expect("keys").is_empty());
}

async fn seed_tags_example(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache
        .set("product:1", &"p1")
        .tags(["products", "category:electronics"])
        .await
        .expect("set");
    cache
        .set("product:2", &"p2")
        .tags(["products", "category:books"])
        .await
        .expect("set");
    cache
        .set("featured:electronics", &"f")
        .tags(["featured", "category:electronics"])
        .await
        .expect("set");
    cache
        .invalidate_tag("category:electronics")
        .await
        .expect("invalidate");
    assert_eq!(cache.get::<String>("product:1").await.expect("get"), None);
    assert_eq!(
        cache
            .get::<String>("featured:electronics")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        cache
            .get::<String>("product:2")
            .await
            .expect("get")
            .as_deref(),
        Some("p2")
    );
    // Entries written after the invalidation carry the new version and are served.
    cache
        .set("product:1", &"p1b")
        .tags(["category:electronics"])
        .await
        .expect("set");
    assert_eq!(
        cache
            .get::<String>("product:1")
            .await
            .expect("get")
            .as_deref(),
        Some("p1b")
    );

    if shared(stack) {
        // A second cache on the same directory stands in for a restarted process: it has no
        // memory of the invalidation, and must still not serve the invalidated L4 entries.
        let other = env.cache("").await;
        assert_eq!(
            other
                .get::<String>("featured:electronics")
                .await
                .expect("get"),
            None
        );
        assert_eq!(
            other
                .get::<String>("product:2")
                .await
                .expect("get")
                .as_deref(),
            Some("p2")
        );
    }
}

async fn tag_invalidated_entries_are_not_listed(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache.set("a:1", &1).tags(["t"]).await.expect("set");
    cache.set("a:2", &2).await.expect("set");
    cache.invalidate_tag("t").await.expect("invalidate");
    assert_eq!(cache.keys("a:*").await.expect("keys"), ["a:2"]);
}

async fn get_or_set_runs_the_loader_once_for_10k_tasks(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set("hot", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, std::io::Error>(7u64)
                    })
                    .ttl(Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("value"), 7);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Late arrivals that miss just before a short load stores its value must not load again.
async fn single_flight_holds_when_loads_are_short(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    for round in 0..20 {
        let key = format!("short:{round}");
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..2_000)
            .map(|_| {
                let (cache, calls, key) = (cache.clone(), calls.clone(), key.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_set(&key, || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            Ok::<_, std::io::Error>(round)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task").expect("value"), round);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
    }
}

async fn loader_errors_are_returned_and_never_cached(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let err = cache
        .get_or_set("k", || async {
            Err::<u8, _>(std::io::Error::other("db down"))
        })
        .await
        .expect_err("loader fails");
    assert_eq!(err.kind(), ErrorKind::Loader);
    let source = std::error::Error::source(&err).expect("source kept");
    assert!(source.to_string().contains("db down"));
    assert_eq!(
        cache.get::<u8>("k").await.expect("get"),
        None,
        "errors are not cached"
    );

    // A leader that fails makes a waiter retry; exactly one more load then serves everyone.
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set("k", || async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if n == 0 {
                            Err(std::io::Error::other("first load fails"))
                        } else {
                            Ok(9u8)
                        }
                    })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(v) => {
                assert_eq!(v, 9);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Loader);
                failed += 1;
            }
        }
    }
    assert_eq!((ok, failed), (49, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn a_load_that_began_before_a_delete_never_writes_back(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loader_cache = cache.clone();
    let load = tokio::spawn(async move {
        loader_cache
            .get_or_set("user:1", || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok::<_, std::io::Error>("old".to_string())
            })
            .await
    });
    started_rx.await.expect("loader started");
    cache.delete("user:1").await.expect("delete");
    release_tx.send(()).expect("release");
    assert_eq!(load.await.expect("task").expect("load").as_str(), "old");
    assert_eq!(cache.get::<String>("user:1").await.expect("get"), None);
    if shared(stack) {
        let other = env.cache("").await;
        assert_eq!(
            other.get::<String>("user:1").await.expect("get"),
            None,
            "not in L4 either"
        );
    }
}

async fn a_load_that_began_before_a_tag_invalidation_never_writes_back(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loader_cache = cache.clone();
    let load = tokio::spawn(async move {
        loader_cache
            .get_or_set("p:1", || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok::<_, std::io::Error>(1u8)
            })
            .tags(["products"])
            .await
    });
    started_rx.await.expect("loader started");
    cache.invalidate_tag("products").await.expect("invalidate");
    release_tx.send(()).expect("release");
    load.await.expect("task").expect("load");
    assert_eq!(cache.get::<u8>("p:1").await.expect("get"), None);
}

async fn type_mismatch_is_an_error_and_the_value_stays(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache.set("k", &"text").await.expect("set");
    let err = cache.get::<i64>("k").await.expect_err("mismatch");
    assert_eq!(err.kind(), ErrorKind::TypeMismatch);
    assert!(err.to_string().contains("`k`"), "{err}");
    assert_eq!(
        cache.get::<String>("k").await.expect("get").as_deref(),
        Some("text")
    );
    if shared(stack) {
        let other = env.cache("").await;
        let err = other
            .get::<Vec<u8>>("k")
            .await
            .expect_err("mismatch from L4");
        assert_eq!(err.kind(), ErrorKind::TypeMismatch);
        assert_eq!(
            other.get::<String>("k").await.expect("get").as_deref(),
            Some("text")
        );
    }
}

async fn bad_input_is_a_typed_error(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("max_value_bytes = 1024").await;
    let cases = [
        ("", ErrorKind::InvalidKey),
        (
            &*"k".repeat(vorte_cache::MAX_KEY_LEN + 1),
            ErrorKind::InvalidKey,
        ),
        ("nul\0key", ErrorKind::InvalidKey),
    ];
    for (key, kind) in cases {
        assert_eq!(cache.set(key, &1).await.expect_err("set").kind(), kind);
        assert_eq!(cache.get::<i32>(key).await.expect_err("get").kind(), kind);
        assert_eq!(cache.delete(key).await.expect_err("delete").kind(), kind);
        assert_eq!(cache.exists(key).await.expect_err("exists").kind(), kind);
        assert_eq!(
            cache.increment(key, 1).await.expect_err("incr").kind(),
            kind
        );
    }
    assert_eq!(
        cache
            .set("t", &1)
            .tags([""])
            .await
            .expect_err("empty tag")
            .kind(),
        ErrorKind::InvalidKey
    );
    assert_eq!(
        cache
            .invalidate_tag("")
            .await
            .expect_err("empty tag")
            .kind(),
        ErrorKind::InvalidKey
    );
    let big = vec![7u8; 4096];
    let err = cache.set("big", &big).await.expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    assert_eq!(
        cache.get::<Vec<u8>>("big").await.expect("get"),
        None,
        "nothing was stored"
    );
    assert_eq!(
        cache.keys("[").await.expect_err("glob").kind(),
        ErrorKind::InvalidGlob
    );
    assert_eq!(
        cache.keys("a\\").await.expect_err("glob").kind(),
        ErrorKind::InvalidGlob
    );
    // Non-string map keys cannot be JSON: a Serialize error, not a panic.
    let json = env.cache("serialization = \"json\"").await;
    let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    assert_eq!(
        json.set("map", &map).await.expect_err("json").kind(),
        ErrorKind::Serialize
    );
}

async fn stats_count_hits_misses_and_keys(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache.set("a", &1).await.expect("set");
    cache.set("b", &vec![0u8; 10_000]).await.expect("set");
    assert_eq!(cache.get::<i32>("a").await.expect("get"), Some(1));
    assert_eq!(cache.get::<i32>("a").await.expect("get"), Some(1));
    assert_eq!(cache.get::<i32>("missing").await.expect("get"), None);
    let s = cache.stats();
    assert_eq!(s.l1_hits, 2);
    assert_eq!(s.misses, 1);
    assert!((s.hit_rate() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(s.layer(Layer::L1).expect("l1").hits, 2);
    let u = cache.usage().await.expect("usage");
    assert_eq!(u.total_keys, 2);
    assert!(u.memory_used_mb > 0.009, "{}", u.memory_used_mb);
    let l1 = u.layer(Layer::L1).expect("l1");
    assert_eq!(l1.keys, 2);
    assert!(l1.bytes > 10_000);
    // Printed with a unit that shows the number: ~10 KiB, never "0.0 MB".
    assert_eq!(u.memory_used().bytes(), l1.bytes);
    let shown = u.memory_used().to_string();
    assert!(
        shown.ends_with(" KiB") && !shown.starts_with('0'),
        "{shown}"
    );
    if shared(stack) {
        for (layer, backend) in [shallowest(stack), deepest(stack)] {
            assert_eq!(s.layer(layer).expect("layer stats").backend, backend);
            let l = u.layer(layer).expect("layer usage");
            assert_eq!(l.backend, backend);
            // Memcached cannot count keys per prefix; it says 0 (documented).
            if stack.lists_keys() {
                assert_eq!(l.keys, 2, "{layer}");
                assert!(l.bytes > 10_000, "{layer}: {}", l.bytes);
            }
        }
        // A fresh process reads from the first shared layer and back-fills L1.
        let other = env.cache("").await;
        assert_eq!(other.get::<i32>("a").await.expect("get"), Some(1));
        assert_eq!(other.get::<i32>("a").await.expect("get"), Some(1));
        let s = other.stats();
        let (first, _) = shallowest(stack);
        assert_eq!((hits(&s, first), s.l1_hits, s.misses), (1, 1, 0));
    } else {
        assert!(s.layer(Layer::L4).is_none());
    }
}

async fn schema_additions_are_tolerated(stack: Stack) {
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct UserV2 {
        id: i64,
        name: String,
        email: Option<String>,
    }
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache
        .set(
            "u",
            &User {
                id: 3,
                name: "c".into(),
            },
        )
        .await
        .expect("set");
    let v2 = cache
        .get::<UserV2>("u")
        .await
        .expect("reads with a new optional field");
    let v2 = v2.expect("present");
    assert_eq!((v2.id, v2.email), (3, None));
}

async fn arc_reads_share_one_decoded_value(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache
        .set(
            "u",
            &User {
                id: 1,
                name: "a".into(),
            },
        )
        .await
        .expect("set");
    let a = cache
        .get::<Arc<User>>("u")
        .await
        .expect("get")
        .expect("present");
    let b = cache
        .get::<Arc<User>>("u")
        .await
        .expect("get")
        .expect("present");
    assert!(
        Arc::ptr_eq(&a, &b),
        "the second hit is an Arc clone of the memoised value"
    );
}

async fn json_and_lz4_round_trip(stack: Stack) {
    let env = Env::new(stack);
    let cache = env
        .cache("serialization = \"json\"\ncompression = { algorithm = \"lz4\", threshold = 64 }")
        .await;
    let text = "abc".repeat(10_000);
    cache.set("big", &text).await.expect("set");
    cache.set("small", &1).await.expect("set");
    assert_eq!(
        cache.get::<String>("big").await.expect("get"),
        Some(text.clone())
    );
    if shared(stack) {
        let other = env.cache("serialization = \"json\"").await;
        assert_eq!(other.get::<String>("big").await.expect("get"), Some(text));
        let usage = other.usage().await.expect("usage");
        let (deep, _) = deepest(stack);
        let stored = usage.layer(deep).expect("deepest layer");
        assert!(
            stored.bytes < 5_000,
            "compressed in {deep}: {} bytes",
            stored.bytes
        );
    }
}

async fn layer_selection_writes_only_there(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    cache.set("cfg", &1).layer(Layer::L1).await.expect("set");
    assert_eq!(cache.get::<i32>("cfg").await.expect("get"), Some(1));
    if !matches!(
        stack,
        Stack::L1Redis | Stack::L1Memcached | Stack::L1RedisCluster | Stack::Full
    ) {
        let err = cache
            .set("x", &1)
            .layer(Layer::L2)
            .await
            .expect_err("L2 is not enabled");
        assert_eq!(err.kind(), ErrorKind::Config);
    }
    if shared(stack) {
        let other = env.cache("").await;
        assert_eq!(other.get::<i32>("cfg").await.expect("get"), None, "L1 only");
        let (deep, _) = deepest(stack);
        cache.set("deep", &2).layer(deep).await.expect("set");
        let s0 = cache.stats();
        assert_eq!(cache.get::<i32>("deep").await.expect("get"), Some(2));
        let s1 = cache.stats();
        assert_eq!(
            hits(&s1, deep) - hits(&s0, deep),
            1,
            "first read comes from {deep}"
        );
    }
}

async fn every_future_is_send(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    let c = cache.clone();
    tokio::spawn(async move {
        c.set("s", &1).tags(["t"]).await.expect("set");
        c.get::<i32>("s").await.expect("get");
        c.exists("s").await.expect("exists");
        c.increment("n", 1).await.expect("incr");
        c.keys("*").await.expect("keys");
        c.get_or_set("g", || async { Ok::<_, std::io::Error>(1) })
            .await
            .expect("gos");
        c.invalidate_tag("t").await.expect("tag");
        c.delete_many(&["s"]).await.expect("dm");
        c.stats();
        c.flush().await.expect("flush");
    })
    .await
    .expect("spawned");
}

// ----- tests specific to one stack ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_uses_the_remaining_ttl_and_layer_caps() {
    let env = Env::new(Stack::L1File);
    let cache = env.cache_with("", "ttl = 0.2").await;
    // L1 caps at 200 ms; the entry lives 10 s in L4.
    cache
        .set("k", &1)
        .ttl(Duration::from_secs(10))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cache.stats();
    assert_eq!(cache.get::<i32>("k").await.expect("get"), Some(1));
    let after = cache.stats();
    assert_eq!(
        after.l4_hits - before.l4_hits,
        1,
        "L1 copy expired at its cap"
    );

    // Back-fill carries the remaining TTL, not a fresh one.
    let writer = env.cache("").await;
    writer
        .set("short", &5)
        .ttl(Duration::from_millis(400))
        .layer(Layer::L4)
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let reader = env.cache("").await;
    assert_eq!(
        reader
            .get::<i32>("short")
            .await
            .expect("L4 hit, back-fills L1"),
        Some(5)
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        reader.get::<i32>("short").await.expect("get"),
        None,
        "the L1 copy expired with the entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_l4_values_are_misses_removed_and_counted() {
    let env = Env::new(Stack::L1File);
    let cache = env.cache("").await;
    cache.set("victim", &"value").await.expect("set");
    let file = find_file(env.dir(), "victim").expect("entry file");
    let mut bytes = std::fs::read(&file).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).expect("corrupt it");
    let fresh = env.cache("").await;
    assert_eq!(
        fresh
            .get::<String>("victim")
            .await
            .expect("a miss, not an error"),
        None
    );
    // Removed: replaced, only if still the same bytes, by a tombstone
    // (docs/consistency.md#cleanup-never-removes-a-newer-write), which no listing counts.
    let left = std::fs::read(&file).unwrap_or_default();
    assert_ne!(left, bytes, "the corrupt entry is still there");
    let s = fresh.stats();
    assert_eq!(s.layer(Layer::L4).expect("l4").corrupt, 1);
    let u = fresh.usage().await.expect("usage");
    assert_eq!(u.layer(Layer::L4).expect("l4").keys, 0);
    // Garbage in its place.
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, b"not an envelope").expect("garbage");
    assert_eq!(fresh.get::<String>("victim").await.expect("get"), None);
    assert_eq!(fresh.stats().layer(Layer::L4).expect("l4").corrupt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_is_one_write_whatever_the_number_of_entries() {
    let env = Env::new(Stack::L1File);
    let cache = env.cache("").await;
    for i in 0..300 {
        cache
            .set(&format!("item:{i}"), &i)
            .tags(["bulk"])
            .await
            .expect("set");
    }
    let before = snapshot(env.dir());
    cache.invalidate_tag("bulk").await.expect("invalidate");
    let after = snapshot(env.dir());
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, m)| before.iter().find(|(q, _)| q == p).map(|(_, n)| n) != Some(m))
        .collect();
    assert_eq!(changed.len(), 1, "only the tag record changed: {changed:?}");
    assert!(changed[0].0.contains("/t/"), "{changed:?}");
    assert_eq!(before.len(), after.len(), "no entry file was touched");
    assert_eq!(cache.get::<i32>("item:7").await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_tag_records_never_revives_invalidated_entries() {
    let env = Env::new(Stack::L1File);
    let cache = env.cache("").await;
    cache.set("p", &1).tags(["t"]).await.expect("set");
    cache.invalidate_tag("t").await.expect("invalidate");
    // Simulate eviction of the tag metadata: delete every tag record.
    for (path, _) in snapshot(env.dir()) {
        if path.contains("/t/") {
            std::fs::remove_file(&path).expect("remove tag record");
        }
    }
    let fresh = env.cache("").await;
    assert_eq!(fresh.get::<i32>("p").await.expect("get"), None);

    // L1 alone: the in-process memo of versions dropped wholesale has the same effect.
    let l1 = Env::new(Stack::L1).cache("").await;
    l1.set("q", &1).tags(["u"]).await.expect("set");
    l1.invalidate_tag("u").await.expect("invalidate");
    l1.flush().await.expect("flush forgets versions");
    assert_eq!(l1.get::<i32>("q").await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_removes_only_this_prefix() {
    let env = Env::new(Stack::L1File);
    let a = env.cache("key_prefix = \"a:\"").await;
    let b = env.cache("key_prefix = \"b:\"").await;
    a.set("k", &1).await.expect("set");
    b.set("k", &2).await.expect("set");
    a.flush().await.expect("flush");
    assert_eq!(a.get::<i32>("k").await.expect("get"), None);
    assert!(a.keys("*").await.expect("keys").is_empty());
    let b2 = env.cache("key_prefix = \"b:\"").await;
    assert_eq!(b2.get::<i32>("k").await.expect("get"), Some(2));
    assert_eq!(b2.keys("*").await.expect("keys"), ["k"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_round_trip_inside_the_directory() {
    let env = Env::new(Stack::L1File);
    let cache = env.cache("").await;
    let keys = [
        "..",
        "../../etc/passwd",
        "a/b",
        "c\\d",
        "%2e%2e",
        "ключ",
        "sp ace",
        &"x".repeat(1000),
    ];
    for k in keys {
        cache.set(k, &k).layer(Layer::L4).await.expect("set");
    }
    let fresh = env.cache("").await;
    for k in keys {
        assert_eq!(
            fresh.get::<String>(k).await.expect("get").as_deref(),
            Some(k),
            "{k}"
        );
    }
    let mut listed = fresh.keys("*").await.expect("keys");
    listed.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for (path, _) in snapshot(env.dir()) {
        assert!(path.starts_with(&env.dir().display().to_string()), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_is_an_l1_default_until_an_app_is_built() {
    let cache = Cache::global();
    assert!(cache.config().layers.l4.is_none());
    cache.set("global:k", &1).await.expect("set");
    assert_eq!(
        Cache::global().get::<i32>("global:k").await.expect("get"),
        Some(1)
    );
}

fn snapshot(dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let modified = entry.metadata().and_then(|m| m.modified()).expect("mtime");
                out.push((path.display().to_string(), modified));
            }
        }
    }
    out.sort();
    out
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    snapshot(dir)
        .into_iter()
        .map(|(p, _)| std::path::PathBuf::from(p))
        .find(|p| p.file_name().is_some_and(|f| f == name))
}

/// An L1 + L4 `file` cache with extra lines in `[cache.layers.l4]`.
async fn file_cache_with(env: &Env, l4_lines: &str) -> Cache {
    let toml = env.toml("", "").replace(
        "[cache.layers.l4]\n",
        &format!("[cache.layers.l4]\n{l4_lines}\n"),
    );
    let config = vorte_cache::Config::from_toml_str(&toml).expect("config");
    Cache::from_config(&config.cache).await.expect("cache")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_catches_up_and_counts_what_it_drops() {
    let env = Env::new(Stack::L1File);
    let cache = file_cache_with(&env, "write_policy = \"behind\"\nwrite_behind_queue = 1").await;
    cache.set("one", &1).await.expect("set");
    // The layer catches up in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = env.cache("").await;
        if fresh.get::<i32>("one").await.expect("get") == Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queued write never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A burst larger than the queue: what does not fit is dropped for L4, counted, and still
    // served from L1.
    let keys: Vec<String> = (0..200).map(|i| format!("burst:{i}")).collect();
    let values: Vec<i32> = (0..200).collect();
    let sets: Vec<_> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| std::future::IntoFuture::into_future(cache.set(k, v)))
        .collect();
    for r in futures_util::future::join_all(sets).await {
        r.expect("L1 takes every write");
    }
    let stats = cache.stats();
    let dropped = stats.layer(Layer::L4).expect("l4").write_behind_dropped;
    assert!(dropped > 0 && dropped <= 200, "dropped {dropped}");
    assert_eq!(cache.get::<i32>("burst:199").await.expect("get"), Some(199));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_write_never_lands_after_a_delete() {
    let env = Env::new(Stack::L1File);
    let cache = file_cache_with(&env, "write_policy = \"behind\"").await;
    for round in 0..50 {
        let key = format!("k{round}");
        cache.set(&key, &round).await.expect("set");
        cache.delete(&key).await.expect("delete");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = env.cache("").await;
    assert!(fresh.keys("k*").await.expect("keys").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_compresses_l4_values() {
    let env = Env::new(Stack::L1File);
    let cache = file_cache_with(
        &env,
        "compression = { algorithm = \"zstd\", threshold = 64 }",
    )
    .await;
    let text = "vorte ".repeat(20_000);
    cache.set("big", &text).await.expect("set");
    let fresh = env.cache("").await;
    assert_eq!(fresh.get::<String>("big").await.expect("get"), Some(text));
    let l4 = fresh.usage().await.expect("usage");
    let l4 = l4.layer(Layer::L4).expect("l4");
    assert!(l4.bytes < 2_000, "120 kB compressed to {} bytes", l4.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_removes_expired_objects_nobody_reads() {
    let env = Env::new(Stack::L1File);
    let cache = file_cache_with(&env, "sweep_interval = 0.2\nsweep_batch = 7").await;
    for i in 0..20 {
        cache
            .set(&format!("gone:{i}"), &i)
            .ttl(Duration::from_millis(100))
            .layer(Layer::L4)
            .await
            .expect("set");
    }
    cache.set("kept", &1).layer(Layer::L4).await.expect("set");
    // Count the files themselves: any read through the cache (even `stats`) would remove the
    // expired entries on its own and hide what the sweeper did.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let entries = snapshot(env.dir())
            .iter()
            .filter(|(p, _)| p.contains("/e/"))
            .count();
        if entries == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{entries} entries left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = cache.stats();
    assert_eq!(stats.layer(Layer::L4).expect("l4").swept, 20);
    assert_eq!(cache.get::<i32>("kept").await.expect("get"), Some(1));
}

/// Concurrent misses in L1 read the lower layers once, not once per caller: the flight's leader
/// reads them for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_reads_the_lower_layers_once() {
    let env = Env::new(Stack::L1File);
    let writer = env.cache("").await;
    writer
        .set("hot", &5u32)
        .layer(Layer::L4)
        .await
        .expect("set");
    let cache = env.cache("").await;
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_set("hot", || async { Ok::<_, std::io::Error>(0u32) })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.expect("task").expect("value"),
            5,
            "found in L4, not loaded"
        );
    }
    let stats = cache.stats();
    assert_eq!(stats.l4_hits, 1, "{stats:?}");
}

/// `set_owned` (and a load) on an L1-only cache keeps the value decoded and encodes it only when
/// bytes are asked for: every operation that reads bytes still sees it
/// (`docs/performance.md#l1-miss-then-insert`).
#[tokio::test(flavor = "multi_thread")]
async fn an_owned_write_to_l1_alone_is_read_listed_and_counted_like_any_other() {
    for max_bytes in [None, Some(1 << 20)] {
        let mut config = vorte_cache::CacheConfig::default();
        config.layers.l1.max_bytes = max_bytes; // a byte bound needs the encoded size
        let cache = Cache::from_config(&config).await.expect("cache");
        let alice = User {
            id: 1,
            name: "Alice".into(),
        };
        cache
            .set_owned("owned:user", alice.clone())
            .await
            .expect("set");
        assert_eq!(
            cache.get::<User>("owned:user").await.expect("get"),
            Some(alice.clone())
        );
        assert!(cache.exists("owned:user").await.expect("exists"));
        // A load on L1 alone is kept decoded too.
        let loaded = cache
            .get_or_set("owned:loaded", || async { Ok::<_, std::io::Error>(7u32) })
            .await
            .expect("load");
        assert_eq!(loaded, 7);
        assert!(cache.exists("owned:loaded").await.expect("exists"));
        cache.set_owned("owned:n", 41i64).await.expect("set");
        assert_eq!(cache.increment("owned:n", 1).await.expect("increment"), 42);
        assert_eq!(
            cache.keys("owned:*").await.expect("keys"),
            vec![
                "owned:loaded".to_owned(),
                "owned:n".to_owned(),
                "owned:user".to_owned()
            ]
        );
        // Read as another type, the value is encoded and decoded: a mismatch is still typed.
        assert_eq!(
            cache.get::<u64>("owned:user").await.unwrap_err().kind(),
            ErrorKind::TypeMismatch
        );
        let usage = cache.usage().await.expect("usage");
        assert!(usage.layers[0].bytes > 0, "{max_bytes:?}");
        assert!(cache.delete("owned:user").await.expect("delete"));
        assert_eq!(cache.get::<User>("owned:user").await.expect("get"), None);
        assert_eq!(
            cache.set_owned("", 1).await.unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
    }
}

/// A load that began before a write never overwrites it, whether the write encodes (`set`) or not
/// (`set_owned`), on L1 alone, where the fence records a key only while a load of it is in flight.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_that_began_before_a_write_never_overwrites_it() {
    for owned in [false, true] {
        let cache = Cache::from_config(&vorte_cache::CacheConfig::default())
            .await
            .expect("cache");
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let loader_cache = cache.clone();
        let load = tokio::spawn(async move {
            loader_cache
                .get_or_set("race:1", || async move {
                    let _ = started_tx.send(());
                    let _ = release_rx.await;
                    Ok::<_, std::io::Error>("old".to_string())
                })
                .await
        });
        started_rx.await.expect("loader started");
        // A write of another key while the load is in flight changes nothing for it.
        cache.set("race:other", &"x").await.expect("set");
        if owned {
            cache
                .set_owned("race:1", "new".to_string())
                .await
                .expect("set");
        } else {
            cache.set("race:1", &"new").await.expect("set");
        }
        release_tx.send(()).expect("release");
        assert_eq!(load.await.expect("task").expect("load").as_str(), "old");
        assert_eq!(
            cache.get::<String>("race:1").await.expect("get").as_deref(),
            Some("new"),
            "owned: {owned}"
        );
        // With no load in flight, a write and a later load see each other as usual.
        cache.set("race:2", &"v1").await.expect("set");
        let v = cache
            .get_or_set("race:2", || async {
                Ok::<_, std::io::Error>("loaded".to_string())
            })
            .await
            .expect("get_or_set");
        assert_eq!(v, "v1");
    }
}

/// `docs/guarantees.md#g3-no-resurrection` for single-flight: a caller that starts after
/// `delete`, `flush` or `invalidate_tag` returned never receives the value of a load that began
/// before it, even while that load is still in flight (it leads a load of its own). Before the
/// fix it joined the old load's flight as a waiter and received `"old"`.
async fn a_caller_after_an_invalidation_never_receives_a_load_that_began_before_it(stack: Stack) {
    let env = Env::new(stack);
    let cache = env.cache("").await;
    for how in ["delete", "flush", "invalidate_tag"] {
        let key = format!("flight:{how}");
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let old = {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set(&key, || async move {
                        let _ = started_tx.send(());
                        let _ = release_rx.await;
                        Ok::<_, std::io::Error>("old".to_string())
                    })
                    .tags(["flight-tag"])
                    .await
            })
        };
        started_rx.await.expect("the first load started");
        match how {
            "delete" => {
                cache.delete(&key).await.expect("delete");
            }
            "flush" => cache.flush().await.expect("flush"),
            _ => cache
                .invalidate_tag("flight-tag")
                .await
                .expect("invalidate_tag"),
        }
        // Begins after the invalidation returned, while the old load is still held.
        let new = {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set(&key, || async {
                        Ok::<_, std::io::Error>("new".to_string())
                    })
                    .tags(["flight-tag"])
                    .await
            })
        };
        // Give a waiter time to join the old flight, then let the old load end.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = release_tx.send(());
        assert_eq!(
            old.await.expect("task").expect("old load"),
            "old",
            "{stack:?} {how}"
        );
        assert_eq!(
            new.await.expect("task").expect("new load"),
            "new",
            "{stack:?} {how}: a caller after the invalidation got the old load's value"
        );
        // The old load's value is never stored. (Whether the new one is depends on the stack: a
        // delete's tombstone still refuses every load for its 60 s, a finding of its own.)
        assert_ne!(
            cache.get::<String>(&key).await.expect("get").as_deref(),
            Some("old"),
            "{stack:?} {how}"
        );
    }
}

/// `docs/guarantees.md#g1-read-your-writes`: a `set` is new truth from the caller, so L1's
/// admission filter (`docs/l1-policy.md`), which may turn a loaded or back-filled copy away, never
/// refuses it: with L1 alone, full, and its filter on (keys cycled through it several times, so
/// that its victims are counted often), each new key set is read back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_read_back_when_l1_is_full_and_filtering() -> vorte_cache::Result<()> {
    let config = vorte_cache::Config::from_toml_str("[cache.layers.l1]\nmax_size = 100")?;
    let cache = Cache::from_config(&config.cache).await?;
    for _ in 0..6 {
        for i in 0..400 {
            let key = format!("cycled:{i}");
            if cache.get::<u32>(&key).await?.is_none() {
                cache.set(&key, &i).await?;
            }
        }
    }
    let mut lost = Vec::new();
    for i in 0..300 {
        let key = format!("new:{i}");
        cache.set(&key, &i).await?;
        if cache.get::<u32>(&key).await? != Some(i) {
            lost.push(key);
        }
    }
    assert!(
        lost.is_empty(),
        "{} sets not read back: {lost:?}",
        lost.len()
    );
    Ok(())
}
