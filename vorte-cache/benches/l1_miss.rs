//! An L1 miss followed by an insert, against a raw quick_cache `get` + `insert` of the same value,
//! in the same run (target ≤ 2×).
//!
//! Replays the first `REQUESTS` requests of the ARC trace `OLTP` (see `common::trace_keys`; a
//! synthetic Zipf stream when the file is missing) with insert on miss, through:
//!
//! - `raw`: `quick_cache::sync::Cache<String, User>` of capacity `CAPACITY`: `get(key)`, and on a
//!   miss `insert(key.to_owned(), user.clone())`;
//! - `vorte`: an L1-only `Cache` with `max_size = CAPACITY`: `cache.get::<User>(key)`, and on a
//!   miss `cache.set(key, &user)`, which encodes the borrowed value;
//! - `vorte owned`: the same with `cache.set_owned(key, user.clone())`, which keeps the value
//!   decoded in L1 and encodes nothing.
//!
//! Each round replays the trace once per variant into a fresh cache, in alternating order; it
//! prints each round's time per request and ratio, then the median of the per-round ratios. The
//! instruction-count variant is in `l1_instructions.rs` (`raw_miss_insert`, `vorte_miss_set`).
//!
//! `cargo bench -p vorte-cache --bench l1_miss`. Results: `docs/performance.md`.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use vorte_cache::Cache;
use vorte_cache::config::CacheConfig;

mod common;

use common::{User, replay_keys, user};

const REQUESTS: usize = 200_000;
const CAPACITY: u64 = 1_000;
const ROUNDS: usize = 9;

fn l1_only(capacity: u64) -> CacheConfig {
    let mut config = CacheConfig::default();
    config.layers.l1.max_size = capacity;
    config
}

/// Replays `keys` through a fresh raw quick_cache; the time and the number of hits.
fn replay_raw(keys: &[String], value: &User) -> (Duration, usize) {
    let raw: quick_cache::sync::Cache<String, User> =
        quick_cache::sync::Cache::new(CAPACITY as usize);
    let mut hits = 0;
    let start = Instant::now();
    for key in keys {
        match raw.get(black_box(key.as_str())) {
            Some(v) => {
                hits += 1;
                black_box(v);
            }
            None => raw.insert(key.to_owned(), value.clone()),
        }
    }
    (start.elapsed(), hits)
}

/// Replays `keys` through a fresh L1-only vorte cache, writing with `set` or, when `owned`, with
/// `set_owned`; the time and the number of hits.
async fn replay_vorte(keys: &[String], value: &User, owned: bool) -> (Duration, usize) {
    let cache = Cache::from_config(&l1_only(CAPACITY)).await.expect("cache");
    let mut hits = 0;
    let start = Instant::now();
    for key in keys {
        match cache.get::<User>(black_box(key.as_str())).await {
            Ok(Some(v)) => {
                hits += 1;
                black_box(v);
            }
            Ok(None) if owned => cache.set_owned(key, value.clone()).await.expect("set"),
            Ok(None) => cache.set(key, value).await.expect("set"),
            Err(e) => panic!("get: {e}"),
        }
    }
    (start.elapsed(), hits)
}

fn main() {
    if std::env::args().skip(1).any(|a| a == "--list") {
        return;
    }
    let keys = replay_keys(REQUESTS);
    let value = user(42);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let per_request = |d: Duration| d.as_nanos() as f64 / keys.len() as f64;
    let mut ratios = Vec::new();
    let mut owned_ratios = Vec::new();
    rt.block_on(async {
        // Warm every code path and the allocator once, untimed.
        replay_raw(&keys, &value);
        replay_vorte(&keys, &value, false).await;
        replay_vorte(&keys, &value, true).await;
        for round in 0..ROUNDS {
            // The order rotates, so that no variant always runs first.
            let mut times = [(Duration::ZERO, 0); 3];
            for turn in 0..3 {
                let variant = (round + turn) % 3;
                times[variant] = match variant {
                    0 => replay_raw(&keys, &value),
                    1 => replay_vorte(&keys, &value, false).await,
                    _ => replay_vorte(&keys, &value, true).await,
                };
            }
            let [(raw, raw_hits), (vorte, vorte_hits), (owned, owned_hits)] = times;
            let ratio = vorte.as_secs_f64() / raw.as_secs_f64();
            let owned_ratio = owned.as_secs_f64() / raw.as_secs_f64();
            ratios.push(ratio);
            owned_ratios.push(owned_ratio);
            let hits = |n: usize| 100.0 * n as f64 / keys.len() as f64;
            println!(
                "l1 miss+insert round {round}: raw {:.1} ns/request ({:.1} % hits), vorte set {:.1} ns ({:.1} %) {ratio:.2}x, vorte set_owned {:.1} ns ({:.1} %) {owned_ratio:.2}x",
                per_request(raw),
                hits(raw_hits),
                per_request(vorte),
                hits(vorte_hits),
                per_request(owned),
                hits(owned_hits),
            );
        }
    });
    for (name, ratios) in [("set", &mut ratios), ("set_owned", &mut owned_ratios)] {
        ratios.sort_by(f64::total_cmp);
        println!(
            "l1 miss+insert, vorte {name}: {} requests, capacity {CAPACITY}, median of {ROUNDS} per-round ratios {:.2}x (min {:.2}x, max {:.2}x)",
            keys.len(),
            ratios[ROUNDS / 2],
            ratios[0],
            ratios[ROUNDS - 1]
        );
    }
}
