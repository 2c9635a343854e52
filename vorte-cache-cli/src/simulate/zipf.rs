//! A synthetic trace: `--zipf S --keys N --requests M [--seed X]`, requests drawn from `N` keys
//! whose popularity follows Zipf's law with exponent `S` (`docs/simulate.md#synthetic-zipf`).
//!
//! The draw is by inverse transform over the exact cumulative distribution (8 bytes a key), with
//! SplitMix64 as the generator: the same seed gives the same trace on every machine and every
//! build, which a published table needs.

use super::error::SimulateError;

/// The most keys a Zipf trace draws from (2 GiB of distribution).
const MAX_KEYS: u64 = 1 << 28;

/// The most requests a Zipf trace holds (32 GiB of keys).
const MAX_REQUESTS: u64 = 1 << 32;

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): small, fast, and a good enough spread for sampling.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A uniform float in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's finaliser: a bijection on `u64` that scatters neighbouring ranks, so that no
/// policy sees the hottest keys as small consecutive integers.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `requests` keys drawn from `keys` keys, key of rank `r` (from 1) with weight `1 / r^exponent`.
pub(crate) fn generate(
    exponent: f64,
    keys: u64,
    requests: u64,
    seed: u64,
) -> Result<Vec<u64>, SimulateError> {
    if !(exponent.is_finite() && exponent >= 0.0) {
        return Err(SimulateError::Argument(format!(
            "--zipf {exponent}: the exponent is a number >= 0"
        )));
    }
    if keys == 0 || requests == 0 {
        return Err(SimulateError::Argument(
            "--zipf needs --keys and --requests, both > 0".into(),
        ));
    }
    // 8 bytes a key for the distribution, 8 a request for the trace: refuse what cannot fit
    // rather than abort on a failed allocation.
    if keys > MAX_KEYS || requests > MAX_REQUESTS {
        return Err(SimulateError::Argument(format!(
            "--keys {keys} --requests {requests}: at most {MAX_KEYS} keys and {MAX_REQUESTS} requests"
        )));
    }
    let keys = keys as usize;
    let mut cumulative = Vec::with_capacity(keys);
    let mut total = 0.0f64;
    for rank in 1..=keys {
        total += (rank as f64).powf(-exponent);
        cumulative.push(total);
    }
    let mut random = SplitMix64::new(seed);
    let trace = (0..requests)
        .map(|_| {
            let target = random.next_f64() * total;
            let rank = cumulative.partition_point(|&c| c <= target).min(keys - 1);
            mix(rank as u64)
        })
        .collect();
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hottest_key_is_drawn_as_often_as_zipf_says() {
        // s = 1 over 100 keys: rank 1 has weight 1 / H(100) = 0.1927.
        let trace = generate(1.0, 100, 200_000, 7).unwrap_or_default();
        let hottest = trace.iter().filter(|&&k| k == mix(0)).count() as f64 / 200_000.0;
        assert!((hottest - 0.1927).abs() < 0.005, "{hottest}");
        let distinct: std::collections::HashSet<_> = trace.iter().collect();
        assert_eq!(distinct.len(), 100);
    }

    #[test]
    fn the_same_seed_draws_the_same_trace() {
        let a = generate(0.8, 1000, 1000, 1).unwrap_or_default();
        let b = generate(0.8, 1000, 1000, 1).unwrap_or_default();
        let c = generate(0.8, 1000, 1000, 2).unwrap_or_default();
        assert_eq!(a.len(), 1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
