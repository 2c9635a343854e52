//! The chaos suite's shared parts (issue 10, "The chaos suite"; `docs/resilience.md`): the report
//! a `chaos_worker` process writes, the "database" it loads from (a `redis-server` the faults
//! never touch), the stale-read check, the worker processes as the tests drive them, and a
//! fault-injecting TCP proxy.
//!
//! The truth lives outside the cache, as in the history check (`docs/history.md`): key `k`'s
//! version is a counter in the database; every write bumps it first, then calls the cache, then
//! records when it ran ([`truth::WriteRecord`]). The loader reads the counter, so every cached
//! value is `KEY@VERSION`, and a read that returns a version some write had already replaced
//! (longer than the bound ago) is stale ([`stale`]).

pub mod proxy;
pub mod report;
pub mod stale;
pub mod truth;
pub mod workers;

pub use report::{Bucket, LayerSample, Report, Sample, StaleRead, Verify};
pub use workers::{WorkerSet, WorkerSpec};

// The values are the history check's: `KEY@VERSION`.
pub use crate::history_check::{parse_value, value_of};

/// splitmix64: a seeded, reproducible stream of numbers (the workers' key and call choices).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// One of `mix`'s choices, each as likely as its weight out of their sum (`mix` not empty).
    pub fn pick<T: Copy>(&mut self, mix: &[(T, u64)]) -> T {
        let total: u64 = mix.iter().map(|(_, w)| w).sum();
        let mut roll = self.below(total);
        for &(choice, weight) in mix {
            if roll < weight {
                return choice;
            }
            roll -= weight;
        }
        mix[mix.len() - 1].0
    }
}

/// Microseconds since the Unix epoch on this process's clock.
pub fn now_us() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}
