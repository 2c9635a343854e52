//! One read of a key nobody writes, through every layer below L1: whether each layer answered and
//! how long it took. Every command that opens a cache asks it first ([`crate::context::Context::check_reachable`],
//! `docs/cli.md#configuration`), and the live views show it for each layer (`docs/cli.md#stats`).
//!
//! The library skips a failing layer rather than failing a read, so the read's answer says
//! nothing; the layers' error counters before and after it do, and, when the cache's observer
//! hands its store calls to [`ProbeCalls`], so does each call (with its own time).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use vorte_cache::observe::{StoreCall, StoreOp};
use vorte_cache::{Cache, Layer};

/// A timed read of a key that does not exist, through one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ProbeView {
    /// Whether the layer answered without an error (an open circuit answers with one).
    pub(crate) reachable: bool,
    pub(crate) latency_ms: f64,
}

/// The store calls a cache makes while a probe is armed: its observer hands every call to
/// [`ProbeCalls::record`], which keeps them only then.
#[derive(Debug, Default)]
pub(crate) struct ProbeCalls(Mutex<Option<Vec<StoreCall>>>);

impl ProbeCalls {
    /// Keeps `call` if a probe is under way.
    pub(crate) fn record(&self, call: &StoreCall) {
        if let Some(calls) = self.lock().as_mut() {
            calls.push(*call);
        }
    }

    fn arm(&self) {
        *self.lock() = Some(Vec::new());
    }

    fn disarm(&self) -> Vec<StoreCall> {
        self.lock().take().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Vec<StoreCall>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one probe found: each layer below L1 that was called or failed, and the read's answer.
#[derive(Debug)]
pub(crate) struct Probe {
    /// Per layer, in the order they were asked. L1, memory, is not probed.
    pub(crate) layers: Vec<(Layer, ProbeView)>,
    /// The read's own answer: a miss, or an error the library did not skip.
    pub(crate) read: vorte_cache::Result<()>,
}

impl Probe {
    /// The layers that did not answer.
    pub(crate) fn unreachable(&self) -> impl Iterator<Item = Layer> + '_ {
        self.layers
            .iter()
            .filter(|(_, p)| !p.reachable)
            .map(|(l, _)| *l)
    }
}

/// Reads a fresh key that does not exist and tells, per layer below L1, whether it answered.
///
/// With `calls` (the cache's observer hands them its store calls), each layer the read called is
/// timed by its own call. A layer whose error counter went up without a call (its server known to
/// be out, or the bus that rides on it out: the library then skips it), or every such layer
/// without `calls`, is unreachable after the whole read's time.
pub(crate) async fn probe(cache: &Cache, calls: Option<&ProbeCalls>) -> Probe {
    // A key of its own each time: no entry, no L1 copy and no read in flight to share.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = format!("vorte-cli-probe:{}:{nanos}", std::process::id());
    let before = cache.stats();
    if let Some(calls) = calls {
        calls.arm();
    }
    let began = Instant::now();
    let read = cache.get::<serde_json::Value>(&key).await.map(|_| ());
    let elapsed = began.elapsed();
    let calls = calls.map(ProbeCalls::disarm).unwrap_or_default();
    let after = cache.stats();
    let mut layers: Vec<(Layer, ProbeView)> = Vec::new();
    for call in calls.iter().filter(|c| c.operation == StoreOp::Get) {
        if !layers.iter().any(|(l, _)| *l == call.layer) {
            layers.push((
                call.layer,
                ProbeView {
                    reachable: call.ok,
                    latency_ms: millis(call.elapsed),
                },
            ));
        }
    }
    for layer in after.layers.iter().filter(|l| l.layer != Layer::L1) {
        let errors_before = before.layer(layer.layer).map_or(0, |b| b.errors);
        let called = layers.iter().any(|(l, _)| *l == layer.layer);
        if !called && layer.errors > errors_before {
            layers.push((
                layer.layer,
                ProbeView {
                    reachable: false,
                    latency_ms: millis(elapsed),
                },
            ));
        }
    }
    Probe { layers, read }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
