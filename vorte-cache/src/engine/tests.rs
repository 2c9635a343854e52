//! Engine unit tests.

use super::*;

/// The read path's futures are allocated and moved on every call that misses L1: the write
/// path (back-fill, the loader's store) is boxed inside them only when it runs. Inline, it
/// made `get`'s future 6.5 KB; boxed, `get`'s is 0.7 KB and `get_or_set`'s 0.9 KB. `get`'s was
/// 1,008 B under a bound of 1,024; the validator of conditional refresh, a thin pointer in the
/// envelope, which the read's future holds in three places, made it 1,032 B
/// (`docs/architecture.md#conditional-refresh`).
#[test]
fn read_futures_stay_small() {
    let engine = Arc::new(Engine::embedded_default());
    let get = engine.get::<String>("k");
    assert!(
        std::mem::size_of_val(&get) <= 1_032,
        "Engine::get future: {} bytes",
        std::mem::size_of_val(&get)
    );
    let options = LoadOptions::default();
    let get_or_set = engine.get_or_set::<i32, _, _, std::io::Error>(
        "k",
        || async { Ok(1) },
        None,
        None,
        &[],
        LayerSet::ALL,
        &options,
        None,
    );
    assert!(
        std::mem::size_of_val(&get_or_set) <= 1_536,
        "Engine::get_or_set future: {} bytes",
        std::mem::size_of_val(&get_or_set)
    );
}

/// A zstd entry read by a build without zstd is another build's, not corrupt: a miss that stays
/// for the builds that can read it. Anything else that does not decode is removed.
#[test]
fn an_entry_this_build_cannot_read_is_left_for_the_builds_that_can() {
    assert!(!Engine::removes_undecodable(&crate::codec::ZSTD_NOT_BUILT));
    assert!(Engine::removes_undecodable(&crate::codec::Corrupt(
        "checksum mismatch"
    )));
}

/// `docs/resilience.md#ttl-jitter`: each TTL is multiplied by a factor in `1 ± ttl_jitter`,
/// spread over the whole range, and a write without jitter keeps its TTL exactly; the fail-safe
/// window is added after the jittered freshness.
#[test]
fn ttl_jitter_spreads_expiries_within_its_bounds() {
    let mut config = CacheConfig::default();
    config.loads.ttl_jitter = 0.2;
    config.loads.fail_safe_max = Some(Duration::from_secs(5));
    let engine = Engine::new(
        &config,
        Vec::new(),
        None,
        DEFAULT_LEASE_TTL,
        Default::default(),
    );
    let now = 1_000_000;
    let ttl = Some(Duration::from_secs(10));
    let lives: Vec<_> = (0..2_000)
        .map(|_| engine.lifetime(Expiry::Ttl(ttl), Aging::default(), false, now))
        .collect();
    let fresh: Vec<u64> = lives.iter().map(|l| l.fresh_until_ms - now).collect();
    let (min, max) = (
        fresh.iter().copied().min().unwrap_or(0),
        fresh.iter().copied().max().unwrap_or(0),
    );
    assert!(min >= 8_000 && max <= 12_000, "{min}..{max}");
    assert!(
        min < 8_400 && max > 11_600,
        "spread over the range: {min}..{max}"
    );
    assert!(
        lives
            .iter()
            .all(|l| l.expires_at_ms == l.fresh_until_ms + 5_000),
        "the stale window follows the jittered freshness"
    );
    let exact = Aging {
        jitter: Some(0.0),
        stale_for: Some(Duration::ZERO),
        load_ms: 0,
    };
    let plain = engine.lifetime(Expiry::Ttl(ttl), exact, false, now);
    assert_eq!(
        (plain.fresh_until_ms, plain.expires_at_ms),
        (now + 10_000, now + 10_000)
    );
    // A value with a validator is kept stale as long again as its TTL, for revalidation, or
    // for its fail-safe window if that is longer.
    let kept = engine.lifetime(Expiry::Ttl(ttl), exact, true, now);
    assert_eq!(
        (kept.fresh_until_ms, kept.expires_at_ms),
        (now + 10_000, now + 20_000)
    );
    let long_fail_safe = Aging {
        stale_for: Some(Duration::from_secs(60)),
        ..exact
    };
    let kept = engine.lifetime(Expiry::Ttl(ttl), long_fail_safe, true, now);
    assert_eq!(kept.expires_at_ms, now + 70_000);
}
