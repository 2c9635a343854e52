//! L4 on object storage through object_store: `file` (a local directory), and with their cargo
//! features `s3`, `gcs`, `azure` and `http` (a WebDAV-style origin).
//!
//! Layout under the store's root (the layer's `prefix`, then `key_prefix`): `e/<key>` for entries
//! and `t/<tag>` for tag records. Names are encoded by [`encode_name`]: bytes outside
//! `[A-Za-z0-9_-]` become `=XX`, so no name can be `.`/`..`, contain a separator, or need
//! object_store's own escaping; an encoded name longer than [`SEGMENT`] is split into segments that
//! end in `+`, so long keys stay under file-name limits and still round-trip. No logical key can
//! therefore address anything outside the root.
//!
//! Expiry lives in the envelope (local files have no metadata); the router checks it on every read
//! and removes what has expired, and [`sweep`] removes expired objects nobody reads.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{BoxFuture, Slot, Store, Usage};

/// Tight retries for a cache tier: object_store's defaults (10 retries, 3 minutes) would hold a
/// read far longer than the layer's timeout allows.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure", feature = "http"))]
fn retry(timeout: Duration) -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: timeout,
        ..Default::default()
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure", feature = "http"))]
fn client_options(timeout: Duration, allow_http: bool) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(2)))
        .with_allow_http(allow_http)
}
use crate::config::BackendConfig;
use crate::error::{Error, ErrorKind, Result};

/// Encoded names longer than this are stored under their hash (see `ObjectLayer::path`).
const HASHED_PAST: usize = 600;

/// The longest directory or file name segment written.
const SEGMENT: usize = 200;

/// An object-store-backed layer.
#[derive(Debug)]
pub(crate) struct ObjectLayer {
    store: Arc<dyn ObjectStore>,
    root: Path,
    timeout: Duration,
    backend: &'static str,
    /// Where, for messages: the directory or the bucket (never credentials).
    location: String,
    /// Where the next sweep pass starts listing; `None`: from the beginning.
    sweep_from: std::sync::Mutex<Option<Path>>,
}

fn config_error(path: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{path}: {e}"))
}

impl ObjectLayer {
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
        ObjectLayer {
            store,
            root,
            timeout,
            backend,
            location,
            sweep_from: std::sync::Mutex::new(None),
        }
    }

    /// Opens the object store `backend` describes, for `layer`.
    pub(crate) fn open(
        layer: &str,
        backend: &BackendConfig,
        timeout: Duration,
        key_prefix: &str,
    ) -> Result<Self> {
        let path = |key: &str| format!("cache.layers.{layer}.{key}");
        let prefix = backend.prefix();
        match backend {
            BackendConfig::File(file) => {
                Self::open_file(file.path.clone(), prefix, key_prefix, timeout)
            }
            #[cfg(feature = "s3")]
            BackendConfig::S3(s3) => {
                // `from_env` reads AWS_REGION, AWS_ENDPOINT and the credentials; the layer's own
                // keys override them when set.
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_allow_http(s3.allow_http)
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, s3.allow_http));
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(keys) = &s3.credentials {
                    builder = builder
                        .with_access_key_id(keys.access_key_id.expose())
                        .with_secret_access_key(keys.secret_access_key.expose());
                }
                let store = builder
                    .build()
                    .map_err(|e| config_error(&path("bucket"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "s3",
                    format!("s3://{}", s3.bucket),
                    prefix,
                    key_prefix,
                    timeout,
                ))
            }
            #[cfg(feature = "gcs")]
            BackendConfig::Gcs(gcs) => {
                let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&gcs.bucket)
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, false))
                    .build()
                    .map_err(|e| config_error(&path("bucket"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "gcs",
                    format!("gs://{}", gcs.bucket),
                    prefix,
                    key_prefix,
                    timeout,
                ))
            }
            #[cfg(feature = "azure")]
            BackendConfig::Azure(azure) => {
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&azure.container)
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, false));
                if let Some(endpoint) = &azure.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                let store = builder
                    .build()
                    .map_err(|e| config_error(&path("bucket"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "azure",
                    format!("azure://{}", azure.container),
                    prefix,
                    key_prefix,
                    timeout,
                ))
            }
            #[cfg(feature = "http")]
            BackendConfig::Http(http) => {
                let store = object_store::http::HttpBuilder::new()
                    .with_url(http.url.expose())
                    .with_retry(retry(timeout))
                    .with_client_options(client_options(timeout, http.allow_http))
                    .build()
                    .map_err(|e| config_error(&path("url"), e))?;
                Ok(Self::new(
                    Arc::new(store),
                    "http",
                    "http origin".into(),
                    prefix,
                    key_prefix,
                    timeout,
                ))
            }
            other => Err(config_error(
                &path("backend"),
                format!(
                    "`{}` is not an object store built into this build",
                    other.kind().name()
                ),
            )),
        }
    }

    /// Opens (creating it when missing) the directory `dir`, keeping names under the optional
    /// `prefix` (the layer's `prefix` setting, `/`-separated) and then `key_prefix`.
    pub(crate) fn open_file(
        dir: std::path::PathBuf,
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
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("cache.layers.l4.path: cannot open {}: {e}", dir.display()),
                )
                .with_source(e)
            })?
            .with_automatic_cleanup(true);
        Ok(Self::new(
            Arc::new(store),
            "file",
            dir.display().to_string(),
            prefix,
            key_prefix,
            timeout,
        ))
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
            .timed(
                what,
                self.store
                    .list(Some(&self.entries_root()))
                    .try_collect::<Vec<_>>(),
            )
            .await?;
        metas.extend(
            self.timed(
                what,
                self.store
                    .list(Some(&self.hashed_entries_root()))
                    .try_collect::<Vec<_>>(),
            )
            .await?,
        );
        Ok(metas)
    }

    async fn timed<T>(
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

use std::future::Future;

/// Where an envelope keeps its expiry: bytes 8..16, after magic, version, flags and checksum
/// (`codec.rs`), big-endian milliseconds.
const EXPIRY_AT: std::ops::Range<u64> = 8..16;

impl ObjectLayer {
    /// One bounded sweep pass: lists up to `batch` entries from where the last pass stopped,
    /// reads each one's expiry (a 16-byte range read, not the whole object) and deletes the
    /// expired ones.
    async fn sweep_pass(&self, batch: usize) -> Result<u64> {
        // Everything under the root: plain and hashed entries (a tag record has no expiry at
        // bytes 8..16, so its range read fails and it is left alone).
        let base = self.root.clone();
        let from = self
            .sweep_from
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let listing = match &from {
            Some(offset) => self.store.list_with_offset(Some(&base), offset),
            None => self.store.list(Some(&base)),
        };
        let metas: Vec<_> = self
            .timed("sweep", listing.take(batch).try_collect::<Vec<_>>())
            .await?;
        // The next pass continues after this one, or starts over once the end is reached.
        *self.sweep_from.lock().unwrap_or_else(|p| p.into_inner()) = if metas.len() < batch {
            None
        } else {
            metas.last().map(|m| m.location.clone())
        };
        let now = crate::key::now_ms();
        let expired = futures_util::stream::iter(metas)
            .map(|meta| async move {
                let head = self.store.get_range(&meta.location, EXPIRY_AT).await.ok()?;
                let bytes: [u8; 8] = head.as_ref().try_into().ok()?;
                (u64::from_be_bytes(bytes) <= now).then_some(meta.location)
            })
            .buffer_unordered(8)
            .filter_map(|expired| async move { expired })
            .collect::<Vec<_>>()
            .await;
        // One bulk delete (S3 `DeleteObjects`, up to 1,000 per request), not one call per object.
        let deleted = self
            .store
            .delete_stream(futures_util::stream::iter(expired.into_iter().map(Ok)).boxed())
            .filter_map(|r| async move {
                match r {
                    Err(object_store::Error::NotFound { .. }) => None,
                    other => Some(other),
                }
            })
            .try_collect::<Vec<_>>();
        let removed = self.timed("sweep", deleted).await?.len() as u64;
        Ok(removed)
    }
}

impl Store for ObjectLayer {
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
                .timed(
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
            self.timed("delete", deleted).await?;
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
            self.timed("delete", delete).await
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
                    if let Some(bytes) = self.timed("list", read).await?
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
            let removed: Vec<Path> = self.timed("flush", deleted.try_collect::<Vec<_>>()).await?;
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

    #[tokio::test]
    async fn very_long_names_are_hashed_and_still_listed() {
        use crate::codec::Envelope;
        use crate::config::{Compression, Serialization};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ObjectLayer::open_file(dir.path().into(), None, "p:", Duration::from_secs(5))
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
    async fn the_sweeper_deletes_expired_objects_in_bounded_passes() {
        use crate::codec::Envelope;
        use crate::config::{Compression, Serialization};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ObjectLayer::open_file(dir.path().into(), None, "p:", Duration::from_secs(5))
            .expect("open");
        let now = crate::key::now_ms();
        for i in 0..25 {
            let expires_at_ms = if i % 5 == 0 { now + 60_000 } else { now - 1 };
            let env = Envelope {
                expires_at_ms,
                created_at_ms: now,
                key: format!("k{i}"),
                tags: vec![],
                serialization: Serialization::Msgpack,
                payload: Bytes::from_static(b"v"),
            };
            store
                .put(
                    Slot::Entry(&format!("k{i}")),
                    env.encode(Compression::None),
                    Duration::from_secs(60),
                )
                .await
                .expect("put");
        }
        let mut removed = 0;
        let mut passes = 0;
        while removed < 20 {
            let n = store.sweep(10).await.expect("sweep");
            assert!(n <= 10, "a pass reads at most its batch");
            removed += n;
            passes += 1;
            assert!(passes < 10, "the sweeper makes progress");
        }
        assert_eq!(removed, 20);
        let mut left = store.list("").await.expect("list");
        left.sort();
        assert_eq!(left, ["k0", "k10", "k15", "k20", "k5"]);
    }

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
        let store =
            ObjectLayer::open_file(dir.path().into(), Some("a/b"), "p:", Duration::from_secs(5))
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
