//! Invalidation: `delete`, `delete_many`, `invalidate_tag` and `flush` in this process, the
//! notices that carry them to the others, and the other processes' notices applied here.

use crate::observe::ActivityKind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;

use super::Engine;
use super::epoch::FlushEpoch;
use crate::bus::{Doubt, Notice, NoticeSink};
use crate::clock::now_ms;
use crate::codec::TagStamp;
use crate::error::Result;
use crate::fence::Fenced;
use crate::key::{self, FLUSH_EPOCH_TAG};
use crate::store::{BoxFuture, Slot, Store, TOMBSTONE_PREFIX};

/// What `delete` leaves in stores that support it, instead of nothing: a new tombstone, unique to
/// this delete ([`TOMBSTONE_PREFIX`], the wall-clock time in ms and 128 random bits). A load
/// remembers what it saw in each shared layer when it began and fills by compare-and-set expecting
/// exactly that, so a load that began before the delete (it saw the old value, nothing, or an
/// older tombstone) fails, in any process, and cannot write the old value back
/// (`docs/guarantees.md#g3-no-resurrection`), while a load that began after it (it saw this marker)
/// is cached as usual. The time lets a write-behind writer tell a later delete from an earlier
/// one. Never a valid envelope, so it reads as a miss, never as corrupt.
pub(crate) fn new_tombstone() -> Bytes {
    let marker = format!(":{:016x}:{:032x}", now_ms(), rand::random::<u128>());
    let mut bytes = Vec::with_capacity(TOMBSTONE_PREFIX.len() + marker.len());
    bytes.extend_from_slice(TOMBSTONE_PREFIX);
    bytes.extend_from_slice(marker.as_bytes());
    Bytes::from(bytes)
}

/// When a tombstone of [`new_tombstone`] was written (wall-clock ms); `None` for another kind.
pub(crate) fn tombstone_time(tombstone: &[u8]) -> Option<u64> {
    let hex = tombstone.strip_prefix(TOMBSTONE_PREFIX)?.get(1..17)?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// What [`remove_if_unchanged`] did.
pub(crate) enum Removed {
    /// The slot held the expected bytes; it now holds this new tombstone.
    Buried(Bytes),
    /// Something else replaced them meanwhile (a newer write, a later delete): left alone.
    Changed,
    /// The store has no compare-and-set: the name was deleted, whatever it held.
    Deleted,
}

/// Removes `expected` from `key`'s slot only if it is still there, by compare-and-set to a new
/// tombstone, so that neither a newer write nor a later delete's tombstone is removed and a load
/// that began before still cannot fill the slot; a store without compare-and-set gets a plain
/// delete. The one way the engine takes back a copy it wrote or cleans up an entry of no use
/// (`docs/consistency.md#cleanup-never-removes-a-newer-write`).
pub(crate) async fn remove_if_unchanged(
    store: &dyn Store,
    key: &str,
    expected: &Bytes,
) -> Result<Removed> {
    if !store.has_compare_and_set() {
        store.delete(Slot::Entry(key)).await?;
        return Ok(Removed::Deleted);
    }
    let tombstone = new_tombstone();
    Ok(
        match store
            .compare_and_set(key, Some(expected), tombstone.clone(), TOMBSTONE_TTL)
            .await?
        {
            Some(true) => Removed::Buried(tombstone),
            _ => Removed::Changed,
        },
    )
}

/// How long a tombstone stays. A load slower than this expects a tombstone that is gone and fails
/// its compare-and-set: it is not cached, never written back.
pub(crate) const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

impl Engine {
    /// Tells the other processes, when there is a bus; a failure is logged, never returned.
    /// The notice waits for the bus at most what the call, which `began` then (see
    /// [`Engine::call_began`]), left of its budget; after a layer failed in the call
    /// (`layer_failed`), not at all: it goes to the
    /// publisher's queue, as the call already waited once and the bus usually rides on the
    /// server that failed (`docs/resilience.md#one-timeout-per-call`).
    pub(crate) async fn announce(
        &self,
        began: Option<Instant>,
        layer_failed: bool,
        notice: impl FnOnce() -> Notice,
    ) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let wait = match (layer_failed, self.call_budget, began) {
            (true, _, _) => Duration::ZERO,
            (false, Some(budget), Some(began)) => budget.saturating_sub(began.elapsed()),
            (false, _, _) => Duration::MAX,
        };
        if let Err(e) = publisher.publish(notice(), wait).await {
            tracing::warn!(error = %e, "invalidation not published; other processes keep their L1 copies until their TTL");
        }
    }

    /// Tells the other processes that `key` was written (see [`Engine::announce`]).
    pub(super) async fn announce_key(&self, key: &str, began: Option<Instant>, layer_failed: bool) {
        self.announce(began, layer_failed, || Notice::Keys {
            keys: vec![key.to_owned()],
            owed: self.recovery.owed_layers(&[key]),
        })
        .await;
    }

    /// Publishes an event for the other processes' handlers, when there is a bus. The engine
    /// only carries it: what an event means is the application's business.
    pub(crate) async fn publish_event(&self, event: crate::bus::EventNotice) {
        if let Some(publisher) = &self.publisher
            && let Err(e) = publisher.publish_event(event).await
        {
            tracing::warn!(error = %e, "event not published; other processes will not run its handlers");
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Deletes `keys` from every layer: one bulk call per store, one bus message.
    pub(crate) async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        let began = self.call_began();
        for key in keys {
            key::validate(key, "key")?;
        }
        self.instruments.invalidated(ActivityKind::Keys, keys);
        let mut existed = vec![false; keys.len()];
        let mut layer_failed = false;
        for (key, existed) in keys.iter().zip(existed.iter_mut()) {
            self.recovery.superseded(key);
            self.fence.record(key, Fenced::Deleted);
            self.flights.forget(key);
            for behind in self.tiers.iter().filter_map(|t| t.behind.as_ref()) {
                behind.withdraw(key);
            }
            *existed = self.l1.as_ref().is_some_and(|l1| l1.remove(key));
        }
        let deletes = self.tiers.iter().map(|tier| async move {
            let marker = new_tombstone();
            let result = tier
                .store
                .delete_many(keys, marker.clone(), TOMBSTONE_TTL)
                .await;
            (tier, marker, result)
        });
        for (tier, marker, result) in join_all(deletes).await {
            match result {
                Ok(found) => {
                    for (e, f) in existed.iter_mut().zip(found) {
                        *e |= f;
                    }
                    for key in keys {
                        self.recovery.settled(tier.layer, key);
                        self.recovery.key_written(tier.layer, key, &marker);
                    }
                }
                Err(e) => {
                    layer_failed = true;
                    self.skip(
                        tier.layer,
                        "delete",
                        keys.first().copied().unwrap_or(""),
                        &e,
                    );
                    // Retried until it lands; meanwhile these keys are not read there.
                    self.recovery.owe_delete(tier.layer, keys);
                }
            }
        }
        // A read that ran while the layers below were changing took its ticket after the first
        // fence record and may have found the old value there: fence again now that they have
        // changed, and drop what such a read already put into L1 (the fence record and an L1
        // fill are atomic, so each fill is either refused or removed here).
        // (With L1 alone nothing below changed: the first record covered every read.)
        if !self.tiers.is_empty() {
            for key in keys {
                self.fence.record(key, Fenced::Deleted);
                // A load that joined after the first detach may have read the old value too.
                self.flights.forget(key);
                if let Some(l1) = &self.l1 {
                    l1.remove(key);
                }
            }
        }
        self.announce(began, layer_failed, || Notice::Keys {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            owed: self.recovery.owed_layers(keys),
        })
        .await;
        Ok(existed.iter().filter(|e| **e).count() as u64)
    }

    pub(crate) async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        key::validate(tag, "tag")?;
        self.instruments.invalidated(ActivityKind::Tag, &[tag]);
        let began = self.call_began();
        let (version, failed) = self.tags.invalidate_or_owe(tag).await;
        let layer_failed = failed.is_some();
        let authority = self.authority.and_then(|i| self.tiers.get(i));
        if let (None, Some(tier)) = (&failed, authority) {
            self.recovery.tag_moved(tier.layer, tag, version);
        }
        if let Some(e) = failed {
            // Like a delete that missed a layer: this process holds the tag invalid from now on
            // and a retry writes the record once the layer is back (`recovery.rs`).
            if let Some(tier) = self.authority.and_then(|i| self.tiers.get(i)) {
                self.skip(tier.layer, "invalidate_tag", tag, &e);
            }
            self.recovery.owe_tag();
        }
        self.forget_tagged_loads(tag);
        self.announce(began, layer_failed, || Notice::Tag {
            tag: tag.to_owned(),
            version,
            owed: layer_failed,
        })
        .await;
        Ok(())
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        self.instruments.invalidated(ActivityKind::Flush, &[]);
        let began = self.call_began();
        self.fence.record_all();
        self.flights.forget_all();
        self.withdraw_queued_writes();
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
        let clears = self
            .tiers
            .iter()
            .map(|tier| async move { (tier, tier.store.clear().await) });
        let mut first_error = None;
        for (tier, result) in join_all(clears).await {
            if let Err(e) = result {
                self.skip(tier.layer, "flush", "*", &e);
                // Retried until it lands; meanwhile the layer is not read.
                self.recovery.owe_clear(tier.layer);
                first_error.get_or_insert(e);
            }
        }
        if !self.tiers.is_empty() {
            // A fill in any process that began before this flush carries the old epoch: from now
            // on it is invalid wherever it lands, even in a slot the clears emptied. (After the
            // clears, which remove the epoch's record with every other.)
            if let Err(e) = self.flush_epoch.advance().await {
                self.skip(
                    self.tiers[self.authority.unwrap_or(0)].layer,
                    "flush",
                    "*",
                    &e,
                );
                first_error.get_or_insert(e);
            }
            // As in `delete_many`: a read during the clears may have filled L1 from a layer not
            // yet cleared.
            self.fence.record_all();
            if let Some(l1) = &self.l1 {
                l1.clear();
            }
        }
        self.tags.forget_all();
        self.announce(began, first_error.is_some(), || Notice::Flush)
            .await;
        // A flush that left a layer full would serve old values later: report it.
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies another cache's notice to this cache's L1 and tag versions.
    async fn apply_notice(&self, notice: Notice) {
        match notice {
            Notice::Keys { keys, owed } => {
                // The sender could not remove the older values from these layers: neither read
                // them there nor trust them until a delete lands, this process's own or the
                // sender's (`docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back`).
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                for layer in owed {
                    self.recovery.owe_delete(layer, &keys);
                }
                for key in keys {
                    self.fence.record(key, Fenced::Deleted);
                    self.flights.forget(key);
                    if let Some(l1) = &self.l1 {
                        l1.remove(key);
                    }
                }
            }
            Notice::Tag { tag, version, owed } => {
                if owed {
                    // The authority still holds the old version (as for keys above).
                    let _ = self.tags.owe(&tag);
                    self.recovery.owe_tag();
                } else {
                    self.tags.learn(&tag, version);
                }
                self.forget_tagged_loads(&tag);
            }
            Notice::Flush => {
                self.withdraw_queued_writes();
                self.forget_local_state();
            }
            // Not an invalidation: the other process's value is in the shared layers now.
            Notice::Landed { key } => {
                if let Some(leases) = &self.leases {
                    leases.notify_landed(&key);
                }
            }
        }
    }

    /// Withdraws every write still waiting for a write-behind layer: a flush came after them.
    fn withdraw_queued_writes(&self) {
        for behind in self.tiers.iter().filter_map(|t| t.behind.as_ref()) {
            behind.withdraw_all();
        }
    }

    /// Forgets everything held in this process: L1, tag versions, and loads in flight.
    pub(crate) fn forget_local_state(&self) {
        self.fence.record_all();
        self.flights.forget_all();
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
        self.tags.forget_all();
        self.flush_epoch.forget();
        for tier in &self.tiers {
            tier.store.forget_cached_state();
        }
    }
}

impl Engine {
    /// The stamps of a write of `tags`: theirs and, when there are layers below L1, the flush
    /// epoch as of now (`engine/epoch.rs`). An epoch that cannot be read (its authority is down)
    /// is left out, and the write goes on: the entry is then as safe against a concurrent flush as
    /// one written before the first flush.
    pub(super) async fn stamps_for(&self, tags: &[String]) -> Result<Box<[TagStamp]>> {
        let stamps = self.tags.stamps(tags).await?;
        match self.flush_epoch.current().await {
            Ok(epoch) => Ok(FlushEpoch::stamp(stamps, epoch)),
            Err(e) => {
                tracing::warn!(error = %e, "flush epoch unavailable; entry written without it");
                Ok(stamps)
            }
        }
    }

    /// The stamps an L1 entry keeps: L1 is cleared by a flush in this process and by its notice,
    /// so it leaves out the flush epoch (and an untagged entry stays on the fastest hit path).
    pub(super) fn l1_stamps(stamps: &[TagStamp]) -> Box<[TagStamp]> {
        if stamps.iter().all(|s| &*s.name != FLUSH_EPOCH_TAG) {
            return stamps.into();
        }
        stamps
            .iter()
            .filter(|s| &*s.name != FLUSH_EPOCH_TAG)
            .cloned()
            .collect()
    }

    /// Detaches the loads in flight whose value carries `tag`, and fences their keys: their
    /// stamps predate the new version, so neither their waiters-to-come nor their write may
    /// stand (a write after the tag moved would otherwise pass the fence and hide a later `set`).
    fn forget_tagged_loads(&self, tag: &str) {
        for key in self.flights.forget_tagged(tag) {
            self.fence.record(&key, Fenced::Deleted);
        }
    }
}

impl NoticeSink for Engine {
    fn apply(&self, notice: Notice) -> BoxFuture<'_, ()> {
        Box::pin(self.apply_notice(notice))
    }

    fn drop_local_state(&self) {
        self.forget_local_state();
    }

    /// Keeps nothing while the bus does not answer: an invalidation may be waiting in another
    /// process's queue, and nothing would tell this one (`docs/guarantees.md#g4-gap-detection`).
    fn suspend_local_state(&self, doubt: Doubt) {
        if let Some(l1) = &self.l1 {
            l1.suspend();
        }
        self.tags.suspend();
        self.flush_epoch.suspend();
        if let Some(bus) = self.bus_server.as_ref().filter(|_| doubt == Doubt::Outage) {
            bus.silent.store(true, Ordering::Release);
        }
        self.forget_local_state();
    }

    /// What was learnt while suspended (a tag version, a load in flight) may predate a notice
    /// still on its way: forgotten too, before anything is kept again.
    fn resume_local_state(&self) {
        self.forget_local_state();
        if let Some(l1) = &self.l1 {
            l1.resume();
        }
        self.tags.resume();
        self.flush_epoch.resume();
        if let Some(bus) = &self.bus_server {
            bus.silent.store(false, Ordering::Release);
        }
    }
}
