//! `moka`: `moka::sync::Cache` with `max_capacity(n)` (W-TinyLFU: a window LRU, a frequency
//! sketch admitting to a segmented LRU).
//!
//! moka applies reads, writes, admission and eviction in batches ("pending tasks") that it runs
//! when its buffers fill. A replay calls `run_pending_tasks()` after every insert, so each fill
//! is admitted or rejected (and the cache brought back to its capacity) before the next request:
//! the figures then reflect moka's policy rather than when its batches happened to run, and are
//! the same on every run (`docs/simulate.md#policies`).

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use super::Policy;

/// SipHash with fixed keys instead of moka's random ones: its frequency sketch and its shards
/// see the same hashes on every run, so a replay's figures repeat exactly.
type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// `moka::sync::Cache` with `max_capacity(capacity)`.
pub(crate) struct Moka(moka::sync::Cache<u64, (), FixedHasher>);

impl Moka {
    /// A cache of `capacity` entries, each weighing one.
    pub(crate) fn new(capacity: usize) -> Moka {
        Moka(
            moka::sync::Cache::builder()
                .max_capacity(capacity as u64)
                .build_with_hasher(FixedHasher::default()),
        )
    }
}

impl Policy for Moka {
    fn get(&mut self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }

    fn insert(&mut self, key: u64) {
        self.0.insert(key, ());
        self.0.run_pending_tasks();
    }

    fn remove(&mut self, key: u64) {
        self.0.invalidate(&key);
        self.0.run_pending_tasks();
    }
}
