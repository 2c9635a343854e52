//! The `metrics` facade adapter (feature `metrics`): whatever recorder the application installed
//! (a Prometheus exporter, say) gets the cache's metrics (`docs/observability.md#metrics`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
//! use std::sync::Arc;
//! use vorte_cache::observe::metrics::MetricsExporter;
//!
//! let cache = vorte_cache::Cache::builder(&Default::default())
//!     .observe(Arc::new(MetricsExporter::new()))
//!     .build()
//!     .await?;
//! # let _ = cache; Ok(()) }
//! ```

use std::time::Duration;

use metrics::Label;

use super::catalog::{self, Kind};
use super::{Activity, Observe, StatsSource, StoreCall};

/// Sends the cache's metrics to the `metrics` facade: the counters and gauges of
/// [`CacheStats`](crate::CacheStats) every [`every`](Self::every) (1 s by default, from a task
/// that ends with the cache), and the durations as histograms as they are measured, in seconds:
/// `vorte_cache_store_call_seconds{layer, backend, operation, outcome}`,
/// `vorte_cache_load_seconds{outcome}` and `vorte_cache_bus_lag_seconds{kind}`.
///
/// Keys and bytes per layer (`vorte_cache_keys`, `vorte_cache_bytes`) need a scan of every store
/// ([`Cache::usage`](crate::Cache::usage)): sent only with [`usage_every`](Self::usage_every).
#[derive(Debug, Clone)]
pub struct MetricsExporter {
    every: Duration,
    usage_every: Option<Duration>,
}

impl Default for MetricsExporter {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsExporter {
    /// Counters and gauges sent every second.
    pub fn new() -> Self {
        MetricsExporter {
            every: Duration::from_secs(1),
            usage_every: None,
        }
    }

    /// How often the counters and gauges are read and sent.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(10));
        self
    }

    /// Also scans every store this often for its keys and bytes (off by default: a scan lists
    /// and reads every key).
    pub fn usage_every(mut self, every: Duration) -> Self {
        self.usage_every = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// Sends every counter and gauge of `stats` now.
    fn send(stats: &crate::CacheStats) {
        catalog::samples(stats, Self::sample);
    }

    fn sample(name: &'static str, value: f64, labels: &catalog::Labels) {
        {
            let labels: Vec<Label> = labels
                .iter()
                .map(|(k, v)| Label::new(*k, v.clone()))
                .collect();
            match kind_of(name) {
                Kind::Counter => metrics::counter!(name, labels).absolute(value as u64),
                Kind::Gauge => metrics::gauge!(name, labels).set(value),
            }
        }
    }
}

fn kind_of(name: &str) -> Kind {
    catalog::METRICS
        .iter()
        .find(|m| m.name == name)
        .map_or(Kind::Gauge, |m| m.kind)
}

impl Observe for MetricsExporter {
    fn started(&self, stats: StatsSource) {
        for m in catalog::METRICS {
            match m.kind {
                Kind::Counter => metrics::describe_counter!(m.name, m.help),
                Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("MetricsExporter: no Tokio runtime; counters and gauges are not sent");
            return;
        };
        let every = self.every;
        let source = stats.clone();
        drop(runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(stats) = source.stats() else {
                    return; // the cache is gone
                };
                Self::send(&stats);
            }
        }));
        if let Some(every) = self.usage_every {
            drop(runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match stats.usage().await {
                        None => return,
                        Some(Ok(usage)) => catalog::usage_samples(&usage, Self::sample),
                        Some(Err(e)) => tracing::debug!(error = %e, "usage scan failed"),
                    }
                }
            }));
        }
    }

    fn store_call(&self, call: &StoreCall) {
        metrics::histogram!(
            "vorte_cache_store_call_seconds",
            "layer" => call.layer.name(),
            "backend" => call.backend,
            "operation" => call.operation.name(),
            "outcome" => if call.ok { "ok" } else { "error" },
        )
        .record(call.elapsed.as_secs_f64());
    }

    fn load(&self, elapsed: Duration, ok: bool) {
        metrics::histogram!(
            "vorte_cache_load_seconds",
            "outcome" => if ok { "ok" } else { "error" },
        )
        .record(elapsed.as_secs_f64());
    }

    fn activity(&self, activity: &Activity) {
        if let Some(lag) = activity.lag {
            metrics::histogram!("vorte_cache_bus_lag_seconds", "kind" => activity.kind.name())
                .record(lag.as_secs_f64());
        }
    }
}
