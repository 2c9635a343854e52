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
//! re-checks its stamps only after some tag changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    version: u64,
    fetched: Instant,
}

/// The tag versions of one cache.
#[derive(Debug)]
pub(crate) struct TagIndex {
    authority: Option<Arc<dyn Store>>,
    memo: RwLock<HashMap<Arc<str>, Memo>>,
    /// Without cross-process notifications, a memoised version is refetched after this long.
    memo_ttl: Duration,
    epoch: AtomicU64,
}

fn fresh_version() -> u64 {
    // Zero is never used, so a zeroed record can be told from a real one.
    rand::random::<u64>().max(1)
}

impl TagIndex {
    pub(crate) fn new(authority: Option<Arc<dyn Store>>, memo_ttl: Duration) -> Self {
        TagIndex {
            authority,
            memo: RwLock::new(HashMap::new()),
            memo_ttl,
            epoch: AtomicU64::new(1),
        }
    }

    /// Moves whenever a memoised version changes.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn memo_get(&self, tag: &str) -> Option<u64> {
        let memo = self.memo.read().unwrap_or_else(|p| p.into_inner());
        let m = memo.get(tag)?;
        // With an authority, another process may have moved the version: refetch after memo_ttl.
        if self.authority.is_some() && m.fetched.elapsed() > self.memo_ttl {
            return None;
        }
        Some(m.version)
    }

    fn memo_set(&self, tag: &str, version: u64) {
        let mut memo = self.memo.write().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= MEMO_LIMIT && !memo.contains_key(tag) {
            memo.clear();
        }
        let previous = memo.insert(
            Arc::from(tag),
            Memo {
                version,
                fetched: Instant::now(),
            },
        );
        if previous.map(|m| m.version) != Some(version) {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets every memoised version (after a flush, or when notifications may have been lost).
    pub(crate) fn forget_all(&self) {
        self.memo.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The current version of `tag`, creating a record when there is none.
    pub(crate) async fn current(&self, tag: &str) -> Result<u64> {
        if let Some(v) = self.memo_get(tag) {
            return Ok(v);
        }
        let version = match &self.authority {
            None => fresh_version(),
            Some(store) => match store.get(Slot::Tag(tag)).await? {
                Some(bytes) if bytes.len() == 8 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&bytes);
                    u64::from_be_bytes(a)
                }
                // Missing or unreadable: a new version, which invalidates whatever was stamped.
                _ => Self::write_record(store.as_ref(), tag).await?,
            },
        };
        self.memo_set(tag, version);
        Ok(version)
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
        let v = match &self.authority {
            Some(store) => Self::write_record(store.as_ref(), tag).await?,
            None => fresh_version(),
        };
        self.memo_set(tag, v);
        Ok(v)
    }

    /// Takes another process's new version of `tag`.
    pub(crate) fn learn(&self, tag: &str, version: u64) {
        self.memo_set(tag, version);
    }
}
