//! P6: 10,000 concurrent misses on one key, against quick_cache's and moka's own single-flight,
//! in the same run. Each iteration uses a fresh key; the loader sleeps 1 ms. Time is until every
//! task has its value. Results: `docs/performance.md`.
//!
//! After the criterion group, `WAITER_ROUNDS` interleaved rounds measure the waiters' latency:
//! each task records the time from the iteration's start until it has its value, and the p99 of
//! the 10,000 is taken, for quick_cache's placeholder guard (`get_value_or_guard_async`, then
//! `guard.insert`), `cache.get_or_set` and a `#[cached]` fn. Each round prints both vorte ratios
//! to the guard; the median of the per-round ratios closes.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vorte_cache::{Cache, cached};

const TASKS: usize = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

async fn load(calls: Arc<AtomicUsize>) -> u64 {
    calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1)).await;
    7
}

fn p6(c: &mut Criterion) {
    let rt = runtime();
    let cache = rt.block_on(async {
        Cache::from_config(&Default::default())
            .await
            .expect("cache")
    });
    let qc: Arc<quick_cache::sync::Cache<String, u64>> =
        Arc::new(quick_cache::sync::Cache::new(100_000));
    let moka: moka::future::Cache<String, u64> = moka::future::Cache::new(100_000);
    let next_key = AtomicU64::new(0);
    let calls = Arc::new(AtomicUsize::new(0));

    let mut g = c.benchmark_group("p6_single_flight_10k");
    g.sample_size(10);
    // Each iteration: a fresh key, 10,000 tasks calling `call(key, loader_calls)`, timed until all
    // have their value; the loader must have run exactly once.
    let mut bench =
        |name: &str, call: &dyn Fn(String, Arc<AtomicUsize>) -> tokio::task::JoinHandle<()>| {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let key = format!("k{}", next_key.fetch_add(1, Ordering::Relaxed));
                            calls.store(0, Ordering::Relaxed);
                            let start = Instant::now();
                            let tasks: Vec<_> = (0..TASKS)
                                .map(|_| call(key.clone(), calls.clone()))
                                .collect();
                            for t in tasks {
                                let _ = t.await;
                            }
                            total += start.elapsed();
                            assert_eq!(calls.load(Ordering::Relaxed), 1, "{name}");
                        }
                        total
                    })
                })
            });
        };
    bench("quick_cache_get_or_insert_async", &|key, calls| {
        let qc = qc.clone();
        tokio::spawn(async move {
            let _ = qc
                .get_or_insert_async(&key, async { Ok::<_, ()>(load(calls).await) })
                .await;
        })
    });
    bench("moka_get_with", &|key, calls| {
        let moka = moka.clone();
        tokio::spawn(async move {
            moka.get_with(key, load(calls)).await;
        })
    });
    bench("vorte_get_or_set", &|key, calls| {
        let cache = cache.clone();
        tokio::spawn(async move {
            let _ = cache
                .get_or_set(&key, || async {
                    Ok::<_, std::io::Error>(load(calls).await)
                })
                .await;
        })
    });
    g.finish();
}

/// The loader as a `#[cached]` fn on the global cache (L1 only); `round` makes each iteration's
/// key fresh.
#[cached(ttl = 300, key = "sf:{round}")]
async fn cached_load(round: u64, calls: Arc<AtomicUsize>) -> u64 {
    load(calls).await
}

const WAITER_ROUNDS: usize = 7;
const ITERATIONS_PER_ROUND: usize = 5;

/// The p99, in µs, of each task's latency over `ITERATIONS_PER_ROUND` iterations of 10,000 tasks.
fn waiters_p99(
    rt: &tokio::runtime::Runtime,
    name: &str,
    next_key: &AtomicU64,
    call: &dyn Fn(u64, Arc<AtomicUsize>) -> tokio::task::JoinHandle<()>,
) -> f64 {
    let mut latencies = Vec::with_capacity(TASKS * ITERATIONS_PER_ROUND);
    rt.block_on(async {
        for _ in 0..ITERATIONS_PER_ROUND {
            let key = next_key.fetch_add(1, Ordering::Relaxed);
            let calls = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS).map(|_| call(key, calls.clone())).collect();
            let mut done = Vec::with_capacity(TASKS);
            for t in tasks {
                let _ = t.await;
                done.push(start.elapsed());
            }
            assert_eq!(calls.load(Ordering::Relaxed), 1, "{name}");
            latencies.extend(done);
        }
    });
    latencies.sort_unstable();
    latencies[latencies.len() * 99 / 100].as_secs_f64() * 1e6
}

fn p6_waiters(_: &mut Criterion) {
    let rt = runtime();
    let cache = rt.block_on(async {
        Cache::from_config(&Default::default())
            .await
            .expect("cache")
    });
    let qc: Arc<quick_cache::sync::Cache<String, u64>> =
        Arc::new(quick_cache::sync::Cache::new(100_000));
    let next_key = AtomicU64::new(1_000_000);
    let guard = |key: u64, calls: Arc<AtomicUsize>| {
        let qc = qc.clone();
        tokio::spawn(async move {
            let key = format!("g{key}");
            if let Err(guard) = qc.get_value_or_guard_async(&key).await {
                let _ = guard.insert(load(calls).await);
            }
        })
    };
    let get_or_set = |key: u64, calls: Arc<AtomicUsize>| {
        let cache = cache.clone();
        tokio::spawn(async move {
            let key = format!("s{key}");
            let _ = cache
                .get_or_set(&key, || async {
                    Ok::<_, std::io::Error>(load(calls).await)
                })
                .await;
        })
    };
    let cached_fn = |key: u64, calls: Arc<AtomicUsize>| {
        tokio::spawn(async move {
            cached_load(key, calls).await;
        })
    };
    // The size of each task's future: a task spawns (and moves) it.
    let calls = Arc::new(AtomicUsize::new(0));
    println!(
        "p6 future sizes: #[cached] fn {} B, get_or_set {} B",
        std::mem::size_of_val(&cached_load(0, calls.clone())),
        std::mem::size_of_val(&cache.get_or_set("k", || async {
            Ok::<_, std::io::Error>(load(calls.clone()).await)
        }))
    );
    let (mut get_or_set_ratios, mut cached_ratios) = (Vec::new(), Vec::new());
    for round in 0..WAITER_ROUNDS {
        // Each variant takes the first turn in turn.
        let mut p99 = [0.0; 3];
        for turn in 0..3 {
            let variant = (round + turn) % 3;
            p99[variant] = match variant {
                0 => waiters_p99(&rt, "guard", &next_key, &guard),
                1 => waiters_p99(&rt, "get_or_set", &next_key, &get_or_set),
                _ => waiters_p99(&rt, "#[cached]", &next_key, &cached_fn),
            };
        }
        let [guard_p99, get_or_set_p99, cached_p99] = p99;
        get_or_set_ratios.push(get_or_set_p99 / guard_p99);
        cached_ratios.push(cached_p99 / guard_p99);
        println!(
            "p6 waiters p99 round {round}: quick_cache guard {guard_p99:.0} µs, get_or_set {get_or_set_p99:.0} µs ({:.2}x), #[cached] {cached_p99:.0} µs ({:.2}x)",
            get_or_set_p99 / guard_p99,
            cached_p99 / guard_p99
        );
    }
    for (name, ratios) in [
        ("get_or_set", &mut get_or_set_ratios),
        ("#[cached]", &mut cached_ratios),
    ] {
        ratios.sort_by(f64::total_cmp);
        println!(
            "p6 waiters p99, {name} / quick_cache guard: median of {WAITER_ROUNDS} per-round ratios {:.2}x (min {:.2}x, max {:.2}x)",
            ratios[WAITER_ROUNDS / 2],
            ratios[0],
            ratios[WAITER_ROUNDS - 1]
        );
    }
}

criterion_group!(benches, p6, p6_waiters);
criterion_main!(benches);
