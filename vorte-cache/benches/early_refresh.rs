//! P8: one hot key, 64 tasks calling it back to back, TTL 10 s, a 100 ms loader, for a span
//! (5 minutes by default; `P8_SECS` sets it), once with eager refresh, once with XFetch and once
//! with a plain TTL, interleaved in the same run. Each variant reports its loads, the calls that
//! waited for a load (longer than 50 ms), those calls per TTL window, and the loads per TTL window.
//!
//! ```text
//! cargo bench -p vorte-cache --bench early_refresh
//! ```
//!
//! Results: `docs/performance.md#p8--early-refresh`.
#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vorte_cache::Cache;

const TASKS: usize = 64;
const TTL: Duration = Duration::from_secs(10);
const LOAD: Duration = Duration::from_millis(100);
/// A call that took longer than this waited for a load.
const WAITED: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug)]
enum Variant {
    Plain,
    Eager,
    XFetch,
}

async fn run(variant: Variant, span: Duration) -> (usize, u64, u64) {
    let cache = Cache::from_config(&Default::default())
        .await
        .expect("cache");
    let loads = Arc::new(AtomicUsize::new(0));
    let waited = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (cache, loads, waited, calls) =
                (cache.clone(), loads.clone(), waited.clone(), calls.clone());
            tokio::spawn(async move {
                while started.elapsed() < span {
                    let loads = loads.clone();
                    let call = cache
                        .get_or_set("hot", move || async move {
                            tokio::time::sleep(LOAD).await;
                            Ok::<_, std::io::Error>(loads.fetch_add(1, Ordering::Relaxed))
                        })
                        .ttl(TTL);
                    let call = match variant {
                        Variant::Plain => call,
                        Variant::Eager => call.early_refresh(0.9),
                        Variant::XFetch => call.xfetch(1.0),
                    };
                    let t = Instant::now();
                    let _ = call.await.expect("served");
                    // Only after warm-up (the first load, which every caller waits for).
                    if t.elapsed() > WAITED && started.elapsed() > LOAD * 3 {
                        waited.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (
        loads.load(Ordering::Relaxed),
        waited.load(Ordering::Relaxed),
        calls.load(Ordering::Relaxed),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let span = Duration::from_secs(
        std::env::var("P8_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let windows = span.as_secs_f64() / TTL.as_secs_f64();
    println!(
        "P8: {TASKS} tasks, TTL {TTL:?}, loader {LOAD:?}, {span:?} per variant ({windows:.0} TTL windows)"
    );
    println!(
        "| variant | calls | loads | loads per TTL window | calls that waited for a load | waited per window |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for variant in [Variant::Plain, Variant::Eager, Variant::XFetch] {
        let (loads, waited, calls) = rt.block_on(run(variant, span));
        println!(
            "| {variant:?} | {calls} | {loads} | {:.2} | {waited} | {:.2} |",
            loads as f64 / windows,
            waited as f64 / windows
        );
    }
}
