//! The instrumentation point: every measurement the cache takes goes through `Instruments`
//! (`docs/observability.md`).
//!
//! What is counted on the hot path stays where it was, in the engine's relaxed counters
//! ([`Cache::stats`](crate::Cache::stats) reads them); an L1 hit adds nothing here. Durations
//! (each call to a store below L1, each load, the bus's lag) and the invalidations sent and
//! received are recorded here once, into histograms that `stats()` reports, into a short list of
//! recent activity, and for each [`Observe`] attached to the cache. The adapters to the `metrics`
//! facade and to OpenTelemetry are such observers; nothing else measures.

mod activity;
#[cfg(any(feature = "metrics", feature = "opentelemetry"))]
mod catalog;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "opentelemetry")]
pub mod opentelemetry;
#[cfg(feature = "tracing")]
pub(crate) mod spans;
pub(crate) mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::histogram::LatencyStats;
pub(crate) use activity::origin_id;
pub use activity::{Activity, ActivityKind, MAX_KEYS_RECORDED};
pub use store::StoreOp;

pub(crate) use crate::histogram::Histogram;

/// Awaits a public call in its span (feature `tracing`; `docs/observability.md#spans`), or as it
/// is without the feature: `traced!(instruments, "get", Some(key), future)`.
macro_rules! traced {
    ($instruments:expr, $op:literal, $key:expr, $call:expr) => {{
        #[cfg(feature = "tracing")]
        {
            if $crate::observe::spans::active() {
                $crate::observe::spans::in_call($op, $key, $instruments, $call).await
            } else {
                $call.await
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _: (&$crate::observe::Instruments, Option<&str>) = (&$instruments, $key);
            $call.await
        }
    }};
}
pub(crate) use traced;

/// Whether spans are being made ([`spans::active`](self::spans) with the `tracing` feature):
/// always `false` without it, so callers need no `cfg` of their own.
#[inline(always)]
pub(crate) fn spans_active() -> bool {
    #[cfg(feature = "tracing")]
    {
        spans::active()
    }
    #[cfg(not(feature = "tracing"))]
    {
        false
    }
}

use crate::config::{KeyRecording, ObserveConfig};
use crate::layer::Layer;

/// One call to a layer's store, as an [`Observe`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StoreCall {
    /// The layer (L2, L3 or L4).
    pub layer: Layer,
    /// Its backend, as in configuration (`"redis"`, `"s3"`, …).
    pub backend: &'static str,
    /// What was asked.
    pub operation: StoreOp,
    /// How long it took, the circuit breaker's refusal included.
    pub elapsed: Duration,
    /// Whether it answered without an error.
    pub ok: bool,
}

/// Receives the cache's measurements as they are taken: attach one with
/// [`CacheBuilder::observe`](crate::CacheBuilder::observe). Each method has an empty default.
///
/// Methods run on the caller's task, after the call they measure: they must be quick and must
/// not block. Counters that change on every hit (hits, misses, errors) are not pushed here; read
/// them from [`Cache::stats`](crate::Cache::stats), which [`started`](Self::started) hands over.
pub trait Observe: Send + Sync + 'static {
    /// The cache was built: `stats` reads its counters for as long as it lives.
    fn started(&self, stats: StatsSource) {
        let _ = stats;
    }
    /// A store call below L1 ended.
    fn store_call(&self, call: &StoreCall) {
        let _ = call;
    }
    /// A load (`get_or_set`'s loader, a `#[cached]` body) ended, well or not.
    fn load(&self, elapsed: Duration, ok: bool) {
        let _ = (elapsed, ok);
    }
    /// This cache invalidated something (`received == false`), or another process's
    /// invalidation or event was read from the bus, `lag` after it was published. A received
    /// invalidation is told once this cache has applied it (it no longer serves what that
    /// replaced); a received event before its handlers run.
    fn activity(&self, activity: &Activity) {
        let _ = activity;
    }
}

/// Reads a cache's [`CacheStats`](crate::CacheStats), and on demand its
/// [`CacheUsage`](crate::CacheUsage), without keeping the cache alive: what [`Observe::started`]
/// gets.
#[derive(Clone)]
pub struct StatsSource {
    pub(crate) stats: Arc<dyn Fn() -> Option<crate::CacheStats> + Send + Sync>,
    pub(crate) usage: Arc<dyn Fn() -> Option<UsageFuture> + Send + Sync>,
}

/// A pending [`Cache::usage`](crate::Cache::usage) of the cache a [`StatsSource`] reads.
pub type UsageFuture = crate::store::BoxFuture<'static, crate::Result<crate::CacheUsage>>;

impl StatsSource {
    /// The cache's stats now, or `None` once the cache is dropped. Cheap: counters.
    pub fn stats(&self) -> Option<crate::CacheStats> {
        (self.stats)()
    }

    /// What the cache holds, per layer: a scan of every store
    /// ([`Cache::usage`](crate::Cache::usage)), so call it seldom. `None` once the cache is
    /// dropped.
    pub async fn usage(&self) -> Option<crate::Result<crate::CacheUsage>> {
        match (self.usage)() {
            Some(scan) => Some(scan.await),
            None => None,
        }
    }
}

impl std::fmt::Debug for StatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsSource")
    }
}

/// See the module docs.
pub(crate) struct Instruments {
    layers: [Histogram; 4],
    loads: Histogram,
    bus_lag: Histogram,
    sent: AtomicU64,
    received: AtomicU64,
    recent: activity::Recent,
    keys: KeyRecording,
    /// This cache's bus id, as activity shows it; `None` without a bus.
    origin: Option<String>,
    observers: Vec<Arc<dyn Observe>>,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("observers", &self.observers.len())
            .finish_non_exhaustive()
    }
}

impl Default for Instruments {
    fn default() -> Self {
        Instruments::new(&ObserveConfig::default(), None, Vec::new())
    }
}

impl Instruments {
    /// `origin`: the cache's bus id, when it has a bus.
    pub(crate) fn new(
        config: &ObserveConfig,
        origin: Option<u64>,
        observers: Vec<Arc<dyn Observe>>,
    ) -> Instruments {
        Instruments {
            layers: Default::default(),
            loads: Histogram::default(),
            bus_lag: Histogram::default(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            recent: activity::Recent::new(config.recent_activity),
            keys: config.record_keys,
            origin: origin.map(origin_id),
            observers,
        }
    }

    pub(crate) fn started(&self, stats: &StatsSource) {
        for o in &self.observers {
            o.started(stats.clone());
        }
    }

    pub(crate) fn store_call(&self, call: StoreCall) {
        self.layers[call.layer.index()].record(call.elapsed);
        for o in &self.observers {
            o.store_call(&call);
        }
    }

    pub(crate) fn load(&self, elapsed: Duration, ok: bool) {
        self.loads.record(elapsed);
        for o in &self.observers {
            o.load(elapsed, ok);
        }
    }

    /// This cache invalidated `subjects` (the keys deleted or written, a tag; none for a flush).
    pub(crate) fn invalidated(&self, kind: ActivityKind, subjects: &[&str]) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut activity = self.activity(kind, subjects, false);
        activity.origin = self.origin.clone();
        self.note(activity);
    }

    /// Another process's invalidation or event (`subjects`: its keys, its tag or the event's
    /// name), sent by the cache whose bus id is `origin` and read from the bus `lag` after it was
    /// published: made while the message is at hand, noted by [`Instruments::note_received`].
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn received(
        &self,
        kind: ActivityKind,
        subjects: &[&str],
        origin: u64,
        lag: Option<Duration>,
    ) -> Activity {
        let mut activity = self.activity(kind, subjects, true);
        activity.origin = Some(origin_id(origin));
        activity.lag = lag;
        activity
    }

    /// Counts and notes an activity from [`Instruments::received`], as of now.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn note_received(&self, mut activity: Activity) {
        if activity.kind != ActivityKind::Event {
            self.received.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(lag) = activity.lag {
            self.bus_lag.record(lag);
        }
        activity.at_ms = crate::clock::now_ms();
        self.note(activity);
    }

    /// An activity with its subjects rendered as `record_keys` allows (an event's name is the
    /// application's vocabulary, not user data: always shown), not yet noted.
    fn activity(&self, kind: ActivityKind, subjects: &[&str], received: bool) -> Activity {
        let render = |s: &&str| match kind {
            ActivityKind::Event => Some((*s).to_owned()),
            _ => self.keys.render(s),
        };
        let (keys, key_count) = match kind {
            ActivityKind::Keys => (
                subjects
                    .iter()
                    .take(MAX_KEYS_RECORDED)
                    .filter_map(render)
                    .collect(),
                subjects.len() as u64,
            ),
            _ => (Vec::new(), 0),
        };
        Activity {
            at_ms: crate::clock::now_ms(),
            kind,
            subject: subjects.first().and_then(render),
            keys,
            key_count,
            received,
            origin: None,
            lag: None,
        }
    }

    fn note(&self, activity: Activity) {
        for o in &self.observers {
            o.activity(&activity);
        }
        self.recent.push(activity);
    }

    /// How a key appears in spans and activity, per `[cache.observe] record_keys`.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn render_key(&self, key: &str) -> Option<String> {
        self.keys.render(key)
    }

    pub(crate) fn layer_latency(&self, layer: Layer) -> LatencyStats {
        self.layers[layer.index()].snapshot()
    }

    pub(crate) fn load_time(&self) -> LatencyStats {
        self.loads.snapshot()
    }

    pub(crate) fn bus_figures(&self) -> BusFigures {
        BusFigures {
            invalidations_sent: self.sent.load(Ordering::Relaxed),
            invalidations_received: self.received.load(Ordering::Relaxed),
            lag: self.bus_lag.snapshot(),
        }
    }

    pub(crate) fn recent(&self) -> Vec<Activity> {
        self.recent.list()
    }
}

/// What [`Instruments`] knows of the bus, for [`CacheStats`](crate::CacheStats).
pub(crate) struct BusFigures {
    pub(crate) invalidations_sent: u64,
    pub(crate) invalidations_received: u64,
    pub(crate) lag: LatencyStats,
}

impl KeyRecording {
    /// `None`: not recorded.
    fn render(self, key: &str) -> Option<String> {
        match self {
            KeyRecording::None => None,
            KeyRecording::Hash => Some(format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(key.as_bytes())
            )),
            KeyRecording::Plain => Some(key.to_owned()),
        }
    }
}
