//! The OpenTelemetry metrics adapter (feature `opentelemetry`): the cache's metrics on a
//! [`Meter`] of the application's meter provider (`docs/observability.md#metrics`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
//! use std::sync::Arc;
//! use vorte_cache::observe::opentelemetry::OtelMetrics;
//!
//! let meter = opentelemetry::global::meter("my-service");
//! let cache = vorte_cache::Cache::builder(&Default::default())
//!     .observe(Arc::new(OtelMetrics::new(meter)))
//!     .build()
//!     .await?;
//! # let _ = cache; Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, ObservableCounter, ObservableGauge};

use super::catalog::{self, Kind, Labels};
use super::{Activity, Observe, StatsSource, StoreCall};

/// Exports the cache's metrics through OpenTelemetry: every counter and gauge of
/// [`CacheStats`](crate::CacheStats) as an observable instrument, read when the provider
/// collects (no task of its own), and the durations as histograms, in seconds:
/// `vorte.cache.store_call.duration{vorte.layer, vorte.backend, vorte.operation, outcome}`,
/// `vorte.cache.load.duration{outcome}`, `vorte.cache.bus.lag{vorte.notice}`.
///
/// Keys and bytes per layer (`vorte.cache.keys`, `vorte.cache.bytes`) need a scan of every store:
/// reported only with [`usage_every`](Self::usage_every), from a task that scans that often.
pub struct OtelMetrics {
    meter: Meter,
    store_calls: Histogram<f64>,
    loads: Histogram<f64>,
    bus_lag: Histogram<f64>,
    /// The observable instruments, kept for as long as the exporter lives.
    observed: Mutex<Vec<Observed>>,
    usage_every: Option<Duration>,
    /// The last usage scan, which the keys and bytes gauges report.
    usage: Arc<Mutex<Option<crate::CacheUsage>>>,
}

// Held only to keep their callbacks registered.
#[allow(dead_code)]
enum Observed {
    Counter(ObservableCounter<u64>),
    Gauge(ObservableGauge<f64>),
}

impl std::fmt::Debug for OtelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelMetrics").finish_non_exhaustive()
    }
}

/// Bucket bounds of the duration histograms, in seconds: 50 µs to 10 s, as the cache's own.
fn boundaries() -> Vec<f64> {
    vec![
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl OtelMetrics {
    /// The cache's instruments on `meter`.
    pub fn new(meter: Meter) -> Self {
        let histogram = |name: &'static str, what: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(what)
                .with_boundaries(boundaries())
                .build()
        };
        OtelMetrics {
            store_calls: histogram(
                "vorte.cache.store_call.duration",
                "Duration of calls to a layer's store below L1.",
            ),
            loads: histogram("vorte.cache.load.duration", "Duration of loads."),
            bus_lag: histogram(
                "vorte.cache.bus.lag",
                "Time from another process publishing a bus message to this one reading it.",
            ),
            observed: Mutex::new(Vec::new()),
            usage_every: None,
            usage: Arc::default(),
            meter,
        }
    }

    /// Also scans every store this often for its keys and bytes (off by default: a scan lists
    /// and reads every key).
    pub fn usage_every(mut self, every: Duration) -> Self {
        self.usage_every = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// Scans every `every` into `self.usage`, from a task that ends with the cache.
    fn scan_usage(&self, stats: StatsSource, every: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("OtelMetrics: no Tokio runtime; keys and bytes are not reported");
            return;
        };
        let cell = self.usage.clone();
        drop(runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match stats.usage().await {
                    None => return,
                    Some(Ok(usage)) => {
                        *cell.lock().unwrap_or_else(|p| p.into_inner()) = Some(usage);
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "usage scan failed"),
                }
            }
        }));
    }
}

fn attributes(labels: &Labels) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue::new(format!("vorte.{k}"), v.clone()))
        .collect()
}

impl Observe for OtelMetrics {
    fn started(&self, stats: StatsSource) {
        if let Some(every) = self.usage_every {
            self.scan_usage(stats.clone(), every);
        }
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        for m in catalog::METRICS {
            let source = stats.clone();
            let usage = self.usage.clone();
            let name = m.name;
            // Each instrument reads the stats when collected: a handful of relaxed loads (and the
            // last usage scan, kept by `scan_usage`).
            let each = move |observe: &mut dyn FnMut(f64, &[KeyValue])| {
                let mut sample = |sample: &str, value: f64, labels: &Labels| {
                    if sample == name {
                        observe(value, &attributes(labels));
                    }
                };
                if let Some(stats) = source.stats() {
                    catalog::samples(&stats, &mut sample);
                }
                if let Some(usage) = &*usage.lock().unwrap_or_else(|p| p.into_inner()) {
                    catalog::usage_samples(usage, &mut sample);
                }
            };
            observed.push(match m.kind {
                Kind::Counter => Observed::Counter(
                    self.meter
                        .u64_observable_counter(catalog::otel_name(m.name))
                        .with_description(m.help)
                        .with_callback(move |i| each(&mut |v, a| i.observe(v as u64, a)))
                        .build(),
                ),
                Kind::Gauge => Observed::Gauge(
                    self.meter
                        .f64_observable_gauge(catalog::otel_name(m.name))
                        .with_description(m.help)
                        .with_callback(move |i| each(&mut |v, a| i.observe(v, a)))
                        .build(),
                ),
            });
        }
    }

    fn store_call(&self, call: &StoreCall) {
        self.store_calls.record(
            call.elapsed.as_secs_f64(),
            &[
                KeyValue::new("vorte.layer", call.layer.name()),
                KeyValue::new("vorte.backend", call.backend),
                KeyValue::new("vorte.operation", call.operation.name()),
                KeyValue::new("outcome", if call.ok { "ok" } else { "error" }),
            ],
        );
    }

    fn load(&self, elapsed: Duration, ok: bool) {
        self.loads.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("outcome", if ok { "ok" } else { "error" })],
        );
    }

    fn activity(&self, activity: &Activity) {
        if let Some(lag) = activity.lag {
            self.bus_lag.record(
                lag.as_secs_f64(),
                &[KeyValue::new("vorte.notice", activity.kind.name())],
            );
        }
    }
}
