//! L1: in-process memory on quick_cache, holding decoded values.
//!
//! quick_cache has no TTL, so each entry carries its deadline and a read past it removes the entry
//! (only that same entry: a fresh re-insert is never removed by a stale check). Each entry memoises
//! the decoded value of the type first read, so a repeated hit costs a lookup, a clock read and a
//! clone of the value (an `Arc` clone for `Arc<T>`), and decodes nothing.
//!
//! An entry holds its encoded bytes, its decoded value, or both. One written from a decoded value
//! (a load, or a write to L1 alone) need not be encoded at all: it keeps a monomorphised
//! [`Encoder`] and encodes only when something asks for bytes (`exists`, `keys`, a counter, a
//! byte-bounded L1's weight), once (`docs/performance.md#l1-miss-then-insert`).
//!
//! L1 can be *suspended* while the bus does not answer: it is emptied and every insert is undone,
//! so every read misses, until it is resumed (`docs/guarantees.md#g4-gap-detection`). An insert
//! checks after it has put its entry in, so one that races a suspension is either cleared by it
//! or sees it and removes itself; a hit pays nothing for it. (A read that finds an entry in the
//! instant between its insert and its removal gets what the inserter has just read below L1.)

use std::any::Any;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quick_cache::Weighter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, Lifetime, TagStamp};
use crate::config::Serialization;
use crate::error::{Error, ErrorKind, Result};

mod policy;
mod sketch;

pub(crate) use policy::{Policy, PolicySize};

/// A decoded value, as L1 keeps it.
pub(crate) type Decoded = Box<dyn Any + Send + Sync>;

/// Encodes the decoded value of an entry that was written without bytes: [`encoder`] for the
/// value's type.
pub(crate) type Encoder = fn(&(dyn Any + Send + Sync), Serialization) -> Result<Bytes>;

/// The [`Encoder`] of values of type `T`.
pub(crate) fn encoder<T: Serialize + Send + Sync + 'static>() -> Encoder {
    |value, serialization| match value.downcast_ref::<T>() {
        Some(value) => codec::serialize(serialization, value).map(Bytes::from),
        None => Err(Error::new(
            ErrorKind::Serialize,
            format!(
                "an L1 entry's encoder expects a `{}`",
                std::any::type_name::<T>()
            ),
        )),
    }
}

/// Bytes counted per entry on top of key and payload: the entry struct, its `Arc`s and
/// quick_cache's own ~21 B per slot, rounded up.
pub(crate) const ENTRY_OVERHEAD: u64 = 160;

/// One L1 entry.
pub(crate) struct L1Entry {
    /// When it stops being fresh, on the [`clock`](crate::clock) scale: a hit needs one compare.
    pub(crate) deadline_ms: u64,
    /// When it goes (past its stale window, if it has one), on the same scale.
    stale_deadline_ms: u64,
    pub(crate) expires_at_ms: u64,
    /// Wall-clock ms; at most `expires_at_ms`.
    pub(crate) fresh_until_ms: u64,
    /// How long its load took (0: unknown), for early refresh.
    pub(crate) load_ms: u32,
    pub(crate) created_at_ms: u64,
    pub(crate) tags: Box<[TagStamp]>,
    pub(crate) serialization: Serialization,
    /// What its loader stored to revalidate it with (conditional refresh).
    pub(crate) validator: Option<crate::codec::Validator>,
    /// The encoded value: given at construction, or encoded from `decoded` on the first call of
    /// [`L1Entry::payload`] when the entry was written decoded.
    payload: OnceLock<Bytes>,
    /// How to encode `decoded` when `payload` is empty.
    encoder: Option<Encoder>,
    /// The tag epoch at which `tags` were last found current; see `TagIndex::epoch`.
    pub(crate) checked_epoch: AtomicU64,
    /// The decoded value of the first type read (or written); reads of another type decode.
    decoded: OnceLock<Decoded>,
}

impl std::fmt::Debug for L1Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1Entry")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("tags", &self.tags)
            .field("bytes", &self.payload.get().map(Bytes::len))
            .finish_non_exhaustive()
    }
}

impl L1Entry {
    /// An entry of encoded bytes.
    pub(crate) fn new(
        life: Lifetime,
        created_at_ms: u64,
        tags: Box<[TagStamp]>,
        serialization: Serialization,
        payload: Bytes,
    ) -> Self {
        let now = crate::clock::now_ms();
        let entry = Self::empty(now, life, created_at_ms, tags, serialization, None);
        let _ = entry.payload.set(payload);
        entry
    }

    /// An entry of a decoded value and no bytes, written now (`created_at_ms`, which saves a
    /// clock read): `encoder` (see [`encoder`]) makes the bytes when they are asked for.
    pub(crate) fn decoded(
        life: Lifetime,
        created_at_ms: u64,
        tags: Box<[TagStamp]>,
        serialization: Serialization,
        value: Decoded,
        encoder: Encoder,
    ) -> Self {
        let entry = Self::empty(
            created_at_ms,
            life,
            created_at_ms,
            tags,
            serialization,
            Some(encoder),
        );
        let _ = entry.decoded.set(value);
        entry
    }

    /// `now` is the wall clock, in ms since the epoch.
    fn empty(
        now: u64,
        life: Lifetime,
        created_at_ms: u64,
        tags: Box<[TagStamp]>,
        serialization: Serialization,
        encoder: Option<Encoder>,
    ) -> Self {
        let clock = crate::clock::precise_ms();
        let fresh_until_ms = life.fresh_until_ms.min(life.expires_at_ms);
        L1Entry {
            deadline_ms: clock.saturating_add(fresh_until_ms.saturating_sub(now)),
            stale_deadline_ms: clock.saturating_add(life.expires_at_ms.saturating_sub(now)),
            expires_at_ms: life.expires_at_ms,
            fresh_until_ms,
            load_ms: life.load_ms,
            created_at_ms,
            tags,
            serialization,
            validator: None,
            payload: OnceLock::new(),
            encoder,
            // Zero is never an epoch: the first hit checks the stamps, because a load's stamps
            // may already be stale when it is inserted.
            checked_epoch: AtomicU64::new(0),
            decoded: OnceLock::new(),
        }
    }

    /// The same entry, with its loader's validator.
    pub(crate) fn with_validator(mut self, validator: Option<crate::codec::Validator>) -> Self {
        self.validator = validator;
        self
    }

    /// Remembers a decoded value, so that the next read of the same type decodes nothing.
    pub(crate) fn with_decoded_any(self, value: Decoded) -> Self {
        let _ = self.decoded.set(value);
        self
    }

    /// The encoded value, encoding a decoded entry on the first call.
    ///
    /// # Errors
    ///
    /// `Serialize` when a value written decoded does not encode (it was never encoded before).
    pub(crate) fn payload(&self) -> Result<Bytes> {
        if let Some(bytes) = self.payload.get() {
            return Ok(bytes.clone());
        }
        let (Some(encoder), Some(value)) = (self.encoder, self.decoded.get()) else {
            // Every constructor sets one or the other.
            return Err(Error::new(
                ErrorKind::Serialize,
                "an L1 entry holds neither bytes nor a value",
            ));
        };
        let bytes = encoder(value.as_ref(), self.serialization)?;
        // Two callers may encode at once; both get the same bytes, one is kept.
        Ok(self.payload.get_or_init(|| bytes).clone())
    }

    /// Whether it is fresh: a read may return it.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        crate::clock::is_before(self.deadline_ms)
    }

    /// Whether it is still kept: fresh, or stale within its fail-safe window.
    pub(crate) fn is_kept(&self) -> bool {
        crate::clock::is_before(self.stale_deadline_ms)
    }

    /// Its lifetime, as the layers below store it.
    pub(crate) fn lifetime(&self) -> Lifetime {
        Lifetime {
            fresh_until_ms: self.fresh_until_ms,
            expires_at_ms: self.expires_at_ms,
            load_ms: self.load_ms,
        }
    }

    /// Whether a hit now should start an early refresh: past `eager` of the fresh span since it
    /// was written, or, with XFetch's `beta`, when `now - load_ms * beta * ln(u)` (u uniform in
    /// (0, 1]) reaches the end of freshness (`docs/resilience.md#early-refresh`).
    pub(crate) fn refresh_due(&self, eager: Option<f64>, beta: Option<f64>) -> bool {
        let now = crate::clock::precise_ms();
        if let Some(fraction) = eager {
            let span = self.fresh_until_ms.saturating_sub(self.created_at_ms) as f64;
            let left = ((1.0 - fraction) * span) as u64;
            if now.saturating_add(left) >= self.deadline_ms {
                return true;
            }
        }
        if let (Some(beta), true) = (beta, self.load_ms > 0) {
            // 1 - random() is in (0, 1], so its logarithm is finite and at most 0.
            let u: f64 = 1.0 - rand::random::<f64>();
            let ahead = (f64::from(self.load_ms) * beta * -u.ln()) as u64;
            if now.saturating_add(ahead) >= self.deadline_ms {
                return true;
            }
        }
        false
    }

    /// The value as `T`, from the memo when it holds a `T`.
    #[inline(always)]
    pub(crate) fn value<T>(&self, key: &str) -> Result<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if let Some(v) = self.decoded.get().and_then(|memo| memo.downcast_ref::<T>()) {
            return Ok(v.clone());
        }
        let v: T = codec::deserialize(self.serialization, key, &self.payload()?)?;
        let _ = self.decoded.set(Box::new(v.clone()));
        Ok(v)
    }

    /// The bytes this entry counts for. A decoded entry is encoded to know them; one that does
    /// not encode counts only its key, tags and overhead.
    pub(crate) fn weight(&self, key: &str) -> u64 {
        key.len() as u64
            + self.payload().map_or(0, |bytes| bytes.len() as u64)
            + self
                .tags
                .iter()
                .map(|t| t.name.len() as u64 + 24)
                .sum::<u64>()
            + ENTRY_OVERHEAD
    }
}

/// Weighs entries by count (`max_size`) or by bytes (`max_bytes`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryWeighter {
    by_bytes: bool,
}

impl Weighter<String, Arc<L1Entry>> for EntryWeighter {
    fn weight(&self, key: &String, entry: &Arc<L1Entry>) -> u64 {
        if self.by_bytes { entry.weight(key) } else { 1 }
    }
}

/// Shards of a byte-bounded L1: quick_cache splits capacity across shards and silently refuses an
/// item heavier than a shard's budget, so a byte-bounded L1 keeps few shards (the fewest the
/// admission duel needs, `docs/l1-policy.md#dueling`) and caps each value at a shard's share.
const BYTE_BOUND_SHARDS: usize = 4;

/// The size of L1's policy for `max_size` entries and `capacity` weight: the one place that sizes
/// it, shared with [`crate::simulate::L1Model`] so that a replay runs the library's own policy.
pub(crate) fn policy_size(max_size: u64, capacity: u64, by_bytes: bool) -> PolicySize {
    PolicySize {
        max_items: max_size,
        capacity,
        shards: by_bytes.then_some(BYTE_BOUND_SHARDS),
    }
}

type Entries = Policy<String, Arc<L1Entry>, EntryWeighter>;

/// The L1 layer.
pub(crate) struct L1Memory {
    cache: Entries,
    by_bytes: bool,
    pub(crate) ttl_cap: Option<Duration>,
    pub(crate) max_value_bytes: usize,
    /// Suspended while the bus does not answer (module docs).
    suspended: AtomicBool,
    /// Hits check deadlines against the coarse clock: keep its thread running while L1 lives.
    _clock: crate::clock::Ticker,
}

impl std::fmt::Debug for L1Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1Memory")
            .field("len", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .finish()
    }
}

impl L1Memory {
    pub(crate) fn new(
        max_size: u64,
        max_bytes: Option<u64>,
        ttl_cap: Option<Duration>,
        max_value_bytes: usize,
    ) -> Self {
        let (capacity, by_bytes) = match max_bytes {
            Some(bytes) => (bytes, true),
            None => (max_size, false),
        };
        let max_value_bytes = if by_bytes {
            max_value_bytes.min((capacity / (2 * BYTE_BOUND_SHARDS as u64)) as usize)
        } else {
            max_value_bytes
        };
        let cache = Entries::new(
            policy_size(max_size, capacity, by_bytes),
            EntryWeighter { by_bytes },
        );
        L1Memory {
            cache,
            by_bytes,
            ttl_cap,
            max_value_bytes,
            suspended: AtomicBool::new(false),
            _clock: crate::clock::Ticker::acquire(),
        }
    }

    /// Whether entries are weighed by their bytes (`max_bytes`), which needs them encoded.
    pub(crate) fn weighs_bytes(&self) -> bool {
        self.by_bytes
    }

    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.cache.get(key)
    }

    /// Inserts a copy (a load's value, a back-fill), which L1's admission filter may turn away
    /// (`docs/l1-policy.md`).
    pub(crate) fn insert(&self, key: &str, entry: L1Entry) {
        self.cache.insert(key.to_owned(), Arc::new(entry));
        if self.suspended.load(Ordering::SeqCst) {
            self.cache.remove(key);
        }
    }

    /// Inserts a caller's write (`set`, a counter), which the admission filter never refuses
    /// (`docs/guarantees.md#g1-read-your-writes`).
    pub(crate) fn insert_set(&self, key: &str, entry: L1Entry) {
        self.cache.insert_admitted(key.to_owned(), Arc::new(entry));
        if self.suspended.load(Ordering::SeqCst) {
            self.cache.remove(key);
        }
    }

    /// Empties L1 and keeps it empty until [`resume`](Self::resume) (module docs).
    pub(crate) fn suspend(&self) {
        self.suspended.store(true, Ordering::SeqCst);
        self.cache.clear();
    }

    pub(crate) fn resume(&self) {
        self.suspended.store(false, Ordering::SeqCst);
    }

    /// Removes `key` only if it still holds `entry`.
    pub(crate) fn remove_entry(&self, key: &str, entry: &Arc<L1Entry>) {
        self.cache.remove_if(key, |e| Arc::ptr_eq(e, entry));
    }

    pub(crate) fn remove(&self, key: &str) -> bool {
        self.cache.remove(key)
    }

    pub(crate) fn clear(&self) {
        self.cache.clear();
    }

    /// A snapshot of every key and entry.
    pub(crate) fn entries(&self) -> Vec<(String, Arc<L1Entry>)> {
        self.cache.iter().collect()
    }

    /// Entries evicted to make room since L1 was built (an entry too heavy to be admitted at all,
    /// or turned away by the admission filter, counts too).
    pub(crate) fn evicted(&self) -> u64 {
        self.cache.evicted()
    }

    /// Entries held, live or not yet found expired: one read per shard, no scan.
    pub(crate) fn len(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Live entries and their bytes (see [`L1Entry::weight`]).
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.cache
            .iter()
            .filter(|(_, e)| e.is_live())
            .fold((0, 0), |(n, b), (k, e)| (n + 1, b + e.weight(&k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64) -> L1Entry {
        let payload = Bytes::from(codec::serialize(Serialization::Msgpack, &"v").expect("ser"));
        L1Entry::new(
            Lifetime::plain(crate::clock::now_ms() + ms),
            0,
            Box::new([]),
            Serialization::Msgpack,
            payload,
        )
    }

    #[test]
    fn decodes_once_per_type_and_reports_mismatch() {
        let l1 = L1Memory::new(10, None, None, 1 << 20);
        l1.insert("k", entry(10_000));
        let e = l1.get("k").expect("present");
        assert_eq!(e.value::<String>("k").expect("string"), "v");
        assert!(e.decoded.get().is_some());
        assert_eq!(
            e.value::<i64>("k").unwrap_err().kind(),
            crate::ErrorKind::TypeMismatch
        );
        assert_eq!(e.value::<Arc<str>>("k").expect("arc").as_ref(), "v");
    }

    #[test]
    fn a_decoded_entry_encodes_only_when_bytes_are_asked_for() {
        let l1 = L1Memory::new(10, None, None, 1 << 20);
        let entry = L1Entry::decoded(
            Lifetime::plain(crate::clock::now_ms() + 10_000),
            0,
            Box::new([]),
            Serialization::Msgpack,
            Box::new(String::from("v")),
            encoder::<String>(),
        );
        l1.insert("k", entry);
        let e = l1.get("k").expect("present");
        assert_eq!(e.value::<String>("k").expect("string"), "v");
        assert!(
            e.payload.get().is_none(),
            "a hit of the written type encodes nothing"
        );
        let bytes = e.payload().expect("encodes");
        assert_eq!(
            bytes,
            Bytes::from(codec::serialize(Serialization::Msgpack, &"v").expect("ser"))
        );
        assert!(e.payload.get().is_some(), "encoded once, then kept");
        // Another type decodes from the bytes made on demand.
        assert_eq!(e.value::<Arc<str>>("k").expect("arc").as_ref(), "v");
        assert_eq!(
            e.value::<i64>("k").unwrap_err().kind(),
            crate::ErrorKind::TypeMismatch
        );
        assert!(e.weight("k") > ENTRY_OVERHEAD);
    }

    #[test]
    fn a_decoded_value_that_does_not_encode_is_an_error_when_bytes_are_asked_for() {
        // JSON maps need string keys.
        let map: std::collections::HashMap<Vec<u8>, i32> = [(vec![1u8], 1)].into();
        let entry = L1Entry::decoded(
            Lifetime::plain(crate::clock::now_ms() + 10_000),
            0,
            Box::new([]),
            Serialization::Json,
            Box::new(map.clone()),
            encoder::<std::collections::HashMap<Vec<u8>, i32>>(),
        );
        assert_eq!(
            entry
                .value::<std::collections::HashMap<Vec<u8>, i32>>("k")
                .expect("memo"),
            map
        );
        assert_eq!(
            entry.payload().unwrap_err().kind(),
            crate::ErrorKind::Serialize
        );
    }

    #[test]
    fn stale_removal_spares_a_fresh_entry() {
        let l1 = L1Memory::new(10, None, None, 1 << 20);
        l1.insert("k", entry(0));
        let old = l1.get("k").expect("present");
        assert!(!old.is_live());
        l1.insert("k", entry(10_000));
        l1.remove_entry("k", &old);
        assert!(l1.get("k").is_some(), "the fresh entry survives");
    }

    #[test]
    fn byte_bound_evicts() {
        let l1 = L1Memory::new(1000, Some(20_000), None, 1 << 20);
        for i in 0..1000 {
            l1.insert(&format!("k{i}"), entry(10_000));
        }
        let (_, bytes) = l1.usage();
        assert!(bytes <= 20_000, "{bytes}");
    }

    #[test]
    fn a_suspended_l1_keeps_nothing_until_resumed() {
        let l1 = L1Memory::new(10, None, None, 1 << 20);
        l1.insert("before", entry(10_000));
        l1.suspend();
        assert!(l1.get("before").is_none(), "emptied");
        l1.insert("during", entry(10_000));
        assert!(
            l1.get("during").is_none(),
            "an insert while suspended is undone"
        );
        l1.resume();
        l1.insert("after", entry(10_000));
        assert!(l1.get("after").is_some());
    }
}
