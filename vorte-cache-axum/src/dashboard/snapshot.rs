//! One dashboard snapshot: what the page shows, computed on the server from two [`CacheStats`]
//! a second apart (rates and percentiles of the interval) and the latest [`CacheUsage`].

use std::time::Duration;

use serde::Serialize;
use vorte_cache::observe::{Activity, LatencyStats};
use vorte_cache::{BusStats, CacheStats, CacheUsage, CircuitState, Layer, LayerStats};

use crate::health::{HealthReport, Status};

/// How many of the latest invalidations and events a snapshot carries.
pub(crate) const ACTIVITY: usize = 20;

/// What the page receives each second.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    /// When the counters were read, ms since the Unix epoch.
    at_ms: u64,
    /// The interval the `interval` figures cover, in ms; `null` for the first snapshot.
    interval_ms: Option<u64>,
    status: Status,
    reasons: Vec<String>,
    /// Hits over reads since the cache was built.
    hit_rate: f64,
    /// Hits over reads in the interval; `null` when it had no reads.
    interval_hit_rate: Option<f64>,
    /// Cumulative: every layer's hits, the misses, the reads.
    hits: u64,
    misses: u64,
    reads: u64,
    loads: Loads,
    layers: Vec<LayerSnapshot>,
    invalidations: Invalidations,
    bus_lag: Percentiles,
    bus: Option<BusStats>,
    /// From `Cache::usage`, refreshed every few seconds; `null` until the first one answers.
    usage: Option<UsageSnapshot>,
    activity: Vec<Activity>,
}

/// Cumulative counts with the part of them that fell in the interval.
#[derive(Debug, Serialize)]
struct Counted {
    total: u64,
    interval: Option<u64>,
}

impl Counted {
    fn new(now: u64, before: Option<u64>) -> Counted {
        Counted {
            total: now,
            interval: before.map(|b| now.saturating_sub(b)),
        }
    }
}

#[derive(Debug, Serialize)]
struct Loads {
    runs: Counted,
    failures: Counted,
    fail_safe_serves: u64,
    soft_timeouts: u64,
    hard_timeouts: u64,
    early_refreshes: u64,
    late_fills: u64,
    not_modified: u64,
    time: Percentiles,
}

#[derive(Debug, Serialize)]
struct Invalidations {
    sent: Counted,
    received: Counted,
}

/// Percentiles in ms of the interval's samples and of all of them (`null` without samples).
#[derive(Debug, Serialize)]
struct Percentiles {
    interval: Option<Summary>,
    total: Summary,
}

#[derive(Debug, Serialize)]
struct Summary {
    count: u64,
    mean_ms: Option<f64>,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

impl Summary {
    fn of(h: &LatencyStats) -> Summary {
        Summary {
            count: h.count(),
            mean_ms: ms(h.mean()),
            p50_ms: ms(h.percentile(0.5)),
            p90_ms: ms(h.percentile(0.9)),
            p99_ms: ms(h.percentile(0.99)),
        }
    }
}

impl Percentiles {
    fn of(now: &LatencyStats, before: Option<&LatencyStats>) -> Percentiles {
        Percentiles {
            interval: before.map(|b| Summary::of(&now.since(b))),
            total: Summary::of(now),
        }
    }
}

#[derive(Debug, Serialize)]
struct LayerSnapshot {
    layer: Layer,
    backend: &'static str,
    hits: Counted,
    misses: Counted,
    /// This layer's hits over the reads that reached it, in the interval; `null` without reads.
    interval_hit_rate: Option<f64>,
    errors: u64,
    corrupt: u64,
    evictions: u64,
    recovery_pending: u64,
    /// L1's entry count; `null` for the other layers (see `keys`).
    entries: Option<u64>,
    /// Store call times (not for L1, whose reads are not timed).
    latency: Percentiles,
    circuits: Vec<Circuit>,
    /// From the latest usage scan; `null` before the first one.
    keys: Option<u64>,
    bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Circuit {
    name: String,
    state: CircuitState,
    opened: u64,
}

#[derive(Debug, Serialize)]
struct UsageSnapshot {
    at_ms: u64,
    total_keys: u64,
    memory_used_mb: f64,
}

fn rate(hits: u64, misses: u64) -> Option<f64> {
    let reads = hits + misses;
    (reads > 0).then(|| hits as f64 / reads as f64)
}

fn total_hits(s: &CacheStats) -> u64 {
    s.l1_hits + s.l2_hits + s.l3_hits + s.l4_hits
}

impl Snapshot {
    /// The snapshot of `now` (read at `at_ms`), with the interval since `before` when there is
    /// one.
    pub(crate) fn compute(
        at_ms: u64,
        now: &CacheStats,
        before: Option<(&CacheStats, u64)>,
        usage: Option<&(CacheUsage, u64)>,
        activity: Vec<Activity>,
        health: HealthReport,
    ) -> Snapshot {
        let prev = before.map(|(s, _)| s);
        let hits = total_hits(now);
        let interval_hit_rate = prev.and_then(|p| {
            rate(
                hits.saturating_sub(total_hits(p)),
                now.misses.saturating_sub(p.misses),
            )
        });
        let layers = now
            .layers
            .iter()
            .map(|l| layer(l, prev.and_then(|p| p.layer(l.layer)), usage))
            .collect();
        let skip = activity.len().saturating_sub(ACTIVITY);
        Snapshot {
            at_ms,
            interval_ms: before.map(|(_, at)| at_ms.saturating_sub(at)),
            status: health.status,
            reasons: health.reasons,
            hit_rate: now.hit_rate(),
            interval_hit_rate,
            hits,
            misses: now.misses,
            reads: hits + now.misses,
            loads: Loads {
                runs: Counted::new(now.loads.runs, prev.map(|p| p.loads.runs)),
                failures: Counted::new(now.loads.failures, prev.map(|p| p.loads.failures)),
                fail_safe_serves: now.loads.fail_safe_serves,
                soft_timeouts: now.loads.soft_timeouts,
                hard_timeouts: now.loads.hard_timeouts,
                early_refreshes: now.loads.early_refreshes,
                late_fills: now.loads.late_fills,
                not_modified: now.loads.not_modified,
                time: Percentiles::of(&now.loads.time, prev.map(|p| &p.loads.time)),
            },
            layers,
            invalidations: Invalidations {
                sent: Counted::new(now.invalidations, prev.map(|p| p.invalidations)),
                received: Counted::new(
                    now.invalidations_received,
                    prev.map(|p| p.invalidations_received),
                ),
            },
            bus_lag: Percentiles::of(&now.bus_lag, prev.map(|p| &p.bus_lag)),
            bus: now.bus,
            usage: usage.map(|(u, at_ms)| UsageSnapshot {
                at_ms: *at_ms,
                total_keys: u.total_keys,
                memory_used_mb: u.memory_used_mb,
            }),
            activity: activity.into_iter().skip(skip).collect(),
        }
    }
}

fn layer(
    now: &LayerStats,
    before: Option<&LayerStats>,
    usage: Option<&(CacheUsage, u64)>,
) -> LayerSnapshot {
    let held = usage.and_then(|(u, _)| u.layer(now.layer));
    LayerSnapshot {
        layer: now.layer,
        backend: now.backend,
        hits: Counted::new(now.hits, before.map(|b| b.hits)),
        misses: Counted::new(now.misses, before.map(|b| b.misses)),
        interval_hit_rate: before.and_then(|b| {
            rate(
                now.hits.saturating_sub(b.hits),
                now.misses.saturating_sub(b.misses),
            )
        }),
        errors: now.errors,
        corrupt: now.corrupt,
        evictions: now.evictions,
        recovery_pending: now.recovery_pending,
        entries: now.entries,
        latency: Percentiles::of(&now.latency, before.map(|b| &b.latency)),
        circuits: now
            .circuits
            .iter()
            .map(|c| Circuit {
                name: c.name.clone(),
                state: c.state,
                opened: c.opened,
            })
            .collect(),
        keys: held.map(|h| h.keys),
        bytes: held.map(|h| h.bytes),
    }
}
