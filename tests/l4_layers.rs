//! L4 (object storage) guarantees on real stores: the `gcs`, `azure` and `http` configurations
//! build a store; hostile keys round-trip on S3 (moto) and never leave the prefix; moto killed
//! under load costs nothing but L4; per-layer `max_value_bytes`; promotion from L4 into a cold
//! L1; and `flush` / `delete_many` touch nothing outside the cache's own prefix.
//!
//! Tests that kill moto start their own; the others share one (each in its own key prefix, and
//! where the whole bucket is inspected, in a bucket of its own).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::{Deserialize, Serialize};
use vorte_cache::{Cache, Config, ErrorKind, Layer};
use vorte_cache_tests::servers::{MotoServer, http_request};
use vorte_cache_tests::{Env, Stack, s3_layer, shared_moto, unique_prefix};

// ----- helpers ---------------------------------------------------------------------------------

async fn cache(toml: &str) -> Cache {
    let config = Config::from_toml_str(toml).unwrap_or_else(|e| panic!("config {toml}: {e}"));
    Cache::from_config(&config.cache)
        .await
        .unwrap_or_else(|e| panic!("cache builds from {toml}: {e}"))
}

async fn try_cache(toml: &str) -> vorte_cache::Result<Cache> {
    Cache::from_config(&Config::from_toml_str(toml)?.cache).await
}

/// [`s3_layer`] on another bucket of the same moto.
fn s3_layer_in(moto: &MotoServer, bucket: &str) -> String {
    s3_layer(moto).replace(&format!("{:?}", moto.bucket()), &format!("{bucket:?}"))
}

/// Creates a bucket of this test's own on `moto`, so the whole bucket can be inspected.
fn new_bucket(moto: &MotoServer) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let bucket = format!(
        "vorte-l4-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (status, answer) = http_request(moto.port(), "PUT", &format!("/{bucket}"), b"");
    assert_eq!(status, 200, "PUT /{bucket}: {answer}");
    bucket
}

/// object_store's own client on `bucket`, to look at the bucket behind the cache's back.
fn raw_s3(moto: &MotoServer, bucket: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region(moto.region())
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("raw S3 client")
}

/// Every object name in the store.
async fn list_all(store: &dyn ObjectStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list the bucket");
    names.sort();
    names
}

/// The object-name segment the L4 layer makes of a key prefix: bytes outside `[A-Za-z0-9_-]`
/// become `=XX` (mirrors the layer's documented encoding; written here independently).
fn encoded(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("={b:02X}")
            }
        })
        .collect()
}

/// The keys `layer` holds, in `usage`.
fn keys(usage: &vorte_cache::CacheUsage, layer: Layer) -> u64 {
    usage.layer(layer).expect("the layer").keys
}

fn l4(cache_stats: &vorte_cache::CacheStats) -> &vorte_cache::LayerStats {
    cache_stats.layer(Layer::L4).expect("an L4 layer")
}

// ----- 1. gcs, azure and http configurations build a store -------------------------------------

/// The scenarios that depend on environment variables. The workspace forbids `unsafe`, so
/// `std::env::set_var` is out, and the environment is process-wide anyway: each scenario runs in a
/// child process of this test binary (the [`l4_env_child`] test), with an environment of its own
/// built from scratch (`env_clear`), so nothing of the caller's `GOOGLE_*` / `AZURE_*` leaks in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_configs_build() {
    // http needs no environment: a URL (nothing has to listen there to build the store).
    let prefix = unique_prefix();
    cache(&format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l4]\nbackend = \"http\"\n\
         url = \"http://127.0.0.1:1/\"\nallow_http = true\n"
    ))
    .await;
    // ... and plain http:// without `allow_http` is a configuration error naming the key.
    let err = try_cache(&format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l4]\nbackend = \"http\"\n\
         url = \"http://127.0.0.1:1/\"\n"
    ))
    .await
    .expect_err("plain http:// without allow_http is refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("cache.layers.l4.url"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    // A syntactically valid service-account file. `disable_oauth` makes object_store use empty
    // bearer tokens instead of signing JWTs with the (fake) key, as fake-gcs-server setups do.
    let service_account = dir.path().join("service-account.json");
    std::fs::write(
        &service_account,
        r#"{"type": "service_account", "project_id": "vorte-test",
            "private_key_id": "0000000000000000000000000000000000000000",
            "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "client_email": "vorte@vorte-test.iam.gserviceaccount.com",
            "disable_oauth": true, "gcs_base_url": "http://127.0.0.1:1"}"#,
    )
    .expect("write the service-account file");
    let sa = service_account.display().to_string();
    // A base64 account key (Azure keys are base64; the content is not checked until a request).
    let key = "dm9ydGUtY2FjaGUtdGVzdC1rZXktbm90LWEtcmVhbC1vbmUtMDAwMDAwMDAwMA==";

    let scenarios: &[(&str, &[(&str, &str)])] = &[
        // No credentials at all: object_store falls back to the instance metadata provider,
        // which is only asked at the first request.
        ("gcs-ok", &[]),
        ("gcs-ok", &[("GOOGLE_SERVICE_ACCOUNT", &sa)]),
        ("gcs-bad", &[("GOOGLE_SERVICE_ACCOUNT_KEY", "{ not json")]),
        (
            "gcs-bad",
            &[("GOOGLE_SERVICE_ACCOUNT", "/nonexistent/vorte/sa.json")],
        ),
        (
            "azure-ok",
            &[
                ("AZURE_STORAGE_ACCOUNT_NAME", "vortetest"),
                ("AZURE_STORAGE_ACCOUNT_KEY", key),
            ],
        ),
        ("azure-ok", &[("AZURE_STORAGE_USE_EMULATOR", "true")]),
        ("azure-bad", &[]),
        (
            "azure-bad",
            &[
                ("AZURE_STORAGE_ACCOUNT_NAME", "vortetest"),
                ("AZURE_STORAGE_ACCOUNT_KEY", "not base64 !!"),
            ],
        ),
    ];
    let exe = std::env::current_exe().expect("this test binary");
    for (scenario, vars) in scenarios {
        let mut child = Command::new(&exe);
        child
            .args(["l4_env_child", "--exact", "--nocapture", "--test-threads=1"])
            .env_clear()
            // No ~/.config/gcloud/application_default_credentials.json from the real home.
            .env("HOME", dir.path())
            .env("VORTE_L4_CHILD", scenario);
        for (name, value) in *vars {
            child.env(name, value);
        }
        let out = child.output().expect("run the child test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "scenario {scenario} with {vars:?} failed:\n{text}"
        );
        assert!(
            text.contains(&format!("scenario {scenario}: ok")),
            "scenario {scenario} with {vars:?} did not run:\n{text}"
        );
    }
}

/// One scenario of [`object_store_configs_build`], in a child process; a no-op when run directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_env_child() {
    let Ok(scenario) = std::env::var("VORTE_L4_CHILD") else {
        return;
    };
    let (backend, bucket, ok) = match scenario.as_str() {
        "gcs-ok" => ("gcs", "b", true),
        "gcs-bad" => ("gcs", "b", false),
        "azure-ok" => ("azure", "c", true),
        "azure-bad" => ("azure", "c", false),
        other => panic!("unknown scenario {other}"),
    };
    let toml = format!(
        "[cache]\nkey_prefix = \"vorte:\"\n[cache.layers.l4]\nbackend = {backend:?}\nbucket = {bucket:?}\n"
    );
    match try_cache(&toml).await {
        Ok(cache) => {
            assert!(
                ok,
                "{scenario}: expected a configuration error, the cache built"
            );
            let stats_layer = cache.config().layers.l4.as_ref().expect("an l4 layer");
            let configured = match &stats_layer.backend {
                vorte_cache::config::BackendConfig::Gcs(gcs) => gcs.bucket.as_str(),
                vorte_cache::config::BackendConfig::Azure(azure) => azure.container.as_str(),
                other => panic!("{scenario}: an unexpected backend {other:?}"),
            };
            assert_eq!(configured, bucket);
        }
        Err(e) => {
            assert!(!ok, "{scenario}: the cache did not build: {e}");
            assert_eq!(e.kind(), ErrorKind::Config, "{scenario}: {e}");
            assert!(
                e.to_string().starts_with("cache.layers.l4.")
                    || e.to_string().contains(": cache.layers.l4."),
                "{scenario}: the message names no config path: {e}"
            );
            println!("{scenario}: refused as expected: {e}");
        }
    }
    println!("scenario {scenario}: ok");
}

// ----- 2. hostile keys -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_round_trip_and_stay_inside_the_prefix() {
    let moto = shared_moto();
    let bucket = new_bucket(moto);
    let prefix = unique_prefix();
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n{}prefix = \"app/l4\"\n",
        s3_layer_in(moto, &bucket)
    );
    let long_ascii = format!("long:{}", "k".repeat(995));
    let long_escaped = format!("dots:{}", ".".repeat(995));
    let keys: Vec<String> = [
        "..",
        "../../etc/passwd",
        "a/b",
        "c\\d",
        "%2e%2e",
        "ключ",
        "sp ace",
        ".",
        "/leading",
        "trailing/",
        "=3D",
        "e/x",
        long_ascii.as_str(),
        long_escaped.as_str(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(long_ascii.len(), 1000);
    assert_eq!(long_escaped.len(), 1000);

    let writer = cache(&toml).await;
    for key in &keys {
        writer
            .set(key, &format!("value of {key}"))
            .layer(Layer::L4)
            .await
            .unwrap_or_else(|e| panic!("set {key:?} (L4 only): {e}"));
    }
    for (bad, what) in [
        ("nul\0key".to_owned(), "a NUL"),
        (String::new(), "an empty key"),
        ("x".repeat(1025), "a 1025-byte key"),
    ] {
        let err = writer
            .set(&bad, &1u8)
            .layer(Layer::L4)
            .await
            .expect_err(what);
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{what}: {err}");
        let err = writer.get::<u8>(&bad).await.expect_err(what);
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{what} (get): {err}");
    }

    // A fresh cache (another process, cold L1) reads every key back from S3.
    let reader = cache(&toml).await;
    for key in &keys {
        let value: Option<String> = reader.get(key).await.expect("get");
        assert_eq!(
            value.as_deref(),
            Some(format!("value of {key}").as_str()),
            "{key:?}"
        );
    }
    assert_eq!(reader.stats().l4_hits, keys.len() as u64);
    let mut listed = reader.keys("*").await.expect("keys");
    listed.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // Behind the cache's back: every object is under `<layer prefix>/<encoded key_prefix>/`, no
    // segment is `.` or `..`, and there is exactly one object per key.
    let raw = raw_s3(moto, &bucket);
    let objects = list_all(&raw).await;
    let root = format!("app/l4/{}/", encoded(&prefix));
    for name in &objects {
        assert!(name.starts_with(&root), "{name:?} is outside {root:?}");
        assert!(
            name.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{name:?}"
        );
        assert!(!name.contains('\\') && !name.contains('%'), "{name:?}");
    }
    assert_eq!(objects.len(), keys.len(), "{objects:#?}");
    // Not asserted, reported: moto takes object names of any length, but S3, GCS and Azure cap
    // them at 1,024 bytes, and the `=XX` encoding (3 bytes per escaped byte) plus the segment
    // splitting and the prefixes take a 1,000-byte key well past that.
    let longest = objects.iter().map(String::len).max().unwrap_or(0);
    // Real S3, GCS and Azure refuse names over 1,024 bytes (moto does not): long names are hashed.
    assert!(longest <= 1024, "longest object name: {longest} bytes");
    writer.flush().await.expect("flush");
    // Nothing is left but the flush epoch's record (docs/consistency.md#flush-moves-an-epoch).
    assert_eq!(
        list_all(&raw).await,
        vec![format!("{root}t/vorte-cache=3Aflush-epoch")]
    );
}

// ----- 3. moto killed under load ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_killed_under_load_costs_only_l4() {
    let mut moto = MotoServer::start();
    let prefix = unique_prefix();
    let toml = format!(
        // L1 large enough that no key of the run is evicted: every read must be an L1 hit.
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nmax_size = 1000000\n{}",
        s3_layer(&moto).replace("timeout_ms = 10000", "timeout_ms = 1000")
    );
    let cache = cache(&toml).await;
    let killed = Arc::new(AtomicBool::new(false));
    let writes_after_kill = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_millis(2500);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (cache, killed, writes_after_kill, ops) = (
            cache.clone(),
            killed.clone(),
            writes_after_kill.clone(),
            ops.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < run_for {
                let key = format!("w{t}:{i}");
                let after_kill = killed.load(Ordering::Acquire);
                cache
                    .set(&key, &i)
                    .ttl(Duration::from_secs(600))
                    .await
                    .unwrap_or_else(|e| panic!("set {key} (L1 + L4) failed: {e}"));
                if after_kill {
                    writes_after_kill.fetch_add(1, Ordering::Relaxed);
                }
                let back: Option<u64> = cache
                    .get(&key)
                    .await
                    .unwrap_or_else(|e| panic!("get {key} failed: {e}"));
                assert_eq!(back, Some(i), "{key}");
                // An older key too: still answered by L1.
                let old = format!("w{t}:{}", i / 2);
                let back: Option<u64> = cache
                    .get(&old)
                    .await
                    .unwrap_or_else(|e| panic!("get {old} failed: {e}"));
                assert_eq!(back, Some(i / 2), "{old}");
                ops.fetch_add(3, Ordering::Relaxed);
                i += 1;
                // Once the circuit is open a write costs microseconds: pace the loop.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            i
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let errors_before = l4(&cache.stats()).errors;
    tokio::task::block_in_place(|| moto.kill());
    killed.store(true, Ordering::Release);
    let mut written = 0;
    for task in tasks {
        written += task.await.expect("a load task panicked");
    }
    let after = writes_after_kill.load(Ordering::Relaxed);
    let errors = l4(&cache.stats()).errors;
    println!(
        "{} calls, {written} keys written, {after} writes after the kill; L4 errors {errors_before} -> {errors}",
        ops.load(Ordering::Relaxed)
    );
    assert!(after > 0, "no write happened after the kill");
    assert!(
        errors >= errors_before + after,
        "every L4 write after the kill is counted: errors {errors_before} -> {errors}, {after} writes"
    );
    // L1 still answers the keys written before the kill.
    assert_eq!(cache.get::<u64>("w0:0").await.expect("get"), Some(0));

    // Restarted (same port, empty bucket): within 10 s a new write reaches S3 again.
    tokio::task::block_in_place(|| moto.restart());
    let back = Instant::now();
    let mut attempt = 0u64;
    loop {
        let key = format!("after-restart:{attempt}");
        cache.set(&key, &attempt).await.expect("set after restart");
        let fresh = self::cache(&toml).await;
        if fresh.get::<u64>(&key).await.expect("fresh get") == Some(attempt) {
            assert_eq!(fresh.stats().l4_hits, 1);
            println!("L4 back {:?} after the restart", back.elapsed());
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no write reached S3 within 10 s of the restart"
        );
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- 4. per-layer max value size -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_layer_max_value_bytes() {
    let moto = shared_moto();
    let five_k = "v".repeat(5000);

    // L1 takes at most 1000 bytes, L4 up to 10,000: 5 KB goes to L4 only.
    let prefix = unique_prefix();
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nmax_value_bytes = 1000\n{}max_value_bytes = 10000\n",
        s3_layer(moto)
    );
    let small_l1 = cache(&toml).await;
    small_l1.set("big", &five_k).await.expect("5 KB into L4");
    let (stats, usage) = (small_l1.stats(), small_l1.usage().await.expect("usage"));
    let l1 = stats.layer(Layer::L1).expect("L1");
    assert_eq!((l1.too_large, keys(&usage, Layer::L1)), (1, 0), "{l1:?}");
    assert_eq!((l4(&stats).too_large, keys(&usage, Layer::L4)), (0, 1));
    let fresh = cache(&toml).await;
    assert_eq!(
        fresh.get::<String>("big").await.expect("get"),
        Some(five_k.clone())
    );
    assert_eq!(fresh.stats().l4_hits, 1);
    // Over both: refused.
    let err = small_l1
        .set("huge", &"h".repeat(20_000))
        .await
        .expect_err("over every layer");
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge, "{err}");
    assert_eq!(small_l1.get::<String>("huge").await.expect("get"), None);

    // L4 takes at most 1000 bytes, L1 the default: 5 KB goes to L1 only.
    let prefix = unique_prefix();
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n{}max_value_bytes = 1000\n",
        s3_layer(moto)
    );
    let small_l4 = cache(&toml).await;
    small_l4.set("big", &five_k).await.expect("5 KB into L1");
    let (stats, usage) = (small_l4.stats(), small_l4.usage().await.expect("usage"));
    assert_eq!((l4(&stats).too_large, keys(&usage, Layer::L4)), (1, 0));
    assert_eq!(keys(&usage, Layer::L1), 1);
    assert_eq!(
        small_l4.get::<String>("big").await.expect("get"),
        Some(five_k)
    );
    let fresh = cache(&toml).await;
    assert_eq!(fresh.get::<String>("big").await.expect("get"), None);
    // Only L4 selected and over its limit: refused.
    let err = small_l4
        .set("l4-only", &"x".repeat(5000))
        .layer(Layer::L4)
        .await
        .expect_err("over L4's limit with only L4 selected");
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge, "{err}");
}

// ----- 5. promotion after a restart ------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_l1_is_filled_from_l4() {
    let env = Env::new(Stack::L1S3);
    let user = User {
        id: 1,
        name: "Ada".into(),
    };
    env.cache("").await.set("user:1", &user).await.expect("set");

    let restarted = env.cache("").await;
    assert_eq!(
        restarted.get::<User>("user:1").await.expect("get"),
        Some(user.clone())
    );
    let stats = restarted.stats();
    assert_eq!((stats.l1_hits, stats.l4_hits, stats.misses), (0, 1, 0));
    assert_eq!(
        restarted.get::<User>("user:1").await.expect("get"),
        Some(user)
    );
    let stats = restarted.stats();
    assert_eq!((stats.l1_hits, stats.l4_hits, stats.misses), (1, 1, 0));
}

// ----- 6. flush and delete_many stay inside the prefix -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_delete_many_touch_only_the_prefix() {
    let moto = shared_moto();
    let bucket = new_bucket(moto);
    let raw = raw_s3(moto, &bucket);
    let mine = unique_prefix();
    let other = format!("{}x:", mine.trim_end_matches(':'));
    let cache_of = |prefix: &str| {
        format!(
            "[cache]\nkey_prefix = {prefix:?}\n{}",
            s3_layer_in(moto, &bucket)
        )
    };
    let cache = self::cache(&cache_of(&mine)).await;
    let neighbour = self::cache(&cache_of(&other)).await;
    for key in ["a", "b", "c"] {
        cache.set(key, &key).await.expect("set");
        neighbour.set(key, &key).await.expect("set");
    }
    // Foreign objects: one elsewhere, one whose name starts with the cache's encoded prefix as a
    // string but not as a path segment, and one that looks like an entry of another layer prefix.
    let enc = encoded(&mine);
    let foreign = [
        "foreign/object".to_owned(),
        format!("{enc}X/e/a"),
        format!("{enc}-/e/b"),
        format!("l4/{enc}/e/c"),
    ];
    for name in &foreign {
        raw.put(
            &ObjectPath::from(name.as_str()),
            PutPayload::from_static(b"foreign"),
        )
        .await
        .expect("put a foreign object");
    }
    let before = list_all(&raw).await;
    assert_eq!(before.len(), 6 + foreign.len(), "{before:#?}");

    assert_eq!(
        cache
            .delete_many(&["a", "b", "zz"])
            .await
            .expect("delete_many"),
        2
    );
    // A delete leaves a tombstone object in place of each key (docs/consistency.md#l4-object-storage):
    // nothing goes, one name (the missing key's tombstone) comes, and only the cache's own keys
    // read as deleted.
    let after = list_all(&raw).await;
    let gone: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
    let came: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
    assert_eq!(gone, Vec::<&String>::new(), "delete_many removed names");
    assert_eq!(
        came,
        vec![&format!("{enc}/e/zz")],
        "delete_many wrote outside its keys"
    );
    for key in ["a", "b"] {
        assert_eq!(cache.get::<String>(key).await.expect("get"), None);
        assert_eq!(
            neighbour.get::<String>(key).await.expect("get").as_deref(),
            Some(key)
        );
    }

    cache.flush().await.expect("flush");
    let after = list_all(&raw).await;
    // Nothing of the cache is left but the flush epoch's record
    // (docs/consistency.md#flush-moves-an-epoch).
    let epoch = format!("{enc}/t/vorte-cache=3Aflush-epoch");
    assert!(
        after
            .iter()
            .all(|n| !n.starts_with(&format!("{enc}/")) || *n == epoch),
        "{after:#?}"
    );
    for name in &foreign {
        assert!(
            after.contains(name),
            "flush removed the foreign {name}: {after:#?}"
        );
        let body = raw
            .get(&ObjectPath::from(name.as_str()))
            .await
            .expect("get");
        assert_eq!(&body.bytes().await.expect("body")[..], b"foreign");
    }
    for key in ["a", "b", "c"] {
        assert_eq!(cache.get::<String>(key).await.expect("get"), None);
        assert_eq!(
            neighbour.get::<String>(key).await.expect("get").as_deref(),
            Some(key),
            "the neighbour prefix lost {key}"
        );
    }
    let fresh_neighbour = self::cache(&cache_of(&other)).await;
    assert_eq!(fresh_neighbour.keys("*").await.expect("keys").len(), 3);
}
