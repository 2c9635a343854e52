//! The circuit breaker's own arithmetic: jittered cool-downs. Its behaviour around a store is
//! tested over the in-memory test store, in `testing/circuit_tests.rs` (the test store lives above
//! the stores, so their tests that need it live there).

use super::*;

/// Each opening's cool-down lies within ±20 % of `breaker_cooldown`, and the draws differ, so
/// processes that opened together do not probe together.
#[test]
fn cooldowns_are_jittered_within_bounds() {
    let cooldown = Duration::from_millis(1000);
    assert_eq!(jittered_ms(cooldown, 0.0), 800);
    assert_eq!(jittered_ms(cooldown, 0.5), 1000);
    assert_eq!(jittered_ms(cooldown, 1.0), 1200);
    assert_eq!(
        jittered_ms(Duration::from_micros(1), 0.0),
        1,
        "at least 1 ms"
    );

    let breaker = Breaker::new(BreakerConfig {
        threshold: 1,
        cooldown,
    });
    let draws: Vec<u64> = (0..200).map(|_| breaker.next_probe_at(10_000)).collect();
    for at in &draws {
        assert!((10_800..=11_200).contains(at), "{at} out of bounds");
    }
    let distinct: std::collections::HashSet<_> = draws.iter().collect();
    assert!(
        distinct.len() > 20,
        "jittered: {} distinct draws",
        distinct.len()
    );
}
