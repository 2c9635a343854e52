//! What every rule's check shares: the stores under test, values as the cache writes them, and
//! helpers that turn a store error or a wrong answer into a [`Violation`].

use std::time::Duration;

use bytes::Bytes;

use super::{Capabilities, Rule, Violation};
use crate::clock::now_ms;
use crate::codec::{Envelope, Validator};
use crate::config::{Compression, Serialization};
use crate::key::MAX_KEY_LEN;
use crate::store::{Slot, Store};

/// A TTL long enough to outlast the suite.
pub(super) const LONG: Duration = Duration::from_secs(600);

/// The marker `delete_many` and `tombstone` are given: like the cache's, it begins with
/// [`TOMBSTONE_PREFIX`](crate::store::TOMBSTONE_PREFIX), and [`LATER_MARKER`] is another delete's.
pub(super) const MARKER: &[u8] = b"vorte-tombstone:contract-1";

/// The tombstone of a later delete of the same key.
pub(super) const LATER_MARKER: &[u8] = b"vorte-tombstone:contract-2";

/// An envelope as the cache writes it: `key`, `payload`, expiring at `expires_at_ms`.
pub(super) fn envelope_at(key: &str, payload: &[u8], expires_at_ms: u64) -> Bytes {
    Envelope {
        expires_at_ms,
        created_at_ms: now_ms(),
        fresh_until_ms: expires_at_ms,
        load_ms: 0,
        validator: None,
        key: key.to_owned(),
        tags: Vec::new(),
        serialization: Serialization::Msgpack,
        payload: Bytes::copy_from_slice(payload),
    }
    .encode(Compression::None)
}

/// An envelope in the newest format, as conditional refresh writes it: stale for its last
/// second before `expires_at_ms`, with a validator (`docs/architecture.md#conditional-refresh`).
pub(super) fn validated_at(key: &str, payload: &[u8], expires_at_ms: u64) -> Bytes {
    Envelope {
        expires_at_ms,
        created_at_ms: now_ms(),
        fresh_until_ms: expires_at_ms.saturating_sub(1_000),
        load_ms: 12,
        validator: Some(Validator::new("\"etag-contract\"".to_owned())),
        key: key.to_owned(),
        tags: Vec::new(),
        serialization: Serialization::Msgpack,
        payload: Bytes::copy_from_slice(payload),
    }
    .encode(Compression::None)
}

/// A live envelope for `key`.
pub(super) fn value(key: &str, payload: &str) -> Bytes {
    envelope_at(key, payload.as_bytes(), now_ms() + LONG.as_millis() as u64)
}

/// The count a counter envelope of [`Rule::CompareAndSetIsAtomic`] holds.
pub(super) fn counter_value(bytes: &Bytes) -> Option<usize> {
    let env = Envelope::decode(bytes, usize::MAX).ok()?;
    std::str::from_utf8(&env.payload).ok()?.parse().ok()
}

pub(super) fn show(bytes: Option<&Bytes>) -> String {
    match bytes {
        None => "nothing".into(),
        Some(b) if b.len() > 64 => format!("{} bytes", b.len()),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

/// A key for a message: long ones cut to their first 24 characters and their length.
pub(super) fn abbreviated(key: &str) -> String {
    if key.chars().count() <= 32 {
        return key.to_owned();
    }
    let head: String = key.chars().take(24).collect();
    format!("{head}… ({} bytes)", key.len())
}

pub(super) fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

/// The keys [`Rule::HostileKeys`] writes.
pub(super) fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "plain",
        "with space",
        "tab\there",
        "new\nline",
        "cr\r\nlf",
        "ключ/..\\%",
        "emoji 🦀",
        ".",
        "..",
        "/",
        "a/../../b",
        "/absolute",
        "C:\\windows",
        "=41",
        "%41",
        "+",
        "a+",
        "*",
        "?",
        "[a-z]",
        "\\",
        "{hash}tag",
        "e:x",
        "t:x",
        "\u{7f}\u{1}",
        "trailing ",
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .collect();
    keys.push("k".repeat(MAX_KEY_LEN));
    keys.push(format!("{}y", "k".repeat(MAX_KEY_LEN - 1)));
    keys.push("é".repeat(MAX_KEY_LEN / 2));
    keys.push("🦀".repeat(MAX_KEY_LEN / 4));
    keys
}

/// One rule's run: the stores, and the rule to blame.
pub(super) struct Ctx<'a> {
    pub(super) rule: Rule,
    pub(super) store: &'a dyn Store,
    pub(super) twin: &'a dyn Store,
    pub(super) neighbour: &'a dyn Store,
    pub(super) caps: &'a Capabilities,
}

/// Fails the rule with a formatted detail unless `cond` holds.
macro_rules! ensure {
    ($c:expr, $cond:expr, $($detail:tt)+) => {
        if !$cond {
            return Err($c.violation(format!($($detail)+)));
        }
    };
}
pub(super) use ensure;

impl Ctx<'_> {
    pub(super) fn violation(&self, detail: String) -> Violation {
        Violation {
            rule: self.rule,
            detail,
        }
    }

    /// Maps a store error to a violation: every call the suite makes must succeed.
    pub(super) fn ok<T>(&self, what: &str, result: crate::Result<T>) -> Result<T, Violation> {
        result.map_err(|e| self.violation(format!("{what} failed: {e}")))
    }

    pub(super) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.rule.id())
    }

    pub(super) async fn get(
        &self,
        store: &dyn Store,
        slot: Slot<'_>,
    ) -> Result<Option<Bytes>, Violation> {
        self.ok(&format!("get {slot:?}"), store.get(slot).await)
    }

    pub(super) async fn put(
        &self,
        store: &dyn Store,
        slot: Slot<'_>,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), Violation> {
        self.ok(&format!("put {slot:?}"), store.put(slot, value, ttl).await)
    }

    pub(super) async fn delete(
        &self,
        store: &dyn Store,
        slot: Slot<'_>,
    ) -> Result<bool, Violation> {
        self.ok(&format!("delete {slot:?}"), store.delete(slot).await)
    }

    pub(super) async fn listed(
        &self,
        store: &dyn Store,
        prefix: &str,
    ) -> Result<Vec<String>, Violation> {
        let keys = self.ok(&format!("list {prefix:?}"), store.list(prefix).await)?;
        Ok(sorted(keys))
    }

    pub(super) async fn clear_both(&self) -> Result<(), Violation> {
        self.ok("clear", self.store.clear().await)?;
        // The twin may cache what the clear just changed (memcached's generation).
        self.twin.forget_cached_state();
        self.ok("clear (neighbour)", self.neighbour.clear().await)?;
        Ok(())
    }

    pub(super) async fn expect(
        &self,
        store: &dyn Store,
        slot: Slot<'_>,
        want: Option<&Bytes>,
        when: &str,
    ) -> Result<(), Violation> {
        let got = self.get(store, slot).await?;
        ensure!(
            self,
            got.as_ref() == want,
            "{when}: get {slot:?} returned {}, expected {}",
            show(got.as_ref()),
            show(want)
        );
        Ok(())
    }
}
