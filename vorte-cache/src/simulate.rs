//! L1's eviction policy, driven key by key: what `vorte-cache simulate` replays a trace through
//! (`docs/simulate.md`).
//!
//! [`L1Model`] runs the same policy code as the cache's L1 (`l1::Policy`, sized by
//! `l1::policy_size`, `docs/l1-policy.md`), so a replay measures the policy the library runs, not
//! a copy of it. It keeps keys only: no values, no deadlines (a replay with a TTL expires entries
//! itself, through [`L1Model::remove`]).

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use quick_cache::UnitWeighter;

use crate::l1::{Policy, policy_size};

/// The model's hasher: std's SipHash with fixed keys. L1 seeds quick_cache's hasher at random, so
/// which keys share a shard, and which lead the admission duel, changes from one cache to the
/// next (`docs/l1-policy.md#repeatable-replays`); a fixed seed makes a replay repeat exactly.
type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// L1's policy over `u64` keys, each weighing one entry.
#[derive(Debug)]
pub struct L1Model {
    policy: Policy<u64, (), UnitWeighter, FixedHasher>,
}

impl L1Model {
    /// An L1 that holds `capacity` entries, as `[cache.l1] max_size = capacity` builds it.
    pub fn new(capacity: u64) -> L1Model {
        let capacity = capacity.max(1);
        L1Model {
            policy: Policy::with_hasher(
                policy_size(capacity, capacity, false),
                UnitWeighter,
                FixedHasher::default(),
            ),
        }
    }

    /// A read of `key`: whether L1 holds it.
    pub fn get(&self, key: u64) -> bool {
        self.policy.get(&key).is_some()
    }

    /// What the cache does after a miss's load: `key` is offered to L1, whose admission filter
    /// may turn it away (`docs/l1-policy.md#admission`).
    pub fn insert(&self, key: u64) {
        self.policy.insert(key, ());
    }

    /// An expiry or an invalidation: `key` leaves L1.
    pub fn remove(&self, key: u64) {
        self.policy.remove(&key);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.policy.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.policy.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hits of a replay through a fresh model of `capacity` entries of a stream whose every third
    /// read goes to one of 50 hot keys and the others spread over 5,003 keys.
    fn replay_hits(capacity: u64) -> u64 {
        let model = L1Model::new(capacity);
        let mut hits = 0;
        for i in 0..200_000u64 {
            let key = if i % 3 == 0 {
                i % 50
            } else {
                1_000 + i.wrapping_mul(2_654_435_761) % 5_003
            };
            if model.get(key) {
                hits += 1;
            } else {
                model.insert(key);
            }
        }
        hits
    }

    #[test]
    fn two_replays_of_one_trace_hit_exactly_alike() {
        for capacity in [64, 500, 2_000] {
            let first = replay_hits(capacity);
            assert!(first > 0, "{capacity} entries: no hit at all");
            assert_eq!(first, replay_hits(capacity), "{capacity} entries");
        }
    }

    #[test]
    fn a_looping_scan_larger_than_the_model_still_hits_its_hot_keys() {
        let model = L1Model::new(512);
        let mut hot_hits = 0;
        let mut hot_reads = 0;
        for round in 0..40u64 {
            for key in 0..100u64 {
                hot_reads += 1;
                if model.get(key) {
                    hot_hits += 1;
                } else {
                    model.insert(key);
                }
            }
            // 2,000 keys looped over: more than the model holds.
            for key in 0..250u64 {
                let key = 10_000 + (round * 250 + key) % 2_000;
                if !model.get(key) {
                    model.insert(key);
                }
            }
        }
        assert!(model.len() <= 512);
        assert!(
            hot_hits * 10 >= hot_reads * 9,
            "{hot_hits} hits in {hot_reads} reads of the hot keys"
        );
    }
}
