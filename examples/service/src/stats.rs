//! `GET /cache/stats`: the cache's counters as JSON.
//!
//! The library's `CacheStats` is not `Serialize`, so the figures this service shows are copied
//! into a struct of its own. Kept in this one file so that it can be replaced by the shared stats
//! route of `vorte-cache-axum` when that exists.

use axum::Json;
use serde::Serialize;
use vorte_cache::Cache;

/// The body of `GET /cache/stats`.
#[derive(Debug, Serialize)]
pub(crate) struct StatsBody {
    /// Hits over reads since start, in `0..=1`.
    hit_rate: f64,
    /// Hits of all layers.
    hits: u64,
    /// Reads that no layer answered.
    misses: u64,
    /// Loads run: `#[cached]` bodies and `get_or_set` loaders.
    loads: u64,
    /// Loads that failed (a `#[cached]` body's `Err`, a loader's error).
    load_failures: u64,
    /// One entry per enabled layer, L1 first.
    layers: Vec<LayerBody>,
    /// The invalidation bus, when there is one (a Redis layer).
    bus: Option<BusBody>,
}

/// One layer's counters.
#[derive(Debug, Serialize)]
struct LayerBody {
    /// `"l1"` … `"l4"`.
    layer: &'static str,
    /// As in the configuration: `"memory"`, `"redis"`, `"file"`, …
    backend: &'static str,
    hits: u64,
    misses: u64,
    /// Calls to the layer that failed or timed out and were skipped.
    errors: u64,
}

/// The bus's counters.
#[derive(Debug, Serialize)]
struct BusBody {
    published: u64,
    publish_dropped: u64,
    gaps: u64,
    receiver_errors: u64,
}

/// `GET /cache/stats`. Counters only: no server is asked, so it is cheap to poll.
pub(crate) async fn cache_stats() -> Json<StatsBody> {
    let cache = Cache::global();
    let stats = cache.stats();
    Json(StatsBody {
        hit_rate: stats.hit_rate(),
        hits: stats.l1_hits + stats.l2_hits + stats.l3_hits + stats.l4_hits,
        misses: stats.misses,
        loads: stats.loads.runs,
        load_failures: stats.loads.failures,
        layers: stats
            .layers
            .iter()
            .map(|l| LayerBody {
                layer: l.layer.name(),
                backend: l.backend,
                hits: l.hits,
                misses: l.misses,
                errors: l.errors,
            })
            .collect(),
        bus: cache.bus_stats().map(|b| BusBody {
            published: b.published,
            publish_dropped: b.publish_dropped,
            gaps: b.gaps,
            receiver_errors: b.receiver_errors,
        }),
    })
}
