//! Time: the wall clock of envelopes ([`now_ms`]), and a coarse monotonic clock for the L1 hit
//! path with the thread that keeps it.
//!
//! Reading `Instant::now()` costs ~28 ns on our machines (more than a whole quick_cache lookup),
//! so L1 deadlines are checked against a millisecond counter: a hit reads one atomic. Every
//! precise reading also pushes the counter forward, so it is never behind the last write's clock.
//!
//! **What runs, and when.** One OS thread, `vorte-clock`, wakes every millisecond, reads
//! `Instant::now()` and stores the milliseconds into the counter (one atomic `fetch_max`): about
//! a thousand short wake-ups a second, a few microseconds of CPU in all. It runs only while a
//! [`Ticker`] exists. Whatever reads the coarse counter holds one: the L1 memory (its hits check
//! deadlines against it) and the Redis read batches (they measure queueing time with it). The
//! first `Ticker` starts the thread; once the last one is dropped, which happens when the last
//! cache is dropped, the thread exits within a tick. A later cache starts it again.
//!
//! **Lag.** The counter can lag real time by a tick plus however long the thread waits to be
//! scheduled. [`is_before`] therefore treats an entry as expired [`MARGIN_MS`] early: with a
//! thread that runs on time, no L1 entry is served past its deadline; on a machine so loaded that
//! the thread itself is delayed, the delay adds to the margin. Without any `Ticker` the counter
//! only moves on precise readings, which is why every reader of it holds one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How early an entry is treated as expired, to cover the thread's lag.
pub(crate) const MARGIN_MS: u64 = 2;

/// How often the thread advances the counter.
const TICK: Duration = Duration::from_millis(1);

static NOW_MS: AtomicU64 = AtomicU64::new(0);

/// Live [`Ticker`]s, read by the thread on each tick without taking [`THREAD`]'s lock.
static HOLDERS: AtomicUsize = AtomicUsize::new(0);

/// Whether the thread is running, and the count it is kept by. Starting and stopping both happen
/// under this lock, so a `Ticker` taken while the thread is deciding to exit is never left
/// without a thread.
static THREAD: Mutex<ThreadState> = Mutex::new(ThreadState {
    holders: 0,
    running: false,
});

struct ThreadState {
    holders: usize,
    running: bool,
}

fn thread_state() -> std::sync::MutexGuard<'static, ThreadState> {
    // The state is two integers updated together; a panic elsewhere cannot leave it half-written.
    THREAD.lock().unwrap_or_else(|p| p.into_inner())
}

/// The clock's origin.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Keeps the clock thread running while it lives (see the module docs). Cloning takes another.
#[derive(Debug)]
pub(crate) struct Ticker(());

impl Ticker {
    /// Takes a hold on the clock thread, starting it when it is not running.
    pub(crate) fn acquire() -> Ticker {
        let mut state = thread_state();
        state.holders += 1;
        HOLDERS.store(state.holders, Ordering::Release);
        // The counter may be stale after a pause with no thread: bring it to now at once.
        precise_ms();
        if !state.running {
            let spawned = std::thread::Builder::new()
                .name("vorte-clock".into())
                .spawn(tick);
            match spawned {
                Ok(_) => state.running = true,
                // Without the thread the counter only moves on precise readings (writes): L1
                // would serve entries past their deadline, so say so loudly. The next `Ticker`
                // tries again.
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the clock thread; L1 expiry is degraded")
                }
            }
        }
        Ticker(())
    }
}

impl Clone for Ticker {
    fn clone(&self) -> Self {
        Ticker::acquire()
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let mut state = thread_state();
        state.holders = state.holders.saturating_sub(1);
        HOLDERS.store(state.holders, Ordering::Release);
    }
}

/// The thread's body: advance the counter every tick until no `Ticker` is left.
fn tick() {
    loop {
        std::thread::sleep(TICK);
        precise_ms();
        if HOLDERS.load(Ordering::Acquire) == 0 {
            let mut state = thread_state();
            if state.holders == 0 {
                state.running = false;
                return;
            }
        }
    }
}

/// Milliseconds since the clock started, read precisely; also advances the coarse counter.
pub(crate) fn precise_ms() -> u64 {
    let now = epoch().elapsed().as_millis() as u64;
    NOW_MS.fetch_max(now, Ordering::Relaxed);
    now
}

/// Milliseconds since the clock started, as the coarse counter has them (up to a tick behind
/// while a [`Ticker`] lives).
#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "read by the Redis read batches")
)]
pub(crate) fn coarse_ms() -> u64 {
    NOW_MS.load(Ordering::Relaxed)
}

/// Whether the coarse clock is still safely before `deadline_ms`.
#[inline]
pub(crate) fn is_before(deadline_ms: u64) -> bool {
    NOW_MS.load(Ordering::Relaxed) + MARGIN_MS < deadline_ms
}

/// Whether the clock thread is running.
#[cfg(test)]
pub(crate) fn thread_is_running() -> bool {
    thread_state().running
}

/// Wall-clock milliseconds since the Unix epoch: what envelopes carry, so that every process and
/// every layer agrees on an entry's expiry.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_follows_real_time_while_a_ticker_lives() {
        let _ticker = Ticker::acquire();
        assert!(thread_is_running());
        let t0 = precise_ms();
        // Read the counter alone: no precise reading in between could have moved it. On a
        // loaded machine the ticker thread may wait for a core, so give it up to a second.
        let mut coarse = NOW_MS.load(Ordering::Relaxed);
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(10));
            coarse = NOW_MS.load(Ordering::Relaxed);
            if coarse >= t0 + 20 {
                break;
            }
        }
        assert!(coarse >= t0 + 20, "ticker advanced: {t0} -> {coarse}");
        assert!(!is_before(coarse + MARGIN_MS), "expired within the margin");
        assert!(is_before(coarse + MARGIN_MS + 50));
    }

    #[test]
    fn taking_a_ticker_brings_a_stale_counter_to_now() {
        let before = precise_ms();
        std::thread::sleep(Duration::from_millis(5));
        let ticker = Ticker::acquire();
        assert!(NOW_MS.load(Ordering::Relaxed) >= before + 5);
        let copy = ticker.clone();
        drop(ticker);
        assert!(thread_is_running(), "a clone keeps the thread");
        drop(copy);
    }
}
