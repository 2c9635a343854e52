//! The L4 (object storage) layer against raw object_store clients on the same store in the same
//! run.
//!
//! - `l4_hit/*`: `cache.get::<User>` on a cache with L1 disabled and L4 only, so every read is an
//!   L4 hit (object GET, envelope decode, msgpack decode), against a raw object_store GET of an
//!   object holding the same msgpack bytes plus `rmp_serde::from_slice`. Twice: on S3 (moto's
//!   `moto_server`, which the bench starts on a free loopback port and kills at the end) and on
//!   `file` (a temporary directory, raw peer `LocalFileSystem`). The loops run inside one future
//!   on a current-thread runtime, which also runs the HTTP client's connection tasks. After the
//!   group, interleaved rounds of single timed calls give p50 and p99 per call and their ratios
//!   (printed to stderr).
//! - `sweeper_cost` (printed to stderr, not a criterion group: a pass is a one-off of the
//!   background sweeper): the wall time of one pass of `sweep_interval`'s sweeper over N expired
//!   and M live objects, from the cache's construction (with `sweep_interval = 0.001`, one batch
//!   covering everything) until a raw listing shows the N objects gone, against the same pass done
//!   by hand with object_store (list, an 8-byte range read per object, 8 at a time, then deletes),
//!   both timed the same way (polling a raw listing: every 100 ms on S3, every 2 ms on `file`).
//!
//! Run: `cargo bench -p vorte-cache --bench l4 --features s3`. Results: `docs/performance.md`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use tokio::runtime::Runtime;
use vorte_cache::{Cache, Config};

mod common;

use common::{ChildServer, User, compared, free_port, per_call, time_calls, user};

// ----- the server ------------------------------------------------------------------------------

const BUCKET: &str = "bench";

/// `moto_server -H 127.0.0.1 -p P` on a free port, with the bucket `bench`; killed and reaped on
/// drop.
struct Moto {
    _child: ChildServer,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        let port = free_port();
        let mut child = ChildServer::spawn(
            Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "pip install 'moto[server]'",
        );
        child.wait_until("moto_server HTTP", Duration::from_secs(60), || {
            request(port, "GET", "/").is_some_and(|s| s.starts_with("HTTP/1."))
        });
        let moto = Moto {
            _child: child,
            port,
        };
        let answer = moto
            .request("PUT", &format!("/{BUCKET}"))
            .expect("PUT bucket");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "PUT /{BUCKET}: {answer}"
        );
        moto
    }

    fn request(&self, method: &str, path: &str) -> Option<String> {
        request(self.port, method, path)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[cache.layers.l4]` table of an S3 layer on this server.
    fn layer(&self) -> String {
        format!(
            "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"{BUCKET}\"\nregion = \"us-east-1\"\n\
             endpoint = \"{}\"\nallow_http = true\naccess_key_id = \"test\"\n\
             secret_access_key = \"test\"\ntimeout_ms = 10000\n",
            self.endpoint()
        )
    }

    /// A raw object_store client on the bucket.
    fn raw(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_bucket_name(BUCKET)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .build()
                .expect("raw S3 client"),
        )
    }
}

/// One HTTP/1.1 request with `Connection: close`; the raw answer, or `None` on I/O errors.
fn request(port: u16, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n",
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

// ----- helpers ---------------------------------------------------------------------------------

/// A cache with L1 disabled and `layer` as its L4.
async fn l4_cache(prefix: &str, layer: &str) -> Cache {
    let toml = format!(
        "[cache]\ndefault_ttl = 3600\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nenabled = false\n{layer}"
    );
    let config = Config::from_toml_str(&toml).expect("config");
    Cache::from_config(&config.cache).await.expect("cache")
}

fn file_layer(dir: &std::path::Path) -> String {
    format!(
        "[cache.layers.l4]\nbackend = \"file\"\npath = {:?}\n",
        dir.display().to_string()
    )
}

async fn raw_get_decode(store: &dyn ObjectStore, path: &Path) -> User {
    let bytes = store
        .get(path)
        .await
        .expect("raw get")
        .bytes()
        .await
        .expect("raw body");
    rmp_serde::from_slice(&bytes).expect("decode")
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ----- l4_hit ----------------------------------------------------------------------------------

/// One backend's pair: vorte's L4 hit and the raw GET + decode.
fn hit_pair(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    vorte: &Cache,
    raw: &Arc<dyn ObjectStore>,
    rounds: usize,
) {
    let raw_path = Path::from("raw/user-1");
    rt.block_on(async {
        let bytes = rmp_serde::to_vec_named(&user(1)).expect("encode");
        raw.put(&raw_path, PutPayload::from(bytes))
            .await
            .expect("raw put");
        assert_eq!(raw_get_decode(raw.as_ref(), &raw_path).await, user(1));
        vorte.set("user:1", &user(1)).await.expect("set");
        assert_eq!(
            vorte.get::<User>("user:1").await.expect("get"),
            Some(user(1))
        );
    });

    let (raw_call, ours) = (
        || raw_get_decode(raw.as_ref(), black_box(&raw_path)),
        || async { vorte.get::<User>(black_box("user:1")).await.expect("get") },
    );
    let mut g = c.benchmark_group("l4_hit");
    g.bench_function(format!("{name}/raw_object_store_get_decode"), |b| {
        b.iter_custom(|n| time_calls(rt, n, raw_call))
    });
    g.bench_function(format!("{name}/vorte_get_l1_off"), |b| {
        b.iter_custom(|n| time_calls(rt, n, ours))
    });
    g.finish();

    // p50 / p99 of single calls: 5 interleaved rounds.
    let (r, o) = per_call(rt, rounds, raw_call, ours);
    eprintln!(
        "l4_hit/{name} per call ({} calls each): raw {}",
        5 * rounds,
        compared(&r, &o)
    );
}

fn l4_hit(c: &mut Criterion) {
    let rt = current_thread();
    let pid = std::process::id();

    let moto = Moto::start();
    let raw = moto.raw();
    let vorte = rt.block_on(l4_cache(&format!("bench-l4:{pid}:hit:"), &moto.layer()));
    hit_pair(c, &rt, "s3", &vorte, &raw, 200);
    drop(vorte);

    let dir = tempfile::tempdir().expect("temporary directory");
    let raw_dir = tempfile::tempdir().expect("temporary directory");
    let raw: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(raw_dir.path()).expect("raw LocalFileSystem"));
    let vorte = rt.block_on(l4_cache(
        &format!("bench-l4:{pid}:hit:"),
        &file_layer(dir.path()),
    ));
    hit_pair(c, &rt, "file", &vorte, &raw, 2_000);
    drop(vorte);
    drop(moto);
}

// ----- sweeper_cost ----------------------------------------------------------------------------

/// Objects under `base`.
async fn count(store: &dyn ObjectStore, base: &Path) -> usize {
    store
        .list(Some(base))
        .try_collect::<Vec<_>>()
        .await
        .expect("list")
        .len()
}

/// Writes `expired` entries that expire at once and `live` ones that do not, through a cache.
async fn populate(prefix: &str, layer: &str, expired: usize, live: usize) {
    let toml =
        format!("[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nenabled = false\n{layer}");
    let writer = Cache::from_config(&Config::from_toml_str(&toml).expect("config").cache)
        .await
        .expect("cache");
    let writes = (0..expired + live).map(|i| {
        let writer = writer.clone();
        async move {
            let ttl = if i < expired {
                Duration::from_millis(1)
            } else {
                Duration::from_secs(3600)
            };
            writer
                .set(&format!("k{i}"), &user(i as i64))
                .ttl(ttl)
                .await
                .expect("populate");
        }
    });
    futures_util::stream::iter(writes)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// The same pass by hand: list, read each object's 8-byte expiry, delete the expired ones.
async fn raw_sweep(store: &dyn ObjectStore, base: &Path) -> usize {
    let metas: Vec<_> = store
        .list(Some(base))
        .try_collect()
        .await
        .expect("raw list");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let expired: Vec<Path> = futures_util::stream::iter(metas)
        .map(|meta| async move {
            let head = store.get_range(&meta.location, 8..16).await.ok()?;
            let bytes: [u8; 8] = head.as_ref().try_into().ok()?;
            (u64::from_be_bytes(bytes) <= now).then_some(meta.location)
        })
        .buffer_unordered(8)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    for location in &expired {
        store.delete(location).await.expect("raw delete");
    }
    expired.len()
}

/// The encoded root of entries for `key_prefix` (the layer's documented `=XX` encoding).
fn entries_root(key_prefix: &str) -> Path {
    let encoded: String = key_prefix
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("={b:02X}")
            }
        })
        .collect();
    Path::from(encoded).join("e")
}

/// Runs `pass` in a task and times it until a raw listing of `base` shows only `live` objects,
/// polling every `poll` (the same polling, and so the same load on the server, for both sides).
fn time_until_swept<F>(
    rt: &Runtime,
    raw: &Arc<dyn ObjectStore>,
    base: &Path,
    live: usize,
    poll: Duration,
    pass: F,
) -> Duration
where
    F: Future<Output = ()> + Send + 'static,
{
    rt.block_on(async {
        let t = Instant::now();
        let task = tokio::spawn(pass);
        let deadline = Instant::now() + Duration::from_secs(120);
        while count(raw.as_ref(), base).await > live {
            assert!(Instant::now() < deadline, "the sweep never finished");
            tokio::time::sleep(poll).await;
        }
        let elapsed = t.elapsed();
        task.abort();
        let _ = task.await;
        elapsed
    })
}

/// One backend: median of `rounds` passes of vorte's sweeper and of the raw pass.
fn sweep_pair(
    rt: &Runtime,
    name: &str,
    layer: &str,
    raw: &Arc<dyn ObjectStore>,
    (expired, live): (usize, usize),
    poll: Duration,
    rounds: usize,
) {
    let pid = std::process::id();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // vorte: from the cache's construction until the expired objects are gone.
        let prefix = format!("bench-sweep:{pid}:{name}:v{round}:");
        let base = entries_root(&prefix);
        rt.block_on(populate(&prefix, layer, expired, live));
        assert_eq!(rt.block_on(count(raw.as_ref(), &base)), expired + live);
        let swept_layer = format!(
            "{layer}sweep_interval = 0.001\nsweep_batch = {}\n",
            expired + live + 1
        );
        let (cache_tx, cache_rx) = std::sync::mpsc::channel();
        ours.push(time_until_swept(rt, raw, &base, live, poll, async move {
            // Kept alive (its sweeper runs) until the pass is timed.
            let _ = cache_tx.send(l4_cache(&prefix, &swept_layer).await);
            std::future::pending::<()>().await;
        }));
        drop(cache_rx.recv().expect("the swept cache"));

        // raw: the same pass by hand on a fresh population.
        let prefix = format!("bench-sweep:{pid}:{name}:r{round}:");
        let base = entries_root(&prefix);
        rt.block_on(populate(&prefix, layer, expired, live));
        let (store, root) = (raw.clone(), base.clone());
        theirs.push(time_until_swept(rt, raw, &base, live, poll, async move {
            assert_eq!(raw_sweep(store.as_ref(), &root).await, expired);
        }));
    }
    ours.sort();
    theirs.sort();
    let (o, r) = (ours[rounds / 2], theirs[rounds / 2]);
    eprintln!(
        "sweeper_cost/{name}: one pass over {expired} expired + {live} live objects, median of \
         {rounds} (each timed until a raw listing, every {poll:?}, shows them gone): vorte sweeper \
         {:.1} ms (from the cache's construction), raw object_store pass {:.1} ms; ratio {:.2}x; \
         vorte {:.0} µs per object listed",
        o.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        o.as_secs_f64() / r.as_secs_f64(),
        o.as_secs_f64() * 1e6 / (expired + live) as f64
    );
}

fn sweeper_cost(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let moto = Moto::start();
    let raw = moto.raw();
    let poll = Duration::from_millis(100);
    sweep_pair(&rt, "s3", &moto.layer(), &raw, (200, 200), poll, 3);
    drop(moto);

    let dir = tempfile::tempdir().expect("temporary directory");
    let raw: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("raw LocalFileSystem"));
    let poll = Duration::from_millis(2);
    sweep_pair(
        &rt,
        "file",
        &file_layer(dir.path()),
        &raw,
        (1_000, 1_000),
        poll,
        3,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = l4_hit, sweeper_cost
}
criterion_main!(benches);
