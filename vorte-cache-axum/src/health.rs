//! `GET /health` and `GET /stats`: the cache's state as JSON, for probes and scrapers
//! (`docs/web.md#health-and-stats-routes`).
//!
//! ```
//! use axum::Router;
//! use vorte_cache::Cache;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
//! let cache = Cache::from_config(&Default::default()).await?;
//! // GET /ops/health and GET /ops/stats
//! let app: Router = Router::new().nest("/ops", vorte_cache_axum::health::routes(cache));
//! # let _ = app;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use vorte_cache::{Cache, CacheStats, CircuitState, Layer};

/// How long a rise of an error counter (a layer's `errors`, the bus's receiver errors,
/// suspensions, gaps and dropped messages) keeps the status `degraded`.
pub const RECENT: Duration = Duration::from_secs(60);

/// The routes `GET /health` and `GET /stats`, to `merge` into an application's router or to
/// `nest` under a path of its choosing. They take no state of the application's: `S` is whatever
/// the router they join holds.
///
/// - `/health` answers `{"status": "ok" | "degraded" | "down", "reasons": [...], "hit_rate": ..,
///   "layers": [...]}`: `200 OK` for `ok` and `degraded`, `503 Service Unavailable` for `down`
///   (no layer below L1 has a closed circuit breaker). See [`Status`].
/// - `/stats` answers the [`CacheStats`] JSON with `hit_rate` added.
///
/// Both are cheap (counters only: no store is called), so a probe may call them as often as it
/// likes.
pub fn routes<S>(cache: Cache) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let watch = Arc::new(Mutex::new(TroubleWatch::default()));
    let health_cache = cache.clone();
    Router::new()
        .route(
            "/health",
            get(move || {
                let (cache, watch) = (health_cache.clone(), watch.clone());
                async move { health(&cache, &watch) }
            }),
        )
        .route(
            "/stats",
            get(move || {
                let cache = cache.clone();
                async move { stats(&cache) }
            }),
        )
}

fn health(cache: &Cache, watch: &Mutex<TroubleWatch>) -> Response {
    let stats = cache.stats();
    // A poisoned lock only means a panic elsewhere mid-update: the figures are still usable.
    let report = watch
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .assess(&stats, Instant::now());
    let code = match report.status {
        Status::Down => StatusCode::SERVICE_UNAVAILABLE,
        Status::Ok | Status::Degraded => StatusCode::OK,
    };
    (code, Json(report)).into_response()
}

/// `/stats`: the counters as they are, and the hit rate that is derived from them.
#[derive(Serialize)]
struct StatsBody {
    #[serde(flatten)]
    stats: CacheStats,
    hit_rate: f64,
}

fn stats(cache: &Cache) -> Json<StatsBody> {
    let stats = cache.stats();
    let hit_rate = stats.hit_rate();
    Json(StatsBody { stats, hit_rate })
}

/// The overall state of a cache, as `/health` and the dashboard report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every circuit breaker is closed, no invalidation is owed, and no error counter rose in the
    /// last [`RECENT`].
    Ok,
    /// The cache serves, with less than all of itself: a circuit breaker is open or half-open, a
    /// layer owes invalidations (`recovery_pending`), or a layer's errors or the bus's receiver
    /// errors, suspensions, gaps or dropped messages rose in the last [`RECENT`].
    Degraded,
    /// Every layer below L1 has all its circuit breakers open or half-open (none closed): only
    /// the process's own memory answers. Never reported for a cache that is L1 only.
    Down,
}

/// `/health`'s body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthReport {
    pub(crate) status: Status,
    /// Why it is not `ok`, one sentence each; empty when it is.
    pub(crate) reasons: Vec<String>,
    pub(crate) hit_rate: f64,
    pub(crate) layers: Vec<LayerHealth>,
}

/// One layer in `/health`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LayerHealth {
    layer: Layer,
    backend: &'static str,
    errors: u64,
    recovery_pending: u64,
    /// Circuits not closed, by name, with their state.
    open_circuits: Vec<(String, CircuitState)>,
}

/// Remembers the error counters seen at the last assessment and when each last rose, so that a
/// status can say "errors in the last minute" from counters that only ever grow.
///
/// The first assessment is the baseline: errors counted before it are not "recent".
#[derive(Debug, Default)]
pub(crate) struct TroubleWatch {
    seen: HashMap<String, (u64, Option<Instant>)>,
}

impl TroubleWatch {
    /// Notes `value` for `name`; true when it rose within [`RECENT`] of `now`.
    fn rose_recently(&mut self, name: &str, value: u64, now: Instant) -> bool {
        let entry = match self.seen.get_mut(name) {
            Some(entry) => entry,
            None => {
                self.seen.insert(name.to_owned(), (value, None));
                return false;
            }
        };
        if value > entry.0 {
            entry.1 = Some(now);
        }
        entry.0 = value;
        entry
            .1
            .is_some_and(|at| now.saturating_duration_since(at) < RECENT)
    }

    /// The status of a cache whose counters are `stats`, at `now`.
    pub(crate) fn assess(&mut self, stats: &CacheStats, now: Instant) -> HealthReport {
        let mut reasons = Vec::new();
        let mut layers = Vec::new();
        let mut lower_layers = 0;
        let mut lower_layers_out = 0;
        for l in &stats.layers {
            let open_circuits: Vec<(String, CircuitState)> = l
                .circuits
                .iter()
                .filter(|c| c.state != CircuitState::Closed)
                .map(|c| (c.name.clone(), c.state))
                .collect();
            for (name, state) in &open_circuits {
                let state = match state {
                    CircuitState::Open => "open",
                    _ => "half-open (probing)",
                };
                reasons.push(format!("circuit breaker {name:?} is {state}"));
            }
            if l.layer != Layer::L1 {
                lower_layers += 1;
                // Half-open lets one probe through, which fails while the server is away: out too.
                let none_closed = !l.circuits.is_empty()
                    && l.circuits.iter().all(|c| c.state != CircuitState::Closed);
                if none_closed {
                    lower_layers_out += 1;
                }
            }
            if l.recovery_pending > 0 {
                reasons.push(format!(
                    "{} owes {} invalidation(s) it missed (recovery pending)",
                    l.layer, l.recovery_pending
                ));
            }
            let name = format!("{} errors", l.layer);
            if self.rose_recently(&name, l.errors, now) {
                reasons.push(format!(
                    "{} errors rose in the last {} s (now {})",
                    l.layer,
                    RECENT.as_secs(),
                    l.errors
                ));
            }
            layers.push(LayerHealth {
                layer: l.layer,
                backend: l.backend,
                errors: l.errors,
                recovery_pending: l.recovery_pending,
                open_circuits,
            });
        }
        if let Some(bus) = &stats.bus {
            let counters = [
                ("receiver errors", bus.receiver_errors),
                ("suspensions", bus.suspensions),
                ("gaps", bus.gaps),
                ("dropped messages", bus.publish_dropped),
            ];
            for (what, value) in counters {
                if self.rose_recently(&format!("bus {what}"), value, now) {
                    reasons.push(format!(
                        "bus {what} rose in the last {} s (now {value})",
                        RECENT.as_secs()
                    ));
                }
            }
        }
        let status = if lower_layers > 0 && lower_layers_out == lower_layers {
            Status::Down
        } else if reasons.is_empty() {
            Status::Ok
        } else {
            Status::Degraded
        };
        HealthReport {
            status,
            reasons,
            hit_rate: stats.hit_rate(),
            layers,
        }
    }
}
