//! L4 (object storage: a `file` directory, and S3 on moto) shared by several processes with no
//! bus: the tombstone of a delete and compare-and-set keep a load from writing back what another
//! process deleted (`docs/guarantees.md#g3-no-resurrection`, `docs/consistency.md#l4-object-storage`).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use vorte_cache::{Cache, Config, Layer, Slot, Store};
use vorte_cache_tests::{Env, Stack, s3_layer, shared_moto, unique_prefix};

const LONG: Duration = Duration::from_secs(600);

/// `cache.get_or_set(key)` with a loader that answers `value` once `release` is sent, started
/// and waited for until its loader runs: a load in flight, for another process to act meanwhile.
async fn load_held<T>(
    cache: &vorte_cache::Cache,
    key: &'static str,
    value: T,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<vorte_cache::Result<T>>,
)
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let (started, loading) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_set(key, || async move {
                    let _ = started.send(());
                    let _ = released.await;
                    Ok::<_, std::io::Error>(value)
                })
                .await
        }
    });
    loading.await.expect("the loader started");
    (release, load)
}

/// Two caches over one L4 and no bus stand in for two processes: `a` loads `user:1` slowly, `b`
/// deletes it meanwhile; the old value must land nowhere.
async fn a_load_that_began_before_a_delete_never_writes_back(stack: Stack) {
    let env = Env::new(stack);
    let a = env.cache("").await;
    let b = env.cache("").await;
    assert!(!a.has_bus(), "nothing but the store may stop the load");
    let (release, load) = load_held(&a, "user:1", "old".to_owned()).await;
    b.delete("user:1").await.expect("delete");
    release.send(()).expect("the loader waits");
    assert_eq!(
        load.await.expect("the load task").expect("get_or_set"),
        "old",
        "the caller still gets what it loaded"
    );
    let fresh = env.cache("").await;
    assert_eq!(
        fresh.get::<String>("user:1").await.expect("get"),
        None,
        "{stack:?}: a fresh process reads the deleted value"
    );
    assert_eq!(
        a.get::<String>("user:1").await.expect("get"),
        None,
        "{stack:?}: the loading process keeps the deleted value"
    );
    // A later write is served normally.
    b.set("user:1", &"new").await.expect("set");
    assert_eq!(
        fresh.get::<String>("user:1").await.expect("get").as_deref(),
        Some("new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_a_delete_never_writes_back_into_a_directory() {
    a_load_that_began_before_a_delete_never_writes_back(Stack::L1File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_a_delete_never_writes_back_into_s3() {
    a_load_that_began_before_a_delete_never_writes_back(Stack::L1S3).await;
}

/// Three caches over one L4 and no bus stand in for three processes: `a` loads `user:1` slowly,
/// `b` writes it and deletes it meanwhile, then `c` flushes, which takes `b`'s tombstone away
/// with everything else. `a`'s fill then finds the empty slot its read saw, and lands, stamped
/// with the flush epoch of before the flush; `b`, which has not read the epoch since, must still
/// not read back what it replaced and deleted (`docs/consistency.md#flush-moves-an-epoch`).
async fn a_fill_that_lands_after_a_flush_does_not_bring_back_a_deleted_value(stack: Stack) {
    let env = Env::new(stack);
    let (a, b, c) = (
        env.cache("").await,
        env.cache("").await,
        env.cache("").await,
    );
    assert!(!a.has_bus(), "nothing but the store may stop the load");
    // Every cache learns the epoch, so each checks it against its memo from now on.
    c.flush().await.expect("first flush");
    for cache in [&a, &b] {
        cache.set("warm", &0).await.expect("set");
    }
    let (release, load) = load_held(&a, "user:1", 19).await;
    b.set("user:1", &20).await.expect("set");
    b.delete("user:1").await.expect("delete");
    c.flush().await.expect("flush");
    release.send(()).expect("the loader waits");
    assert_eq!(load.await.expect("the load task").expect("get_or_set"), 19);
    assert_eq!(
        b.get::<i32>("user:1").await.expect("get"),
        None,
        "{stack:?}: the deleting process reads back a value older than its own delete"
    );
    assert_eq!(
        env.cache("").await.get::<i32>("user:1").await.expect("get"),
        None,
        "{stack:?}: a fresh process reads a value from before the flush"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_lands_after_a_flush_does_not_bring_back_a_deleted_value_in_a_directory() {
    a_fill_that_lands_after_a_flush_does_not_bring_back_a_deleted_value(Stack::L1File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_lands_after_a_flush_does_not_bring_back_a_deleted_value_in_s3() {
    a_fill_that_lands_after_a_flush_does_not_bring_back_a_deleted_value(Stack::L1S3).await;
}

/// The configuration of `env` (its L4 and key prefix), as TOML and parsed.
fn l4_table(env: &Env) -> (String, Config) {
    let toml = env.toml("", "");
    let config = Config::from_toml_str(&toml).expect("config parses");
    (toml, config)
}

/// Two handles on the store of `env`'s L4, as two processes open it.
async fn two_stores(env: &Env) -> (Arc<dyn Store>, Arc<dyn Store>) {
    let (_, config) = l4_table(env);
    let l4 = config.cache.layers.l4.expect("an L4 layer");
    let prefix = &config.cache.key_prefix;
    let one = vorte_cache::store::open(Layer::L4, &l4, prefix)
        .await
        .expect("opens");
    let two = vorte_cache::store::open(Layer::L4, &l4, prefix)
        .await
        .expect("opens");
    (one, two)
}

/// Compare-and-set between two handles on one directory or bucket: both kinds (expecting no
/// entry, expecting exact bytes, a tombstone's included), and races between them.
async fn two_handles_swap_atomically(stack: Stack) {
    let env = Env::new(stack);
    let (one, two) = two_stores(&env).await;
    assert!(one.has_compare_and_set());
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    let cas = |store: &Arc<dyn Store>, expected: Option<Bytes>, new: Bytes| {
        let store = store.clone();
        async move {
            store
                .compare_and_set("k", expected.as_ref(), new, LONG)
                .await
                .expect("compare_and_set")
        }
    };
    assert_eq!(cas(&one, None, v("1")).await, Some(true));
    assert_eq!(cas(&two, None, v("2")).await, Some(false), "{stack:?}");
    assert_eq!(cas(&two, Some(v("1")), v("3")).await, Some(true));
    assert_eq!(
        cas(&one, Some(v("1")), v("4")).await,
        Some(false),
        "{stack:?}"
    );
    assert_eq!(one.get(Slot::Entry("k")).await.unwrap(), Some(v("3")));
    // A delete in one leaves a tombstone: the other's load expecting nothing fails, one
    // expecting that tombstone succeeds.
    let marker = v("vorte-tombstone:l4");
    assert_eq!(
        one.tombstone("k", marker.clone(), LONG).await.unwrap(),
        Some(true)
    );
    assert_eq!(cas(&two, None, v("stale")).await, Some(false), "{stack:?}");
    assert_eq!(cas(&two, Some(marker), v("5")).await, Some(true));
    assert_eq!(two.get(Slot::Entry("k")).await.unwrap(), Some(v("5")));

    // Races: 8 tasks on each handle create one key (one wins), then count on another.
    let creations = (0..16).map(|i| {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        async move {
            store
                .compare_and_set("race", None, Bytes::from(i.to_string()), LONG)
                .await
                .expect("compare_and_set")
        }
    });
    let won = futures_util::future::join_all(creations)
        .await
        .into_iter()
        .filter(|w| *w == Some(true))
        .count();
    assert_eq!(won, 1, "{stack:?}: racing creations that won");
    let increments = (0..8).map(|i| {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        async move {
            for _ in 0..5 {
                loop {
                    let current = store.get(Slot::Entry("n")).await.unwrap();
                    let n: u64 = current
                        .as_ref()
                        .map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
                    let next = Bytes::from((n + 1).to_string());
                    if store
                        .compare_and_set("n", current.as_ref(), next, LONG)
                        .await
                        .unwrap()
                        == Some(true)
                    {
                        break;
                    }
                }
            }
        }
    });
    futures_util::future::join_all(increments).await;
    assert_eq!(
        one.get(Slot::Entry("n")).await.unwrap(),
        Some(v("40")),
        "{stack:?}: 8 tasks on two handles x 5 increments"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_directory_swap_atomically() {
    two_handles_swap_atomically(Stack::L1File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_bucket_swap_atomically() {
    two_handles_swap_atomically(Stack::L1S3).await;
}

/// Children of the tests below: this test binary again, running only [`child_process`], which
/// takes its job from the environment. (Not the shared `vorte-worker` binary: in a target
/// directory shared by several checkouts, that path may hold another checkout's build.)
struct Children {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Children {
    /// Starts `n` children doing `job` on the configuration `toml`; each waits for [`Children::go`].
    fn start(n: usize, job: &str, count: usize, toml: &str) -> Children {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).expect("config");
        let children = (0..n)
            .map(|_| {
                Command::new(std::env::current_exe().expect("this test binary"))
                    .args(["child_process", "--exact", "--test-threads=1", "--quiet"])
                    .env("L4_CHILD", job)
                    .env("L4_COUNT", count.to_string())
                    .env("L4_CONFIG", &config)
                    .env("L4_DIR", dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("a child starts")
            })
            .collect();
        Children { dir, children }
    }

    /// Waits until every child is ready, then lets them all go at once; waits until they are done.
    async fn go(mut self) -> Children {
        let n = self.children.len();
        let dir = self.dir.path().to_owned();
        let ready = || {
            std::fs::read_dir(&dir)
                .expect("read dir")
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("ready-"))
                })
                .count()
        };
        for _ in 0..3_000 {
            if ready() == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ready(), n, "children ready");
        std::fs::write(self.dir.path().join("go"), b"").expect("go");
        let mut children = std::mem::take(&mut self.children);
        let children = tokio::task::spawn_blocking(move || {
            for child in &mut children {
                assert!(
                    child.wait().expect("a child ends").success(),
                    "a child failed"
                );
            }
            children
        })
        .await
        .expect("children");
        self.children = children;
        self
    }

    /// What each child wrote to its `done-<pid>` file, by process id.
    fn results(&self) -> Vec<(u32, String)> {
        self.children
            .iter()
            .map(|c| {
                let path = self.dir.path().join(format!("done-{}", c.id()));
                (
                    c.id(),
                    std::fs::read_to_string(path).expect("a child's result"),
                )
            })
            .collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a child process ([`Children`]); returns at once when run as a test of its own.
/// - `claim`: opens the L4 store and tries to create `claim:0` … `claim:N-1` with a
///   compare-and-set that expects no entry, writing its process id; writes the keys it created.
/// - `incr`: increments `counter` N times through a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    let Ok(job) = std::env::var("L4_CHILD") else {
        return;
    };
    let count: usize = std::env::var("L4_COUNT").unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(std::env::var("L4_DIR").unwrap());
    let config = Config::from_toml_file(std::env::var("L4_CONFIG").unwrap()).unwrap();
    let me = std::process::id();
    let store = vorte_cache::store::open(
        Layer::L4,
        config.cache.layers.l4.as_ref().expect("an L4 layer"),
        &config.cache.key_prefix,
    )
    .await
    .expect("L4 opens");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    std::fs::write(dir.join(format!("ready-{me}")), b"").unwrap();
    while !dir.join("go").exists() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut done = Vec::new();
    for i in 0..count {
        match job.as_str() {
            "claim" => {
                let created = store
                    .compare_and_set(
                        &format!("claim:{i}"),
                        None,
                        Bytes::from(me.to_string()),
                        LONG,
                    )
                    .await
                    .expect("compare_and_set");
                if created == Some(true) {
                    done.push(i.to_string());
                }
            }
            "incr" => {
                cache.increment("counter", 1).await.expect("increment");
            }
            other => panic!("unknown job {other}"),
        }
    }
    std::fs::write(dir.join(format!("done-{me}")), done.join(",")).unwrap();
}

/// Two OS processes race to create the same keys in one L4: each key has exactly one creator, and
/// holds what that one wrote.
async fn one_claim_per_key_across_processes(stack: Stack, keys: usize) {
    let env = Env::new(stack);
    let (toml, _) = l4_table(&env);
    let children = Children::start(2, "claim", keys, &toml).go().await;
    let claimed = children.results();
    let (one, _) = two_stores(&env).await;
    let mut creator = vec![None; keys];
    for (pid, won) in &claimed {
        for i in won.split(',').filter(|s| !s.is_empty()) {
            let i: usize = i.parse().expect("an index");
            assert_eq!(creator[i], None, "{stack:?}: claim:{i} created twice");
            creator[i] = Some(*pid);
        }
    }
    for (i, pid) in creator.iter().enumerate() {
        let pid = pid.unwrap_or_else(|| panic!("{stack:?}: claim:{i} created by nobody"));
        assert_eq!(
            one.get(Slot::Entry(&format!("claim:{i}")))
                .await
                .expect("get"),
            Some(Bytes::from(pid.to_string())),
            "{stack:?}: claim:{i} holds its creator's id"
        );
    }
    eprintln!(
        "{stack:?}: keys created per process: {:?}",
        claimed
            .iter()
            .map(|(_, w)| w.split(',').filter(|s| !s.is_empty()).count())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_per_key_across_processes_on_a_directory() {
    one_claim_per_key_across_processes(Stack::L1File, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_per_key_across_processes_on_s3() {
    one_claim_per_key_across_processes(Stack::L1S3, 200).await;
}

/// Counters on L1 + L4 only (no bus) are exact across processes: L4 is the authority, and its
/// compare-and-set expects the exact bytes each increment read
/// (`docs/guarantees.md#g5-exact-counters`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_on_a_shared_directory_are_exact_across_processes() {
    let env = Env::new(Stack::L1File);
    let (toml, _) = l4_table(&env);
    let children = Children::start(3, "incr", 100, &toml).go().await;
    drop(children);
    let fresh = env.cache("").await;
    assert_eq!(fresh.get::<i64>("counter").await.expect("get"), Some(300));
}

/// A `delete_many` of thousands of keys on S3 completes within a layer timeout that all of its
/// keys together would exceed: each key is bounded on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_many_of_thousands_of_keys_on_s3_deletes_them_all() {
    const KEYS: usize = 2_000;
    let moto = shared_moto();
    let toml = format!(
        "[cache]\nkey_prefix = {:?}\n{}",
        unique_prefix(),
        s3_layer(moto).replace("timeout_ms = 10000", "timeout_ms = 1000")
    );
    let config = Config::from_toml_str(&toml).expect("config parses");
    let cache = Cache::from_config(&config.cache).await.expect("cache");
    let keys: Vec<String> = (0..KEYS).map(|i| format!("bulk:{i}")).collect();
    let cache = &cache;
    futures_util::stream::iter(keys.iter().step_by(2))
        .map(|key| async move { cache.set(key, &"v").await })
        .buffer_unordered(16)
        .for_each(|r| async move { r.expect("set") })
        .await;
    let deleted = cache.delete_many(&keys).await.expect("delete_many");
    assert_eq!(deleted, (KEYS / 2) as u64);
    let fresh = Cache::from_config(&config.cache).await.expect("cache");
    for key in keys.iter().step_by(2) {
        assert_eq!(
            fresh.get::<String>(key).await.expect("get"),
            None,
            "{key} survived the delete in L4"
        );
    }
}
