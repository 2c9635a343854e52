//! Whole-store passes: `list`, `usage` and `clear`.
//!
//! None of them runs under one timeout as a whole, which a large bucket would always exceed:
//! every page of a listing, every read and every chunk of deletes gets the layer's `timeout_ms` of
//! its own. None is ever silently partial either: a pass completes, or fails with an error (a
//! `clear` tries every chunk before it reports the first failure).
//!
//! Tombstones are not entries: `list` and `usage` leave them out. Telling one apart needs its
//! first bytes (`tombstone.rs`), read only for objects of exactly a tombstone's size.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::names::decode_location;
use super::{ObjectStorage, first_failure, tombstone};
use crate::error::{Error, Result};

/// Reads in flight at once while a pass tells tombstones from entries.
const READ_CONCURRENCY: usize = 16;

/// Names per bulk delete of `clear` (S3 `DeleteObjects` takes up to 1,000).
const DELETE_CHUNK: usize = 1_000;

/// An entry object found by a pass, with its key when the pass needed it.
struct Found {
    meta: ObjectMeta,
    key: Option<String>,
}

impl ObjectStorage {
    /// Every object under `prefix`; each page of the listing within the layer's timeout.
    pub(super) async fn listed(&self, what: &str, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.collect(what, self.store.list(Some(prefix)), usize::MAX)
            .await
    }

    /// The first `most` objects of `listing`, waiting for each (so for each page the store
    /// fetches) within the layer's timeout.
    pub(super) async fn collect(
        &self,
        what: &str,
        mut listing: BoxStream<'static, object_store::Result<ObjectMeta>>,
        most: usize,
    ) -> Result<Vec<ObjectMeta>> {
        let mut metas = Vec::new();
        while metas.len() < most
            && let Some(meta) = self
                .bounded(what, async { listing.next().await.transpose() })
                .await?
        {
            metas.push(meta);
        }
        Ok(metas)
    }

    /// Reads an object (within the layer's timeout); `None` when it went meanwhile.
    async fn read(
        &self,
        what: &str,
        location: &Path,
        whole: bool,
        size: u64,
    ) -> Result<Option<Bytes>> {
        let read = async {
            let got = if whole {
                match self.store.get(location).await {
                    Ok(r) => r.bytes().await,
                    Err(e) => Err(e),
                }
            } else {
                self.store
                    .get_range(location, 0..size.min(tombstone::DECIDING_BYTES))
                    .await
            };
            match got {
                Ok(bytes) => Ok(Some(bytes)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.bounded(what, read).await
    }

    /// The entry objects (plain names under `e/`, hashed ones under `x/`), tombstones left out.
    /// With `keys`, each comes with its key (a hashed one's from its envelope, read whole; one
    /// that holds no envelope is left out) and only keys starting with `prefix` are kept.
    async fn entries(&self, what: &str, keys: Option<&str>) -> Result<Vec<Found>> {
        let base = self.entries_root();
        let hashed_base = self.hashed_entries_root();
        let mut metas = self.listed(what, &base).await?;
        metas.extend(self.listed(what, &hashed_base).await?);
        let checks = futures_util::stream::iter(metas)
            .map(|meta| {
                let (base, hashed_base) = (&base, &hashed_base);
                async move {
                    let maybe_tombstone = meta.size == tombstone::STORED_LEN;
                    let key = match decode_location(base, &meta.location) {
                        Some(key) if keys.is_some_and(|p| !key.starts_with(p)) => {
                            return Ok(None);
                        }
                        Some(key) => Some(key),
                        None if meta.location.prefix_match(hashed_base).is_some() => None,
                        // Not a name this store writes.
                        None => return Ok(None),
                    };
                    let hashed = key.is_none();
                    let whole = hashed && keys.is_some();
                    if !(whole || maybe_tombstone) {
                        return Ok(Some(Found { meta, key }));
                    }
                    let Some(bytes) = self.read(what, &meta.location, whole, meta.size).await?
                    else {
                        return Ok(None);
                    };
                    if maybe_tombstone && tombstone::begins_as_tombstone(&bytes) {
                        return Ok(None);
                    }
                    let key = match (key, whole) {
                        (Some(key), _) => Some(key),
                        (None, true) => match crate::codec::Envelope::decode(&bytes, usize::MAX) {
                            Ok(env) if keys.is_some_and(|p| env.key.starts_with(p)) => {
                                Some(env.key)
                            }
                            _ => return Ok(None),
                        },
                        (None, false) => None,
                    };
                    Ok::<_, Error>(Some(Found { meta, key }))
                }
            })
            .buffered(READ_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut found = Vec::with_capacity(checks.len());
        for check in checks {
            if let Some(entry) = check? {
                found.push(entry);
            }
        }
        Ok(found)
    }

    pub(super) async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let found = self.entries("list", Some(prefix)).await?;
        Ok(found.into_iter().filter_map(|f| f.key).collect())
    }

    pub(super) async fn count(&self) -> Result<crate::store::Usage> {
        let found = self.entries("usage", None).await?;
        Ok(crate::store::Usage {
            keys: found.len() as u64,
            bytes: found.iter().map(|f| f.meta.size).sum(),
        })
    }

    /// Removes every name under the root, [`DELETE_CHUNK`] per bulk delete, each chunk within the
    /// layer's timeout; every chunk is tried before the first failure is reported.
    pub(super) async fn clear_all(&self) -> Result<u64> {
        let locations: Vec<Path> = self
            .listed("flush", &self.root)
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect();
        let mut removed = 0u64;
        let mut failures: Vec<Error> = Vec::new();
        let total = locations.len();
        for chunk in locations.chunks(DELETE_CHUNK).map(<[Path]>::to_vec) {
            match self.delete_bulk("flush", chunk).await {
                Ok((gone, errors)) => {
                    removed += gone;
                    failures.extend(errors);
                }
                Err(e) => failures.push(e),
            }
        }
        first_failure(failures, total)?;
        Ok(removed)
    }

    /// Deletes `locations` in bulk (on S3, `DeleteObjects` of up to 1,000 names per request)
    /// within the layer's timeout: how many went, and the names that failed, as errors. A name
    /// already gone is neither.
    pub(super) async fn delete_bulk(
        &self,
        what: &str,
        locations: Vec<Path>,
    ) -> Result<(u64, Vec<Error>)> {
        let deleted = self
            .store
            .delete_stream(futures_util::stream::iter(locations.into_iter().map(Ok)).boxed())
            .filter_map(|r| async move {
                match r {
                    Err(object_store::Error::NotFound { .. }) => None,
                    other => Some(other),
                }
            })
            .collect::<Vec<_>>();
        let results = self.bounded(what, async { Ok(deleted.await) }).await?;
        let mut gone = 0;
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(_) => gone += 1,
                Err(e) => errors.push(self.failed(what, e)),
            }
        }
        Ok((gone, errors))
    }
}
