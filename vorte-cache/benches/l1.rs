//! P1 and P2: the cost of an L1 hit, against the raw peers in the same run.
//!
//! - `p1_l1_hit/*`: `cache.get::<T>` against a raw quick_cache `get` of the same value plus the
//!   same clone (target ≤ 1.5×), for a struct (cloned) and for `Arc<T>` (an `Arc` clone); moka's
//!   sync `get` for reference.
//! - `p2_cached_hit/*`: a `#[cached]` fn hit against the hand-written `Cache::global().get` with the
//!   same key construction (target ≤ 1.15×).
//! - `p2_cached_crate/*`: a `#[cached]` fn hit (a `u64` argument, the key `user:{id}`, a struct
//!   cloned on hit) against the same fn under the `cached` crate's `#[cached]` (target ≤ 1×).
//!   After the criterion group, `ROUNDS` interleaved rounds time `ROUND_CALLS` calls of each and
//!   print the per-round ratios and their median, the figure to read on a machine whose speed
//!   drifts between back-to-back variants.
//!
//! Every variant runs its loop inside one future on a current-thread runtime, so the async
//! machinery is measured and `block_on` is paid once per batch, not per call.
//!
//! Results: `docs/performance.md`.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vorte_cache::{Cache, cached};

mod common;

use common::{User, cached_crate_user, cached_user_u64, user};

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

/// Times `iters` calls of `f` inside one future.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            f().await;
        }
        start.elapsed()
    })
}

fn p1(c: &mut Criterion) {
    let rt = runtime();
    let cache = rt.block_on(async {
        let cache = Cache::from_config(&Default::default())
            .await
            .expect("cache");
        cache.set("user:1", &user(42)).await.expect("set");
        cache.set("user:arc", &user(42)).await.expect("set");
        // Warm the memo of each type read below.
        cache.get::<User>("user:1").await.expect("get");
        cache.get::<Arc<User>>("user:arc").await.expect("get");
        cache
    });
    let raw: quick_cache::sync::Cache<String, User> = quick_cache::sync::Cache::new(10_000);
    raw.insert("user:1".to_string(), user(42));
    let raw_arc: quick_cache::sync::Cache<String, Arc<User>> =
        quick_cache::sync::Cache::new(10_000);
    raw_arc.insert("user:arc".to_string(), Arc::new(user(42)));
    let moka: moka::sync::Cache<String, User> = moka::sync::Cache::new(10_000);
    moka.insert("user:1".to_string(), user(42));

    let mut g = c.benchmark_group("p1_l1_hit");
    g.bench_function("raw_quick_cache_clone", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(raw.get(black_box("user:1")));
            })
        })
    });
    g.bench_function("vorte_get", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(cache.get::<User>(black_box("user:1")).await.ok());
            })
        })
    });
    g.bench_function("moka_sync_get", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(moka.get(black_box("user:1")));
            })
        })
    });
    g.bench_function("raw_quick_cache_arc", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(raw_arc.get(black_box("user:arc")));
            })
        })
    });
    g.bench_function("vorte_get_arc", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(cache.get::<Arc<User>>(black_box("user:arc")).await.ok());
            })
        })
    });
    g.finish();
}

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

const ROUNDS: usize = 9;
const ROUND_CALLS: u64 = 200_000;

fn p2_cached_crate(c: &mut Criterion) {
    let rt = runtime();
    rt.block_on(async {
        assert_eq!(cached_user_u64(7).await.id, 7);
        assert_eq!(cached_crate_user(7).await.id, 7);
    });
    let mut g = c.benchmark_group("p2_cached_crate");
    g.bench_function("cached_crate", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(cached_crate_user(black_box(7)).await);
            })
        })
    });
    g.bench_function("vorte_cached", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(cached_user_u64(black_box(7)).await);
            })
        })
    });
    g.finish();

    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let crate_first = round % 2 == 0;
        let mut crate_time = Duration::ZERO;
        let mut vorte_time = Duration::ZERO;
        for turn in 0..2 {
            if (turn == 0) == crate_first {
                crate_time = timed(&rt, ROUND_CALLS, || async {
                    black_box(cached_crate_user(black_box(7)).await);
                });
            } else {
                vorte_time = timed(&rt, ROUND_CALLS, || async {
                    black_box(cached_user_u64(black_box(7)).await);
                });
            }
        }
        let ratio = vorte_time.as_secs_f64() / crate_time.as_secs_f64();
        ratios.push(ratio);
        println!(
            "p2 vs cached crate round {round}: cached crate {:.1} ns, vorte {:.1} ns, ratio {ratio:.2}x",
            crate_time.as_nanos() as f64 / ROUND_CALLS as f64,
            vorte_time.as_nanos() as f64 / ROUND_CALLS as f64,
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "p2 vs cached crate: median of {ROUNDS} per-round ratios {:.2}x (min {:.2}x, max {:.2}x)",
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1]
    );
}

fn p2(c: &mut Criterion) {
    let rt = runtime();
    rt.block_on(async {
        cached_user(7).await; // fills the global cache under "user:7"
        assert_eq!(hand_written_user(7).await.id, 7);
    });
    let mut g = c.benchmark_group("p2_cached_hit");
    g.bench_function("hand_written_get", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(hand_written_user(black_box(7)).await);
            })
        })
    });
    g.bench_function("cached_fn", |b| {
        b.iter_custom(|n| {
            timed(&rt, n, || async {
                black_box(cached_user(black_box(7)).await);
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = p1, p2, p2_cached_crate
}
criterion_main!(benches);
