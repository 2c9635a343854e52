//! Shared helpers for the integration tests: real servers, and caches for each layer combination.
#![allow(clippy::expect_used, reason = "test helpers fail the test loudly")]

pub mod browser;
pub mod chaos_kit;
pub mod history_check;
pub mod servers;

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vorte_cache::{Cache, Config, Layer};

use servers::{Memcached, MotoServer, RedisCluster, RedisServer};

/// The layer combinations the API suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// L1 alone.
    L1,
    /// L1 + L4 `file`.
    L1File,
    /// L1 + L2 `redis`.
    L1Redis,
    /// L1 + L2 `memcached`, with the invalidation bus on a Redis of its own (`[cache.bus]`).
    L1Memcached,
    /// L1 + L3 `redis-cluster` (3 masters).
    L1Cluster,
    /// L1 + L2 `redis` + L3 `redis-cluster`.
    L1RedisCluster,
    /// L1 + L2 `redis` + L3 `redis-cluster` + L4 `file`.
    Full,
    /// L1 + L4 `s3` on moto's S3 server.
    L1S3,
}

impl Stack {
    /// Whether the stack has L4 `file`.
    pub fn has_file(self) -> bool {
        matches!(self, Stack::L1File | Stack::Full)
    }
    /// Whether the stack shares state between processes through Redis (and so has a bus).
    pub fn has_redis(self) -> bool {
        !matches!(self, Stack::L1 | Stack::L1File | Stack::L1S3)
    }

    /// The layer a second process finds a key in: the first below L1 (L1 alone: the writer's own).
    pub fn first_shared_layer(self) -> Layer {
        match self {
            Stack::L1 => Layer::L1,
            Stack::L1File | Stack::L1S3 => Layer::L4,
            Stack::L1Cluster => Layer::L3,
            Stack::L1Redis | Stack::L1Memcached | Stack::L1RedisCluster | Stack::Full => Layer::L2,
        }
    }

    /// Whether every layer of the stack can list its keys (memcached cannot).
    pub fn lists_keys(self) -> bool {
        self != Stack::L1Memcached
    }
}

/// Kills `pids` once this test process is gone: shared servers live in statics, which are never
/// dropped, so a small shell watchdog outlives the process to stop them.
fn reap_on_exit(pids: &[u32]) {
    let me = std::process::id();
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let script =
        format!("while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -9 {list} 2>/dev/null");
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// One `redis-server` shared by every test of this test binary (each test uses its own prefix).
pub fn shared_redis() -> &'static RedisServer {
    static REDIS: OnceLock<RedisServer> = OnceLock::new();
    REDIS.get_or_init(|| {
        let server = RedisServer::start();
        reap_on_exit(&[server.pid()]);
        server
    })
}

/// One 3-master Redis Cluster shared by every test of this test binary.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = RedisCluster::start(3, 0);
        let pids: Vec<u32> = cluster.nodes().iter().map(RedisServer::pid).collect();
        reap_on_exit(&pids);
        cluster
    })
}

/// One `memcached` shared by every test of this test binary.
pub fn shared_memcached() -> &'static Memcached {
    static MEMCACHED: OnceLock<Memcached> = OnceLock::new();
    MEMCACHED.get_or_init(|| {
        let server = Memcached::start();
        reap_on_exit(&[server.pid()]);
        server
    })
}

/// One moto S3 server shared by every test of this test binary (bucket `vorte-test`).
pub fn shared_moto() -> &'static MotoServer {
    static MOTO: OnceLock<MotoServer> = OnceLock::new();
    MOTO.get_or_init(|| {
        let server = MotoServer::start();
        reap_on_exit(&[server.pid()]);
        server
    })
}

/// The `[cache.layers.l4]` table of an S3 layer on `moto`.
pub fn s3_layer(moto: &MotoServer) -> String {
    format!(
        "[cache.layers.l4]\nbackend = \"s3\"\nbucket = {:?}\nregion = {:?}\nendpoint = {:?}\n\
         allow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\ntimeout_ms = 10000\n",
        moto.bucket(),
        moto.region(),
        moto.endpoint()
    )
}

/// Waits until `done` holds, polling every 20 ms for at most five seconds; says whether it did.
pub async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..250 {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// The TTL of [`stale_entry`]'s entry.
pub const STALE_TTL: Duration = Duration::from_millis(300);
/// The fail-safe window of [`stale_entry`]'s entry.
pub const STALE_KEEP: Duration = Duration::from_secs(60);

/// Loads `key` as `"v1"` with `tags`, a short TTL ([`STALE_TTL`]) and a long fail-safe window
/// ([`STALE_KEEP`]), then lets it go stale.
pub async fn stale_entry(cache: &Cache, key: &str, tags: &[&str]) {
    let v: String = cache
        .get_or_set(key, || async { Ok::<_, std::io::Error>("v1".to_owned()) })
        .ttl(STALE_TTL)
        .tags(tags.iter().copied())
        .fail_safe(STALE_KEEP)
        .await
        .expect("first load");
    assert_eq!(v, "v1");
    tokio::time::sleep(STALE_TTL + Duration::from_millis(150)).await;
}

/// `key`'s value in `cache` now, if any: a plain `get`, which fails the test on an error.
pub async fn cached_now(cache: &Cache, key: &str) -> Option<String> {
    cache.get::<String>(key).await.expect("get")
}

/// A key prefix no other test of any process uses.
pub fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}x{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cache of L1 and L2 whose L2 entries are kept by `l2`, a store of the test's (its hooks
/// fail or hold the chosen call, whoever makes it), while the bus rides on the real Redis at
/// `url` as it would on L2's: several such caches stand in for processes sharing L2 and the bus.
/// `l2_toml` adds lines to `[cache.layers.l2]`.
pub async fn on_test_l2(
    url: &str,
    prefix: &str,
    l2: &vorte_cache::testing::TestStore,
    l2_toml: &str,
) -> vorte_cache::Result<Cache> {
    let cfg = Config::from_toml_str(&format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nmax_size = 100\n\
         [cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\n{l2_toml}\n"
    ))?
    .cache;
    Cache::builder(&cfg)
        .store(vorte_cache::Layer::L2, std::sync::Arc::new(l2.clone()))
        .build()
        .await
}

/// What a test needs for one stack: the servers, a directory, and its own key prefix.
#[derive(Debug)]
pub struct Env {
    /// The stack.
    pub stack: Stack,
    dir: tempfile::TempDir,
    prefix: String,
    own_redis: Option<RedisServer>,
}

impl Env {
    /// Starts (or reuses) the servers `stack` needs.
    pub fn new(stack: Stack) -> Env {
        if matches!(
            stack,
            Stack::L1Redis | Stack::L1Memcached | Stack::L1RedisCluster | Stack::Full
        ) {
            shared_redis();
        }
        if stack == Stack::L1Memcached {
            shared_memcached();
        }
        if stack == Stack::L1S3 {
            shared_moto();
        }
        if matches!(
            stack,
            Stack::L1Cluster | Stack::L1RedisCluster | Stack::Full
        ) {
            shared_cluster();
        }
        Env {
            stack,
            dir: tempfile::tempdir().expect("tempdir"),
            prefix: unique_prefix(),
            own_redis: None,
        }
    }

    /// L1 + L2 on a `redis-server` of this test's own, for tests that kill connections or the
    /// server itself and must not disturb the other tests.
    pub fn with_own_redis() -> Env {
        Env {
            stack: Stack::L1Redis,
            dir: tempfile::tempdir().expect("tempdir"),
            prefix: unique_prefix(),
            own_redis: Some(RedisServer::start()),
        }
    }

    /// The Redis of L2: this test's own, or the shared one.
    pub fn redis(&self) -> &RedisServer {
        self.own_redis.as_ref().unwrap_or_else(|| shared_redis())
    }

    /// The Redis of L2, mutably (to kill or restart it); only for [`Env::with_own_redis`].
    pub fn own_redis_mut(&mut self) -> &mut RedisServer {
        self.own_redis.as_mut().expect("an Env::with_own_redis")
    }

    /// The directory of the `file` layer.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// This test's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configuration: `cache_toml` goes into `[cache]` (a `key_prefix` there replaces the
    /// test's own), `l1_toml` into `[cache.layers.l1]`.
    pub fn config(&self, cache_toml: &str, l1_toml: &str) -> Config {
        Config::from_toml_str(&self.toml(cache_toml, l1_toml)).expect("config parses")
    }

    /// The configuration as TOML, for a process of its own.
    pub fn toml(&self, cache_toml: &str, l1_toml: &str) -> String {
        let prefix = if cache_toml.contains("key_prefix") {
            String::new()
        } else {
            format!("key_prefix = {:?}\n", self.prefix)
        };
        let mut toml = format!(
            "[cache]\n{prefix}{cache_toml}\n[cache.layers.l1]\nmax_size = 10000\n{l1_toml}\n"
        );
        if matches!(
            self.stack,
            Stack::L1Redis | Stack::L1RedisCluster | Stack::Full
        ) {
            toml.push_str(&format!(
                "[cache.layers.l2]\nbackend = \"redis\"\nurl = {:?}\ntimeout_ms = 1000\n",
                self.redis().url()
            ));
        }
        if self.stack == Stack::L1Memcached {
            toml.push_str(&format!(
                "[cache.layers.l2]\nbackend = \"memcached\"\nurl = {:?}\ntimeout_ms = 1000\n\
                 [cache.bus]\nurl = {:?}\n",
                shared_memcached().url(),
                self.redis().url()
            ));
        }
        if matches!(
            self.stack,
            Stack::L1Cluster | Stack::L1RedisCluster | Stack::Full
        ) {
            toml.push_str(&format!(
                "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = {:?}\ntimeout_ms = 1000\n",
                shared_cluster().urls()
            ));
        }
        if self.stack == Stack::L1S3 {
            toml.push_str(&s3_layer(shared_moto()));
        }
        if self.stack.has_file() {
            toml.push_str(&format!(
                "[cache.layers.l4]\nbackend = \"file\"\npath = {:?}\n",
                self.dir().display().to_string()
            ));
        }
        toml
    }

    /// A cache on this environment; several stand in for several processes.
    pub async fn cache(&self, cache_toml: &str) -> Cache {
        self.cache_with(cache_toml, "").await
    }

    /// A cache with extra `[cache.layers.l1]` lines.
    pub async fn cache_with(&self, cache_toml: &str, l1_toml: &str) -> Cache {
        Cache::from_config(&self.config(cache_toml, l1_toml).cache)
            .await
            .expect("cache builds")
    }
}

/// Runs an `async fn(Stack)` test once per stack.
#[macro_export]
macro_rules! on_every_stack {
    ($($name:ident),* $(,)?) => {
        $crate::on_every_stack!(@stack l1, L1, $($name),*);
        $crate::on_every_stack!(@stack l1_file, L1File, $($name),*);
        $crate::on_every_stack!(@stack l1_redis, L1Redis, $($name),*);
        $crate::on_every_stack!(@stack l1_memcached, L1Memcached, $($name),*);
        $crate::on_every_stack!(@stack l1_cluster, L1Cluster, $($name),*);
        $crate::on_every_stack!(@stack l1_redis_cluster, L1RedisCluster, $($name),*);
        $crate::on_every_stack!(@stack full, Full, $($name),*);
        $crate::on_every_stack!(@stack l1_s3, L1S3, $($name),*);
    };
    (@stack $module:ident, $stack:ident, $($name:ident),*) => {
        mod $module { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Stack::$stack).await }
        )* }
    };
}

/// Runs each `async fn name(stack: Stack)` as a test on L1 alone and on L1 + L2 `redis`: for
/// behaviours of the engine, proved once in memory and once over a real server.
#[macro_export]
macro_rules! on_l1_and_redis {
    ($($name:ident),* $(,)?) => {
        $crate::on_every_stack!(@stack l1, L1, $($name),*);
        $crate::on_every_stack!(@stack l1_redis, L1Redis, $($name),*);
    };
}
