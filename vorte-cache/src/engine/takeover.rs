//! The invalidations a failover may have lost
//! (`docs/guarantees.md#f7-writes-a-failover-lost-are-made-again`).
//!
//! Redis replicates asynchronously: a write that a primary acknowledged and had not yet sent to
//! its replica is gone when the replica takes over, and the value it replaced is read again, in
//! every process. So on a layer whose store can tell of takeovers ([`Store::takeovers`]), each
//! process keeps what it wrote there in the last [`WINDOW`] (the keys it set or deleted and the
//! tags it moved, each with a hash of the bytes written). When the store has seen a takeover,
//! those writes become *suspects*: a read that finds a suspect key checks that the layer holds
//! what this process wrote, and the retrying task checks the others; a write that is not there
//! any more was lost (or overwritten since, which changes nothing), and is owed again, as an
//! invalidation that missed the layer would be (F3), and the other processes are told. Writes
//! found intact stay as they are: a failover that lost nothing deletes nothing.
//!
//! [`Store::takeovers`]: crate::store::Store::takeovers

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a write is kept: longer than a failover takes to be seen (a primary's death noticed
/// after the cluster's node timeout, a replica elected, the client's routing refreshed).
pub(super) const WINDOW: Duration = Duration::from_secs(15);

/// The most writes kept; beyond, the oldest go first.
const CAP: usize = 100_000;

/// One write a takeover may have lost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Written {
    /// A key set or deleted: its older value may come back.
    Key(Box<str>),
    /// A tag moved: its older version may come back, and with it the entries stamped with it.
    Tag(Box<str>),
}

/// What a layer holds for a suspect, against what this process wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not a suspect: nothing to check.
    Trusted,
    /// What this process wrote is there.
    Intact,
    /// Something else is there: the write was lost (or overwritten since).
    Lost,
}

/// The writes of the last [`WINDOW`] to one layer, and the suspects after a takeover.
#[derive(Debug, Default)]
pub(super) struct RecentWrites {
    writes: Mutex<VecDeque<(Instant, Written, u64)>>,
    suspects: Mutex<HashMap<Written, u64>>,
    /// `suspects.len()`, read without the lock on every read of the layer.
    suspect_count: AtomicUsize,
}

fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

impl RecentWrites {
    fn writes(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Written, u64)>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn suspects(&self) -> std::sync::MutexGuard<'_, HashMap<Written, u64>> {
        self.suspects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `written`, which wrote `bytes` now; forgets what is older than the window.
    pub(super) fn record(&self, written: Written, bytes: &[u8]) {
        self.record_at(Instant::now(), written, hash(bytes));
    }

    fn record_at(&self, at: Instant, written: Written, hash: u64) {
        let mut writes = self.writes();
        while writes
            .front()
            .is_some_and(|(t, _, _)| at.saturating_duration_since(*t) > WINDOW)
            || writes.len() >= CAP
        {
            writes.pop_front();
        }
        writes.push_back((at, written.clone(), hash));
        drop(writes);
        // A write after the takeover went to the server that took over: whatever the takeover
        // lost of this key or tag is replaced.
        self.supersede(&written);
    }

    /// `written` is being written again: no longer a suspect (a check that read the layer
    /// before the new write landed must not call it lost, and delete the new write).
    pub(super) fn supersede(&self, written: &Written) {
        if self.suspect_count.load(Ordering::Acquire) > 0 {
            let mut suspects = self.suspects();
            if suspects.remove(written).is_some() {
                self.suspect_count.store(suspects.len(), Ordering::Release);
            }
        }
    }

    /// A takeover: every write of the window before `now` becomes a suspect (the latest write
    /// of each key or tag is what the layer should hold). How many there are.
    pub(super) fn suspect_all(&self, now: Instant) -> usize {
        let writes = self.writes();
        let mut suspects = self.suspects();
        for (_, written, hash) in writes
            .iter()
            .filter(|(t, _, _)| now.saturating_duration_since(*t) <= WINDOW)
        {
            suspects.insert(written.clone(), *hash);
        }
        self.suspect_count.store(suspects.len(), Ordering::Release);
        suspects.len()
    }

    /// Whether anything is left to check.
    #[inline]
    pub(super) fn has_suspects(&self) -> bool {
        self.suspect_count.load(Ordering::Acquire) > 0
    }

    /// Checks what the layer holds for `written` (`None`: nothing), and forgets the suspect.
    pub(super) fn check(&self, written: &Written, held: Option<&[u8]>) -> Verdict {
        let mut suspects = self.suspects();
        let Some(expected) = suspects.get(written).copied() else {
            return Verdict::Trusted;
        };
        suspects.remove(written);
        self.suspect_count.store(suspects.len(), Ordering::Release);
        match held {
            Some(bytes) if hash(bytes) == expected => Verdict::Intact,
            // Nothing there: whatever was there before this write is gone too.
            None => Verdict::Intact,
            Some(_) => Verdict::Lost,
        }
    }

    /// The suspects left, for the retrying task to check.
    pub(super) fn suspect_list(&self) -> Vec<Written> {
        self.suspects().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Written {
        Written::Key(k.into())
    }

    #[test]
    fn writes_of_the_window_become_suspects_checked_against_the_last_bytes_written() {
        let recent = RecentWrites::default();
        let t0 = Instant::now();
        recent.record_at(t0, key("old"), hash(b"x"));
        let t1 = t0 + WINDOW + Duration::from_secs(1);
        recent.record_at(t1, key("a"), hash(b"first"));
        recent.record_at(t1, Written::Tag("t".into()), hash(b"v1"));
        recent.record_at(t1, key("a"), hash(b"second"));
        assert!(!recent.has_suspects());
        // "old" is past the window; "a" and "t" are suspects.
        assert_eq!(recent.suspect_all(t1 + Duration::from_secs(1)), 2);
        assert_eq!(recent.check(&key("old"), Some(b"x")), Verdict::Trusted);
        assert_eq!(recent.check(&key("a"), Some(b"first")), Verdict::Lost);
        assert_eq!(
            recent.check(&key("a"), Some(b"first")),
            Verdict::Trusted,
            "checked once"
        );
        assert_eq!(recent.suspect_list(), [Written::Tag("t".into())]);
        assert_eq!(
            recent.check(&Written::Tag("t".into()), Some(b"v1")),
            Verdict::Intact
        );
        assert!(!recent.has_suspects());
    }

    /// A check that read the layer before a write made after the takeover finds no suspect:
    /// the write replaced whatever was lost (a manual failover under traffic lost keys to such
    /// checks in a CI run: `a_failover_under_traffic_loses_no_set_and_no_key`).
    #[test]
    fn a_write_after_the_takeover_is_no_suspect() {
        let recent = RecentWrites::default();
        let t0 = Instant::now();
        recent.record_at(t0, key("a"), hash(b"before"));
        recent.suspect_all(t0);
        // A check reads "before" now; the write lands before the check judges.
        recent.record_at(t0, key("a"), hash(b"after"));
        assert_eq!(recent.check(&key("a"), Some(b"before")), Verdict::Trusted);
        assert!(!recent.has_suspects());
        recent.record_at(t0, key("b"), hash(b"b"));
        recent.suspect_all(t0);
        assert_eq!(
            recent.check(&key("b"), None),
            Verdict::Intact,
            "nothing held: nothing stale"
        );
    }
}
