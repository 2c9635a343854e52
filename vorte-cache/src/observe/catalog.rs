//! The metrics both adapters export, named once: what each is and how it is read from a
//! [`CacheStats`] (`docs/observability.md#metrics`).

use crate::stats::{CacheStats, CircuitState};

/// Whether a metric only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

/// One metric read from the stats.
#[derive(Debug)]
pub(crate) struct Metric {
    /// The Prometheus-style name; the OpenTelemetry name is derived from it ([`otel_name`]).
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        help,
    }
}

/// Every metric read from the stats. Durations are histograms pushed as they are measured, not
/// read from here.
pub(crate) const METRICS: &[Metric] = &[
    counter("vorte_cache_hits_total", "Reads answered, per layer."),
    counter(
        "vorte_cache_layer_misses_total",
        "Reads that reached a layer and found nothing live in it.",
    ),
    counter(
        "vorte_cache_misses_total",
        "Reads that found nothing live in any layer.",
    ),
    counter(
        "vorte_cache_errors_total",
        "Calls to a layer that failed or timed out and were skipped.",
    ),
    counter(
        "vorte_cache_corrupt_total",
        "Entries found corrupt, removed and treated as misses.",
    ),
    counter(
        "vorte_cache_evictions_total",
        "Entries evicted to make room (L1).",
    ),
    counter("vorte_cache_loads_total", "Loaders run."),
    counter(
        "vorte_cache_load_failures_total",
        "Loaders that failed or were cut by a hard timeout.",
    ),
    counter(
        "vorte_cache_load_timeouts_total",
        "Loads past a timeout, by kind: soft, hard, or a wait for another caller's load.",
    ),
    counter(
        "vorte_cache_fail_safe_serves_total",
        "Calls answered with a stale value because the load failed or timed out.",
    ),
    counter(
        "vorte_cache_invalidations_total",
        "Invalidations this cache made: deletes, tags, flushes.",
    ),
    counter(
        "vorte_cache_invalidations_received_total",
        "Other processes' invalidations applied from the bus.",
    ),
    counter(
        "vorte_cache_circuit_opened_total",
        "Times a circuit breaker opened.",
    ),
    counter(
        "vorte_cache_recovered_total",
        "Owed invalidations a retry delivered to a layer that came back.",
    ),
    counter(
        "vorte_cache_bus_published_total",
        "Messages appended to the bus.",
    ),
    counter(
        "vorte_cache_bus_gaps_total",
        "Times a receiver found bus messages lost and dropped the local state.",
    ),
    counter(
        "vorte_cache_bus_suspensions_total",
        "Times the local state was suspended because the bus failed or went silent.",
    ),
    gauge(
        "vorte_cache_circuit_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ),
    gauge(
        "vorte_cache_recovery_pending",
        "Invalidations a layer still owes (keys, or 1 for a flush).",
    ),
    gauge(
        "vorte_cache_entries",
        "Entries held, where known without a scan (L1).",
    ),
    gauge(
        "vorte_cache_keys",
        "Keys a layer holds, from the last usage scan (off unless asked for).",
    ),
    gauge(
        "vorte_cache_bytes",
        "Bytes a layer holds, from the last usage scan (off unless asked for).",
    ),
];

/// The samples of a usage scan: keys and bytes per layer.
pub(crate) fn usage_samples(
    usage: &crate::CacheUsage,
    mut each: impl FnMut(&'static str, f64, &Labels),
) {
    for l in &usage.layers {
        let layer = vec![("layer", l.layer.name().to_owned())];
        each("vorte_cache_keys", l.keys as f64, &layer);
        each("vorte_cache_bytes", l.bytes as f64, &layer);
    }
}

/// The OpenTelemetry name of a metric: dots, and no `_total` (the exporter adds its suffixes).
#[cfg(feature = "opentelemetry")]
pub(crate) fn otel_name(name: &str) -> String {
    name.trim_end_matches("_total").replace('_', ".")
}

/// Labels of one sample: `(name, value)`.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// Every sample of `stats`: `(metric name, value, labels)`.
pub(crate) fn samples(stats: &CacheStats, mut each: impl FnMut(&'static str, f64, &Labels)) {
    let none = Labels::new();
    for l in &stats.layers {
        let layer = vec![("layer", l.layer.name().to_owned())];
        each("vorte_cache_hits_total", l.hits as f64, &layer);
        each("vorte_cache_layer_misses_total", l.misses as f64, &layer);
        each("vorte_cache_errors_total", l.errors as f64, &layer);
        each("vorte_cache_corrupt_total", l.corrupt as f64, &layer);
        each("vorte_cache_evictions_total", l.evictions as f64, &layer);
        each("vorte_cache_recovered_total", l.recovered as f64, &layer);
        each(
            "vorte_cache_recovery_pending",
            l.recovery_pending as f64,
            &layer,
        );
        if let Some(entries) = l.entries {
            each("vorte_cache_entries", entries as f64, &layer);
        }
        for c in &l.circuits {
            let labels = vec![
                ("layer", l.layer.name().to_owned()),
                ("circuit", c.name.clone()),
            ];
            let state = match c.state {
                CircuitState::Closed => 0.0,
                CircuitState::HalfOpen => 1.0,
                CircuitState::Open => 2.0,
            };
            each("vorte_cache_circuit_state", state, &labels);
            each("vorte_cache_circuit_opened_total", c.opened as f64, &labels);
        }
    }
    each("vorte_cache_misses_total", stats.misses as f64, &none);
    let loads = &stats.loads;
    each("vorte_cache_loads_total", loads.runs as f64, &none);
    each(
        "vorte_cache_load_failures_total",
        loads.failures as f64,
        &none,
    );
    for (kind, n) in [
        ("soft", loads.soft_timeouts),
        ("hard", loads.hard_timeouts),
        ("wait", stats.load_wait_timeouts),
    ] {
        each(
            "vorte_cache_load_timeouts_total",
            n as f64,
            &vec![("kind", kind.to_owned())],
        );
    }
    each(
        "vorte_cache_fail_safe_serves_total",
        loads.fail_safe_serves as f64,
        &none,
    );
    each(
        "vorte_cache_invalidations_total",
        stats.invalidations as f64,
        &none,
    );
    each(
        "vorte_cache_invalidations_received_total",
        stats.invalidations_received as f64,
        &none,
    );
    if let Some(bus) = &stats.bus {
        each(
            "vorte_cache_bus_published_total",
            bus.published as f64,
            &none,
        );
        each("vorte_cache_bus_gaps_total", bus.gaps as f64, &none);
        each(
            "vorte_cache_bus_suspensions_total",
            bus.suspensions as f64,
            &none,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample belongs to a metric of the catalog, and every metric has a sample on a cache
    /// with a bus and a breaker (so neither list can drift from the other).
    #[tokio::test]
    async fn every_sample_is_in_the_catalog() {
        let cache = crate::Cache::from_config(&Default::default())
            .await
            .expect("cache");
        let mut seen = std::collections::BTreeSet::new();
        samples(&cache.stats(), |name, _, _| {
            seen.insert(name);
        });
        for name in &seen {
            assert!(
                METRICS.iter().any(|m| m.name == *name),
                "{name} not in METRICS"
            );
        }
        // L1 alone: no circuits, no bus.
        let absent: Vec<_> = METRICS
            .iter()
            .map(|m| m.name)
            .filter(|n| !seen.contains(n))
            .collect();
        assert_eq!(
            absent,
            [
                "vorte_cache_circuit_opened_total",
                "vorte_cache_bus_published_total",
                "vorte_cache_bus_gaps_total",
                "vorte_cache_bus_suspensions_total",
                "vorte_cache_circuit_state",
                "vorte_cache_keys",
                "vorte_cache_bytes",
            ]
        );
    }
}
