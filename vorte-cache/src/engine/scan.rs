//! Listing and stats: `keys` (every layer's candidates, each checked live) and `stats`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;

use super::{Engine, Tally};
use crate::error::{Error, ErrorKind, Result};
use crate::glob::Glob;
use crate::layer::Layer;
use crate::stats::{CacheStats, CacheUsage, LayerStats, LayerUsage, LoadStats};

/// Concurrent store calls in `keys`.
const FAN_OUT: usize = 16;

impl Engine {
    /// Whether `key` is live; an error when a layer that may hold it could not be read.
    async fn is_live(&self, key: &str) -> Result<bool> {
        Ok(self.find_or_fail(key, Tally::Quiet).await?.is_some())
    }

    /// `keys`: a layer that cannot list fails the call, since the answer would silently lack its
    /// keys (`docs/consistency.md#redis-cluster-topology-changes`).
    pub(crate) async fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        self.live_keys(pattern, true).await
    }

    /// The live keys matching `pattern`; with `complete`, an error when a layer cannot list.
    async fn live_keys(&self, pattern: &str, complete: bool) -> Result<Vec<String>> {
        let glob = Glob::new(pattern)?;
        let mut candidates = BTreeSet::new();
        if let Some(l1) = &self.l1 {
            candidates.extend(
                l1.entries()
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| glob.matches(k)),
            );
        }
        if complete && let Some(tier) = self.tiers.iter().find(|t| self.bus_server_silent(t.layer))
        {
            // Its keys could not be told live (reads of it are held off): a list without them
            // would lack keys silently.
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "{} cannot be listed while the bus it carries is out: what other processes \
                     removed from it meanwhile is not known yet",
                    tier.layer
                ),
            ));
        }
        for tier in &self.tiers {
            match tier.store.list(glob.literal_prefix()).await {
                Ok(keys) => candidates.extend(keys.into_iter().filter(|k| glob.matches(k))),
                Err(e) => {
                    self.skip(tier.layer, "list", pattern, &e);
                    if complete {
                        return Err(e);
                    }
                }
            }
        }
        // A listed key whose read fails (a layer out, a slot moving) cannot be told live: with
        // `complete`, the call fails rather than leave it out (without, the failure is counted
        // and the key left out). Only this call's reads decide: another call's failure meanwhile
        // is not this listing's.
        let live: Vec<(String, Result<bool>)> = futures_util::stream::iter(candidates)
            .map(|k| async move {
                let live = self.is_live(&k).await;
                (k, live)
            })
            .buffered(FAN_OUT)
            .collect()
            .await;
        let mut keys = Vec::with_capacity(live.len());
        for (key, live) in live {
            match live {
                Ok(true) => keys.push(key),
                Ok(false) => {}
                Err(e) if complete => {
                    return Err(Error::new(
                        e.kind(),
                        format!(
                            "{key:?} (listed for {pattern:?}) could not be read to tell whether \
                             it is live, and the listing would lack it: {}",
                            e.message()
                        ),
                    )
                    .with_source(e));
                }
                Err(_) => {}
            }
        }
        Ok(keys)
    }

    /// The counters: reads no store (`Cache::stats`).
    pub(crate) fn stats(&self) -> CacheStats {
        let layer_stats = |layer: Layer, backend: &'static str, circuits| {
            let c = self.counters.layer(layer);
            LayerStats {
                layer,
                backend,
                hits: c.hits.load(Ordering::Relaxed),
                misses: c.misses.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                corrupt: c.corrupt.load(Ordering::Relaxed),
                too_large: c.too_large.load(Ordering::Relaxed),
                write_behind_dropped: c.write_behind_dropped.load(Ordering::Relaxed),
                swept: c.swept.load(Ordering::Relaxed),
                recovery_pending: c.recovery_pending.load(Ordering::Relaxed),
                recovered: c.recovered.load(Ordering::Relaxed),
                circuits,
                latency: self.instruments.layer_latency(layer),
                evictions: match (layer, &self.l1) {
                    (Layer::L1, Some(l1)) => l1.evicted(),
                    _ => 0,
                },
                entries: match (layer, &self.l1) {
                    (Layer::L1, Some(l1)) => Some(l1.len()),
                    _ => None,
                },
            }
        };
        let mut layers = Vec::new();
        if self.l1.is_some() {
            layers.push(layer_stats(Layer::L1, "memory", Vec::new()));
        }
        for tier in &self.tiers {
            layers.push(layer_stats(
                tier.layer,
                tier.store.backend(),
                tier.store.circuits(),
            ));
        }
        let hits = |l: Layer| self.counters.layer(l).hits.load(Ordering::Relaxed);
        let leases = &self.counters.leases;
        let bus = self.instruments.bus_figures();
        CacheStats {
            l1_hits: hits(Layer::L1),
            l2_hits: hits(Layer::L2),
            l3_hits: hits(Layer::L3),
            l4_hits: hits(Layer::L4),
            misses: self.counters.misses.load(Ordering::Relaxed),
            load_wait_timeouts: self.counters.load_wait_timeouts.load(Ordering::Relaxed),
            loads: LoadStats {
                time: self.instruments.load_time(),
                ..self.counters.loads.snapshot()
            },
            leases_acquired: leases.acquired.load(Ordering::Relaxed),
            lease_waits_landed: leases.waits_landed.load(Ordering::Relaxed),
            lease_waits_bounded: leases.waits_bounded.load(Ordering::Relaxed),
            lease_errors: leases.errors.load(Ordering::Relaxed),
            layers,
            invalidations: bus.invalidations_sent,
            invalidations_received: bus.invalidations_received,
            bus_lag: bus.lag,
            bus: self.bus_stats(),
        }
    }

    /// What every layer holds, and the live keys over all of them: asks every store
    /// (`Cache::usage`).
    pub(crate) async fn usage(&self) -> Result<CacheUsage> {
        let mut layers = Vec::new();
        let mut l1_bytes = 0;
        if let Some(l1) = &self.l1 {
            let (keys, bytes) = l1.usage();
            l1_bytes = bytes;
            layers.push(LayerUsage {
                layer: Layer::L1,
                backend: "memory",
                keys,
                bytes,
            });
        }
        for tier in &self.tiers {
            let usage = match tier.store.usage().await {
                Ok(u) => u,
                Err(e) => {
                    self.skip(tier.layer, "usage", "*", &e);
                    Default::default()
                }
            };
            layers.push(LayerUsage {
                layer: tier.layer,
                backend: tier.store.backend(),
                keys: usage.keys,
                bytes: usage.bytes,
            });
        }
        Ok(CacheUsage {
            // A layer that cannot list is already counted as an error above; usage still answers.
            total_keys: self.live_keys("*", false).await?.len() as u64,
            memory_used_mb: l1_bytes as f64 / (1024.0 * 1024.0),
            memory_used_bytes: l1_bytes,
            layers,
        })
    }
}
