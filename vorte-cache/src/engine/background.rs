//! Background work: the writer of each write-behind layer, and the sweepers of object stores.
//! Each task holds only what it needs and ends with the engine.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::Engine;
use crate::fence::Fenced;
use crate::stats::Counters;
use crate::store::Slot;

/// A write waiting for a write-behind layer.
pub(super) struct QueuedWrite {
    pub(super) key: String,
    pub(super) bytes: Bytes,
    pub(super) ttl: Duration,
    /// The fence ticket just after this write was recorded: if the key is deleted or rewritten
    /// later, the queued write is stale and dropped.
    pub(super) ticket: u64,
}

impl Engine {
    /// Starts the background writer of the write-behind layer `tiers[i]`.
    pub(super) fn start_write_behind(
        &self,
        i: usize,
        capacity: usize,
    ) -> tokio::sync::mpsc::Sender<QueuedWrite> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<QueuedWrite>(capacity.max(1));
        let tier = &self.tiers[i];
        let (store, layer) = (tier.store.clone(), tier.layer);
        let (fence, counters) = (
            self.fence.clone(),
            self.counters.layers[layer.index()].clone(),
        );
        tokio::spawn(async move {
            // Ends when the engine (the only sender) is dropped.
            while let Some(w) = rx.recv().await {
                if fence.check(&w.key, w.ticket).is_some() {
                    continue; // deleted or rewritten since it was queued
                }
                if let Err(e) = store.put(Slot::Entry(&w.key), w.bytes, w.ttl).await {
                    Counters::bump(&counters.errors);
                    tracing::warn!(layer = %layer, key = w.key, error = %e, "write-behind failed");
                    continue;
                }
                // A delete that ran while this write was in flight found nothing to delete:
                // take the write back, so the delete wins.
                if fence.check(&w.key, w.ticket) == Some(Fenced::Deleted)
                    && let Err(e) = store.delete(Slot::Entry(&w.key)).await
                {
                    Counters::bump(&counters.errors);
                    tracing::warn!(layer = %layer, key = w.key, error = %e, "write-behind could not take back a deleted key");
                }
            }
        });
        tx
    }

    /// Starts the sweepers of the layers that ask for one; each stops with the engine.
    pub(crate) fn start_sweepers(self: &Arc<Self>) {
        for (i, tier) in self.tiers.iter().enumerate() {
            let Some((every, batch)) = tier.sweep else {
                continue;
            };
            let engine = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    let tier = &engine.tiers[i];
                    match tier.store.sweep(batch).await {
                        Ok(removed) => {
                            engine
                                .counters
                                .layer(tier.layer)
                                .swept
                                .fetch_add(removed, Ordering::Relaxed);
                        }
                        Err(e) => engine.skip(tier.layer, "sweep", "*", &e),
                    }
                }
            });
        }
    }
}
