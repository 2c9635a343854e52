//! The flush epoch: what makes `flush` hold across processes for fills that began before it
//! (`docs/consistency.md#flush-moves-an-epoch`).
//!
//! A flush empties the shared layers, and a fill compares-and-sets against what its read saw; a
//! fill that saw an empty slot before the flush would find one after it too and succeed. So every
//! entry below L1 carries the epoch its writer knew when its read or load began (a stamp under the
//! reserved tag [`FLUSH_EPOCH_TAG`], always the last stamp), and is valid only while that epoch
//! is at least the current one. `flush` moves the epoch on (to the wall-clock time in ms, and
//! always up), once, in the most shared layer: O(1), like a tag.
//!
//! Unlike a tag version the epoch only grows, and a missing record is epoch 0: a process that
//! still holds an older epoch (no bus, memo not yet expired) writes entries the others find
//! invalid (misses, never stale values), and a record lost with a restarted server leaves the
//! entries of every process valid rather than splitting them into two camps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::clock::now_ms;
use crate::codec::TagStamp;
use crate::error::Result;
use crate::key::FLUSH_EPOCH_TAG;
use crate::store::{Slot, Store};

/// How long the record lives: longer than any entry.
const RECORD_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// See the module docs.
#[derive(Debug)]
pub(super) struct FlushEpoch {
    /// The most shared layer, where the record lives; `None` with L1 alone (nothing to stamp).
    authority: Option<Arc<dyn Store>>,
    /// The epoch as last read or written here, and when.
    memo: Mutex<Option<(u64, Instant)>>,
    memo_ttl: Duration,
    /// While the bus does not answer, the memo is not trusted: each use reads the record.
    suspended: AtomicBool,
}

impl FlushEpoch {
    pub(super) fn new(authority: Option<Arc<dyn Store>>, memo_ttl: Duration) -> Self {
        FlushEpoch {
            authority,
            memo: Mutex::new(None),
            memo_ttl,
            suspended: AtomicBool::new(false),
        }
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, Option<(u64, Instant)>> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current epoch: memoised, else read from the record (missing: 0).
    pub(super) async fn current(&self) -> Result<u64> {
        let Some(store) = &self.authority else {
            return Ok(0);
        };
        if let Some((epoch, at)) = *self.memo()
            && at.elapsed() < self.memo_ttl
            && !self.suspended.load(Ordering::Relaxed)
        {
            return Ok(epoch);
        }
        self.read_record(store.as_ref()).await
    }

    /// The epoch in its record (missing or malformed: 0), learnt.
    async fn read_record(&self, store: &dyn Store) -> Result<u64> {
        let epoch = match store.get(Slot::Tag(FLUSH_EPOCH_TAG)).await? {
            Some(bytes) if bytes.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&bytes);
                u64::from_be_bytes(a)
            }
            _ => 0,
        };
        self.learn(epoch);
        Ok(epoch)
    }

    /// Whether a flush moved the epoch past the one `stamps` carry, read from the record (not
    /// the memo) and learnt. A fill asks once its copies landed: a flush in another process after
    /// its load began took away, with its clears, what would have refused it (a delete's
    /// tombstone), and a process that has not read the epoch since would take it for current. A
    /// record that cannot be read (its authority is down) or is missing says no: the first
    /// costs the flush's protection for that while, as in reads; the second may be a restarted
    /// server, or a flush between its clears and its new record (a window of one write).
    pub(super) async fn outlived(&self, stamps: &[TagStamp]) -> bool {
        let Some(store) = &self.authority else {
            return false;
        };
        match self.read_record(store.as_ref()).await {
            Ok(epoch) => Self::split(stamps).0 < epoch,
            Err(e) => {
                tracing::debug!(error = %e, "flush epoch unavailable; a fill not checked against it");
                false
            }
        }
    }

    /// Keeps `epoch` unless a later one is known.
    fn learn(&self, epoch: u64) {
        let mut memo = self.memo();
        let known = memo.map_or(0, |(e, _)| e);
        *memo = Some((known.max(epoch), Instant::now()));
    }

    /// Moves the epoch on: every entry stamped before now becomes invalid.
    pub(super) async fn advance(&self) -> Result<()> {
        let Some(store) = &self.authority else {
            return Ok(());
        };
        let next = now_ms().max(self.current().await?.saturating_add(1));
        store
            .put(
                Slot::Tag(FLUSH_EPOCH_TAG),
                Bytes::copy_from_slice(&next.to_be_bytes()),
                RECORD_TTL,
            )
            .await?;
        self.learn(next);
        Ok(())
    }

    /// Trusts the memo no more until [`resume`](Self::resume) (the bus does not answer).
    pub(super) fn suspend(&self) {
        self.suspended.store(true, Ordering::Relaxed);
    }

    pub(super) fn resume(&self) {
        self.suspended.store(false, Ordering::Relaxed);
    }

    /// Forgets the memoised epoch: another process flushed, or notices may have been lost.
    pub(super) fn forget(&self) {
        *self.memo() = None;
    }

    /// `stamps` with the epoch appended, when there is one to carry.
    pub(super) fn stamp(stamps: Box<[TagStamp]>, epoch: u64) -> Box<[TagStamp]> {
        if epoch == 0 {
            return stamps;
        }
        let mut stamps = stamps.into_vec();
        stamps.push(TagStamp {
            name: Arc::from(FLUSH_EPOCH_TAG),
            version: epoch,
        });
        stamps.into_boxed_slice()
    }

    /// The epoch an entry's stamps carry (0 without one), and its other stamps.
    pub(super) fn split(stamps: &[TagStamp]) -> (u64, &[TagStamp]) {
        match stamps.split_last() {
            Some((last, rest)) if &*last.name == FLUSH_EPOCH_TAG => (last.version, rest),
            _ => (0, stamps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_the_last_stamp_and_absent_is_zero() {
        let tag = TagStamp {
            name: Arc::from("t"),
            version: 7,
        };
        let stamped = FlushEpoch::stamp(Box::new([tag.clone()]), 42);
        let (epoch, rest) = FlushEpoch::split(&stamped);
        assert_eq!((epoch, rest.len()), (42, 1));
        assert_eq!(FlushEpoch::split(&[tag]).0, 0);
        assert_eq!(FlushEpoch::stamp(Box::default(), 0).len(), 0);
    }

    #[test]
    fn a_memoised_epoch_never_moves_back() {
        let epoch = FlushEpoch::new(None, Duration::from_secs(60));
        epoch.learn(10);
        epoch.learn(5);
        assert_eq!(epoch.memo().map(|(e, _)| e), Some(10));
    }
}
