//! L1's eviction and admission policy, over any key and value: the one code that both
//! [`L1Memory`](super::L1Memory) and [`crate::simulate::L1Model`] run
//! (`docs/l1-policy.md`).
//!
//! quick_cache is the store and evicts (its CLOCK-Pro-like hot, cold and ghost rings). Around it,
//! on the miss path only:
//!
//! - a [`FrequencySketch`] counts each insert (that is, each miss) by key hash;
//! - a TinyLFU admission filter: once a shard is full, a new key goes in only if it was missed at
//!   least as often lately as the last key that shard evicted; a rejected key still replaces the
//!   entry it has if it has one, so a write is never lost (`docs/l1-policy.md#admission`);
//! - set dueling decides whether the filter is on: one shard always admits, one always filters
//!   (two of each from 16 shards), and the others follow whichever kind missed less lately
//!   (`docs/l1-policy.md#dueling`). Shards are independent caches, so the leaders do not disturb
//!   each other's measurement.
//!
//! A hit is quick_cache's `get` and nothing else.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Equivalent, Lifecycle, Weighter};

use super::sketch::FrequencySketch;

/// quick_cache's share of capacity for hot entries: new keys wait in the remaining cold tenth.
/// Measured against the default 0.97 on OLTP, P3 and Zipf (`docs/l1-policy.md#hot-share`).
const HOT_ALLOCATION: f64 = 0.9;

/// Ghost (recently evicted) keys kept, as a share of the entry capacity: quick_cache's default.
const GHOST_SHARE: f64 = 0.5;

/// quick_cache halves its shard count until each shard expects this many items.
const MIN_ITEMS_PER_SHARD: u64 = 32;

/// The fewest shards: two leaders and six followers, so a losing leader costs at most an eighth of
/// its loss.
const MIN_SHARDS: usize = 8;

/// The first shard that always admits, and the first that always filters (see [`leaders`]).
#[cfg(test)]
const ADMIT_LEADER: usize = 0;
#[cfg(test)]
const FILTER_LEADER: usize = 1;

/// Entries per shard above which a larger L1 gets more shards, up to `MAX_SHARDS_FOR_CAPACITY`:
/// more shards let the leaders be two of each kind, which evens out the keys they happen to get,
/// and hold a smaller share of L1 (`docs/l1-policy.md#dueling`).
const ITEMS_PER_SHARD: u64 = 1024;

/// The most shards chosen for capacity alone.
const MAX_SHARDS_FOR_CAPACITY: usize = 32;

/// How many of `shards` shards lead the duel: the first ones, alternately admitting and
/// filtering. Two of each from 16 shards, one of each from 4, none below (the followers then
/// keep the filter off).
fn leaders(shards: usize) -> usize {
    match shards {
        0..4 => 0,
        4..16 => 2,
        _ => 4,
    }
}

/// Bound of the duel's counter: how long a past lead is remembered, in leader misses.
const DUEL_BOUND: i32 = 512;

/// The state of admission shared with the eviction hook.
#[derive(Debug)]
struct Admission {
    sketch: FrequencySketch,
    /// Misses of the admitting leader minus those of the filtering one, bounded: above zero,
    /// filtering misses less and the followers filter.
    duel: AtomicI32,
    /// Entries evicted for room, or refused.
    evicted: AtomicU64,
}

impl Admission {
    /// Records a miss of `hash` in shard `shard` of `shards`, and answers whether the key may go
    /// in; `victim` is the hash of the last key that shard evicted (0: none yet, it is filling).
    fn admits(&self, hash: u64, shard: usize, shards: usize, victim: u64) -> bool {
        self.sketch.increment(hash);
        let filter = if shard < leaders(shards) {
            // Even leaders admit (ADMIT_LEADER is 0), odd ones filter (FILTER_LEADER is 1).
            let filters = shard % 2 == 1;
            self.shift_duel(if filters { -1 } else { 1 });
            filters
        } else {
            self.duel.load(Ordering::Relaxed) > 0
        };
        if !filter || victim == 0 {
            return true;
        }
        self.sketch.estimate(hash) >= self.sketch.estimate(victim)
    }

    fn shift_duel(&self, by: i32) {
        // Racing updates may lose one step: the counter is a trend, not an account.
        let duel = self.duel.load(Ordering::Relaxed);
        self.duel.store(
            (duel + by).clamp(-DUEL_BOUND, DUEL_BOUND),
            Ordering::Relaxed,
        );
    }
}

/// quick_cache's eviction hook: counts evictions and hands the evicted items back (the first two
/// of an insert), to be dropped once the shard's lock is released, as quick_cache's default
/// lifecycle does; [`Policy::insert`] reads the last victim's key from them.
pub(crate) struct AdmissionLifecycle<K, V> {
    admission: Arc<Admission>,
    _items: std::marker::PhantomData<fn(K, V)>,
}

impl<K, V> Clone for AdmissionLifecycle<K, V> {
    fn clone(&self) -> Self {
        AdmissionLifecycle {
            admission: self.admission.clone(),
            _items: std::marker::PhantomData,
        }
    }
}

impl<K, V> Lifecycle<K, V> for AdmissionLifecycle<K, V> {
    type RequestState = [Option<(K, V)>; 2];

    #[inline]
    fn on_evict(&self, state: &mut Self::RequestState, key: K, val: V) {
        self.admission.evicted.fetch_add(1, Ordering::Relaxed);
        if state[0].is_none() {
            state[0] = Some((key, val));
        } else if state[1].is_none() {
            state[1] = Some((key, val));
        }
    }
}

/// The size of an L1 policy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PolicySize {
    /// Entries it is expected to hold (`max_size`).
    pub(crate) max_items: u64,
    /// Its bound, in the weighter's unit (entries, or bytes).
    pub(crate) capacity: u64,
    /// Shards, when the default does not fit: four per core, or one per `ITEMS_PER_SHARD`
    /// entries within `MIN_SHARDS..=MAX_SHARDS_FOR_CAPACITY`, whichever is more.
    pub(crate) shards: Option<usize>,
}

/// quick_cache's options for `size`: the one place that decides them.
fn options(size: PolicySize) -> quick_cache::OptionsBuilder {
    let shards = size.shards.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let for_capacity = ((size.max_items / ITEMS_PER_SHARD) as usize)
            .next_power_of_two()
            .clamp(MIN_SHARDS, MAX_SHARDS_FOR_CAPACITY);
        (cores * 4).max(for_capacity)
    });
    let max_items = size.max_items.max(1);
    // quick_cache sizes shards from the item estimate: keep every shard, for the duel, and keep the
    // ghost ring at GHOST_SHARE of the real item count.
    let estimate = max_items.max(MIN_ITEMS_PER_SHARD * shards.next_power_of_two() as u64);
    let mut options = quick_cache::OptionsBuilder::new();
    options
        .shards(shards)
        .estimated_items_capacity(estimate as usize)
        .weight_capacity(size.capacity.max(1))
        .hot_allocation(HOT_ALLOCATION)
        .ghost_allocation((GHOST_SHARE * max_items as f64 / estimate as f64).clamp(0.0, 1.0));
    options
}

/// quick_cache under L1's admission filter, hashing keys with `S`: L1 keeps quick_cache's
/// randomly seeded default, the simulator a fixed one so that a replay repeats exactly
/// (`docs/l1-policy.md#repeatable-replays`).
pub(crate) struct Policy<K, V, W, S = DefaultHashBuilder> {
    cache: QuickCache<K, V, W, S, AdmissionLifecycle<K, V>>,
    admission: Arc<Admission>,
    /// Per shard, the hash of the last key it evicted: the stand-in for its next victim
    /// (TinyLFU compares a candidate with the victim it would displace). Zero while the shard has
    /// evicted nothing: it is filling, and admits all.
    victims: Box<[AtomicU64]>,
    hasher: S,
}

impl<K, V, W, S> std::fmt::Debug for Policy<K, V, W, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("duel", &self.admission.duel.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K, V, W> Policy<K, V, W>
where
    K: Eq + Hash + Clone,
    V: Clone,
    W: Weighter<K, V> + Clone,
{
    /// An empty policy of `size`, weighing entries with `weighter`, hashing with quick_cache's
    /// randomly seeded default.
    pub(crate) fn new(size: PolicySize, weighter: W) -> Self {
        Policy::with_hasher(size, weighter, DefaultHashBuilder::default())
    }
}

impl<K, V, W, S> Policy<K, V, W, S>
where
    K: Eq + Hash + Clone,
    V: Clone,
    W: Weighter<K, V> + Clone,
    S: BuildHasher + Clone,
{
    /// An empty policy of `size`, weighing entries with `weighter` and hashing keys (for
    /// quick_cache's shards and for the sketch) with `hasher`.
    pub(crate) fn with_hasher(size: PolicySize, weighter: W, hasher: S) -> Self {
        let admission = Arc::new(Admission {
            sketch: FrequencySketch::new(size.max_items.max(1) as usize),
            duel: AtomicI32::new(0),
            evicted: AtomicU64::new(0),
        });
        let lifecycle = AdmissionLifecycle {
            admission: admission.clone(),
            _items: std::marker::PhantomData,
        };
        let cache = match options(size).build() {
            Ok(options) => QuickCache::with_options(options, weighter, hasher.clone(), lifecycle),
            // The builder only fails on a missing capacity or item estimate, both set above.
            Err(_) => QuickCache::with(
                size.max_items.max(1) as usize,
                size.capacity.max(1),
                weighter,
                hasher.clone(),
                lifecycle,
            ),
        };
        // One victim slot per shard, as many as quick_cache settled on.
        let victims = (0..cache.num_shards()).map(|_| AtomicU64::new(0)).collect();
        Policy {
            cache,
            admission,
            victims,
            hasher,
        }
    }

    /// A lookup: quick_cache's, nothing added.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.cache.get(key)
    }

    /// Puts `value` under `key` after a miss, unless the admission filter turns a new key away; a
    /// key already held is always replaced.
    pub(crate) fn insert(&self, key: K, value: V) {
        let hash = self.hasher.hash_one(&key);
        let shard = self.cache.shard_index(&key);
        let slot = self.victims.get(shard);
        let victim = slot.map_or(0, |v| v.load(Ordering::Relaxed));
        if self
            .admission
            .admits(hash, shard, self.victims.len(), victim)
        {
            self.put(key, value, slot);
        } else if self.cache.replace(key, value, false).is_err() {
            self.admission.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Puts `value` under `key` whatever the admission filter would say: a caller's `set` is new
    /// truth, and reading it back at once is a guarantee (`docs/guarantees.md#g1-read-your-writes`),
    /// so only copies (loads, back-fills) are filtered. The key still counts in the sketch.
    pub(crate) fn insert_admitted(&self, key: K, value: V) {
        self.admission.sketch.increment(self.hasher.hash_one(&key));
        let slot = self.victims.get(self.cache.shard_index(&key));
        self.put(key, value, slot);
    }

    fn put(&self, key: K, value: V, victim_slot: Option<&AtomicU64>) {
        let mut evicted: [Option<(K, V)>; 2] = Default::default();
        self.cache.insert_with_lifecycle(key, value, &mut evicted);
        // The last key evicted, if any; the evicted values drop here, outside the lock.
        let last = evicted[1].as_ref().or(evicted[0].as_ref());
        if let (Some(slot), Some((key, _))) = (victim_slot, last) {
            slot.store(self.hasher.hash_one(key).max(1), Ordering::Relaxed);
        }
    }

    /// Removes `key`, returning whether it was held.
    pub(crate) fn remove<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.cache.remove(key).is_some()
    }

    /// Removes `key` only if `f` accepts its value.
    pub(crate) fn remove_if<Q, F>(&self, key: &Q, f: F)
    where
        Q: Hash + Equivalent<K> + ?Sized,
        F: FnOnce(&V) -> bool,
    {
        self.cache.remove_if(key, f);
    }

    pub(crate) fn clear(&self) {
        self.cache.clear();
    }

    /// Every key and value, shard by shard.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.cache.iter()
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    /// Its bound, in the weighter's unit.
    pub(crate) fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    /// Entries evicted for room or refused admission since it was built.
    pub(crate) fn evicted(&self) -> u64 {
        self.admission.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
