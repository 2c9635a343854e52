//! Conditional writes of entries: compare-and-set, tombstones, and deletes that leave them.
//!
//! A swap reads the object, compares, and writes only if it is unchanged since the read:
//! - on S3, GCS and Azure, with object_store's conditional puts: `PutMode::Create` (S3
//!   `If-None-Match: *`) when the slot was empty, `PutMode::Update` with the e-tag and version
//!   of the read (S3 `If-Match`) when it was not; the server refuses the write if anything
//!   changed, in any process;
//! - on `file`, under the name's lock (`lock.rs`), which every write of an entry takes.
//!
//! The HTTP backend has neither, so it has no compare-and-set (`has_compare_and_set` is false);
//! its tombstones are plain writes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{ObjectStorage, first_failure, lock, tombstone};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Slot;

/// How many keys of a `delete_many` are tombstoned at once; each is bounded by the layer's
/// timeout on its own, so a large delete never runs out of time as a whole.
const DELETE_CONCURRENCY: usize = 16;

/// How many keys of a `delete_many` are in hand at once.
const DELETE_CHUNK: usize = 1_024;

/// How many times a tombstone retries its conditional write when other writers keep changing the
/// object; then it overwrites (it must land, and only its "existed" answer is then a guess).
const TOMBSTONE_ATTEMPTS: usize = 8;

/// What a read found at a path, and the version a conditional write must match.
struct Seen {
    stored: Option<Bytes>,
    version: Option<UpdateVersion>,
}

impl ObjectStorage {
    /// Whether this backend can refuse a write when the object changed since it was read.
    pub(super) fn swaps(&self) -> bool {
        self.locks.is_some() || self.backend != "http"
    }

    /// The name's lock on `file`; nothing elsewhere.
    pub(super) async fn lock(&self, path: &Path) -> object_store::Result<Option<lock::Held<'_>>> {
        match &self.locks {
            Some(locks) => {
                locks
                    .lock(path)
                    .await
                    .map(Some)
                    .map_err(|e| object_store::Error::Generic {
                        store: "file lock",
                        source: Box::new(e),
                    })
            }
            None => Ok(None),
        }
    }

    async fn read_versioned(&self, path: &Path) -> object_store::Result<Seen> {
        match self.store.get(path).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let stored = got.bytes().await?;
                Ok(Seen {
                    stored: Some(stored),
                    version: Some(version),
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Seen {
                stored: None,
                version: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes `new` if the object is still what `seen` found; `false` when it changed. On `file`
    /// the caller holds the name's lock, so nothing changed: a plain write.
    async fn write_if_unchanged(
        &self,
        path: &Path,
        seen: &Seen,
        new: Bytes,
    ) -> object_store::Result<bool> {
        let mode = match (&self.locks, &seen.version) {
            (Some(_), Some(_)) => PutMode::Overwrite,
            (_, None) => PutMode::Create,
            (None, Some(version)) => PutMode::Update(version.clone()),
        };
        let options = PutOptions::from(mode);
        match self
            .store
            .put_opts(path, PutPayload::from(new), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn swap(
        &self,
        key: &str,
        expected: Option<&Bytes>,
        new: Bytes,
    ) -> Result<Option<bool>> {
        if !self.swaps() {
            return Ok(None);
        }
        let path = self.path(Slot::Entry(key));
        let swap = async {
            let _held = self.lock(&path).await?;
            let seen = match expected {
                // Expecting no entry needs no read: a create fails on anything there.
                None => Seen {
                    stored: None,
                    version: None,
                },
                Some(expected) => {
                    let seen = self.read_versioned(&path).await?;
                    let current = seen.stored.clone().map(tombstone::logical);
                    if current.as_ref() != Some(expected) {
                        return Ok(false);
                    }
                    seen
                }
            };
            self.write_if_unchanged(&path, &seen, new).await
        };
        self.bounded("compare-and-set", swap).await.map(Some)
    }

    /// Replaces the entry of `key` with a tombstone of `marker` for `ttl`; whether a real entry
    /// was there.
    pub(super) async fn bury(&self, key: &str, marker: &Bytes, ttl: Duration) -> Result<bool> {
        if marker.len() > tombstone::MAX_MARKER {
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "l4 {}: a tombstone marker is at most {} bytes, not {}",
                    self.backend,
                    tombstone::MAX_MARKER,
                    marker.len()
                ),
            ));
        }
        let expires_at_ms = crate::clock::now_ms().saturating_add(ttl.as_millis() as u64);
        let stored = tombstone::encode(marker, expires_at_ms);
        let path = self.path(Slot::Entry(key));
        let bury = async {
            let _held = self.lock(&path).await?;
            let mut seen = None;
            if self.swaps() {
                for _ in 0..TOMBSTONE_ATTEMPTS {
                    let found = self.read_versioned(&path).await?;
                    if self
                        .write_if_unchanged(&path, &found, stored.clone())
                        .await?
                    {
                        return Ok(tombstone::was_real(found.stored.as_ref(), marker));
                    }
                    seen = Some(found);
                }
            } else {
                seen = Some(self.read_versioned(&path).await?);
            }
            self.store
                .put(&path, PutPayload::from(stored.clone()))
                .await?;
            Ok(tombstone::was_real(
                seen.and_then(|s| s.stored).as_ref(),
                marker,
            ))
        };
        self.bounded("delete", bury).await
    }

    /// Tombstones every key, [`DELETE_CONCURRENCY`] at a time, each within the layer's timeout.
    /// Every key is tried; the first error is returned only after all were.
    pub(super) async fn bury_all(
        &self,
        keys: &[&str],
        marker: &Bytes,
        ttl: Duration,
    ) -> Result<Vec<bool>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut errors = Vec::new();
        // A chunk's futures are built up front (so a huge delete holds only one chunk's), not in a
        // stream's closure: a closure there makes the boxed future's `Send` proof ask for a
        // lifetime-generic closure, which rustc cannot see it is.
        for chunk in keys.chunks(DELETE_CHUNK) {
            let deletes: Vec<_> = chunk
                .iter()
                .map(|key| self.bury(key, marker, ttl))
                .collect();
            let results: Vec<Result<bool>> = futures_util::stream::iter(deletes)
                .buffered(DELETE_CONCURRENCY)
                .collect()
                .await;
            for result in results {
                match result {
                    Ok(existed) => found.push(existed),
                    Err(e) => errors.push(e),
                }
            }
        }
        first_failure(errors, keys.len())?;
        Ok(found)
    }

    /// A plain write of an entry (under its lock on `file`) or of a tag record.
    pub(super) async fn write(&self, slot: Slot<'_>, value: Bytes) -> Result<()> {
        let path = self.path(slot);
        let put = async {
            let _held = match slot {
                Slot::Entry(_) => self.lock(&path).await?,
                Slot::Tag(_) => None,
            };
            self.store.put(&path, PutPayload::from(value)).await
        };
        self.bounded("put", put).await.map(drop)
    }

    /// Removes a name (under its lock on `file`); whether it was there.
    pub(super) async fn remove(&self, slot: Slot<'_>) -> Result<bool> {
        let path = self.path(slot);
        let delete = async {
            let _held = match slot {
                Slot::Entry(_) => self.lock(&path).await?,
                Slot::Tag(_) => None,
            };
            // LocalFileSystem reports a missing file as NotFound; S3 and others succeed
            // silently, so they are asked first whether the object is there (for the answer
            // only: the delete is sent either way).
            let existed = if self.locks.is_some() {
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
    }
}
