//! `quick_cache`: the crate's sync cache with the options of `quick_cache::sync::Cache::new(n)`
//! (CLOCK-Pro style with its default hot/ghost split). vorte's L1 stores in the same crate with
//! options of its own; this row shows what those options change.
//!
//! The one departure from `new(n)`: a hasher with fixed keys instead of the crate's random one,
//! so that a replay's figures repeat exactly from run to run (`docs/simulate.md#policies`).

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use quick_cache::UnitWeighter;
use quick_cache::sync::{Cache, DefaultLifecycle};

use super::Policy;

/// SipHash with fixed keys.
type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// `quick_cache::sync::Cache::new(capacity)`'s options, with a fixed hasher.
pub(crate) struct QuickCache(Cache<u64, (), UnitWeighter, FixedHasher>);

impl QuickCache {
    /// A cache of `capacity` entries, each weighing one.
    pub(crate) fn new(capacity: usize) -> QuickCache {
        let capacity = capacity.max(1);
        QuickCache(Cache::with(
            capacity,
            capacity as u64,
            UnitWeighter,
            FixedHasher::default(),
            DefaultLifecycle::default(),
        ))
    }
}

impl Policy for QuickCache {
    fn get(&mut self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }

    fn insert(&mut self, key: u64) {
        self.0.insert(key, ());
    }

    fn remove(&mut self, key: u64) {
        self.0.remove(&key);
    }
}
