//! The layer trait: what a backend of L2, L3 or L4 must do, on encoded bytes.
//!
//! A [`Store`] knows nothing of types, TTL policy, tags or back-fill: the engine does. It keeps
//! bytes under logical names, inside its own key prefix, and answers with typed errors. Expiry is
//! enforced by the engine from the envelope, so a store without native expiry (a directory) is
//! still correct; a store with native expiry (Redis) also gets the TTL so that space is reclaimed.
//!
//! L1 is not a `Store`: it keeps decoded values to answer without decoding (`l1.rs`).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;

pub(crate) mod circuit;
#[cfg(feature = "memcached")]
pub(crate) mod memcached;
#[cfg(feature = "object-store")]
pub(crate) mod object;
mod open;
pub use open::open;
#[cfg(feature = "redis")]
pub(crate) mod read_batch;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// Runs `delete` on every key, 16 at a time, and reports per key whether a real entry was there.
/// A key that fails does not stop the others: every key is tried, then the first error is
/// returned (what [`Store::delete_many`] promises).
pub(crate) async fn delete_each<'a, F, Fut>(keys: &'a [&'a str], delete: F) -> Result<Vec<bool>>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let mut found = Vec::with_capacity(keys.len());
    let mut first_error = None;
    for chunk in keys.chunks(16) {
        for result in futures_util::future::join_all(chunk.iter().map(|key| delete(key))).await {
            match result {
                Ok(existed) => found.push(existed),
                Err(e) => {
                    found.push(false);
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    first_error.map_or(Ok(found), Err)
}

/// A boxed, `Send` future: what [`Store`] methods return, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a name in a store refers to: a cache entry, or the version record of a tag.
///
/// The two live in separate namespaces, so no user key can collide with a tag record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// The entry of a logical key.
    Entry(&'a str),
    /// The version record of a tag.
    Tag(&'a str),
}

/// The bytes every tombstone begins with. The cache writes a new, unique tombstone on each delete
/// (this prefix and a random suffix), so that a load which saw one tombstone cannot mistake a later
/// delete's for it; a store treats any value that begins with these bytes as a tombstone
/// ([`Store::tombstone`]). No envelope begins with them, so a tombstone always reads as a miss.
pub const TOMBSTONE_PREFIX: &[u8] = b"vorte-tombstone";

/// Whether a stored value is a tombstone ([`TOMBSTONE_PREFIX`]).
pub fn is_tombstone(value: &[u8]) -> bool {
    value.starts_with(TOMBSTONE_PREFIX)
}

/// Keys and bytes a store holds under its prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Entries (tag records excluded), live or not yet reclaimed.
    pub keys: u64,
    /// Stored bytes of those entries, envelopes included.
    pub bytes: u64,
}

/// A backend of one layer. Object-safe; every method may fail with a typed
/// [`Error`](crate::Error), of kind `Backend` or `Timeout` ([`Error::backend`](crate::Error::backend),
/// [`Error::timeout`](crate::Error::timeout)); the cache then skips the layer for that call.
///
/// Contract (checked, rule by rule, by `vorte_cache::testing::contract` with the cargo feature
/// `testing`; every backend of this crate passes it, and so must a store written outside it):
/// - every physical name a store touches lies inside its key prefix, and `clear`, `list`,
///   `usage` and `sweep` see nothing else; two stores with different prefixes over one server
///   never see each other's names;
/// - [`Slot::Entry`] and [`Slot::Tag`] of the same name are separate; `list` and `usage` count
///   entries only;
/// - `put` replaces; `delete` reports whether the name was there; `delete` of a missing name is
///   `Ok(false)`, never an error;
/// - values are opaque bytes (empty, NUL, invalid UTF-8, hundreds of KiB), and keys are any UTF-8
///   string of 1 to [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes without NUL (spaces, control
///   characters, `/`, `..`, glob characters): both round-trip exactly and never collide;
/// - `get` may return an expired entry, unchanged: the cache checks expiry from the envelope. A
///   store without native expiry removes expired entries in [`Store::sweep`];
/// - where a store has them, tombstones and compare-and-set are atomic and behave as
///   [`Store::tombstone`] and [`Store::compare_and_set`] say: a compare-and-set that expects no
///   entry fails on a tombstone, and one that expects a tombstone (or any exact bytes) succeeds
///   only while those very bytes are there;
/// - where a store has leases ([`Store::has_leases`]), they live in a namespace of their own
///   inside the prefix, apart from entries and tag records, and behave as
///   [`Store::lease_acquire`], [`Store::lease_renew`] and [`Store::lease_release`] say.
///
/// The entry values the cache writes are envelopes that carry the logical key and the expiry
/// (big-endian milliseconds at bytes 8..16); a store may read them, as the object stores do to
/// list hashed names and to sweep. Tag records and anything else are opaque.
pub trait Store: Send + Sync + Debug + 'static {
    /// The backend's name, as in configuration (`"file"`, `"redis"`, …).
    fn backend(&self) -> &'static str;

    /// Reads a name.
    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Writes a name; `ttl` lets stores with native expiry reclaim it.
    fn put<'a>(&'a self, slot: Slot<'a>, value: Bytes, ttl: Duration) -> BoxFuture<'a, Result<()>>;

    /// Removes a name; `true` when it existed (as far as the backend can tell).
    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>>;

    /// The logical keys of the entries whose key starts with `prefix`, expired ones included.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Removes every entry and tag record under the store's prefix; returns how many names went.
    fn clear(&self) -> BoxFuture<'_, Result<u64>>;

    /// Counts the entries and their bytes.
    fn usage(&self) -> BoxFuture<'_, Result<Usage>>;

    /// Replaces the entry of `key` with `marker` (a tombstone) for `ttl`, reporting whether a
    /// real entry was there. `Ok(None)` when the backend cannot (it then gets a plain delete).
    ///
    /// A tombstone makes the compare-and-set of a load that began before the delete fail, in
    /// every process, so the load cannot write the old value back (no resurrection,
    /// `docs/consistency.md`), while a load that began after it, having seen this very marker,
    /// replaces it. Tombstoning a tombstone (any value for which [`is_tombstone`] holds) or a
    /// missing entry reports `false`.
    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        let _ = (key, marker, ttl);
        Box::pin(async { Ok(None) })
    }

    /// Deletes the entries of `keys`, leaving `marker` as a tombstone where the store supports it
    /// ([`Store::tombstone`]); reports, per key, whether a real entry was there. A key that fails
    /// does not stop the others (its server may be the only one down): every key is tried, then
    /// the first error is returned. The default handles the keys one by one, 16 at a time;
    /// stores with a bulk delete override it.
    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(delete_each(keys, move |key| {
            let marker = marker.clone();
            async move {
                match self.tombstone(key, marker, ttl).await? {
                    Some(existed) => Ok(existed),
                    None => self.delete(Slot::Entry(key)).await,
                }
            }
        }))
    }

    /// Whether the store keeps circuit breakers of its own, one per server
    /// (`docs/guarantees.md#f2-circuit-breaker`): the cache then does not put the whole layer
    /// behind one, which a single dead server would open for the keys of every other server.
    fn has_own_breakers(&self) -> bool {
        false
    }

    /// The state of each circuit breaker the store keeps itself ([`Store::has_own_breakers`]),
    /// which the cache reports in [`LayerStats::circuits`](crate::LayerStats::circuits). A store
    /// without breakers of its own reports none (the default): the cache reports the one it
    /// puts the layer behind.
    fn circuits(&self) -> Vec<crate::stats::CircuitStats> {
        Vec::new()
    }

    /// Forgets whatever the store caches about its server's contents, because another process
    /// flushed them. Most stores cache nothing.
    fn forget_cached_state(&self) {}

    /// How many times a server took over data it did not serve before (a Redis Cluster replica
    /// promoted to primary), as far as this store has seen: writes acknowledged just before a
    /// takeover may be missing on the new server, since replication is asynchronous, and the
    /// cache writes its recent invalidations again
    /// (`docs/guarantees.md#f7-writes-a-failover-lost-are-made-again`). `None` (the default) for
    /// a store whose acknowledged writes stay.
    fn takeovers(&self) -> Option<u64> {
        None
    }

    /// Deletes up to `batch` expired entries nobody read (a bounded pass of a background sweeper);
    /// returns how many went. Successive passes cover every entry. Stores with native expiry
    /// have nothing to sweep.
    fn sweep(&self, batch: usize) -> BoxFuture<'_, Result<u64>> {
        let _ = batch;
        Box::pin(async { Ok(0) })
    }

    /// Whether [`Store::compare_and_set`] is atomic here (otherwise it answers `Ok(None)`).
    fn has_compare_and_set(&self) -> bool {
        false
    }

    /// Atomically replaces the entry of `key` if it still holds exactly `expected` (`None`: no
    /// entry; a tombstone is an entry). `Ok(Some(swapped))`, or `Ok(None)`, writing nothing, when
    /// the backend has no atomic compare-and-set; counters are then exact only within one
    /// process.
    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        let _ = (key, expected, new, ttl);
        Box::pin(async { Ok(None) })
    }

    /// Whether this store keeps leases ([`Store::lease_acquire`]); otherwise the three lease
    /// methods answer "unsupported" and the cache loads without one
    /// (`docs/leases.md#where-the-lease-lives`).
    fn has_leases(&self) -> bool {
        false
    }

    /// Takes the lease of `key` for `ttl` under `token` if nobody holds it: `Ok(Some(true))` when
    /// taken, `Ok(Some(false))` when another token holds it, `Ok(None)` when the store has no
    /// leases. A lease is a name of its own, apart from the entry and any tag record of `key`,
    /// and expires by itself after `ttl` unless renewed.
    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        let _ = (key, token, ttl);
        Box::pin(async { Ok(None) })
    }

    /// Extends the lease of `key` to `ttl` from now, only while `token` holds it: `true` when
    /// extended; `false` when it expired or another token holds it (and when the store has no
    /// leases).
    fn lease_renew<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, token, ttl);
        Box::pin(async { Ok(false) })
    }

    /// Ends the lease of `key`, only while `token` holds it: `true` when it was ours and is
    /// gone; `false`, changing nothing, when it expired or another token holds it (and when the
    /// store has no leases).
    fn lease_release<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, token);
        Box::pin(async { Ok(false) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::error::{Error, ErrorKind};

    /// `docs/guarantees.md#f1-a-failing-layer-is-skipped`: one key's failure (its server is down)
    /// does not stop the deletes of the keys after it; the first error comes back at the end.
    #[tokio::test]
    async fn delete_each_tries_every_key_and_returns_the_first_error() {
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let tried = Mutex::new(Vec::new());
        let outcome = delete_each(&keys, |key| {
            tried.lock().unwrap_or_else(|p| p.into_inner()).push(key);
            async move {
                match key {
                    "k3" | "k20" => Err(Error::new(ErrorKind::Backend, format!("{key}: down"))),
                    _ => Ok(true),
                }
            }
        })
        .await;
        let tried = tried.into_inner().unwrap_or_else(|p| p.into_inner());
        assert_eq!(tried, keys, "every key, in order");
        let err = outcome.expect_err("two keys failed");
        assert_eq!(err.message(), "k3: down");

        let all = delete_each(&keys[..3], |key| async move { Ok(key == "k1") }).await;
        assert_eq!(all.ok(), Some(vec![false, true, false]));
    }
}
