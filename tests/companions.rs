//! The companions of a `#[cached]` function (`get_user::key`, `::invalidate`, `::refresh`), on
//! L1 alone and on L1 + a real Redis, through the installed application's `Cache::global()`.
//!
//! The global cache is one per process: each test installs its own application on its stack,
//! so the tests of this binary take turns (`TURN`), and count the bodies' runs from where their
//! turn began.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use vorte_cache::{Cache, Layer, Vorte, cached, emit, load, on_event};
use vorte_cache_tests::{Env, Stack, on_l1_and_redis};

/// One test at a time owns the process's application.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs this process's application on `env`, with its `#[on_event]` handlers.
async fn install(env: &Env) {
    Vorte::builder()
        .auto_load(true)
        .config(env.config("", ""))
        .build()
        .await
        .expect("the application builds");
}

/// Takes this test's turn and installs the application on a new [`Env`] of `stack`: the test
/// keeps the guard for its whole body.
async fn turn(stack: Stack) -> (tokio::sync::MutexGuard<'static, ()>, Env) {
    let turn = TURN.lock().await;
    let env = Env::new(stack);
    install(&env).await;
    (turn, env)
}

static USER_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Each run returns a new version, so a test sees which run a value came from.
#[cached(ttl = 300, key = "companion-user:{user_id}", tags = ["companion-users"])]
async fn get_user(user_id: i64) -> Result<String, std::io::Error> {
    let run = USER_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(format!("user {user_id} v{run}"))
}

fn user_runs() -> usize {
    USER_RUNS.load(Ordering::SeqCst)
}

async fn key_invalidate_and_refresh_act_on_the_functions_entry(stack: Stack) {
    let (_turn, _env) = turn(stack).await;
    let cache = Cache::global();
    let runs = user_runs();

    let first = get_user(1).await.expect("loads");
    assert_eq!(user_runs(), runs + 1);
    let key = get_user::key(1).expect("a valid key");
    assert_eq!(key, "companion-user:1", "{stack:?}: the template, rendered");
    assert_eq!(
        cache.get::<String>(&key).await.expect("get").as_ref(),
        Some(&first),
        "{stack:?}: key() names the entry the function wrote"
    );
    assert_eq!(get_user(1).await.expect("hit"), first);
    assert_eq!(user_runs(), runs + 1, "{stack:?}: a hit");

    assert!(
        get_user::invalidate(1).await.expect("invalidates"),
        "{stack:?}: the entry was there"
    );
    assert_eq!(cache.get::<String>(&key).await.expect("get"), None);
    let second = get_user(1).await.expect("loads again");
    assert_eq!(
        user_runs(),
        runs + 2,
        "{stack:?}: the next call ran the body"
    );
    assert_ne!(second, first);
    assert!(
        !get_user::invalidate(2).await.expect("invalidates"),
        "{stack:?}: no entry for user 2"
    );

    let refreshed = get_user::refresh(1).await.expect("the body's value");
    assert_eq!(user_runs(), runs + 3, "{stack:?}: refresh ran the body");
    assert_ne!(refreshed, second);
    assert_eq!(
        get_user(1).await.expect("hit"),
        refreshed,
        "{stack:?}: the refreshed value is served"
    );
    assert_eq!(user_runs(), runs + 3, "{stack:?}: a hit after the refresh");

    // The refresh stored the function's tags with its value.
    cache
        .invalidate_tag("companion-users")
        .await
        .expect("tag invalidation");
    get_user(1).await.expect("loads");
    assert_eq!(
        user_runs(),
        runs + 4,
        "{stack:?}: the tag dropped the refreshed entry"
    );
}

static DEFAULT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 300)]
async fn default_keyed(a: u32, b: &str) -> Option<String> {
    DEFAULT_RUNS.fetch_add(1, Ordering::SeqCst);
    Some(format!("{a}{b}"))
}

async fn the_default_key_is_the_functions_own(stack: Stack) {
    let (_turn, _env) = turn(stack).await;
    let cache = Cache::global();
    let runs = DEFAULT_RUNS.load(Ordering::SeqCst);

    assert_eq!(default_keyed(7, "x").await.as_deref(), Some("7x"));
    let key = default_keyed::key(7, "x").expect("a valid key");
    assert_eq!(
        key,
        format!("{}::default_keyed:[7,\"x\"]", module_path!()),
        "{stack:?}: the path and the arguments as JSON"
    );
    assert_eq!(
        cache.get::<Option<String>>(&key).await.expect("get"),
        Some(Some("7x".to_owned())),
        "{stack:?}: the entry the function wrote"
    );
    assert_ne!(default_keyed::key(7, "y").expect("key"), key);
    assert!(
        default_keyed::invalidate(7, "x")
            .await
            .expect("invalidates")
    );
    assert_eq!(default_keyed(7, "x").await.as_deref(), Some("7x"));
    assert_eq!(
        DEFAULT_RUNS.load(Ordering::SeqCst),
        runs + 2,
        "{stack:?}: the invalidation made the next call run the body"
    );
}

static FLAKY_FAILS: AtomicBool = AtomicBool::new(false);
static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 300, key = "companion-flaky:{id}")]
async fn flaky(id: u32) -> Result<u32, std::io::Error> {
    let run = FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) as u32;
    if FLAKY_FAILS.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("the source is down"));
    }
    Ok(id * 1000 + run)
}

async fn a_failed_refresh_returns_the_error_and_keeps_the_entry(stack: Stack) {
    let (_turn, _env) = turn(stack).await;
    FLAKY_FAILS.store(false, Ordering::SeqCst);
    let held = flaky(3).await.expect("loads");

    FLAKY_FAILS.store(true, Ordering::SeqCst);
    let runs = FLAKY_RUNS.load(Ordering::SeqCst);
    let refreshed = flaky::refresh(3).await;
    FLAKY_FAILS.store(false, Ordering::SeqCst);
    assert!(refreshed.is_err(), "{stack:?}: the body's error, returned");
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), runs + 1);
    assert_eq!(
        flaky(3).await.expect("hit"),
        held,
        "{stack:?}: the entry is as it was"
    );
    assert_eq!(
        FLAKY_RUNS.load(Ordering::SeqCst),
        runs + 1,
        "{stack:?}: a hit"
    );
}

/// A method's companions (`companions = true`) are siblings in its impl block.
struct Repo {
    version: AtomicUsize,
}

impl Repo {
    #[cached(ttl = 300, key = "companion-repo:{id}", companions = true)]
    async fn find(&self, id: u32) -> String {
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        format!("repo {id} v{version}")
    }

    #[cached(ttl = 300, companions = true)]
    async fn total(&self, n: u32) -> u32 {
        self.version.fetch_add(1, Ordering::SeqCst);
        n * 2
    }
}

async fn a_methods_companions_act_on_its_entry(stack: Stack) {
    let (_turn, _env) = turn(stack).await;
    let cache = Cache::global();
    let repo = Repo {
        version: AtomicUsize::new(0),
    };

    let first = repo.find(1).await;
    let key = Repo::find_key(1).expect("key");
    assert_eq!(key, "companion-repo:1");
    assert_eq!(
        cache.get::<String>(&key).await.expect("get"),
        Some(first.clone())
    );
    assert!(Repo::invalidate_find(1).await.expect("invalidates"));
    let second = repo.find(1).await;
    assert_ne!(
        second, first,
        "{stack:?}: the body ran after the invalidation"
    );
    let refreshed = repo.refresh_find(1).await;
    assert_ne!(refreshed, second);
    assert_eq!(
        repo.find(1).await,
        refreshed,
        "{stack:?}: a hit on the refreshed value"
    );
    assert_eq!(repo.version.load(Ordering::SeqCst), 3);

    // The default key names the impl's type and the method, as it did without companions.
    assert_eq!(repo.total(4).await, 8);
    let key = Repo::total_key(4).expect("key");
    assert_eq!(key, format!("{}::Repo::total:[4]", module_path!()));
    assert_eq!(
        cache.get::<u32>(&key).await.expect("get"),
        Some(8),
        "{stack:?}"
    );
}

static GONE: AtomicBool = AtomicBool::new(false);
static MAYBE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 300, key = "companion-maybe:{id}")]
async fn maybe(id: u32) -> Option<u32> {
    MAYBE_RUNS.fetch_add(1, Ordering::SeqCst);
    (!GONE.load(Ordering::SeqCst)).then_some(id)
}

/// A fresh `None` is not cached (no `negative_ttl`), and the older `Some` would contradict it.
async fn a_refresh_to_an_uncached_none_removes_the_entry(stack: Stack) {
    let (_turn, _env) = turn(stack).await;
    GONE.store(false, Ordering::SeqCst);
    assert_eq!(maybe(5).await, Some(5));
    GONE.store(true, Ordering::SeqCst);
    let runs = MAYBE_RUNS.load(Ordering::SeqCst);
    assert_eq!(maybe::refresh(5).await, None);
    assert_eq!(
        Cache::global()
            .get::<Option<u32>>(&maybe::key(5).expect("key"))
            .await
            .expect("get"),
        None,
        "{stack:?}: the entry is gone"
    );
    assert_eq!(maybe(5).await, None, "{stack:?}: the body answers again");
    GONE.store(false, Ordering::SeqCst);
    assert_eq!(MAYBE_RUNS.load(Ordering::SeqCst), runs + 2);
}

static SKIPS: AtomicBool = AtomicBool::new(false);
static DECIDED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A body that decides how its value is kept (`docs/architecture.md#adaptive-loads`): a shorter
/// TTL, a tag of its own, L1 alone and a validator; or, while `SKIPS`, not to keep it.
#[cached(ttl = 300, key = "companion-decided:{id}")]
async fn decided(id: u32) -> Result<String, std::io::Error> {
    let run = DECIDED_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if SKIPS.load(Ordering::SeqCst) {
        load::skip();
    } else {
        load::ttl(Duration::from_secs(30));
        load::tags(["companion-decided"]);
        load::layers([Layer::L1]);
        load::set_validator(format!("\"v{run}\""));
    }
    Ok(format!("decided {id} v{run}"))
}

/// What `decided` keeps under `key`, as its body decided: read here, and by another cache on the
/// same servers (another process), which finds nothing since L1 alone took it.
async fn kept_as_decided(stack: Stack, env: &Env, key: &str, value: &str, by: &str) {
    let found = Cache::global().inspect(key).await.expect("inspect");
    let entry = found.entry.expect("an entry");
    assert_eq!(
        entry.value.as_ref().ok(),
        Some(&json!(value)),
        "{stack:?} {by}"
    );
    assert!(
        entry
            .fresh_for
            .is_some_and(|left| left <= Duration::from_secs(30)),
        "{stack:?} {by}: the body's TTL, not the function's: {:?}",
        entry.fresh_for
    );
    assert!(
        entry.tags.iter().any(|t| t.name == "companion-decided"),
        "{stack:?} {by}: the body's tag: {:?}",
        entry.tags
    );
    assert!(
        entry.stale_window > Duration::ZERO,
        "{stack:?} {by}: kept past its TTL for its validator"
    );
    let other = env.cache("").await;
    assert!(
        other.inspect(key).await.expect("inspect").entry.is_none(),
        "{stack:?} {by}: L1 alone took it"
    );
}

/// `refresh` keeps the body's value as a call that missed would: what the body decides with
/// `vorte_cache::load` holds for both.
async fn a_refresh_keeps_its_value_as_the_body_decides(stack: Stack) {
    let (_turn, env) = turn(stack).await;
    SKIPS.store(false, Ordering::SeqCst);
    let key = decided::key(1).expect("key");
    let loaded = decided(1).await.expect("loads");
    kept_as_decided(stack, &env, &key, &loaded, "a miss").await;
    let refreshed = decided::refresh(1).await.expect("the body's value");
    assert_ne!(refreshed, loaded);
    kept_as_decided(stack, &env, &key, &refreshed, "a refresh").await;
}

/// A body that skips its value: a miss keeps nothing, and so does a refresh, whose fresh answer
/// the older entry would contradict (as an uncached `None` does).
async fn a_refresh_its_body_skips_keeps_nothing(stack: Stack) {
    let (_turn, _env) = turn(stack).await;
    let cache = Cache::global();
    let key = decided::key(2).expect("key");
    SKIPS.store(true, Ordering::SeqCst);
    decided(2).await.expect("runs");
    assert_eq!(
        cache.get::<String>(&key).await.expect("get"),
        None,
        "{stack:?}: a miss skipped"
    );
    SKIPS.store(false, Ordering::SeqCst);
    decided(2).await.expect("loads");
    SKIPS.store(true, Ordering::SeqCst);
    decided::refresh(2).await.expect("the body's value");
    SKIPS.store(false, Ordering::SeqCst);
    assert_eq!(
        cache.get::<String>(&key).await.expect("get"),
        None,
        "{stack:?}: the refresh skipped its value and the older entry went"
    );
}

static GUARDED_FAILS: AtomicBool = AtomicBool::new(false);
static GUARDED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Fail-safe on the function only (the config has none): its entries are kept stale for a
/// minute past their TTL, for its body's failures.
#[cached(ttl = "300ms", fail_safe = "60s", key = "companion-guarded:{id}")]
async fn guarded(id: u32) -> Result<u32, std::io::Error> {
    let run = GUARDED_RUNS.fetch_add(1, Ordering::SeqCst) as u32;
    if GUARDED_FAILS.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("the source is down"));
    }
    Ok(id * 1000 + run)
}

/// A refreshed entry is kept as the function's own loads keep theirs: past its TTL, for the
/// function's fail-safe window (`docs/resilience.md#fail-safe`), not the config's.
async fn a_refreshed_entry_serves_the_functions_fail_safe(stack: Stack) {
    let (_turn, _env) = turn(stack).await;
    GUARDED_FAILS.store(false, Ordering::SeqCst);
    guarded(4).await.expect("loads");
    let refreshed = guarded::refresh(4).await.expect("refreshes");
    tokio::time::sleep(Duration::from_millis(450)).await;
    GUARDED_FAILS.store(true, Ordering::SeqCst);
    let runs = GUARDED_RUNS.load(Ordering::SeqCst);
    let after_ttl = guarded(4).await;
    GUARDED_FAILS.store(false, Ordering::SeqCst);
    assert_eq!(
        GUARDED_RUNS.load(Ordering::SeqCst),
        runs + 1,
        "{stack:?}: the expired entry ran the body again"
    );
    assert_eq!(
        after_ttl.ok(),
        Some(refreshed),
        "{stack:?}: the body failed, so the refreshed value stands in for its error"
    );
}

on_l1_and_redis!(
    a_refresh_keeps_its_value_as_the_body_decides,
    a_refresh_its_body_skips_keeps_nothing,
    a_methods_companions_act_on_its_entry,
    a_refresh_to_an_uncached_none_removes_the_entry,
    key_invalidate_and_refresh_act_on_the_functions_entry,
    the_default_key_is_the_functions_own,
    a_failed_refresh_returns_the_error_and_keeps_the_entry,
    a_refreshed_entry_serves_the_functions_fail_safe,
);

/// The handler names the function, never its key template.
#[on_event("companion.user.updated")]
async fn drop_user(user_id: i64) -> vorte_cache::Result<()> {
    get_user::invalidate(user_id).await?;
    Ok(())
}

/// The handler's invalidation reaches the L1 of another cache on the same Redis (another
/// process, as far as the bus is concerned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_handler_invalidates_through_the_companion_in_other_caches() {
    let (_turn, env) = turn(Stack::L1Redis).await;
    let other = env.cache("").await;
    assert!(other.has_bus());

    let value = get_user(9).await.expect("loads");
    let key = get_user::key(9).expect("key");
    assert_eq!(
        other.get::<String>(&key).await.expect("get").as_ref(),
        Some(&value),
        "the other cache read it from L2 into its L1"
    );

    assert_eq!(
        emit("companion.user.updated", &json!({ "user_id": 9 }))
            .await
            .expect("emit"),
        1
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if other.get::<String>(&key).await.expect("get").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other cache still serves the entry 10 s after the event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
