//! P1/P2 as instruction counts, which do not drift with the machine's load the way wall time does
//! on a shared 2-core box. Run each variant under callgrind with two iteration counts; the
//! difference divided by the difference in iterations is the cost of one call:
//!
//! ```text
//! cargo bench -p vorte-cache --bench l1_instructions --no-run
//! scripts/l1-instructions
//! ```
//!
//! `docs/performance.md` has the script's output and the ratios.
//!
//! `raw_miss_insert` and `vorte_miss_set` replay the first `n` requests of the ARC trace `OLTP`
//! with insert on miss (see `l1_miss.rs`); the keys of `TRACE_KEYS` requests are always loaded,
//! so that loading costs the same in both runs of the difference.
#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::hint::black_box;
use std::sync::Arc;

use vorte_cache::config::CacheConfig;
use vorte_cache::{Cache, cached};

mod common;

use common::{User, cached_crate_user, cached_user_u64, replay_keys, user};

/// Requests of the trace loaded for the miss-and-insert variants: at least the largest `n`.
const TRACE_KEYS: usize = 200_000;

/// The capacity of both caches of the miss-and-insert variants, as in `l1_miss.rs`.
const CAPACITY: u64 = 1_000;

#[cached(ttl = 300, key = "user:{id}")]
async fn cached_user(id: i64) -> User {
    User { id, ..user(42) }
}

async fn hand_written_user(id: i64) -> User {
    let key = format!("user:{id}");
    match Cache::global().get::<User>(&key).await {
        Ok(Some(u)) => u,
        _ => User { id, ..user(42) },
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    if variant.is_empty() || variant == "--bench" {
        return; // `cargo bench` runs every bench target; this one is driven by callgrind only.
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cache = Cache::from_config(&Default::default())
            .await
            .expect("cache");
        cache.set("user:1", &user(42)).await.expect("set");
        cache.get::<User>("user:1").await.expect("warm");
        cache.set("user:arc", &user(42)).await.expect("set");
        cache.get::<Arc<User>>("user:arc").await.expect("warm");
        cached_user(7).await;
        cached_user_u64(7).await;
        cached_crate_user(7).await;
        let miss_insert = matches!(
            variant.as_str(),
            "raw_miss_insert" | "vorte_miss_set" | "vorte_miss_set_owned"
        );
        let keys = if miss_insert {
            replay_keys(TRACE_KEYS)
        } else {
            Vec::new()
        };
        assert!(
            n as usize <= keys.len() || !miss_insert,
            "at most {TRACE_KEYS} requests"
        );
        // Fail-safe cost (`docs/performance.md#fail-safe-cost`): the same hits on a cache whose
        // entries carry a stale window.
        let mut fail_safe_config = CacheConfig::default();
        fail_safe_config.loads.fail_safe_max = Some(std::time::Duration::from_secs(3600));
        let fail_safe = Cache::from_config(&fail_safe_config).await.expect("cache");
        fail_safe.set("user:1", &user(42)).await.expect("set");
        fail_safe.get::<User>("user:1").await.expect("warm");
        let load = || async { Ok::<_, std::io::Error>(user(42)) };
        let value = user(42);
        let mut l1_config = CacheConfig::default();
        l1_config.layers.l1.max_size = CAPACITY;
        let l1_only = Cache::from_config(&l1_config).await.expect("cache");
        // The tracing and metrics overhead (`docs/performance.md#tracing-and-metrics-overhead`):
        // the same hit on a cache with the metrics adapter attached (feature `metrics`).
        #[cfg(feature = "metrics")]
        let observed = Cache::builder(&CacheConfig::default())
            .observe(Arc::new(
                vorte_cache::observe::metrics::MetricsExporter::new(),
            ))
            .build()
            .await
            .expect("cache");
        #[cfg(not(feature = "metrics"))]
        let observed = Cache::from_config(&CacheConfig::default())
            .await
            .expect("cache");
        observed.set("user:1", &user(42)).await.expect("set");
        observed.get::<User>("user:1").await.expect("warm");
        let raw_small: quick_cache::sync::Cache<String, User> =
            quick_cache::sync::Cache::new(CAPACITY as usize);
        let raw: quick_cache::sync::Cache<String, User> = quick_cache::sync::Cache::new(10_000);
        raw.insert("user:1".into(), user(42));
        let raw_arc: quick_cache::sync::Cache<String, Arc<User>> =
            quick_cache::sync::Cache::new(10_000);
        raw_arc.insert("user:arc".into(), Arc::new(user(42)));
        let mut replay = keys.iter().map(String::as_str);
        for _ in 0..n {
            match variant.as_str() {
                "raw_quick_cache" => drop(black_box(raw.get(black_box("user:1")))),
                "vorte_get" => drop(black_box(cache.get::<User>(black_box("user:1")).await)),
                "raw_quick_cache_arc" => drop(black_box(raw_arc.get(black_box("user:arc")))),
                "vorte_get_arc" => drop(black_box(
                    cache.get::<Arc<User>>(black_box("user:arc")).await,
                )),
                "vorte_get_observed" => {
                    drop(black_box(observed.get::<User>(black_box("user:1")).await))
                }
                "vorte_get_fail_safe" => {
                    drop(black_box(fail_safe.get::<User>(black_box("user:1")).await))
                }
                "get_or_set_hit" => {
                    drop(black_box(cache.get_or_set(black_box("user:1"), load).await))
                }
                "get_or_set_hit_fail_safe" => drop(black_box(
                    fail_safe
                        .get_or_set(black_box("user:1"), load)
                        .fail_safe(std::time::Duration::from_secs(3600))
                        .await,
                )),
                "hand_written" => drop(black_box(hand_written_user(black_box(7)).await)),
                "cached_fn" => drop(black_box(cached_user(black_box(7)).await)),
                "cached_fn_u64" => drop(black_box(cached_user_u64(black_box(7)).await)),
                "cached_crate" => drop(black_box(cached_crate_user(black_box(7)).await)),
                "raw_miss_insert" => {
                    let key = replay.next().expect("a trace request");
                    match raw_small.get(black_box(key)) {
                        Some(v) => drop(black_box(v)),
                        None => raw_small.insert(key.to_owned(), value.clone()),
                    }
                }
                "vorte_miss_set_owned" => {
                    let key = replay.next().expect("a trace request");
                    match l1_only.get::<User>(black_box(key)).await {
                        Ok(Some(v)) => drop(black_box(v)),
                        Ok(None) => l1_only.set_owned(key, value.clone()).await.expect("set"),
                        Err(e) => panic!("get: {e}"),
                    }
                }
                "vorte_miss_set" => {
                    let key = replay.next().expect("a trace request");
                    match l1_only.get::<User>(black_box(key)).await {
                        Ok(Some(v)) => drop(black_box(v)),
                        Ok(None) => l1_only.set(key, &value).await.expect("set"),
                        Err(e) => panic!("get: {e}"),
                    }
                }
                other => panic!("unknown variant {other}"),
            }
        }
    });
}
