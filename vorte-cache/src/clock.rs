//! A coarse monotonic clock for the L1 hit path.
//!
//! Reading `Instant::now()` costs ~28 ns on our machines (more than a whole quick_cache lookup),
//! so L1 deadlines are checked against a millisecond counter that a background thread advances
//! every millisecond: a hit reads one atomic. Every precise reading also pushes the counter
//! forward, so it is never behind the last write's clock.
//!
//! The counter can lag real time by a tick plus however long the ticker thread waits to be
//! scheduled. [`is_before`] therefore treats an entry as expired [`MARGIN_MS`] early: with a
//! ticker that runs on time, no L1 entry is served past its deadline; on a machine so loaded that
//! the ticker itself is delayed, the delay adds to the margin.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How early an entry is treated as expired, to cover the ticker's lag.
pub(crate) const MARGIN_MS: u64 = 2;

static NOW_MS: AtomicU64 = AtomicU64::new(0);

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("vorte-clock".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_millis(1));
                    precise_ms();
                }
            });
        if let Err(e) = spawned {
            // Without the ticker the counter only moves on precise readings (writes); L1 would
            // serve entries past their deadline, so say so loudly.
            tracing::error!(error = %e, "cannot start the clock thread; L1 expiry is degraded");
        }
        Instant::now()
    })
}

/// Milliseconds since the clock started, read precisely; also advances the coarse counter.
pub(crate) fn precise_ms() -> u64 {
    let now = start().elapsed().as_millis() as u64;
    NOW_MS.fetch_max(now, Ordering::Relaxed);
    now
}

/// Milliseconds since the clock started, as the coarse counter has them (up to a tick behind).
#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "read by the Redis read batches")
)]
pub(crate) fn coarse_ms() -> u64 {
    start();
    NOW_MS.load(Ordering::Relaxed)
}

/// Whether the coarse clock is still safely before `deadline_ms`.
#[inline]
pub(crate) fn is_before(deadline_ms: u64) -> bool {
    NOW_MS.load(Ordering::Relaxed) + MARGIN_MS < deadline_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_follows_real_time() {
        let t0 = precise_ms();
        std::thread::sleep(Duration::from_millis(30));
        let coarse = NOW_MS.load(Ordering::Relaxed);
        assert!(coarse >= t0 + 20, "ticker advanced: {t0} -> {coarse}");
        assert!(!is_before(coarse + MARGIN_MS), "expired within the margin");
        assert!(is_before(coarse + MARGIN_MS + 50));
    }
}
