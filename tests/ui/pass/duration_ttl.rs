//! TTLs as seconds, suffixed literals and `Duration` expressions (evaluated in a `const`).
use std::time::Duration;

use vorte_cache::cached;

const TEN_MINUTES: Duration = Duration::from_secs(600);

#[cached(ttl = Duration::from_secs(3600))]
async fn hourly(id: u32) -> u32 {
    id
}

#[cached(ttl = TEN_MINUTES, negative_ttl = Duration::from_millis(500))]
async fn constant(id: u32) -> Option<u32> {
    Some(id)
}

#[cached(ttl = 5m, negative_ttl = 250ms)]
async fn suffixed(id: u32) -> Option<u32> {
    Some(id)
}

#[cached(ttl = 2h)]
async fn hours(id: u32) -> u32 {
    id
}

fn main() {
    let _ = hourly(1);
    let _ = constant(1);
    let _ = suffixed(1);
    let _ = hours(1);
}
