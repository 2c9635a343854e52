//! The application: `Vorte::builder()` installs the global cache and wires (or not) the
//! `#[on_event]` handlers, and a failing layer never fails a `#[cached]` call. One test, because
//! each step replaces the process-wide application.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::sync::atomic::{AtomicUsize, Ordering};

use vorte_cache::{Cache, Config, ErrorKind, Layer, Vorte, cached, on_event};

static HANDLED: AtomicUsize = AtomicUsize::new(0);
static BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[on_event("app.test.ping")]
async fn on_ping(n: usize) {
    HANDLED.fetch_add(n, Ordering::SeqCst);
}

#[cached(ttl = 60, key = "deep:{id}", layer = "l4")]
async fn deep(id: u32) -> Result<u32, std::io::Error> {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(id * 2)
}

fn file_config(dir: &std::path::Path) -> Config {
    Config::from_toml_str(&format!(
        "[cache]\nkey_prefix = \"app:\"\n[cache.layers.l4]\nbackend = \"file\"\npath = {:?}\n",
        dir.display().to_string()
    ))
    .expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_installs_its_cache_and_wires_its_handlers() {
    // Before any build: the embedded default, with every handler wired.
    assert!(Cache::global().config().layers.l4.is_none());
    assert_eq!(
        vorte_cache::emit("app.test.ping", &serde_json::json!({ "n": 1 }))
            .await
            .unwrap(),
        1
    );
    assert_eq!(HANDLED.load(Ordering::SeqCst), 1);

    // auto_load(false): the application wires no handler.
    let app = Vorte::builder()
        .auto_load(false)
        .build()
        .await
        .expect("build");
    assert_eq!(app.events().handler_count(), 0);
    assert_eq!(
        vorte_cache::emit("app.test.ping", &serde_json::json!({ "n": 1 }))
            .await
            .unwrap(),
        0
    );
    assert_eq!(HANDLED.load(Ordering::SeqCst), 1);

    // auto_load(true) with an L4 directory: installed as the global cache and bus.
    let dir = tempfile::tempdir().expect("tempdir");
    let l4 = dir.path().join("l4");
    let app = Vorte::builder()
        .auto_load(true)
        .config(file_config(&l4))
        .build()
        .await
        .expect("build");
    assert!(app.events().handler_count() >= 1);
    assert!(Cache::global().config().layers.l4.is_some());
    assert_eq!(
        vorte_cache::emit("app.test.ping", &serde_json::json!({ "n": 2 }))
            .await
            .unwrap(),
        1
    );
    assert_eq!(HANDLED.load(Ordering::SeqCst), 3);

    // #[cached] writes to L4 through the global cache.
    assert_eq!(deep(4).await.unwrap(), 8);
    assert_eq!(deep(4).await.unwrap(), 8);
    assert_eq!(
        BODY_RUNS.load(Ordering::SeqCst),
        1,
        "the second call was a hit"
    );

    // Break L4: its directory becomes a plain file, so every store call fails.
    std::fs::remove_dir_all(&l4).expect("remove");
    std::fs::write(&l4, b"not a directory").expect("block");
    assert_eq!(
        deep(5).await.unwrap(),
        10,
        "a failing layer never fails the call"
    );
    assert_eq!(deep(5).await.unwrap(), 10);
    assert_eq!(
        BODY_RUNS.load(Ordering::SeqCst),
        3,
        "nothing could be cached, so the body ran"
    );
    let cache = Cache::global();
    assert_eq!(
        cache.get::<u32>("deep:4").await.unwrap(),
        Some(8),
        "L1 still answers"
    );
    cache
        .set("still", &1)
        .await
        .expect("L1 takes the write while L4 fails");
    let stats = cache.stats();
    assert!(stats.layer(Layer::L4).unwrap().errors >= 3, "{stats:?}");
    let err = cache
        .set("only-l4", &1)
        .layer(Layer::L4)
        .await
        .expect_err("no layer took it");
    assert_eq!(err.kind(), ErrorKind::Backend);
}
