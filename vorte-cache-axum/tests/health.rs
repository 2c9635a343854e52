//! `GET /health` and `GET /stats` over real HTTP on a loopback port, against caches whose lower
//! layers are the library's in-memory `TestStore`, made to fail like a server that is down.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vorte_cache::testing::TestStore;
use vorte_cache::{Cache, Config, Layer};

/// Serves `app` on a free loopback port; returns its address.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

/// One HTTP/1.1 GET with `Connection: close`: the status code and the body parsed as JSON.
async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header and a body");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{path} answers JSON: {head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "a JSON body has a length: {head}"
    );
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

/// A cache with L1 and two `TestStore` layers (L2 and L3), and those stores.
async fn cache_over_two_stores() -> (Cache, TestStore, TestStore) {
    let config = Config::from_toml_str("[cache.layers.l1]\nmax_size = 100")
        .expect("config")
        .cache;
    let (l2, l3) = (TestStore::new(), TestStore::new());
    let cache = Cache::builder(&config)
        .store(Layer::L2, Arc::new(l2.clone()))
        .store(Layer::L3, Arc::new(l3.clone()))
        .build()
        .await
        .expect("cache");
    (cache, l2, l3)
}

fn app(cache: &Cache) -> Router {
    Router::new().nest("/ops", vorte_cache_axum::health::routes(cache.clone()))
}

fn reasons(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .expect("reasons is a list")
        .iter()
        .map(|r| r.as_str().expect("a reason is a string").to_owned())
        .collect()
}

/// Reads of keys nobody wrote: each one asks every layer below L1 (and fails there while its
/// store is down), so enough of them open the layer's circuit breaker (5 failures by default).
async fn misses(cache: &Cache, n: usize) {
    for i in 0..n {
        let v: Option<u32> = cache.get(&format!("absent:{i}")).await.expect("a get");
        assert_eq!(v, None);
    }
}

/// The comparison below reads the route's JSON back, so it holds only if the reader parses every
/// float exactly: serde_json's default parser may be an ulp off, and a latency sum of
/// 0.14100000000000001 ms came back as 0.141 (CI, 2026-12-06). The tests read JSON with its
/// `float_roundtrip` feature (`Cargo.toml`, dev-dependencies).
#[test]
fn the_tests_json_reader_reads_floats_back_exactly() {
    for text in ["0.14100000000000001", "0.009200090000000001"] {
        let read: serde_json::Value = serde_json::from_str(text).expect("a number");
        let exact: f64 = text.parse().expect("a float");
        assert_eq!(read.as_f64(), Some(exact), "{text}");
    }
}

#[tokio::test]
async fn stats_equal_the_caches_own_after_gets_and_sets() {
    let (cache, _l2, _l3) = cache_over_two_stores().await;
    let addr = serve(app(&cache)).await;

    for i in 0..10u32 {
        cache.set(&format!("k:{i}"), &i).await.expect("set");
    }
    for i in 0..10u32 {
        assert_eq!(
            cache.get::<u32>(&format!("k:{i}")).await.expect("get"),
            Some(i)
        );
    }
    misses(&cache, 3).await;
    let loaded: u32 = cache
        .get_or_set("loaded", || async { Ok::<_, std::io::Error>(7) })
        .await
        .expect("get_or_set");
    assert_eq!(loaded, 7);
    cache.delete("k:0").await.expect("delete");

    let (status, body) = get_json(addr, "/ops/stats").await;
    let expected = cache.stats();
    assert_eq!(status, 200);
    assert_eq!(body["l1_hits"], expected.l1_hits);
    assert_eq!(body["l1_hits"], 10, "every value read back came from L1");
    assert_eq!(body["misses"], expected.misses);
    assert_eq!(
        body["misses"], 4,
        "3 absent keys and the first read of `loaded`"
    );
    assert_eq!(body["loads"]["runs"], expected.loads.runs);
    assert_eq!(body["loads"]["runs"], 1);
    assert_eq!(body["invalidations"], expected.invalidations);
    assert_eq!(body["invalidations"], 1);
    assert_eq!(body["hit_rate"], expected.hit_rate());
    // The whole of the library's own serialization is there, unchanged.
    let mut own = serde_json::to_value(&expected).expect("stats serialize");
    own["hit_rate"] = body["hit_rate"].clone();
    assert_eq!(body, own);

    let layers = body["layers"].as_array().expect("layers");
    let names: Vec<&str> = layers
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["l1", "l2", "l3"]);
    assert_eq!(
        layers[1]["misses"],
        expected.layer(Layer::L2).unwrap().misses
    );
}

#[tokio::test]
async fn health_is_ok_then_degraded_with_one_layer_down_then_down_with_both() {
    let (cache, l2, l3) = cache_over_two_stores().await;
    let addr = serve(app(&cache)).await;
    cache.set("a", &1u8).await.expect("set");

    let (status, body) = get_json(addr, "/ops/health").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    assert!(reasons(&body).is_empty(), "{body}");

    // L2's server goes away: its circuit opens; L3 still serves.
    l2.set_unavailable(true);
    misses(&cache, 8).await;
    let l2_stats = cache.stats().layer(Layer::L2).cloned().unwrap();
    assert!(l2_stats.errors >= 5, "the reads failed at L2: {l2_stats:?}");
    let (status, body) = get_json(addr, "/ops/health").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("degraded")),
        "one layer out of two below L1 is out: {body}"
    );
    let why = reasons(&body);
    assert!(
        why.iter()
            .any(|r| r.contains("l2") && r.contains("circuit")),
        "the reason names L2's circuit breaker: {why:?}"
    );
    assert!(
        why.iter().any(|r| r.contains("l2 errors rose")),
        "and L2's errors since the last look: {why:?}"
    );
    assert!(why.iter().all(|r| !r.contains("l3")), "L3 is fine: {why:?}");
    assert_eq!(body["layers"][1]["layer"], "l2");
    assert!(
        body["layers"][1]["open_circuits"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );

    // L3's too: only the process's own memory answers.
    l3.set_unavailable(true);
    misses(&cache, 8).await;
    let (status, body) = get_json(addr, "/ops/health").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("down")),
        "every layer below L1 is out: {body}"
    );
    // Still a cache: L1 answers what it holds.
    assert_eq!(cache.get::<u8>("a").await.expect("get"), Some(1));

    // Both come back: once a probe closes each circuit (the cool-down is 0.5 s ± 20 %), the
    // status is no longer `down`, but stays `degraded` for the errors of the last minute.
    l2.set_unavailable(false);
    l3.set_unavailable(false);
    let mut last = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        misses(&cache, 1).await;
        let (status, body) = get_json(addr, "/ops/health").await;
        let closed = body["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["open_circuits"].as_array().is_some_and(|c| c.is_empty()));
        if status == 200 && closed {
            last = body;
            break;
        }
        last = body;
    }
    assert_eq!(
        last["status"], "degraded",
        "recent errors still count: {last}"
    );
    assert!(
        reasons(&last).iter().all(|r| !r.contains("circuit")),
        "every circuit closed again: {last}"
    );
}

#[tokio::test]
async fn an_l1_only_cache_is_never_down_and_routes_merge_at_the_root() {
    let cache = Cache::from_config(&Default::default())
        .await
        .expect("cache");
    let addr = serve(Router::new().merge(vorte_cache_axum::health::routes(cache.clone()))).await;
    cache.set("x", &1u8).await.expect("set");
    assert_eq!(cache.get::<u8>("x").await.expect("get"), Some(1));
    let (status, body) = get_json(addr, "/health").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    assert_eq!(body["hit_rate"], 1.0);
    let (status, body) = get_json(addr, "/stats").await;
    assert_eq!(status, 200);
    assert_eq!(body["l1_hits"], 1);
    assert_eq!(body["bus"], Value::Null);
}
