//! Which server holds a key: rendezvous (highest-random-weight) hashing on xxh3, so every process
//! that lists the same servers, in any order, picks the same one, and removing a server moves only
//! its keys.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Rendezvous hashing: the index of the seed that scores highest for `key`.
pub(super) fn rendezvous(seeds: &[u64], key: &str) -> usize {
    let mut best = 0;
    let mut best_score = 0;
    for (i, seed) in seeds.iter().enumerate() {
        let score = xxh3_64_with_seed(key.as_bytes(), *seed);
        if i == 0 || score > best_score {
            best = i;
            best_score = score;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use xxhash_rust::xxh3::xxh3_64;

    use super::*;

    #[test]
    fn rendezvous_is_stable_and_minimal() {
        let seeds: Vec<u64> = ["a:1", "b:2", "c:3"]
            .iter()
            .map(|l| xxh3_64(l.as_bytes()))
            .collect();
        let keys: Vec<String> = (0..3000).map(|i| format!("key:{i}")).collect();
        let picks: Vec<usize> = keys.iter().map(|k| rendezvous(&seeds, k)).collect();
        // Deterministic.
        assert_eq!(
            picks,
            keys.iter()
                .map(|k| rendezvous(&seeds, k))
                .collect::<Vec<_>>()
        );
        // Spread over every server.
        for s in 0..3 {
            let n = picks.iter().filter(|p| **p == s).count();
            assert!(n > 800, "server {s} got {n} of 3000");
        }
        // Order of the server list does not matter.
        let reversed: Vec<u64> = seeds.iter().rev().copied().collect();
        for (k, p) in keys.iter().zip(&picks) {
            assert_eq!(2 - rendezvous(&reversed, k), *p);
        }
        // Removing server 1 moves only its keys.
        let without = [seeds[0], seeds[2]];
        for (k, p) in keys.iter().zip(&picks) {
            let now = [0, 2][rendezvous(&without, k)];
            if *p != 1 {
                assert_eq!(now, *p);
            }
        }
    }
}
