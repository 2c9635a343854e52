//! Tags: O(1) invalidation by versions that are never reused.
//!
//! Each tag has a *version record*: a random 64-bit number. An entry written with tags stores,
//! next to each tag, the version that was current when its value was produced. `invalidate_tag`
//! writes one new random version: every entry stamped with an older version is from then on
//! invalid in every layer, without touching it: one write, however many entries (`docs/guarantees.md#g7-o1-tag-invalidation`).
//!
//! An entry is valid only if each of its stamps *equals* the tag's current version. A missing
//! record is replaced by a fresh random version, so losing a record (evicted, expired, flushed,
//! or never fetched) can only invalidate entries, never revive them: this is the failure of
//! counter-based schemes (an evicted counter restarts at 0 and old entries match again), and the
//! reason versions are random instead of counted.
//!
//! Records live in the *authority*: the most shared layer below L1 (L3, else L2, else L4), or in
//! process memory when L1 is the only layer. Each process memoises the versions it has seen;
//! [`TagIndex::epoch`] moves whenever a memoised version changes, so an L1 hit on a tagged entry
//! re-checks its stamps only after some tag changed. A memoised version never goes back in time:
//! a read of the authority that was in flight when the tag moved does not memoise what it saw,
//! and another process's notice makes the next use re-read the authority (see [`TagIndex`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::TagStamp;
use crate::error::Result;
use crate::store::{Slot, Store};

/// How long a tag record lives in a store. Expiry only ever invalidates entries.
const RECORD_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Memoised versions kept per process before the memo is dropped (and refetched as needed).
const MEMO_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Memo {
    /// `None`: the tag moved elsewhere (a notice, or a race with one); the next use fetches it.
    version: Option<u64>,
    fetched: Instant,
    /// The epoch at which an invalidation, here or in another process, last moved the tag.
    moved_at: u64,
    /// An invalidation here could not write the record: `version` is a local one, kept (never
    /// refetched, never replaced by what the authority says) until a retry has written a new
    /// record ([`TagIndex::deliver`]).
    owed: bool,
}

/// The memoised versions, and when they were last all dropped.
#[derive(Debug, Default)]
struct MemoTable {
    tags: HashMap<Arc<str>, Memo>,
    /// The epoch of the last [`TagIndex::forget_all`] or size-bound clear: it also erased the
    /// `moved_at` of every tag.
    cleared_at: u64,
    /// How many memos are owed, so that the retry task's look for them costs nothing while
    /// none is (it looks every round).
    owed: usize,
}

impl MemoTable {
    /// Whether `tag` may have moved since `began` (an epoch): then what a fetch or a write that
    /// began before it learned may be older than what the memo knows.
    fn moved_since(&self, tag: &str, began: u64) -> bool {
        self.cleared_at > began || self.tags.get(tag).is_some_and(|m| m.moved_at > began)
    }
}

/// The tag versions of one cache.
///
/// A memoised version never goes back in time (`docs/guarantees.md#g2-invalidation`). Each
/// invalidation stamps its tag with the epoch it moved at; a fetch from the authority or a
/// local write that began before the tag last moved does not memoise what it saw, since it may
/// predate the move. A notice from another process drops the tag rather than trusting the
/// version it carries: two processes that invalidate one tag may publish in the opposite order
/// of their writes, and only the authority knows which version is current.
#[derive(Debug)]
pub(crate) struct TagIndex {
    authority: Option<Arc<dyn Store>>,
    memo: RwLock<MemoTable>,
    /// Without cross-process notifications, a memoised version is refetched after this long.
    memo_ttl: Duration,
    /// Moves whenever the memo changes; also the clock of [`Memo::moved_at`]. Changed under the
    /// memo's write lock.
    epoch: AtomicU64,
    /// While the bus does not answer, no memoised version is trusted: each use reads the
    /// authority (owed versions excepted) (`docs/guarantees.md#g4-gap-detection`).
    suspended: AtomicBool,
}

fn fresh_version() -> u64 {
    // Zero is never used, so a zeroed record can be told from a real one.
    rand::random::<u64>().max(1)
}

impl TagIndex {
    pub(crate) fn new(authority: Option<Arc<dyn Store>>, memo_ttl: Duration) -> Self {
        TagIndex {
            authority,
            memo: RwLock::new(MemoTable::default()),
            memo_ttl,
            epoch: AtomicU64::new(1),
            suspended: AtomicBool::new(false),
        }
    }

    /// Moves whenever a memoised version changes.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn memo_read(&self) -> std::sync::RwLockReadGuard<'_, MemoTable> {
        self.memo.read().unwrap_or_else(|p| p.into_inner())
    }

    fn memo_write(&self) -> std::sync::RwLockWriteGuard<'_, MemoTable> {
        self.memo.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the epoch (under the memo's write lock) and returns its new value.
    fn advance(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn memo_get(&self, tag: &str) -> Option<u64> {
        let memo = self.memo_read();
        let m = memo.tags.get(tag)?;
        // With an authority, another process may have moved the version: refetch after memo_ttl,
        // or at every use while no notice of such a move could arrive.
        if !m.owed
            && self.authority.is_some()
            && (self.suspended.load(Ordering::Relaxed) || m.fetched.elapsed() > self.memo_ttl)
        {
            return None;
        }
        m.version
    }

    /// Writes the memo of `tag`, keeping its `moved_at`; the epoch moves if the version changed.
    fn memo_put(&self, memo: &mut MemoTable, tag: &str, version: Option<u64>, moved_at: u64) {
        self.memo_insert(memo, tag, version, moved_at, false);
    }

    fn memo_insert(
        &self,
        memo: &mut MemoTable,
        tag: &str,
        version: Option<u64>,
        moved_at: u64,
        owed: bool,
    ) {
        if memo.tags.len() >= MEMO_LIMIT && !memo.tags.contains_key(tag) {
            self.clear_memo(memo);
        }
        let previous = memo.tags.insert(
            Arc::from(tag),
            Memo {
                version,
                fetched: Instant::now(),
                moved_at,
                owed,
            },
        );
        memo.owed = (memo.owed + usize::from(owed))
            .saturating_sub(usize::from(previous.is_some_and(|m| m.owed)));
        if previous.and_then(|m| m.version) != version {
            self.advance();
        }
    }

    /// Memoises `version`, fetched from the authority by a fetch that began at epoch `began`,
    /// unless the tag moved meanwhile: the invalidation or notice that moved it knows better.
    fn memo_fetched(&self, tag: &str, version: u64, began: u64) {
        let mut memo = self.memo_write();
        if memo.moved_since(tag, began) || memo.tags.get(tag).is_some_and(|m| m.owed) {
            return;
        }
        let moved_at = memo.tags.get(tag).map_or(0, |m| m.moved_at);
        self.memo_put(&mut memo, tag, Some(version), moved_at);
    }

    /// Records that `tag` moved, to `version` when this process wrote it, or to "fetch it again"
    /// (`None`). A version written by a call that began at epoch `began` is not kept if the tag
    /// moved again since: a notice, or another invalidation here, may come from a write that
    /// landed after this one, and only the authority knows which is current.
    fn memo_moved(&self, tag: &str, version: Option<u64>, began: u64) {
        let mut memo = self.memo_write();
        if version.is_none() && memo.tags.get(tag).is_some_and(|m| m.owed) {
            // Another process moved the tag while this one owes it: the authority cannot be
            // trusted yet, and what this process stamped with its local version predates that
            // move too. A new local version invalidates both.
            self.pin(&mut memo, tag);
            return;
        }
        let version = version.filter(|_| !memo.moved_since(tag, began));
        let moved_at = self.advance();
        self.memo_put(&mut memo, tag, version, moved_at);
    }

    /// Moves `tag` to a new local version, owed to the authority, and returns it.
    fn pin(&self, memo: &mut MemoTable, tag: &str) -> u64 {
        let moved_at = self.advance();
        let version = fresh_version();
        self.memo_insert(memo, tag, Some(version), moved_at, true);
        version
    }

    /// Empties the memo, but for the tags this process owes: those move to new local versions,
    /// as whatever was stamped with the old ones may be invalid now.
    fn clear_memo(&self, memo: &mut MemoTable) {
        let owed: Vec<Arc<str>> = memo
            .tags
            .iter()
            .filter(|(_, m)| m.owed)
            .map(|(tag, _)| tag.clone())
            .collect();
        memo.tags.clear();
        memo.owed = 0;
        memo.cleared_at = self.advance();
        for tag in owed {
            self.pin(memo, &tag);
        }
    }

    /// Trusts no memoised version until [`resume`](Self::resume) (the bus does not answer).
    pub(crate) fn suspend(&self) {
        self.suspended.store(true, Ordering::Relaxed);
    }

    pub(crate) fn resume(&self) {
        self.suspended.store(false, Ordering::Relaxed);
    }

    /// Forgets every memoised version (after a flush, or when notifications may have been lost).
    pub(crate) fn forget_all(&self) {
        let mut memo = self.memo_write();
        self.clear_memo(&mut memo);
    }

    /// The current version of `tag`, creating a record when there is none.
    pub(crate) async fn current(&self, tag: &str) -> Result<u64> {
        if let Some(v) = self.memo_get(tag) {
            return Ok(v);
        }
        let Some(store) = &self.authority else {
            return Ok(self.memo_create(tag));
        };
        // Before the read: a move after this makes what the read returns possibly older.
        let began = self.epoch();
        let version = match store.get(Slot::Tag(tag)).await? {
            Some(bytes) if bytes.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&bytes);
                u64::from_be_bytes(a)
            }
            // Missing or unreadable: a new version, which invalidates whatever was stamped.
            _ => Self::write_record(store.as_ref(), tag).await?,
        };
        self.memo_fetched(tag, version, began);
        Ok(version)
    }

    /// Without an authority the memo is the record: a tag's first use creates its version, once.
    fn memo_create(&self, tag: &str) -> u64 {
        let mut memo = self.memo_write();
        if let Some(v) = memo.tags.get(tag).and_then(|m| m.version) {
            return v;
        }
        let version = fresh_version();
        let moved_at = memo.tags.get(tag).map_or(0, |m| m.moved_at);
        self.memo_put(&mut memo, tag, Some(version), moved_at);
        version
    }

    /// Stamps for `tags`, as of now.
    pub(crate) async fn stamps(&self, tags: &[String]) -> Result<Box<[TagStamp]>> {
        let mut out = Vec::with_capacity(tags.len());
        for tag in tags {
            out.push(TagStamp {
                name: Arc::from(tag.as_str()),
                version: self.current(tag).await?,
            });
        }
        Ok(out.into_boxed_slice())
    }

    /// Whether every stamp is current, from the memo alone; `None` when a tag is not memoised.
    #[inline]
    pub(crate) fn check_memoised(&self, stamps: &[TagStamp]) -> Option<bool> {
        for s in stamps {
            if self.memo_get(&s.name)? != s.version {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Whether every stamp is current.
    pub(crate) async fn check(&self, stamps: &[TagStamp]) -> Result<bool> {
        for s in stamps {
            if self.current(&s.name).await? != s.version {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes a fresh version into the record of `tag` and returns it.
    async fn write_record(store: &dyn Store, tag: &str) -> Result<u64> {
        let v = fresh_version();
        let record = Bytes::copy_from_slice(&v.to_be_bytes());
        store.put(Slot::Tag(tag), record, RECORD_TTL).await?;
        Ok(v)
    }

    /// Invalidates every entry stamped with `tag`: one write to the authority. Returns the new
    /// version, for the other processes.
    pub(crate) async fn invalidate(&self, tag: &str) -> Result<u64> {
        let began = self.epoch();
        let v = match &self.authority {
            Some(store) => Self::write_record(store.as_ref(), tag).await?,
            None => fresh_version(),
        };
        self.memo_moved(tag, Some(v), began);
        Ok(v)
    }

    /// Like [`invalidate`](Self::invalidate), but when the record cannot be written the new
    /// version is *owed*: this process moves the tag to a local version at once (every entry
    /// stamped before is invalid here), stamps new entries with it, never trusts the authority for
    /// the tag meanwhile, and [`deliver`](Self::deliver) writes a new record later
    /// (`docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back`). Returns the version
    /// and whether it is owed.
    pub(crate) async fn invalidate_or_owe(&self, tag: &str) -> (u64, Option<crate::Error>) {
        match self.invalidate(tag).await {
            Ok(v) => (v, None),
            Err(e) => (self.pin(&mut self.memo_write(), tag), Some(e)),
        }
    }

    /// Another process could not write `tag`'s new version (its notice says so): the authority
    /// still holds the old one, so this process holds the tag at a local version it owes too, as
    /// if its own invalidation had failed ([`invalidate_or_owe`](Self::invalidate_or_owe)).
    pub(crate) fn owe(&self, tag: &str) -> u64 {
        self.pin(&mut self.memo_write(), tag)
    }

    /// The tags whose record this process owes, each with its local version.
    pub(crate) fn owed(&self) -> Vec<(Arc<str>, u64)> {
        let memo = self.memo_read();
        if memo.owed == 0 {
            return Vec::new();
        }
        memo.tags
            .iter()
            .filter(|(_, m)| m.owed)
            .filter_map(|(tag, m)| Some((tag.clone(), m.version?)))
            .collect()
    }

    /// Writes the record of an owed tag (`local`: its version when [`owed`](Self::owed) listed
    /// it): a *new* version, not the local one, since another process may have moved the tag
    /// meanwhile and the entries stamped with the local version must not become valid after
    /// that move. Returns the version written; the tag is settled unless it moved here again.
    pub(crate) async fn deliver(&self, tag: &str, local: u64) -> Result<u64> {
        let Some(store) = &self.authority else {
            return Ok(local);
        };
        let v = Self::write_record(store.as_ref(), tag).await?;
        let mut memo = self.memo_write();
        match memo.tags.get(tag) {
            Some(m) if m.owed && m.version == Some(local) => {
                let moved_at = self.advance();
                self.memo_put(&mut memo, tag, Some(v), moved_at);
            }
            // Moved again here meanwhile: still owed (a later round writes again), or settled
            // by an invalidation that reached the authority, which this write may have undone:
            // fetch it again.
            Some(m) if m.owed => {}
            _ => {
                let moved_at = self.advance();
                self.memo_put(&mut memo, tag, None, moved_at);
            }
        }
        Ok(v)
    }

    /// Another process moved `tag` (its notice carried `_version`): the memo drops the tag and
    /// the next use fetches it from the authority. The carried version is not trusted: notices
    /// of two invalidations may arrive in the opposite order of their writes.
    pub(crate) fn learn(&self, tag: &str, _version: u64) {
        self.memo_moved(tag, None, self.epoch());
    }
}

#[cfg(test)]
mod tests;
