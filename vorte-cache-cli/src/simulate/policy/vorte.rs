//! `vorte`: the library's own L1 policy, the same code the cache runs
//! (`vorte_cache::simulate::L1Model`).

use vorte_cache::simulate::L1Model;

use super::Policy;

/// L1's policy at one capacity.
pub(crate) struct Vorte(L1Model);

impl Vorte {
    /// An L1 of `capacity` entries, as `[cache.l1] max_size = capacity` builds it.
    pub(crate) fn new(capacity: usize) -> Vorte {
        Vorte(L1Model::new(capacity as u64))
    }
}

impl Policy for Vorte {
    fn get(&mut self, key: u64) -> bool {
        self.0.get(key)
    }

    fn insert(&mut self, key: u64) {
        self.0.insert(key);
    }

    fn remove(&mut self, key: u64) {
        self.0.remove(key);
    }
}
