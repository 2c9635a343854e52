//! The write fence: a read or load that began before an invalidation never writes its value back
//! (`docs/guarantees.md#g3-no-resurrection`, in-process part; across processes the stores'
//! compare-and-set and tombstones keep it).
//!
//! Every delete, set and flush takes a sequence number. A read or load takes a *ticket* (the
//! current number) when it starts, and may write its value into a layer only if nothing
//! invalidated its key after the ticket. Per-key records are bounded: when there are too many,
//! they collapse into a floor that refuses every older ticket, which is conservative (a load
//! whose write is refused only costs a later miss).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const KEY_LIMIT: usize = 10_000;

/// Why a key was last fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fenced {
    /// A newer value was written.
    Set,
    /// The key was deleted (or flushed).
    Deleted,
}

#[derive(Debug, Default)]
struct State {
    floor: u64,
    keys: HashMap<String, (u64, Fenced)>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    state: Mutex<State>,
    /// The sequence: read without the lock (every read takes a ticket), moved on under it by
    /// `record` and `record_all` (so their records are ordered as their numbers), and without it
    /// by `advance`, which records nothing.
    seq: AtomicU64,
}

impl Fence {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ticket of a read or load that starts now.
    pub(crate) fn ticket(&self) -> u64 {
        // `SeqCst`, as `advance`: see `Flights::in_flight`.
        self.seq.load(Ordering::SeqCst)
    }

    /// Records that `key` was written or deleted now.
    pub(crate) fn record(&self, key: &str, why: Fenced) {
        let mut s = self.lock();
        self.record_locked(&mut s, key, why);
    }

    /// Takes the next number and records `key` under it (the caller holds the lock).
    fn record_locked(&self, s: &mut State, key: &str, why: Fenced) {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        if s.keys.len() >= KEY_LIMIT && !s.keys.contains_key(key) {
            s.floor = seq;
            s.keys.clear();
        } else {
            s.keys.insert(key.to_owned(), (seq, why));
        }
    }

    /// Moves the sequence on without recording a key: for a write that no ticket taken before
    /// it can be holding (see `Router::record_set`).
    pub(crate) fn advance(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Records that every key was removed now.
    pub(crate) fn record_all(&self) {
        let mut s = self.lock();
        s.floor = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        s.keys.clear();
    }

    /// `None` when a holder of `ticket` may write `key`; otherwise what fenced it.
    pub(crate) fn check(&self, key: &str, ticket: u64) -> Option<Fenced> {
        let s = self.lock();
        Self::check_locked(&s, key, ticket)
    }

    fn check_locked(s: &State, key: &str, ticket: u64) -> Option<Fenced> {
        if ticket < s.floor {
            return Some(Fenced::Deleted);
        }
        match s.keys.get(key) {
            Some(&(seq, why)) if seq > ticket => Some(why),
            _ => None,
        }
    }

    /// Records that `key` was written now and, in the same step (under the lock, so no fill can
    /// come between), runs `write` with whether nothing else fenced `key` after `ticket` (the
    /// writer's own first record): a second record for a write whose stores changed after its
    /// first (`Engine::write`).
    pub(crate) fn record_then(
        &self,
        key: &str,
        why: Fenced,
        ticket: u64,
        write: impl FnOnce(bool),
    ) {
        let mut s = self.lock();
        let allowed = Self::check_locked(&s, key, ticket).is_none();
        self.record_locked(&mut s, key, why);
        write(allowed);
    }

    /// Runs `write` only if `ticket` may write `key`, atomically with respect to [`Fence::record`].
    pub(crate) fn write_if_allowed(
        &self,
        key: &str,
        ticket: u64,
        write: impl FnOnce(),
    ) -> Option<Fenced> {
        let s = self.lock();
        let fenced = Self::check_locked(&s, key, ticket);
        if fenced.is_none() {
            write();
        }
        fenced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_tickets_are_refused_after_an_invalidation() {
        let f = Fence::default();
        let t = f.ticket();
        assert_eq!(f.check("k", t), None);
        f.record("k", Fenced::Deleted);
        assert_eq!(f.check("k", t), Some(Fenced::Deleted));
        assert_eq!(f.check("other", t), None);
        assert_eq!(f.check("k", f.ticket()), None);
        let t2 = f.ticket();
        f.record_all();
        assert_eq!(f.check("other", t2), Some(Fenced::Deleted));
    }

    #[test]
    fn overflow_collapses_into_a_floor() {
        let f = Fence::default();
        let t = f.ticket();
        for i in 0..=KEY_LIMIT {
            f.record(&format!("k{i}"), Fenced::Set);
        }
        assert!(f.check("never-touched", t).is_some());
        assert_eq!(f.check("never-touched", f.ticket()), None);
    }
}
