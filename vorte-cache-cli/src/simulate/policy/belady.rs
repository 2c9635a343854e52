//! `belady`: the optimal offline policy (Belady's MIN), the bound no policy can beat. On a miss
//! it keeps the keys whose next use comes soonest: when full, it evicts the key whose next use is
//! farthest, and declines the new key itself when that key is the farthest (or never used
//! again), O(log n) a request through an ordered set keyed by next use.
//!
//! With a TTL, a key whose next use falls after its entry expires counts as never used again:
//! keeping it could not turn that request into a hit (`docs/simulate.md#policies`).

use std::collections::{BTreeSet, HashMap};

use super::Policy;
use crate::simulate::clock::Clock;

/// No next use.
const NEVER: usize = usize::MAX;

/// For each request, the index of the next request to the same key ([`NEVER`] if none).
#[derive(Debug)]
pub(crate) struct NextUse(Vec<usize>);

impl NextUse {
    /// One backward pass over `keys`.
    pub(crate) fn of(keys: &[u64]) -> NextUse {
        let mut last: HashMap<u64, usize> = HashMap::new();
        let mut next = vec![NEVER; keys.len()];
        for (index, key) in keys.iter().enumerate().rev() {
            if let Some(later) = last.insert(*key, index) {
                next[index] = later;
            }
        }
        NextUse(next)
    }
}

/// The TTL a Belady replay runs under, and the clock that says when each request happens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expiry<'a> {
    /// Request times.
    pub(crate) clock: Clock<'a>,
    /// Seconds an entry lives after its load.
    pub(crate) ttl: f64,
}

/// Belady's MIN over one trace, driven in trace order.
pub(crate) struct Belady<'a> {
    capacity: usize,
    next_use: &'a [usize],
    expiry: Option<Expiry<'a>>,
    /// The index of the next request `get` will see.
    cursor: usize,
    /// Each held key's next use and load time.
    held: HashMap<u64, (usize, f64)>,
    /// Held keys by next use, farthest last.
    by_next_use: BTreeSet<(usize, u64)>,
}

impl<'a> Belady<'a> {
    /// An empty cache of `capacity` keys over the trace `next_use` was built from.
    pub(crate) fn new(
        capacity: usize,
        next_use: &'a NextUse,
        expiry: Option<Expiry<'a>>,
    ) -> Belady<'a> {
        Belady {
            capacity: capacity.max(1),
            next_use: &next_use.0,
            expiry,
            cursor: 0,
            held: HashMap::new(),
            by_next_use: BTreeSet::new(),
        }
    }

    /// When the key of request `index`, loaded at `loaded_at`, is next wanted while still fresh.
    fn priority(&self, index: usize, loaded_at: f64) -> usize {
        let next = self.next_use.get(index).copied().unwrap_or(NEVER);
        match self.expiry {
            Some(Expiry { clock, ttl }) if next != NEVER && clock.time(next) - loaded_at >= ttl => {
                NEVER
            }
            _ => next,
        }
    }
}

impl Policy for Belady<'_> {
    fn get(&mut self, key: u64) -> bool {
        let index = self.cursor;
        self.cursor += 1;
        let Some(&(old, loaded_at)) = self.held.get(&key) else {
            return false;
        };
        let new = self.priority(index, loaded_at);
        self.by_next_use.remove(&(old, key));
        self.by_next_use.insert((new, key));
        self.held.insert(key, (new, loaded_at));
        true
    }

    fn insert(&mut self, key: u64) {
        self.remove(key);
        let index = self.cursor.saturating_sub(1);
        let loaded_at = self.expiry.map_or(0.0, |e| e.clock.time(index));
        let priority = self.priority(index, loaded_at);
        if priority == NEVER {
            return;
        }
        if self.held.len() >= self.capacity {
            match self.by_next_use.last().copied() {
                Some((farthest, _)) if farthest <= priority => return,
                Some((farthest, victim)) => {
                    self.by_next_use.remove(&(farthest, victim));
                    self.held.remove(&victim);
                }
                None => {}
            }
        }
        self.held.insert(key, (priority, loaded_at));
        self.by_next_use.insert((priority, key));
    }

    fn remove(&mut self, key: u64) {
        if let Some((priority, _)) = self.held.remove(&key) {
            self.by_next_use.remove(&(priority, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(trace: &[u64], capacity: usize) -> usize {
        let next = NextUse::of(trace);
        let mut belady = Belady::new(capacity, &next, None);
        trace
            .iter()
            .filter(|&&key| {
                let hit = belady.get(key);
                if !hit {
                    belady.insert(key);
                }
                hit
            })
            .count()
    }

    #[test]
    fn next_use_points_at_the_next_request_to_the_same_key() {
        let next = NextUse::of(&[1, 2, 1, 3, 2]);
        assert_eq!(next.0, vec![2, 4, NEVER, NEVER, NEVER]);
    }

    #[test]
    fn keeps_the_keys_wanted_soonest() {
        // Capacity 2. a b c a b: at c (index 2), a is next wanted at 3, b at 4, c never:
        // c is declined, a and b hit.
        assert_eq!(hits(&[1, 2, 3, 1, 2], 2), 2);
        // a b c b c a, capacity 2: at c, a's next use (5) is farthest: a goes; b, c hit; a misses.
        assert_eq!(hits(&[1, 2, 3, 2, 3, 1], 2), 2);
    }
}
