//! A Redis at `maxmemory` with `noeviction` refuses every write that may grow memory: the
//! tombstone script (a `SET`) among them, while `GET` still answers. A delete must still remove
//! the entry (`docs/consistency.md#redis-at-maxmemory-with-noeviction`).
#![allow(clippy::expect_used, reason = "tests fail loudly")]

use vorte_cache::{Cache, Config};
use vorte_cache_tests::servers::RedisServer;
use vorte_cache_tests::unique_prefix;

/// An L2-only cache (L1 off, so every read asks Redis).
async fn l2_only(server: &RedisServer, prefix: &str) -> Cache {
    let toml = format!(
        "[cache]\nkey_prefix = {prefix:?}\n[cache.layers.l1]\nenabled = false\n\
         [cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\n",
        url = server.url(),
    );
    Cache::from_config(&Config::from_toml_str(&toml).expect("config").cache)
        .await
        .expect("cache")
}

/// `used_memory` from `INFO memory`.
fn used_memory(server: &RedisServer) -> u64 {
    server
        .cmd(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// Makes Redis full: `noeviction`, and `maxmemory` below what it uses now (at exactly
/// `used_memory`, freed client buffers can leave room for a few writes).
fn fill_up(server: &RedisServer) {
    server.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let used = used_memory(server);
    server.cmd(&["CONFIG", "SET", "maxmemory", &(used / 2).to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_a_full_redis_removes_the_entry() {
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let cache = l2_only(&server, &prefix).await;
    cache.set("k", "value").await.expect("set");
    fill_up(&server);
    // The server is full: a write of another key is refused, a read still answers.
    assert!(
        cache.set("other", &"x".repeat(4096)).await.is_err(),
        "Redis is not full: a set went through"
    );
    assert_eq!(
        cache.get::<String>("k").await.expect("get"),
        Some("value".to_owned())
    );

    cache.delete("k").await.expect("delete");
    assert_eq!(
        cache.get::<String>("k").await.expect("get"),
        None,
        "the deleted entry is still served"
    );
    // Gone from Redis itself, not only hidden from this cache: another process reads nothing.
    assert_eq!(
        server.cmd(&["EXISTS", &format!("{prefix}e:k")]),
        ":0\r\n",
        "Redis still holds the deleted entry"
    );
    let other = l2_only(&server, &prefix).await;
    assert_eq!(
        other.get::<String>("k").await.expect("get"),
        None,
        "another process reads the deleted entry"
    );
}
