//! L4 `file`: a local directory, through object_store's `LocalFileSystem`.
//!
//! Layout under the configured `path`: `<key_prefix>/e/<key>` for entries and
//! `<key_prefix>/t/<tag>` for tag records. Names are encoded by [`encode_name`]: bytes outside
//! `[A-Za-z0-9_-]` become `=XX`, so no name can be `.`/`..`, contain a separator, or need
//! object_store's own escaping; an encoded name longer than [`SEGMENT`] is split into directory
//! segments that end in `+`, so long keys stay under the file-name limit and still round-trip.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{BoxFuture, Slot, Store, Usage};
use crate::error::{Error, ErrorKind, Result};

/// The longest directory or file name segment written.
const SEGMENT: usize = 200;

/// A directory-backed store.
#[derive(Debug)]
pub(crate) struct FileStore {
    store: Arc<LocalFileSystem>,
    root: Path,
    timeout: Duration,
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating it when missing) the directory `dir`, keeping names under the optional
    /// `prefix` (the layer's `prefix` setting, `/`-separated) and then `key_prefix`.
    pub(crate) fn open(
        dir: PathBuf,
        prefix: Option<&str>,
        key_prefix: &str,
        timeout: Duration,
    ) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cache.layers.l4.path: cannot create {}: {e}", dir.display()),
            )
            .with_source(e)
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("cache.layers.l4.path: cannot open {}: {e}", dir.display()),
                )
                .with_source(e)
            })?
            .with_automatic_cleanup(true);
        let root = prefix
            .unwrap_or("")
            .split('/')
            .filter(|s| !s.is_empty())
            .chain(std::iter::once(key_prefix))
            .fold(Path::default(), |path, part| path.join(encode_name(part)));
        Ok(FileStore {
            store: Arc::new(store),
            root,
            timeout,
            dir,
        })
    }

    fn path(&self, slot: Slot<'_>) -> Path {
        let (space, name) = match slot {
            Slot::Entry(k) => ("e", k),
            Slot::Tag(t) => ("t", t),
        };
        let encoded = encode_name(name);
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

    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(backend_error(what, &self.dir, e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("l4 file {what} took longer than {:?}", self.timeout),
            )),
        }
    }
}

use std::future::Future;

fn backend_error(what: &str, dir: &std::path::Path, e: object_store::Error) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("l4 file {what} in {}: {e}", dir.display()),
    )
    .with_source(e)
}

impl Store for FileStore {
    fn backend(&self) -> &'static str {
        "file"
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
            self.timed("get", read).await
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
            self.timed("put", self.store.put(&path, PutPayload::from(value)))
                .await
                .map(drop)
        })
    }

    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let path = self.path(slot);
            // LocalFileSystem reports a missing file as NotFound; that is not a failure here.
            let delete = async {
                match self.store.delete(&path).await {
                    Ok(()) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            };
            self.timed("delete", delete).await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let base = self.entries_root();
            let metas: Vec<_> = self
                .timed("list", self.store.list(Some(&base)).try_collect::<Vec<_>>())
                .await?;
            Ok(metas
                .iter()
                .filter_map(|m| decode_location(&base, &m.location))
                .filter(|k| k.starts_with(prefix))
                .collect())
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
            let removed: Vec<Path> = self.timed("flush", deleted.try_collect::<Vec<_>>()).await?;
            Ok(removed.len() as u64)
        })
    }

    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        Box::pin(async move {
            let base = self.entries_root();
            let metas: Vec<_> = self
                .timed(
                    "usage",
                    self.store.list(Some(&base)).try_collect::<Vec<_>>(),
                )
                .await?;
            Ok(Usage {
                keys: metas.len() as u64,
                bytes: metas.iter().map(|m| m.size).sum(),
            })
        })
    }
}

/// Encodes a name into `[A-Za-z0-9_-]` plus `=XX` escapes.
pub(crate) fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('=');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 15) as usize]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes [`encode_name`]; `None` for anything it could not have written.
pub(crate) fn decode_name(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn decode_location(base: &Path, location: &Path) -> Option<String> {
    let parts: Vec<_> = location.prefix_match(base)?.collect();
    let (last, dirs) = parts.split_last()?;
    let mut encoded = String::new();
    for dir in dirs {
        encoded.push_str(dir.as_ref().strip_suffix('+')?);
    }
    encoded.push_str(last.as_ref());
    decode_name(&encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_never_escape() {
        for name in [
            "user:1", "..", ".", "a/b\\c", "%2E", "ключ", "x y\0z", "=41",
        ] {
            let enc = encode_name(name);
            assert!(
                enc.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b))
            );
            assert_eq!(decode_name(&enc).as_deref(), Some(name));
        }
    }

    #[tokio::test]
    async fn long_keys_are_chunked_and_listed_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path().into(), Some("a/b"), "p:", Duration::from_secs(5))
            .expect("open");
        let long = "é".repeat(400);
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
