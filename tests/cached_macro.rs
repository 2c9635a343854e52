//! Behaviour of `#[cached]` functions, through `Cache::global()`.
//!
//! Every test uses its own keys (and its own function, hence its own call counter): the tests run
//! concurrently and share the process-wide cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vorte_cache::{Cache, cached};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
}

#[derive(Debug, Clone, PartialEq)]
struct DbError(&'static str);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DbError {}

fn calls(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

// ===== hits and misses =====

static DOUBLE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "double:{n}")]
async fn double(n: u64) -> u64 {
    DOUBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    n * 2
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_skips_the_body() {
    assert_eq!(double(21).await, 42);
    assert_eq!(double(21).await, 42);
    assert_eq!(calls(&DOUBLE_CALLS), 1, "the second call is a hit");
    assert_eq!(double(5).await, 10);
    assert_eq!(calls(&DOUBLE_CALLS), 2, "another key is a miss");
}

static DEFAULT_KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
async fn default_keyed(a: u32, b: &str) -> String {
    DEFAULT_KEY_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("{a}{b}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_key_is_the_path_and_the_arguments() {
    assert_eq!(default_keyed(1, "x").await, "1x");
    assert_eq!(default_keyed(1, "x").await, "1x");
    assert_eq!(calls(&DEFAULT_KEY_CALLS), 1);
    assert_eq!(default_keyed(1, "y").await, "1y");
    assert_eq!(default_keyed(2, "x").await, "2x");
    assert_eq!(calls(&DEFAULT_KEY_CALLS), 3);
}

// ===== Result =====

static RESULT_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Fails on its first call, then succeeds.
#[cached(ttl = 60, key = "result:{id}")]
async fn flaky(id: u32) -> Result<u32, DbError> {
    if RESULT_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(DbError("first call fails"));
    }
    Ok(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn result_caches_ok_and_not_err() {
    assert_eq!(flaky(7).await, Err(DbError("first call fails")));
    assert_eq!(flaky(7).await, Ok(7), "the error was not cached");
    assert_eq!(flaky(7).await, Ok(7));
    assert_eq!(calls(&RESULT_CALLS), 2, "Ok was cached");
}

// ===== Option =====

static OPTION_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "option:{id}")]
async fn find(id: u32) -> Option<u32> {
    OPTION_CALLS.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn option_caches_some_and_not_none() {
    assert_eq!(find(0).await, None);
    assert_eq!(find(0).await, None);
    assert_eq!(calls(&OPTION_CALLS), 2, "None is not cached");
    assert_eq!(find(3).await, Some(3));
    assert_eq!(find(3).await, Some(3));
    assert_eq!(calls(&OPTION_CALLS), 3, "Some is cached");
}

static NEGATIVE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, negative_ttl = 60, key = "negative:{id}")]
async fn find_negative(id: u32) -> Option<u32> {
    NEGATIVE_CALLS.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn negative_ttl_caches_none() {
    assert_eq!(find_negative(0).await, None);
    assert_eq!(find_negative(0).await, None);
    assert_eq!(
        calls(&NEGATIVE_CALLS),
        1,
        "None is cached with negative_ttl"
    );
    assert_eq!(find_negative(4).await, Some(4));
    assert_eq!(find_negative(4).await, Some(4));
    assert_eq!(calls(&NEGATIVE_CALLS), 2);
}

static NEGATIVE_EXPIRY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, negative_ttl = Duration::from_millis(200), key = "negative-expiry:{id}")]
async fn find_briefly(id: u32) -> Option<u32> {
    NEGATIVE_EXPIRY_CALLS.fetch_add(1, Ordering::SeqCst);
    let _ = id;
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_negative_entry_expires_after_negative_ttl() {
    assert_eq!(find_briefly(1).await, None);
    assert_eq!(find_briefly(1).await, None);
    assert_eq!(calls(&NEGATIVE_EXPIRY_CALLS), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(find_briefly(1).await, None);
    assert_eq!(
        calls(&NEGATIVE_EXPIRY_CALLS),
        2,
        "the negative entry expired"
    );
}

// ===== Result<Option<T>, E> =====

static RESULT_OPTION_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "result-option:{id}")]
async fn lookup(id: i64) -> Result<Option<User>, DbError> {
    RESULT_OPTION_CALLS.fetch_add(1, Ordering::SeqCst);
    match id {
        i64::MIN..=-1 => Err(DbError("negative id")),
        0 => Ok(None),
        id => Ok(Some(User {
            id,
            name: format!("user {id}"),
        })),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn result_option_caches_ok_some_only() {
    assert_eq!(lookup(-1).await, Err(DbError("negative id")));
    assert_eq!(lookup(-1).await, Err(DbError("negative id")));
    assert_eq!(calls(&RESULT_OPTION_CALLS), 2, "Err is not cached");

    assert_eq!(lookup(0).await, Ok(None));
    assert_eq!(lookup(0).await, Ok(None));
    assert_eq!(calls(&RESULT_OPTION_CALLS), 4, "Ok(None) is not cached");

    let user = User {
        id: 1,
        name: "user 1".into(),
    };
    assert_eq!(lookup(1).await, Ok(Some(user.clone())));
    assert_eq!(lookup(1).await, Ok(Some(user)));
    assert_eq!(calls(&RESULT_OPTION_CALLS), 5, "Ok(Some) is cached");
}

static RESULT_NEGATIVE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, negative_ttl = 60, key = "result-negative:{id}")]
async fn lookup_negative(id: i64) -> Result<Option<i64>, DbError> {
    RESULT_NEGATIVE_CALLS.fetch_add(1, Ordering::SeqCst);
    if id < 0 {
        return Err(DbError("negative id"));
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread")]
async fn result_option_with_negative_ttl_caches_ok_none_but_not_err() {
    assert_eq!(lookup_negative(0).await, Ok(None));
    assert_eq!(lookup_negative(0).await, Ok(None));
    assert_eq!(calls(&RESULT_NEGATIVE_CALLS), 1, "Ok(None) is cached");
    assert!(lookup_negative(-1).await.is_err());
    assert!(lookup_negative(-1).await.is_err());
    assert_eq!(calls(&RESULT_NEGATIVE_CALLS), 3, "Err is never cached");
}

// ===== single flight =====

static FLIGHT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "flight:{id}")]
async fn slow(id: u32) -> u32 {
    FLIGHT_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    id + 1
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_on_one_key_run_the_body_once() {
    let tasks: Vec<_> = (0..1000).map(|_| tokio::spawn(slow(9))).collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), 10);
    }
    assert_eq!(calls(&FLIGHT_CALLS), 1);
}

static LEADER_CALLS: AtomicUsize = AtomicUsize::new(0);

/// The first call (the leader) fails after a while; every later call succeeds.
#[cached(ttl = 60, key = "leader:{id}")]
async fn failing_leader(id: u32) -> Result<u32, DbError> {
    let call = LEADER_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    if call == 0 {
        return Err(DbError("leader fails"));
    }
    Ok(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_leader_makes_one_waiter_retry() {
    let leader = tokio::spawn(failing_leader(3));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiters: Vec<_> = (0..10).map(|_| tokio::spawn(failing_leader(3))).collect();

    assert_eq!(leader.await.expect("task"), Err(DbError("leader fails")));
    for waiter in waiters {
        assert_eq!(
            waiter.await.expect("task"),
            Ok(3),
            "a waiter retries, it does not fail"
        );
    }
    assert_eq!(
        calls(&LEADER_CALLS),
        2,
        "one waiter ran the body again; the others waited"
    );
}

// ===== keys, tags, layers =====

static USER_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 300, key = "user:{user_id}")]
async fn get_user(user_id: i64) -> Result<User, DbError> {
    USER_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(User {
        id: user_id,
        name: "ann".into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_template_names_the_entry() -> vorte_cache::Result<()> {
    let user = get_user(1).await.expect("loads");
    // A `Result<T, E>` fn stores the `T`.
    let cached: Option<User> = Cache::global().get("user:1").await?;
    assert_eq!(cached, Some(user));

    assert!(Cache::global().delete("user:1").await?);
    get_user(1).await.expect("loads");
    assert_eq!(
        calls(&USER_CALLS),
        2,
        "deleting the key makes the next call a miss"
    );
    Ok(())
}

static OPTION_KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 300, key = "maybe-user:{user_id}")]
async fn maybe_user(user_id: i64) -> Option<String> {
    OPTION_KEY_CALLS.fetch_add(1, Ordering::SeqCst);
    Some(format!("user {user_id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_option_fn_stores_the_option() -> vorte_cache::Result<()> {
    maybe_user(2).await;
    let cached: Option<Option<String>> = Cache::global().get("maybe-user:2").await?;
    assert_eq!(cached, Some(Some("user 2".to_owned())));
    Ok(())
}

static PRODUCT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 3600, key = "product:{id}", tags = ["products", "category:{category}"])]
async fn get_product(id: u64, category: &str) -> Result<String, DbError> {
    PRODUCT_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("{category}/{id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_on_cached_entries_invalidate() -> vorte_cache::Result<()> {
    let cache = Cache::global();
    get_product(1, "tv").await.expect("loads");
    get_product(2, "radio").await.expect("loads");
    get_product(1, "tv").await.expect("loads");
    assert_eq!(calls(&PRODUCT_CALLS), 2);

    cache.invalidate_tag("category:tv").await?;
    assert_eq!(cache.get::<String>("product:1").await?, None);
    assert_eq!(
        cache.get::<String>("product:2").await?.as_deref(),
        Some("radio/2")
    );
    get_product(1, "tv").await.expect("loads");
    get_product(2, "radio").await.expect("loads");
    assert_eq!(
        calls(&PRODUCT_CALLS),
        3,
        "only the tagged entry was dropped"
    );

    cache.invalidate_tag("products").await?;
    get_product(1, "tv").await.expect("loads");
    get_product(2, "radio").await.expect("loads");
    assert_eq!(calls(&PRODUCT_CALLS), 5, "the shared tag drops both");
    Ok(())
}

static LAYER_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, layer = "l1", key = "layer-l1:{name}")]
async fn in_l1(name: &str) -> String {
    LAYER_CALLS.fetch_add(1, Ordering::SeqCst);
    name.to_uppercase()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_restricted_fn_still_caches() {
    assert_eq!(in_l1("a").await, "A");
    assert_eq!(in_l1("a").await, "A");
    assert_eq!(calls(&LAYER_CALLS), 1);
}

static LONG_KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "long:{text}")]
async fn with_long_key(text: String) -> usize {
    LONG_KEY_CALLS.fetch_add(1, Ordering::SeqCst);
    text.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_failure_never_fails_the_call() {
    // A key over the limit cannot be cached: the body runs, every time, and its result returns.
    let text = "x".repeat(vorte_cache::MAX_KEY_LEN + 1);
    assert_eq!(with_long_key(text.clone()).await, text.len());
    assert_eq!(with_long_key(text.clone()).await, text.len());
    assert_eq!(calls(&LONG_KEY_CALLS), 2);
}

static BAD_TAG_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "bad-tag:{id}", tags = ["{tag}"])]
async fn with_rendered_tag(id: u64, tag: String) -> u64 {
    BAD_TAG_CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

/// Tags are checked as `get_or_set` checks them (`docs/guarantees.md#m1-cached-never-fails-because-of-the-cache`):
/// with a tag that is empty, too long (over 65,535 bytes it would not even fit the entry's
/// format) or holds a NUL, the body runs uncached, every time, and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_cached_fn_with_invalid_tags_runs_uncached() -> vorte_cache::Result<()> {
    let bad = [String::new(), "x".repeat(70_000), "a\0b".to_owned()];
    for (id, tag) in (1..).zip(bad) {
        let before = calls(&BAD_TAG_CALLS);
        assert_eq!(with_rendered_tag(id, tag.clone()).await, id);
        assert_eq!(with_rendered_tag(id, tag.clone()).await, id);
        assert_eq!(
            calls(&BAD_TAG_CALLS) - before,
            2,
            "tag of {} bytes",
            tag.len()
        );
        let key = format!("bad-tag:{id}");
        assert_eq!(Cache::global().get::<u64>(&key).await?, None);
    }
    // A valid tag is cached as usual.
    assert_eq!(with_rendered_tag(9, "fine".to_owned()).await, 9);
    assert_eq!(with_rendered_tag(9, "fine".to_owned()).await, 9);
    assert_eq!(calls(&BAD_TAG_CALLS), 7);
    Ok(())
}

// ===== methods =====

struct UserRepo {
    calls: AtomicUsize,
    prefix: &'static str,
}

impl UserRepo {
    #[cached(ttl = 60, key = "repo-user:{id}")]
    async fn name(&self, id: i64) -> Option<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Some(format!("{}{id}", self.prefix))
    }

    #[cached(ttl = 60)]
    async fn describe(&self, id: i64) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("user repo {id}")
    }
}

struct OrderRepo {
    calls: AtomicUsize,
}

impl OrderRepo {
    /// Same name and arguments as `UserRepo::describe`: the default key tells them apart.
    #[cached(ttl = 60)]
    async fn describe(&self, id: i64) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("order repo {id}")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_on_self_are_cached() {
    let repo = Arc::new(UserRepo {
        calls: AtomicUsize::new(0),
        prefix: "u",
    });
    assert_eq!(repo.name(1).await.as_deref(), Some("u1"));
    assert_eq!(repo.name(1).await.as_deref(), Some("u1"));
    assert_eq!(repo.calls.load(Ordering::SeqCst), 1);

    // The future is `Send`: a method call can be spawned.
    let spawned = tokio::spawn({
        let repo = Arc::clone(&repo);
        async move { repo.name(1).await }
    });
    assert_eq!(spawned.await.expect("task").as_deref(), Some("u1"));
    assert_eq!(repo.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn same_named_methods_of_two_types_have_distinct_default_keys() {
    let users = UserRepo {
        calls: AtomicUsize::new(0),
        prefix: "",
    };
    let orders = OrderRepo {
        calls: AtomicUsize::new(0),
    };
    assert_eq!(users.describe(77).await, "user repo 77");
    assert_eq!(orders.describe(77).await, "order repo 77");
    assert_eq!(users.describe(77).await, "user repo 77");
    assert_eq!(orders.describe(77).await, "order repo 77");
    assert_eq!(users.calls.load(Ordering::SeqCst), 1);
    assert_eq!(orders.calls.load(Ordering::SeqCst), 1);
}

// ===== keys rendered on the stack =====

static SPILLED_KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

/// A key longer than the stack buffer of `KeyBuf` (128 bytes) moves to the heap and still hits.
#[cached(ttl = 60, key = "spilled:{part}:{n}")]
async fn spilled_key(part: String, n: u64) -> u64 {
    SPILLED_KEY_CALLS.fetch_add(1, Ordering::SeqCst);
    n + part.len() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_longer_than_the_stack_buffer_hit_like_short_ones() {
    let part = "x".repeat(300);
    assert_eq!(spilled_key(part.clone(), 1).await, 301);
    assert_eq!(spilled_key(part.clone(), 1).await, 301);
    assert_eq!(calls(&SPILLED_KEY_CALLS), 1, "the second call is a hit");
    let key = format!("spilled:{part}:1");
    assert_eq!(
        Cache::global().get::<u64>(&key).await.ok().flatten(),
        Some(301)
    );
    // Keys of 127 and 128 bytes (one short of the buffer, and its size) stay on the stack.
    for len in [117, 118] {
        let part = "y".repeat(len);
        let before = calls(&SPILLED_KEY_CALLS);
        assert_eq!(spilled_key(part.clone(), 2).await, 2 + len as u64);
        assert_eq!(spilled_key(part.clone(), 2).await, 2 + len as u64);
        assert_eq!(
            calls(&SPILLED_KEY_CALLS),
            before + 1,
            "{len}: the second call is a hit"
        );
    }
}

/// A `Display` that fails, on which `format!` would panic.
struct FailingDisplay;

impl std::fmt::Display for FailingDisplay {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Err(std::fmt::Error)
    }
}

static FAILING_KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "failing:{value}")]
async fn failing_key(value: Arc<FailingDisplay>) -> u64 {
    let _ = value;
    FAILING_KEY_CALLS.fetch_add(1, Ordering::SeqCst) as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_whose_display_fails_runs_the_body_uncached() {
    let value = Arc::new(FailingDisplay);
    assert_eq!(failing_key(value.clone()).await, 0);
    assert_eq!(failing_key(value).await, 1, "nothing was cached");
    assert_eq!(calls(&FAILING_KEY_CALLS), 2);
}

static NUL_KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "nul:{name}")]
async fn nul_key(name: String) -> usize {
    NUL_KEY_CALLS.fetch_add(1, Ordering::SeqCst);
    name.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_rendered_key_never_reaches_the_cache() {
    assert_eq!(nul_key("a\0b".into()).await, 3);
    assert_eq!(nul_key("a\0b".into()).await, 3);
    assert_eq!(
        calls(&NUL_KEY_CALLS),
        2,
        "a key with a NUL byte runs uncached"
    );
    assert_eq!(Cache::global().keys("nul:*").await.expect("keys").len(), 0);
}
