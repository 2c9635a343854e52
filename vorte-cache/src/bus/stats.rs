//! What a cache's bus counts: messages published, retried and dropped, gaps found, receiver
//! failures, and `#[on_event]` handlers that panicked or ran out of time.

#[cfg(feature = "redis")]
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one cache's bus, since the cache was built: [`Cache::bus_stats`](crate::Cache::bus_stats).
///
/// Every count here is also logged when it happens; see `docs/consistency.md#gaps-g4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BusStats {
    /// Messages (invalidations and events) appended to a stream.
    pub published: u64,
    /// Appends that failed or timed out. The message waited in order with those after it and was
    /// tried again, with backoff, until the bus took it.
    pub publish_retries: u64,
    /// Messages never delivered: more were waiting than the publisher keeps (they were replaced by
    /// one notice that makes every other process drop its L1), or the cache was dropped first.
    pub publish_dropped: u64,
    /// Times a receiver found that messages it had not read were lost (trimmed, a stream gone or
    /// gone back, a start after the cache was built) and dropped L1 and the tag versions.
    pub gaps: u64,
    /// Receiver commands that failed or went unanswered; the receiver renewed its connection and
    /// checked for a gap before reading on.
    pub receiver_errors: u64,
    /// Times this cache stopped trusting its L1 and memoised versions because the receiver of
    /// invalidations found its bus failing or silent; it trusts them again once the receiver
    /// reads the bus again (`docs/guarantees.md#g4-gap-detection`).
    pub suspensions: u64,
    /// `#[on_event]` handlers that panicked while running an event read from the bus.
    pub handler_panics: u64,
    /// Such handlers abandoned after `[cache.bus] handler_timeout_ms`.
    pub handler_timeouts: u64,
}

/// The live counters behind [`BusStats`], shared by a cache's publisher and its receivers.
#[cfg(feature = "redis")]
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_retries: AtomicU64,
    pub(crate) publish_dropped: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) receiver_errors: AtomicU64,
    pub(crate) suspensions: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    pub(crate) handler_timeouts: AtomicU64,
}

#[cfg(feature = "redis")]
impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BusStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BusStats {
            published: get(&self.published),
            publish_retries: get(&self.publish_retries),
            publish_dropped: get(&self.publish_dropped),
            gaps: get(&self.gaps),
            receiver_errors: get(&self.receiver_errors),
            suspensions: get(&self.suspensions),
            handler_panics: get(&self.handler_panics),
            handler_timeouts: get(&self.handler_timeouts),
        }
    }
}
