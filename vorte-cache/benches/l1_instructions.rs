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
#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::hint::black_box;
use std::sync::Arc;

use vorte_cache::{Cache, cached};

mod common;

use common::{User, user};

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
        let raw: quick_cache::sync::Cache<String, User> = quick_cache::sync::Cache::new(10_000);
        raw.insert("user:1".into(), user(42));
        let raw_arc: quick_cache::sync::Cache<String, Arc<User>> =
            quick_cache::sync::Cache::new(10_000);
        raw_arc.insert("user:arc".into(), Arc::new(user(42)));
        for _ in 0..n {
            match variant.as_str() {
                "raw_quick_cache" => drop(black_box(raw.get(black_box("user:1")))),
                "vorte_get" => drop(black_box(cache.get::<User>(black_box("user:1")).await)),
                "raw_quick_cache_arc" => drop(black_box(raw_arc.get(black_box("user:arc")))),
                "vorte_get_arc" => drop(black_box(
                    cache.get::<Arc<User>>(black_box("user:arc")).await,
                )),
                "hand_written" => drop(black_box(hand_written_user(black_box(7)).await)),
                "cached_fn" => drop(black_box(cached_user(black_box(7)).await)),
                other => panic!("unknown variant {other}"),
            }
        }
    });
}
