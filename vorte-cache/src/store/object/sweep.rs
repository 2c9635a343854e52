//! The background sweeper: bounded passes that delete expired objects nobody reads.

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::ObjectStorage;
use crate::error::Result;

/// Where an envelope keeps its expiry: bytes 8..16, after magic, version, flags and checksum
/// (`codec.rs`), big-endian milliseconds.
const EXPIRY_AT: std::ops::Range<u64> = 8..16;

impl ObjectStorage {
    /// One bounded sweep pass: lists up to `batch` entries from where the last pass stopped,
    /// reads each one's expiry (a 16-byte range read, not the whole object) and deletes the
    /// expired ones.
    pub(super) async fn sweep_pass(&self, batch: usize) -> Result<u64> {
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
        let metas = self.collect("sweep", listing, batch).await?;
        // The next pass continues after this one, or starts over once the end is reached.
        *self.sweep_from.lock().unwrap_or_else(|p| p.into_inner()) = if metas.len() < batch {
            None
        } else {
            metas.last().map(|m| m.location.clone())
        };
        let now = crate::clock::now_ms();
        let expired = futures_util::stream::iter(metas)
            .map(|meta| async move {
                self.expired(&meta.location, now)
                    .await
                    .then_some(meta.location)
            })
            .buffer_unordered(8)
            .filter_map(|expired| async move { expired })
            .collect::<Vec<_>>()
            .await;
        if self.locks.is_some() {
            return self.remove_if_still_expired(expired, now).await;
        }
        // One bulk delete, not one call per object. Between the read and the delete
        // another process may have replaced the object (with a new tombstone, say): object_store
        // has no conditional delete, so it goes too (docs/consistency.md#l4-object-storage).
        let total = expired.len();
        let (removed, errors) = self.delete_bulk("sweep", expired).await?;
        super::first_failure(errors, total)?;
        Ok(removed)
    }

    /// Whether the object at `location` carries an expiry (an envelope's or a tombstone's) at or
    /// before `now`; `false` when it cannot be read in time or has none.
    async fn expired(&self, location: &Path, now: u64) -> bool {
        let read = tokio::time::timeout(self.timeout, self.store.get_range(location, EXPIRY_AT));
        let Ok(Ok(head)) = read.await else {
            return false;
        };
        let Ok(bytes) = <[u8; 8]>::try_from(head.as_ref()) else {
            return false;
        };
        u64::from_be_bytes(bytes) <= now
    }

    /// On `file`: removes each object under its name's lock, after reading its expiry again, so
    /// a tombstone or entry written since the first read stays.
    async fn remove_if_still_expired(&self, expired: Vec<Path>, now: u64) -> Result<u64> {
        let mut removed = 0;
        for location in expired {
            let remove = async {
                let _held = self.lock(&location).await?;
                if !self.expired(&location, now).await {
                    return Ok(false);
                }
                match self.store.delete(&location).await {
                    Ok(()) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            };
            if self.bounded("sweep", remove).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::store::{Slot, Store};

    #[tokio::test]
    async fn the_sweeper_deletes_expired_objects_in_bounded_passes() {
        use crate::codec::Envelope;
        use crate::config::{Compression, Serialization};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ObjectStorage::open_file(dir.path().into(), None, "p:", Duration::from_secs(5))
            .expect("open");
        let now = crate::clock::now_ms();
        for i in 0..25 {
            let expires_at_ms = if i % 5 == 0 { now + 60_000 } else { now - 1 };
            let env = Envelope {
                expires_at_ms,
                created_at_ms: now,
                fresh_until_ms: expires_at_ms,
                load_ms: 0,
                validator: None,
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

    #[tokio::test]
    async fn the_sweeper_removes_tombstones_once_their_ttl_passed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ObjectStorage::open_file(dir.path().into(), None, "p:", Duration::from_secs(5))
            .expect("open");
        let marker = Bytes::from_static(b"vorte-tombstone:1");
        for (key, ttl) in [("gone", Duration::ZERO), ("kept", Duration::from_secs(600))] {
            store
                .tombstone(key, marker.clone(), ttl)
                .await
                .expect("tombstone");
        }
        assert_eq!(store.sweep(100).await.expect("sweep"), 1);
        assert_eq!(store.get(Slot::Entry("gone")).await.expect("get"), None);
        assert_eq!(
            store.get(Slot::Entry("kept")).await.expect("get"),
            Some(marker)
        );
    }
}
