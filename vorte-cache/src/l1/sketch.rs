//! A count-min sketch of 4-bit counters: how often a key was missed lately, for L1's admission
//! filter (`docs/l1-policy.md#frequency-sketch`).
//!
//! The layout follows TinyLFU (Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient Cache
//! Admission Policy", 2017) as Caffeine implements it: four counters per key, each in a 64-bit word
//! of sixteen nibbles, the estimate the least of the four, and every counter halved after
//! `SAMPLES_PER_ENTRY` × capacity increments, so old popularity fades. The table is four times
//! Caffeine's (`WORDS_PER_ENTRY`): it counts misses only, and fewer collisions keep a one-off key
//! from borrowing a frequent one's count (`docs/l1-policy.md#frequency-sketch`).
//!
//! Counters are updated with relaxed loads and stores, without a lock: two racing increments may
//! count once, which only makes an estimate a little low.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Increments per slot of capacity between two halvings (TinyLFU's sample size W = 10 × C).
const SAMPLES_PER_ENTRY: usize = 10;

/// Words (sixteen counters each) per entry of capacity. Replayed on P3 at 38,127 entries, 1, 2 and 4
/// words give 20.59 %, 20.79 % and 20.95 % (8: 20.88 %); at 76,254 entries 33.64 %, 34.41 % and
/// 34.92 % (`docs/l1-policy.md#frequency-sketch`).
const WORDS_PER_ENTRY: usize = 4;

/// The smallest table, in words (sixteen counters each).
const MIN_WORDS: usize = 64;

/// Mixes a key's hash into the index of its counter in each of the four rows.
const ROW_SEEDS: [u64; 4] = [
    0xc3a5_c85c_97cb_3127,
    0xb492_b66f_be98_f273,
    0x9ae1_6a3b_2f90_404f,
    0xcbf2_9ce4_8422_2325,
];

/// Halves every nibble of a word at once.
const HALVE_MASK: u64 = 0x7777_7777_7777_7777;

/// Recent frequencies of hashed keys.
#[derive(Debug)]
pub(crate) struct FrequencySketch {
    words: Box<[AtomicU64]>,
    mask: usize,
    increments: AtomicUsize,
    period: usize,
}

impl FrequencySketch {
    /// A sketch for a cache of `capacity` entries: `WORDS_PER_ENTRY` words (sixteen counters
    /// each) per entry.
    pub(crate) fn new(capacity: usize) -> FrequencySketch {
        let words = capacity
            .max(MIN_WORDS)
            .saturating_mul(WORDS_PER_ENTRY)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX / 2 + 1);
        FrequencySketch {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            mask: words - 1,
            increments: AtomicUsize::new(0),
            period: capacity.max(MIN_WORDS).saturating_mul(SAMPLES_PER_ENTRY),
        }
    }

    /// The word and the bit offset of `hash`'s counter in `row`.
    #[inline]
    fn slot(&self, hash: u64, row: usize) -> (usize, u32) {
        let mixed = (hash ^ ROW_SEEDS[row]).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mixed = mixed ^ (mixed >> 29);
        ((mixed as usize) & self.mask, ((mixed >> 60) as u32) * 4)
    }

    /// How often `hash` was counted lately (0 to 15).
    pub(crate) fn estimate(&self, hash: u64) -> u8 {
        (0..ROW_SEEDS.len())
            .map(|row| {
                let (word, shift) = self.slot(hash, row);
                ((self.words[word].load(Ordering::Relaxed) >> shift) & 15) as u8
            })
            .min()
            .unwrap_or(0)
    }

    /// Counts one more occurrence of `hash`; halves every counter at the end of a period.
    pub(crate) fn increment(&self, hash: u64) {
        for row in 0..ROW_SEEDS.len() {
            let (word, shift) = self.slot(hash, row);
            let value = self.words[word].load(Ordering::Relaxed);
            if (value >> shift) & 15 < 15 {
                self.words[word].store(value + (1 << shift), Ordering::Relaxed);
            }
        }
        if self.increments.fetch_add(1, Ordering::Relaxed) + 1 >= self.period {
            self.increments.store(0, Ordering::Relaxed);
            for word in self.words.iter() {
                let value = word.load(Ordering::Relaxed);
                word.store((value >> 1) & HALVE_MASK, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_at_fifteen_and_keys_stay_apart() {
        let sketch = FrequencySketch::new(1000);
        for _ in 0..20 {
            sketch.increment(7);
        }
        sketch.increment(8);
        assert_eq!(sketch.estimate(7), 15);
        assert_eq!(sketch.estimate(8), 1);
        assert_eq!(sketch.estimate(9), 0);
    }

    #[test]
    fn the_table_has_four_words_per_entry_and_the_period_ten_increments() {
        let sketch = FrequencySketch::new(1000);
        assert_eq!(sketch.words.len(), 4096);
        assert_eq!(sketch.mask, 4095);
        assert_eq!(sketch.period, 10_000);
    }

    #[test]
    fn a_period_halves_every_count() {
        let sketch = FrequencySketch::new(MIN_WORDS);
        for _ in 0..8 {
            sketch.increment(1);
        }
        // Fill the rest of the period with other keys: the last increment halves.
        for key in 0..(MIN_WORDS * SAMPLES_PER_ENTRY - 8) as u64 {
            sketch.increment(1_000_000 + key);
        }
        // Other keys may share some of its counters, never all four for long: about half of 8.
        let halved = sketch.estimate(1);
        assert!((4..8).contains(&halved), "{halved}");
    }
}
