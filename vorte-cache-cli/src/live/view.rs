//! What `stats` and `top` show, as plain data: one [`SourceView`] per source (this process's own
//! cache, or a service's `/stats`), read from the stats JSON that both speak, so a local cache and
//! a remote service go through the same code (`docs/cli.md#stats`).

use serde::{Deserialize, Serialize};

use crate::probe::ProbeView;

/// A latency histogram as the stats JSON carries it: only what is shown.
#[derive(Debug, Clone, Default, Deserialize)]
struct LatencyJson {
    #[serde(default)]
    count: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
struct CircuitJson {
    name: String,
    state: String,
}

#[derive(Debug, Clone, Deserialize)]
struct LayerJson {
    layer: String,
    backend: String,
    #[serde(default)]
    hits: u64,
    #[serde(default)]
    misses: u64,
    #[serde(default)]
    errors: u64,
    #[serde(default)]
    circuits: Vec<CircuitJson>,
    #[serde(default)]
    latency: LatencyJson,
    entries: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct BusJson {
    #[serde(default)]
    published: u64,
    #[serde(default)]
    gaps: u64,
    #[serde(default)]
    receiver_errors: u64,
    #[serde(default)]
    suspensions: u64,
}

/// The part of `CacheStats`' JSON (`vorte_cache::CacheStats`, served by `vorte-cache-axum`'s
/// `/stats`) that the live views show. Unknown fields are ignored, so a newer service still reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StatsJson {
    #[serde(default)]
    misses: u64,
    layers: Vec<LayerJson>,
    #[serde(default)]
    invalidations_received: u64,
    #[serde(default)]
    bus_lag: LatencyJson,
    bus: Option<BusJson>,
}

/// A circuit breaker's state, by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CircuitView {
    pub(crate) name: String,
    pub(crate) state: String,
}

/// One layer of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LayerView {
    pub(crate) layer: String,
    pub(crate) backend: String,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    /// Hits over the reads that reached this layer; `None` before any.
    pub(crate) hit_rate: Option<f64>,
    pub(crate) errors: u64,
    /// Calls to the layer's store, and their median and 99th percentile since the source started
    /// (bucket bounds: an over-estimate by at most the bucket's width).
    pub(crate) calls: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) circuits: Vec<CircuitView>,
    /// Entries held (from a usage scan; L1's own count otherwise).
    pub(crate) keys: Option<u64>,
    /// Bytes held, from a usage scan.
    pub(crate) bytes: Option<u64>,
    /// This process's probe of the layer (local source only; none for L1, which is memory).
    pub(crate) probe: Option<ProbeView>,
}

/// The bus as one source sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct BusView {
    /// Invalidations read from other processes.
    pub(crate) received: u64,
    pub(crate) published: u64,
    pub(crate) lag_p50_ms: Option<f64>,
    pub(crate) lag_p99_ms: Option<f64>,
    pub(crate) gaps: u64,
    pub(crate) receiver_errors: u64,
    pub(crate) suspensions: u64,
}

/// Everything one source says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SourceView {
    /// `this process`, a service's URL, or `all services`.
    pub(crate) source: String,
    /// Why the source could not be read (the rest is then empty).
    pub(crate) error: Option<String>,
    pub(crate) hits: u64,
    pub(crate) reads: u64,
    /// Hits over reads, over every layer; `None` before any read.
    pub(crate) hit_rate: Option<f64>,
    pub(crate) layers: Vec<LayerView>,
    /// `None` without a bus.
    pub(crate) bus: Option<BusView>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl SourceView {
    /// A source that could not be read.
    pub(crate) fn failed(source: &str, error: String) -> SourceView {
        SourceView {
            source: source.to_owned(),
            error: Some(error),
            hits: 0,
            reads: 0,
            hit_rate: None,
            layers: Vec::new(),
            bus: None,
        }
    }

    /// The view of a stats JSON.
    pub(crate) fn from_stats(source: &str, stats: StatsJson) -> SourceView {
        let layers: Vec<LayerView> = stats
            .layers
            .into_iter()
            .map(|l| LayerView {
                hit_rate: ratio(l.hits, l.hits + l.misses),
                keys: l.entries,
                layer: l.layer,
                backend: l.backend,
                hits: l.hits,
                misses: l.misses,
                errors: l.errors,
                calls: l.latency.count,
                p50_ms: l.latency.p50_ms,
                p99_ms: l.latency.p99_ms,
                circuits: l
                    .circuits
                    .into_iter()
                    .map(|c| CircuitView {
                        name: c.name,
                        state: c.state,
                    })
                    .collect(),
                bytes: None,
                probe: None,
            })
            .collect();
        let hits: u64 = layers.iter().map(|l| l.hits).sum();
        let reads = hits + stats.misses;
        SourceView {
            source: source.to_owned(),
            error: None,
            hits,
            reads,
            hit_rate: ratio(hits, reads),
            layers,
            bus: stats.bus.map(|b| BusView {
                received: stats.invalidations_received,
                published: b.published,
                lag_p50_ms: stats.bus_lag.p50_ms,
                lag_p99_ms: stats.bus_lag.p99_ms,
                gaps: b.gaps,
                receiver_errors: b.receiver_errors,
                suspensions: b.suspensions,
            }),
        }
    }

    /// The sum of several services: hits, misses, errors and calls add up, and the hit rates are
    /// those of the sums (not an average of rates, which would weigh an idle instance like a busy
    /// one). Latencies are each layer's worst p50 and p99 among the services; circuits are listed
    /// per service.
    pub(crate) fn total(source: &str, services: &[SourceView]) -> SourceView {
        let mut layers: Vec<LayerView> = Vec::new();
        let mut bus: Option<BusView> = None;
        let read = services.iter().filter(|s| s.error.is_none());
        for service in read {
            for l in &service.layers {
                let Some(sum) = layers.iter_mut().find(|s| s.layer == l.layer) else {
                    let mut first = l.clone();
                    first.probe = None;
                    layers.push(first);
                    continue;
                };
                sum.hits += l.hits;
                sum.misses += l.misses;
                sum.errors += l.errors;
                sum.calls += l.calls;
                sum.p50_ms = worst(sum.p50_ms, l.p50_ms);
                sum.p99_ms = worst(sum.p99_ms, l.p99_ms);
                sum.circuits.extend(l.circuits.iter().cloned());
                sum.keys = add(sum.keys, l.keys);
                sum.bytes = add(sum.bytes, l.bytes);
            }
            if let Some(b) = &service.bus {
                let sum = bus.get_or_insert_default();
                sum.received += b.received;
                sum.published += b.published;
                sum.lag_p50_ms = worst(sum.lag_p50_ms, b.lag_p50_ms);
                sum.lag_p99_ms = worst(sum.lag_p99_ms, b.lag_p99_ms);
                sum.gaps += b.gaps;
                sum.receiver_errors += b.receiver_errors;
                sum.suspensions += b.suspensions;
            }
        }
        for l in &mut layers {
            l.hit_rate = ratio(l.hits, l.hits + l.misses);
        }
        let hits = services.iter().map(|s| s.hits).sum();
        let reads = services.iter().map(|s| s.reads).sum();
        SourceView {
            source: source.to_owned(),
            error: None,
            hits,
            reads,
            hit_rate: ratio(hits, reads),
            layers,
            bus,
        }
    }
}

fn worst(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(source: &str, l1: (u64, u64), l2: (u64, u64), misses: u64) -> SourceView {
        let json = serde_json::json!({
            "misses": misses,
            "layers": [
                {"layer": "l1", "backend": "memory", "hits": l1.0, "misses": l1.1, "errors": 0,
                 "circuits": [], "latency": {"count": 0, "p50_ms": null, "p99_ms": null},
                 "entries": 5},
                {"layer": "l2", "backend": "redis", "hits": l2.0, "misses": l2.1, "errors": 1,
                 "circuits": [{"name": "l2 redis", "state": "closed", "opened": 0}],
                 "latency": {"count": l2.0 + l2.1, "p50_ms": 0.25, "p99_ms": 1.0},
                 "entries": null},
            ],
            "bus": null,
        });
        match serde_json::from_value(json) {
            Ok(stats) => SourceView::from_stats(source, stats),
            Err(e) => SourceView::failed(source, e.to_string()),
        }
    }

    #[test]
    fn a_source_reads_the_stats_json_and_the_total_is_the_rate_of_the_sums() {
        let a = service("a", (3, 2), (1, 1), 1);
        assert_eq!(a.error, None);
        assert_eq!((a.hits, a.reads), (4, 5));
        assert_eq!(a.hit_rate, Some(0.8));
        assert_eq!(a.layers[0].hit_rate, Some(0.6));
        assert_eq!(a.layers[1].circuits[0].state, "closed");
        // An idle service weighs nothing in the total's rate.
        let b = service("b", (0, 5), (0, 5), 5);
        let total = SourceView::total("all", &[a, b, SourceView::failed("c", "down".into())]);
        assert_eq!((total.hits, total.reads), (4, 10));
        assert_eq!(total.hit_rate, Some(0.4));
        assert_eq!(total.layers[1].hits, 1);
        assert_eq!(total.layers[1].misses, 6);
        assert_eq!(total.layers[1].errors, 2);
        assert_eq!(total.layers[0].keys, Some(10));
        assert_eq!(total.layers[1].circuits.len(), 2);
    }
}
