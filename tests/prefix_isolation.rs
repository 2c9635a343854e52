//! Caches whose key prefixes start alike never reach each other's entries over one server
//! (`docs/guarantees.md#g6-prefix-isolation`): not with `flush`, not with `keys`, not by a name
//! that two prefixes would both build.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use vorte_cache_tests::{Env, Stack};

/// A flush and a listing by the cache under `mine` leave the entries of the cache under `theirs`
/// alone, over the Redis of `env`.
async fn stays_out_of(env: &Env, mine: &str, theirs: &str) {
    let me = env.cache(&format!("key_prefix = {mine:?}")).await;
    let them = env.cache(&format!("key_prefix = {theirs:?}")).await;
    them.set("k", &2).await.expect("set");
    // Under `a`, the entry `e:k` was named like the entry `k` under `ae:`.
    me.set("e:k", &1).await.expect("set");
    me.set("x", &1).await.expect("set");
    let mut mine_listed = me.keys("*").await.expect("keys");
    mine_listed.sort();
    assert_eq!(
        mine_listed,
        ["e:k", "x"],
        "{mine:?} lists only its own keys"
    );
    me.flush().await.expect("flush");
    // A process that starts now (no L1) reads Redis.
    let later = env.cache(&format!("key_prefix = {theirs:?}")).await;
    assert_eq!(
        later.get::<i32>("k").await.expect("get"),
        Some(2),
        "the cache under {mine:?} reached the entry of the cache under {theirs:?}"
    );
    assert_eq!(later.keys("*").await.expect("keys"), ["k"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_never_reaches_the_entries_of_a_prefix_that_extends_it() {
    let env = Env::new(Stack::L1Redis);
    // This test's own prefixes: a unique stem, then the prefixes that start alike.
    let stem = env.prefix().trim_end_matches(':').to_owned();
    for (mine, theirs) in [("a", "ab"), ("a", "ae:"), ("a", "at:")] {
        stays_out_of(&env, &format!("{stem}{mine}"), &format!("{stem}{theirs}")).await;
    }
}
