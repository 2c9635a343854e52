//! Counters and the [`CacheStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::histogram::LatencyStats;
use crate::layer::Layer;

/// Per-layer counters, updated on the hot path with relaxed atomics.
#[derive(Debug, Default)]
pub(crate) struct LayerCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) write_behind_dropped: AtomicU64,
    pub(crate) swept: AtomicU64,
    /// Keys whose invalidation this layer still owes (1 for a whole owed flush): a gauge.
    pub(crate) recovery_pending: AtomicU64,
    pub(crate) recovered: AtomicU64,
}

/// Counters of the distributed single-flight (`engine/lease.rs`), shared with its renewal tasks.
#[derive(Debug, Default)]
pub(crate) struct LeaseCounters {
    pub(crate) acquired: AtomicU64,
    pub(crate) waits_landed: AtomicU64,
    pub(crate) waits_bounded: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// Counters of one cache.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Shared with the layers' background tasks (write-behind).
    pub(crate) layers: [std::sync::Arc<LayerCounters>; 4],
    pub(crate) misses: AtomicU64,
    pub(crate) load_wait_timeouts: AtomicU64,
    pub(crate) leases: std::sync::Arc<LeaseCounters>,
    pub(crate) loads: LoadCounters,
}

/// Counters of the loads (`docs/resilience.md`).
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    pub(crate) runs: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) fail_safe_serves: AtomicU64,
    pub(crate) soft_timeouts: AtomicU64,
    pub(crate) hard_timeouts: AtomicU64,
    pub(crate) early_refreshes: AtomicU64,
    pub(crate) late_fills: AtomicU64,
    pub(crate) not_modified: AtomicU64,
}

impl LoadCounters {
    pub(crate) fn snapshot(&self) -> LoadStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LoadStats {
            runs: get(&self.runs),
            failures: get(&self.failures),
            fail_safe_serves: get(&self.fail_safe_serves),
            soft_timeouts: get(&self.soft_timeouts),
            hard_timeouts: get(&self.hard_timeouts),
            early_refreshes: get(&self.early_refreshes),
            late_fills: get(&self.late_fills),
            not_modified: get(&self.not_modified),
            time: LatencyStats::default(),
        }
    }
}

/// What the loads of `get_or_set` and `#[cached]` did, since the cache was built
/// (`docs/resilience.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LoadStats {
    /// Loaders run (in the foreground or the background).
    pub runs: u64,
    /// Loaders that failed (an error, or a `#[cached]` body's `Err`) or were cut by a hard timeout.
    pub failures: u64,
    /// Calls answered with a stale value because the load failed or timed out (fail-safe).
    pub fail_safe_serves: u64,
    /// Loads that passed their soft timeout: the caller got the stale value, the load went on.
    pub soft_timeouts: u64,
    /// Loads that passed their hard timeout.
    pub hard_timeouts: u64,
    /// Background refreshes started by a hit (eager refresh or XFetch).
    pub early_refreshes: u64,
    /// Loaded values whose storing outlasted what was left of one layer timeout after the
    /// call's reads: the caller had its answer, the storing went on in the background
    /// (`docs/resilience.md#one-timeout-per-call`).
    pub late_fills: u64,
    /// Loads whose loader answered that the entry it replaced was still current
    /// (`vorte_cache::load::not_modified`): the stale value was cached again without being
    /// produced (`docs/architecture.md#conditional-refresh`).
    pub not_modified: u64,
    /// How long the loads took, foreground and background, failed ones included.
    pub time: LatencyStats,
}

impl Counters {
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn layer(&self, layer: Layer) -> &LayerCounters {
        &self.layers[layer.index()]
    }
}

/// One layer's figures in a [`CacheStats`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LayerStats {
    /// Which layer.
    pub layer: Layer,
    /// Its backend, as in configuration (`"memory"`, `"file"`, …).
    pub backend: &'static str,
    /// Reads this layer answered, since the cache was built.
    pub hits: u64,
    /// Reads that reached this layer and found nothing live in it.
    pub misses: u64,
    /// Calls to this layer that failed or timed out and were skipped, and reads not made because
    /// the server carrying the bus was out (`docs/guarantees.md#g4-gap-detection`); the call went on with the other layers
    /// (`docs/guarantees.md#f1-a-failing-layer-is-skipped`).
    pub errors: u64,
    /// Values found corrupt (bad envelope or checksum), removed and treated as misses
    /// (`docs/guarantees.md#f4-a-corrupt-entry-is-a-miss-a-type-mismatch-is-an-error`).
    pub corrupt: u64,
    /// Writes this layer did not take because the value was over its `max_value_bytes`; the value
    /// still went to the selected layers that accept it.
    pub too_large: u64,
    /// Writes dropped because this write-behind layer's queue was full (`write_behind_queue`).
    /// Never silent: each drop is also logged.
    pub write_behind_dropped: u64,
    /// Expired objects the background sweeper deleted (`sweep_interval`).
    pub swept: u64,
    /// Invalidations this layer missed (it failed or was away) and that are still being retried:
    /// keys whose delete is owed, or 1 for an owed flush. Meanwhile those keys (or the whole
    /// layer) are not read there (`docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back`).
    pub recovery_pending: u64,
    /// Owed invalidations that a retry delivered.
    pub recovered: u64,
    /// The layer's circuit breakers (`docs/guarantees.md#f2-circuit-breaker`): one for the whole
    /// layer, or one per server where the store keeps its own (each memcached server, each Redis
    /// Cluster node, and one for cluster keys whose node is not known yet). Empty for L1.
    pub circuits: Vec<CircuitStats>,
    /// How long calls to this layer's store took (every call below L1: reads, writes, deletes,
    /// scans), a refusal by an open circuit breaker included. Empty for L1, whose reads are not
    /// timed: they take nanoseconds, and a clock read would double that.
    pub latency: LatencyStats,
    /// Entries evicted to make room, or refused by L1's admission filter (L1; the servers of other
    /// layers evict on their own, and their counts are theirs).
    pub evictions: u64,
    /// Entries held, where that is known without asking a server: L1's count (entries past their
    /// TTL not yet found by a read included). `None` for the other layers: see
    /// [`Cache::usage`](crate::Cache::usage).
    pub entries: Option<u64>,
}

/// One circuit breaker's state, in [`LayerStats::circuits`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CircuitStats {
    /// What it guards: `"l2 redis"`, or one server, `"l3 redis-cluster on 127.0.0.1:7000"`.
    pub name: String,
    /// Closed, open or half-open, at the time of the snapshot.
    pub state: CircuitState,
    /// How many times it opened (went from closed to open), since the store was opened.
    pub opened: u64,
}

/// Where a circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail at once, until the cool-down ends.
    Open,
    /// The cool-down ended: the next call (or the one in flight) is the probe that closes the
    /// circuit if it succeeds.
    HalfOpen,
}

/// A snapshot of the cache's counters, from [`Cache::stats`](crate::Cache::stats): what it did
/// since it was built. What it holds is [`CacheUsage`], from [`Cache::usage`](crate::Cache::usage).
///
/// It serializes (serde) to the JSON that the health route of `vorte-cache-axum` and the
/// dashboard read; a [`LatencyStats`] there carries its percentiles in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered by L1 (in-process), since the cache was built.
    pub l1_hits: u64,
    /// Reads answered by L2.
    pub l2_hits: u64,
    /// Reads answered by L3.
    pub l3_hits: u64,
    /// Reads answered by L4.
    pub l4_hits: u64,
    /// Reads that found nothing live in any layer.
    pub misses: u64,
    /// Callers that waited on another caller's load of their key longer than `load_wait_timeout`
    /// and then loaded the value themselves: a count of loads that hung or ran that long.
    pub load_wait_timeouts: u64,
    /// Leases this process took to load a key while other processes wait
    /// (`docs/leases.md`).
    pub leases_acquired: u64,
    /// Waits for another process's lease that ended with its load landing: the caller read the
    /// layers again instead of loading.
    pub lease_waits_landed: u64,
    /// Waits for another process's lease that reached their bound (the holder died or was slow,
    /// or its notice was lost): the caller then loaded itself.
    pub lease_waits_bounded: u64,
    /// Lease calls that failed (the layer erred, or a held lease was lost before its load
    /// ended); the load went on without the lease.
    pub lease_errors: u64,
    /// What the loads did: runs, failures, fail-safe serves, timeouts, early refreshes.
    pub loads: LoadStats,
    /// One entry per enabled layer, L1 first.
    pub layers: Vec<LayerStats>,
    /// Invalidations this cache made: `delete` and `delete_many` calls, tags invalidated,
    /// flushes (each tells the other processes when there is a bus).
    pub invalidations: u64,
    /// Other processes' invalidations this cache read from the bus and applied.
    pub invalidations_received: u64,
    /// The time from another process publishing an invalidation or event to this process reading
    /// it (the stream id's time, on the bus server's clock, to this host's clock).
    pub bus_lag: LatencyStats,
    /// The bus's own counters, `None` without a bus (as [`Cache::bus_stats`](crate::Cache::bus_stats)).
    pub bus: Option<crate::BusStats>,
}

impl CacheStats {
    /// Hits over reads, in `0..=1`; `0` before any read.
    pub fn hit_rate(&self) -> f64 {
        let hits = self.l1_hits + self.l2_hits + self.l3_hits + self.l4_hits;
        let reads = hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            hits as f64 / reads as f64
        }
    }

    /// The figures of one layer, if it is enabled.
    pub fn layer(&self, layer: Layer) -> Option<&LayerStats> {
        self.layers.iter().find(|l| l.layer == layer)
    }
}

/// What the cache holds, from [`Cache::usage`](crate::Cache::usage), which asks every store.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheUsage {
    /// Distinct live keys under the key prefix, over every layer (what `keys("*")` returns).
    pub total_keys: u64,
    /// L1's bytes (see [`LayerUsage::bytes`]) in MiB: the memory this process spends on cached
    /// values. To print it, [`memory_used`](Self::memory_used) picks a unit that shows the
    /// number (a few KiB is `0.0` MiB).
    pub memory_used_mb: f64,
    /// The same, in bytes.
    pub memory_used_bytes: u64,
    /// One entry per enabled layer, L1 first.
    pub layers: Vec<LayerUsage>,
}

impl CacheUsage {
    /// L1's bytes, printable with a unit that fits: `512 B`, `1.3 KiB`, `4.2 MiB`.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = vorte_cache::Cache::from_config(&Default::default()).await?;
    /// cache.set("user:1", &"Ada").await?;
    /// let usage = cache.usage().await?;
    /// println!("L1 holds {}", usage.memory_used()); // "L1 holds 190 B"
    /// # Ok::<(), vorte_cache::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn memory_used(&self) -> ByteSize {
        ByteSize(self.memory_used_bytes)
    }

    /// What one layer holds, if it is enabled.
    pub fn layer(&self, layer: Layer) -> Option<&LayerUsage> {
        self.layers.iter().find(|l| l.layer == layer)
    }
}

/// What one layer holds, in a [`CacheUsage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LayerUsage {
    /// Which layer.
    pub layer: Layer,
    /// Its backend, as in configuration (`"memory"`, `"file"`, …).
    pub backend: &'static str,
    /// Entries the layer holds under the prefix. For L1, entries within their TTL (one whose tag was
    /// invalidated counts until a read drops it, so this can exceed [`CacheUsage::total_keys`]);
    /// for other layers, stored
    /// entries, including expired ones not yet reclaimed. `0` for a layer that could not be
    /// asked (counted in [`LayerStats::errors`]).
    pub keys: u64,
    /// Bytes of those entries. L1: key + serialized value + tags + a fixed per-entry overhead
    /// (a fixed 160 B covering the entry and quick_cache's slot).
    /// Other layers: stored bytes, envelopes included.
    pub bytes: u64,
}

/// A number of bytes that prints with a binary unit that shows it: `0 B`, `512 B`, `1.3 KiB`,
/// `4.0 MiB`, `2.5 GiB` (one decimal from KiB up). From [`CacheUsage::memory_used`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        // Move up while the number would print as 1024.0 or more in this unit.
        while value >= 1023.95 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod byte_size_tests {
    use super::ByteSize;

    #[test]
    fn prints_a_unit_that_shows_the_number() {
        let shown = |n: u64| ByteSize(n).to_string();
        assert_eq!(shown(0), "0 B");
        assert_eq!(shown(1023), "1023 B");
        assert_eq!(shown(1024), "1.0 KiB");
        assert_eq!(shown(1331), "1.3 KiB");
        assert_eq!(shown(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(shown(5 * 1024 * 1024 + 300 * 1024), "5.3 MiB");
        assert_eq!(shown(3 << 30), "3.0 GiB");
        assert_eq!(shown(u64::MAX), "16777216.0 TiB");
    }
}
