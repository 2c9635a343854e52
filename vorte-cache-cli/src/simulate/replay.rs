//! One replay: a trace through one policy at one L1 size and TTL, with LRU layers below it when
//! asked (`docs/simulate.md#the-layer-model`), and the runner that spreads the replays over
//! threads.
//!
//! Each request: L1 is read; a hit that has outlived the TTL counts as a miss and the entry is
//! removed. A miss goes down the layers (L2, then L3, each an exact LRU fed only by the misses of
//! the layer above); the first fresh copy serves it, else the origin loads it. Every layer that
//! missed is then filled. A copy carries the time its value was loaded from the origin, so all the
//! copies of a key expire together, as a value filled from L2 keeps the TTL it has left there.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::ProgressBar;

use super::clock::Clock;
use super::policy::{Expiry, Lru, NextUse, Policy, PolicyKind};

/// How often (in requests) a replay reports progress.
const PROGRESS_EVERY: usize = 1 << 16;

/// One combination to replay.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// The L1 policy.
    pub(crate) policy: PolicyKind,
    /// L1's capacity, in entries.
    pub(crate) size: usize,
    /// Seconds an entry lives after its load, if entries expire.
    pub(crate) ttl: Option<f64>,
}

/// Sizes of the LRU layers below L1 (entries), if any.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Layers {
    /// L2 (a Redis or memcached in the model).
    pub(crate) l2: Option<usize>,
    /// L3, below L2.
    pub(crate) l3: Option<usize>,
}

/// What one layer below L1 saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LayerCounts {
    /// Requests that reached it (the misses of the layer above).
    pub(crate) lookups: u64,
    /// Of those, served by a fresh copy.
    pub(crate) hits: u64,
}

/// What one replay measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// What was replayed.
    pub(crate) policy: PolicyKind,
    /// L1 size.
    pub(crate) size: usize,
    /// TTL in seconds.
    pub(crate) ttl: Option<f64>,
    /// Requests replayed.
    pub(crate) requests: u64,
    /// L1 hits (fresh).
    pub(crate) hits: u64,
    /// L1 reads that found an entry past its TTL (counted as misses).
    pub(crate) expired: u64,
    /// L2, when modelled.
    pub(crate) l2: Option<LayerCounts>,
    /// L3, when modelled.
    pub(crate) l3: Option<LayerCounts>,
    /// Requests no layer served.
    pub(crate) origin_loads: u64,
}

/// The trace as every replay shares it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shared<'a> {
    /// The key of each request.
    pub(crate) keys: &'a [u64],
    /// Request times.
    pub(crate) clock: Clock<'a>,
    /// Next uses, when a Belady replay needs them.
    pub(crate) next_use: Option<&'a NextUse>,
    /// The layers below L1.
    pub(crate) layers: Layers,
}

/// Replays every scenario over `threads` threads; the outcomes come back in the scenarios' order
/// and do not depend on the thread count (each replay is alone with its own policy).
pub(crate) fn run_all(
    shared: Shared<'_>,
    scenarios: &[Scenario],
    threads: usize,
    progress: &ProgressBar,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, scenarios.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(scenario) = scenarios.get(index) else {
                        break;
                    };
                    let outcome = replay(shared, scenario, progress);
                    if let Ok(mut results) = results.lock() {
                        results[index] = Some(outcome);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// A lower layer: an LRU and what it saw.
struct Lower {
    lru: Lru,
    counts: LayerCounts,
}

/// One replay of the trace.
pub(crate) fn replay(shared: Shared<'_>, scenario: &Scenario, progress: &ProgressBar) -> Outcome {
    let expiry = scenario.ttl.map(|ttl| Expiry {
        clock: shared.clock,
        ttl,
    });
    let mut outcome = Outcome {
        policy: scenario.policy,
        size: scenario.size,
        ttl: scenario.ttl,
        requests: shared.keys.len() as u64,
        hits: 0,
        expired: 0,
        l2: None,
        l3: None,
        origin_loads: 0,
    };
    let Some(mut l1) = scenario
        .policy
        .build(scenario.size, shared.next_use, expiry)
    else {
        return outcome;
    };
    // Belady is a bound on L1 alone: its misses are no real cache's, so no layer is fed by them.
    let mut lower: Vec<Lower> = if scenario.policy == PolicyKind::Belady {
        Vec::new()
    } else {
        [shared.layers.l2, shared.layers.l3]
            .into_iter()
            .map_while(|size| size)
            .map(|size| Lower {
                lru: Lru::new(size),
                counts: LayerCounts::default(),
            })
            .collect()
    };
    // When each key's value was last loaded from the origin (only kept with a TTL).
    let mut loaded_at: HashMap<u64, f64> = HashMap::new();
    for (index, &key) in shared.keys.iter().enumerate() {
        let now = shared.clock.time(index);
        let fresh = |loaded_at: &HashMap<u64, f64>| match scenario.ttl {
            None => true,
            Some(ttl) => loaded_at.get(&key).is_some_and(|&at| now - at < ttl),
        };
        if index % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
            progress.inc(PROGRESS_EVERY as u64);
        }
        if l1.get(key) {
            if fresh(&loaded_at) {
                outcome.hits += 1;
                continue;
            }
            outcome.expired += 1;
            l1.remove(key);
        }
        let mut missed = 0;
        let mut served = false;
        for layer in lower.iter_mut() {
            layer.counts.lookups += 1;
            if layer.lru.get(key) {
                if fresh(&loaded_at) {
                    layer.counts.hits += 1;
                    served = true;
                    break;
                }
                layer.lru.remove(key);
            }
            missed += 1;
        }
        if !served {
            outcome.origin_loads += 1;
            if scenario.ttl.is_some() {
                loaded_at.insert(key, now);
            }
        }
        for layer in lower.iter_mut().take(missed) {
            layer.lru.insert(key);
        }
        l1.insert(key);
    }
    progress.inc((shared.keys.len() % PROGRESS_EVERY) as u64);
    let mut counts = lower.into_iter().map(|layer| layer.counts);
    outcome.l2 = counts.next();
    outcome.l3 = counts.next();
    outcome
}
