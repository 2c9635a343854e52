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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use self::names::{decode_location, encode_name};
use super::{BoxFuture, Slot, Store, Usage};
use crate::error::{Error, ErrorKind, Result};

mod names;
mod open;
mod sweep;

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
}

impl ObjectStorage {
    fn new(
        store: Arc<dyn ObjectStore>,
        backend: &'static str,
        location: String,
        prefix: Option<&str>,
        key_prefix: &str,
        timeout: Duration,
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

    /// Every entry object: plain names under `e/`, hashed ones under `x/`.
    async fn entry_objects(&self, what: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let mut metas: Vec<_> = self
            .bounded(
                what,
                self.store
                    .list(Some(&self.entries_root()))
                    .try_collect::<Vec<_>>(),
            )
            .await?;
        metas.extend(
            self.bounded(
                what,
                self.store
                    .list(Some(&self.hashed_entries_root()))
                    .try_collect::<Vec<_>>(),
            )
            .await?,
        );
        Ok(metas)
    }

    /// Runs one object_store call within the layer's `timeout_ms`, and maps its error.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Backend,
                format!("l4 {} {what} in {}: {e}", self.backend, self.location),
            )
            .with_source(e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "l4 {} {what} took longer than {:?}",
                    self.backend, self.timeout
                ),
            )),
        }
    }
}

impl Store for ObjectStorage {
    /// One bulk delete (`delete_stream`: S3 `DeleteObjects` in chunks of 1,000) after asking which
    /// of the keys exist.
    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        _marker: Bytes,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(async move {
            let paths: Vec<Path> = keys.iter().map(|k| self.path(Slot::Entry(k))).collect();
            let found: Vec<bool> = self
                .bounded(
                    "delete",
                    futures_util::stream::iter(paths.clone())
                        .map(|path| async move {
                            match self.store.head(&path).await {
                                Ok(_) => Ok(true),
                                Err(object_store::Error::NotFound { .. }) => Ok(false),
                                Err(e) => Err(e),
                            }
                        })
                        .buffered(16)
                        .try_collect::<Vec<_>>(),
                )
                .await?;
            let existing: Vec<_> = paths
                .into_iter()
                .zip(&found)
                .filter(|(_, f)| **f)
                .map(|(p, _)| Ok(p))
                .collect();
            let deleted = self
                .store
                .delete_stream(futures_util::stream::iter(existing).boxed())
                .filter_map(|r| async move {
                    match r {
                        Err(object_store::Error::NotFound { .. }) => None,
                        other => Some(other),
                    }
                })
                .try_collect::<Vec<_>>();
            self.bounded("delete", deleted).await?;
            Ok(found)
        })
    }

    fn sweep(&self, batch: usize) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.sweep_pass(batch))
    }

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
            self.bounded("get", read).await
        })
    }

    fn put<'a>(
        &'a self,
        slot: Slot<'a>,
        value: Bytes,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.path(slot);
            self.bounded("put", self.store.put(&path, PutPayload::from(value)))
                .await
                .map(drop)
        })
    }

    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let path = self.path(slot);
            // LocalFileSystem reports a missing file as NotFound; S3 and others succeed silently,
            // so they are asked first whether the object is there (for the answer only: the
            // delete is sent either way).
            let delete = async {
                let existed = if self.backend == "file" {
                    None
                } else {
                    match self.store.head(&path).await {
                        Ok(_) => Some(true),
                        Err(object_store::Error::NotFound { .. }) => Some(false),
                        Err(e) => return Err(e),
                    }
                };
                match self.store.delete(&path).await {
                    Ok(()) => Ok(existed.unwrap_or(true)),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            };
            self.bounded("delete", delete).await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let base = self.entries_root();
            let hashed_base = self.hashed_entries_root();
            let metas = self.entry_objects("list").await?;
            let mut keys = Vec::with_capacity(metas.len());
            for meta in metas {
                if let Some(key) = decode_location(&base, &meta.location) {
                    keys.push(key);
                } else if meta.location.prefix_match(&hashed_base).is_some() {
                    // A hashed name: the key is in the envelope.
                    let read = async {
                        match self.store.get(&meta.location).await {
                            Ok(r) => r.bytes().await.map(Some),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        }
                    };
                    if let Some(bytes) = self.bounded("list", read).await?
                        && let Ok(env) = crate::codec::Envelope::decode(&bytes, usize::MAX)
                    {
                        keys.push(env.key);
                    }
                }
            }
            keys.retain(|k| k.starts_with(prefix));
            Ok(keys)
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let locations = self
                .store
                .list(Some(&self.root))
                .map_ok(|m| m.location)
                .boxed();
            let deleted = self.store.delete_stream(locations);
            let removed: Vec<Path> = self
                .bounded("flush", deleted.try_collect::<Vec<_>>())
                .await?;
            Ok(removed.len() as u64)
        })
    }

    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        Box::pin(async move {
            let metas = self.entry_objects("usage").await?;
            Ok(Usage {
                keys: metas.len() as u64,
                bytes: metas.iter().map(|m| m.size).sum(),
            })
        })
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
