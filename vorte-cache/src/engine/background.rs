//! Background work: the writer of each write-behind layer, and the sweepers of object stores.
//! Each task holds only what it needs and ends with the engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::Engine;
use super::invalidate::{remove_if_unchanged, tombstone_time};
use crate::codec::Envelope;
use crate::stats::Counters;
use crate::store::{Slot, Store, is_tombstone};

/// A write waiting for a write-behind layer: its key and its place in the queue; the bytes wait
/// in [`Behind`]'s map, where reads find them.
pub(super) struct QueuedWrite {
    key: String,
    seq: u64,
    ttl: Duration,
    /// When it was written, for the writer to tell whether what the layer holds is newer.
    at_ms: u64,
}

/// A write-behind layer's queue and the writes waiting in it, by key
/// (`docs/consistency.md#write-behind-loses-no-write`): the latest write of each key is what a
/// read of the layer finds first, a later write of the key supersedes an earlier one still
/// queued, and a delete withdraws it. Only those two ever drop a queued write.
#[derive(Debug)]
pub(super) struct Behind {
    tx: tokio::sync::mpsc::Sender<QueuedWrite>,
    waiting: Arc<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    writes: Mutex<HashMap<String, (u64, Bytes)>>,
    next: AtomicU64,
}

impl Waiting {
    fn writes(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Bytes)>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes of write `seq` of `key`, if it is still the latest.
    fn latest(&self, key: &str, seq: u64) -> Option<Bytes> {
        match self.writes().get(key) {
            Some((s, bytes)) if *s == seq => Some(bytes.clone()),
            _ => None,
        }
    }

    /// Removes write `seq` of `key` if it is still there; whether it was.
    fn settle(&self, key: &str, seq: u64) -> bool {
        let mut writes = self.writes();
        if writes.get(key).is_some_and(|(s, _)| *s == seq) {
            writes.remove(key);
            return true;
        }
        false
    }
}

impl Behind {
    /// Queues `bytes` for `key`; `false` when the queue is full (the write is not taken).
    pub(super) fn enqueue(&self, key: &str, bytes: Bytes, ttl: Duration, at_ms: u64) -> bool {
        let seq = self.waiting.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.waiting.writes().insert(key.to_owned(), (seq, bytes));
        let queued = QueuedWrite {
            key: key.to_owned(),
            seq,
            ttl,
            at_ms,
        };
        if self.tx.try_send(queued).is_ok() {
            return true;
        }
        self.waiting.settle(key, seq);
        false
    }

    /// The bytes of the latest write of `key` still waiting, if any.
    pub(super) fn waiting(&self, key: &str) -> Option<Bytes> {
        self.waiting.writes().get(key).map(|(_, b)| b.clone())
    }

    /// Withdraws the waiting write of `key` (it was deleted).
    pub(super) fn withdraw(&self, key: &str) {
        self.waiting.writes().remove(key);
    }

    /// Withdraws every waiting write (a flush).
    pub(super) fn withdraw_all(&self) {
        self.waiting.writes().clear();
    }
}

impl Engine {
    /// Starts the background writer of the write-behind layer `tiers[i]`.
    pub(super) fn start_write_behind(&self, i: usize, capacity: usize) -> Behind {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<QueuedWrite>(capacity.max(1));
        let waiting = Arc::new(Waiting::default());
        let tier = &self.tiers[i];
        let (store, layer) = (tier.store.clone(), tier.layer);
        let counters = self.counters.layers[layer.index()].clone();
        let writes = waiting.clone();
        let recovery = self.recovery.clone();
        tokio::spawn(async move {
            // Ends when the engine (the only sender) is dropped.
            while let Some(w) = rx.recv().await {
                // Superseded by a later write of the key, or withdrawn by a delete.
                let Some(bytes) = writes.latest(&w.key, w.seq) else {
                    continue;
                };
                match write_unless_newer(store.as_ref(), &w, bytes.clone()).await {
                    // The layer holds the new value: an older one it owed a delete is gone.
                    Ok(()) => recovery.settled(layer, &w.key),
                    Err(e) => {
                        Counters::bump(&counters.errors);
                        tracing::warn!(layer = %layer, key = w.key, error = %e, "write-behind failed; the older value there is deleted instead");
                        // The layer still holds what this write replaced, which the writer's own
                        // reads would find once the write leaves the queue: owed a delete, like
                        // an invalidation that missed it (`docs/guarantees.md#g1-read-your-writes`).
                        recovery.owe_delete(layer, &[&w.key]);
                    }
                }
                // A delete that ran while this write was in flight withdrew it and found
                // nothing to delete: take the write back (if it is still there), so the delete
                // wins.
                if !writes.settle(&w.key, w.seq)
                    && !writes.writes().contains_key(&w.key)
                    && let Err(e) = remove_if_unchanged(store.as_ref(), &w.key, &bytes).await
                {
                    Counters::bump(&counters.errors);
                    tracing::warn!(layer = %layer, key = w.key, error = %e, "write-behind could not take back a deleted key");
                    recovery.owe_delete(layer, &[&w.key]);
                }
            }
        });
        Behind { tx, waiting }
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

/// Writes a queued write unless the layer already holds something newer: another process's later
/// write, or the tombstone of a later delete (`docs/consistency.md#write-behind-loses-no-write`).
/// Ordered by the writers' wall clocks; by compare-and-set against what was read, where the
/// store has it, so nothing lands between the look and the write.
async fn write_unless_newer(store: &dyn Store, w: &QueuedWrite, bytes: Bytes) -> crate::Result<()> {
    let current = store.get(Slot::Entry(&w.key)).await?;
    let newer = match &current {
        None => false,
        Some(held) if is_tombstone(held) => tombstone_time(held).is_some_and(|t| t > w.at_ms),
        // The size limit does not matter for the one field read here.
        Some(held) => Envelope::decode(held, usize::MAX)
            .is_ok_and(|env| env.key == w.key && env.created_at_ms > w.at_ms),
    };
    if newer {
        return Ok(());
    }
    if store.has_compare_and_set() {
        // Lost the race to another writer: theirs landed after our look, and stands.
        store
            .compare_and_set(&w.key, current.as_ref(), bytes, w.ttl)
            .await?;
        return Ok(());
    }
    store.put(Slot::Entry(&w.key), bytes, w.ttl).await
}
