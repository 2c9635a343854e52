//! L4 on object storage through object_store: `file` (a local directory), and with their cargo
//! features `s3`, `gcs`, `azure` and `http` (a WebDAV-style origin).
//!
//! Layout under the store's root (the layer's `prefix`, then `key_prefix`): `e/<key>` for entries
//! and `t/<tag>` for tag records. Names are encoded by [`encode_name`](names::encode_name)
//! (`names.rs`): bytes outside `[A-Za-z0-9_-]` become `=XX`, so no name can be `.`/`..`, contain a
//! separator, or need object_store's own escaping; an encoded name longer than [`SEGMENT`] is
//! split into segments that end in `+`, so long keys stay under file-name limits and still
//! round-trip. No logical key can therefore address anything outside the root.
//!
//! Expiry lives in the envelope (local files have no metadata); the engine checks it on every read
//! and removes what has expired, and [`sweep`](Store::sweep) removes expired objects nobody reads
//! (`sweep.rs`). The builders of each backend are in `open.rs`.
//!
//! A delete leaves a tombstone object (`tombstone.rs`), and compare-and-set holds across
//! processes (`swap.rs`: conditional puts, or on `file` a per-name lock, `lock.rs`), so a load
//! that began before another process's delete cannot write back (docs/consistency.md#l4-object-storage).
//! `list`, `usage` and `clear` bound each step by the layer's timeout, not the whole pass
//! (`scan.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use self::names::encode_name;
use super::{BoxFuture, Slot, Store, Usage};
use crate::error::{Error, ErrorKind, Result};

#[cfg(test)]
mod bounds_tests;
mod lock;
mod names;
mod open;
mod scan;
mod swap;
mod sweep;
mod tombstone;

/// Encoded names longer than this are stored under their hash (see `ObjectStorage::path`).
const HASHED_PAST: usize = 600;

/// The longest directory or file name segment written.
const SEGMENT: usize = 200;

/// An object-store-backed layer.
#[derive(Debug)]
pub(crate) struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    timeout: Duration,
    backend: &'static str,
    /// Where, for messages: the directory or the bucket (never credentials).
    location: String,
    /// Where the next sweep pass starts listing; `None`: from the beginning.
    sweep_from: std::sync::Mutex<Option<Path>>,
    /// The per-name write locks of the `file` backend (`lock.rs`); `None` elsewhere.
    locks: Option<lock::FileLocks>,
}

impl ObjectStorage {
    fn new(
        store: Arc<dyn ObjectStore>,
        backend: &'static str,
        location: String,
        prefix: Option<&str>,
        key_prefix: &str,
        timeout: Duration,
        locks: Option<lock::FileLocks>,
    ) -> Self {
        let root = prefix
            .unwrap_or("")
            .split('/')
            .filter(|s| !s.is_empty())
            .chain(std::iter::once(key_prefix))
            .fold(Path::default(), |path, part| path.join(encode_name(part)));
        ObjectStorage {
            store,
            root,
            timeout,
            backend,
            location,
            sweep_from: std::sync::Mutex::new(None),
            locks,
        }
    }

    fn path(&self, slot: Slot<'_>) -> Path {
        let (space, hashed_space, name) = match slot {
            Slot::Entry(k) => ("e", "x", k),
            Slot::Tag(t) => ("t", "u", t),
        };
        let encoded = encode_name(name);
        // Object stores cap names at 1,024 bytes: a name that would encode past
        // `HASHED_PAST` is stored under its 128-bit hash in a namespace of its own (`x/`, `u/`),
        // and `list` reads such an entry's key from its envelope.
        if encoded.len() > HASHED_PAST {
            let hash = xxhash_rust::xxh3::xxh3_128(name.as_bytes());
            return self
                .root
                .clone()
                .join(hashed_space)
                .join(format!("{hash:032x}"));
        }
        let mut parts: Vec<String> = Vec::with_capacity(2 + encoded.len() / SEGMENT);
        parts.push(space.to_owned());
        let mut rest = encoded.as_str();
        while rest.len() > SEGMENT {
            let (head, tail) = rest.split_at(SEGMENT);
            parts.push(format!("{head}+"));
            rest = tail;
        }
        parts.push(rest.to_owned());
        parts
            .into_iter()
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    fn entries_root(&self) -> Path {
        self.root.clone().join("e")
    }

    fn hashed_entries_root(&self) -> Path {
        self.root.clone().join("x")
    }

    /// Runs one object_store call within the layer's `timeout_ms`, and maps its error.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(what, e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "l4 {} {what} took longer than {:?}",
                    self.backend, self.timeout
                ),
            )),
        }
    }

    /// An object_store error of `what`, as ours.
    fn failed(&self, what: &str, e: object_store::Error) -> Error {
        Error::new(
            ErrorKind::Backend,
            format!("l4 {} {what} in {}: {e}", self.backend, self.location),
        )
        .with_source(e)
    }
}

impl Store for ObjectStorage {
    fn backend(&self) -> &'static str {
        self.backend
    }

    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let path = self.path(slot);
            let read = async {
                match self.store.get(&path).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            };
            let stored = self.bounded("get", read).await?;
            Ok(match slot {
                Slot::Entry(_) => stored.map(tombstone::logical),
                Slot::Tag(_) => stored,
            })
        })
    }

    fn put<'a>(
        &'a self,
        slot: Slot<'a>,
        value: Bytes,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write(slot, value))
    }

    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.remove(slot))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.list_keys(prefix))
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.clear_all())
    }

    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        Box::pin(self.count())
    }

    /// A tombstone object (`tombstone.rs`): `get` returns the marker; the sweeper removes it once
    /// `ttl` has passed; `list` and `usage` leave it out.
    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move { self.bury(key, &marker, ttl).await.map(Some) })
    }

    /// A tombstone per key, each within the layer's timeout (not one timeout for them all).
    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(async move { self.bury_all(keys, &marker, ttl).await })
    }

    fn sweep(&self, batch: usize) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.sweep_pass(batch))
    }

    fn has_compare_and_set(&self) -> bool {
        self.swaps()
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        // A tombstone written by compare-and-set (a take-back, a clean-up) is stored as
        // `tombstone` stores it: with its expiry, for the sweeper, and out of `list` and `usage`.
        let new = if crate::store::is_tombstone(&new) && new.len() <= tombstone::MAX_MARKER {
            let expires_at_ms = crate::clock::now_ms().saturating_add(ttl.as_millis() as u64);
            tombstone::encode(&new, expires_at_ms)
        } else {
            new
        };
        Box::pin(self.swap(key, expected, new))
    }
}

/// `Ok` when `errors` is empty; otherwise the first of them, saying how many of `total` calls
/// (all of which were tried) failed.
fn first_failure(errors: Vec<Error>, total: usize) -> Result<()> {
    let failed = errors.len();
    match errors.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(Error::new(
            first.kind(),
            format!("{failed} of {total} failed; the first: {first}"),
        )
        .with_source(first)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn very_long_names_are_hashed_and_still_listed() {
        use crate::codec::Envelope;
        use crate::config::{Compression, Serialization};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ObjectStorage::open_file(dir.path().into(), None, "p:", Duration::from_secs(5))
            .expect("open");
        let long = ".".repeat(1000); // 3,000 bytes encoded
        let env = Envelope {
            expires_at_ms: u64::MAX,
            created_at_ms: 0,
            fresh_until_ms: u64::MAX,
            load_ms: 0,
            validator: None,
            key: long.clone(),
            tags: vec![],
            serialization: Serialization::Msgpack,
            payload: Bytes::from_static(b"v"),
        };
        let path = store.path(Slot::Entry(&long));
        assert!(path.as_ref().len() < 100, "{path}");
        store
            .put(
                Slot::Entry(&long),
                env.encode(Compression::None),
                Duration::from_secs(60),
            )
            .await
            .expect("put");
        assert!(store.get(Slot::Entry(&long)).await.expect("get").is_some());
        assert_eq!(store.list("..").await.expect("list"), vec![long.clone()]);
        assert_eq!(store.usage().await.expect("usage").keys, 1);
        assert!(store.delete(Slot::Entry(&long)).await.expect("delete"));
        assert!(store.list("").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn long_keys_are_chunked_and_listed_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            ObjectStorage::open_file(dir.path().into(), Some("a/b"), "p:", Duration::from_secs(5))
                .expect("open");
        let long = "é".repeat(80); // 480 encoded bytes: three segments, not hashed
        store
            .put(
                Slot::Entry(&long),
                Bytes::from_static(b"v"),
                Duration::from_secs(1),
            )
            .await
            .expect("put");
        store
            .put(
                Slot::Entry("short"),
                Bytes::from_static(b"w"),
                Duration::from_secs(1),
            )
            .await
            .expect("put");
        assert_eq!(
            store.get(Slot::Entry(&long)).await.expect("get").as_deref(),
            Some(&b"v"[..])
        );
        let mut keys = store.list("").await.expect("list");
        keys.sort();
        assert_eq!(keys, vec!["short".to_string(), long.clone()]);
        assert!(store.delete(Slot::Entry(&long)).await.expect("delete"));
        assert!(
            !store
                .delete(Slot::Entry(&long))
                .await
                .expect("delete again")
        );
        assert_eq!(store.clear().await.expect("clear"), 1);
        assert_eq!(store.usage().await.expect("usage"), Usage::default());
    }
}
