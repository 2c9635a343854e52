//! P6: 10,000 concurrent misses on one key, against quick_cache's and moka's own single-flight,
//! in the same run. Each iteration uses a fresh key; the loader sleeps 1 ms. Time is until every
//! task has its value. Results: `docs/performance.md`.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vorte_cache::Cache;

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

criterion_group!(benches, p6);
criterion_main!(benches);
