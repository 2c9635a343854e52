//! The write path: one [`Write`] through the selected layers, whose [`WriteKind`] says how it
//! treats what is already there.

use std::any::Any;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use serde::Serialize;

use super::invalidate::{TOMBSTONE_TTL, new_tombstone, remove_if_unchanged};
use super::{Aging, Engine, Expiry, Tier};
use crate::clock::now_ms;
use crate::codec::{self, TagStamp, Validator};
use crate::config::Serialization;
use crate::error::{Error, ErrorKind, Result};
use crate::fence::Fenced;
use crate::key;
use crate::l1::{Decoded, Encoder, L1Entry, encoder};
use crate::layer::{Layer, LayerSet};
use crate::stats::Counters;
use crate::store::{Slot, is_tombstone};

/// Why a value is written, which decides how the write treats what is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// New truth from the caller (`set`, a counter): it records itself in the fence, so loads in
    /// flight stand down; it overwrites every selected layer; it may wait in a write-behind
    /// queue; and it is announced to the other processes.
    Set,
    /// A copy of something read or loaded (a back-fill, a loader's value), valid only if the key
    /// was not invalidated after `ticket` was taken: dropped when it was; fills only *empty*
    /// slots of the shared layers (compare-and-set, so a newer value or the tombstone of a delete
    /// in any process wins); never queued; never announced, since it is no news.
    Fill { ticket: u64 },
}

/// What a read found in one layer's slot of a key: what a fill of that key expects to find there
/// still, by compare-and-set. Anything else there now (a newer value, the tombstone of a later
/// delete, from any process) means the fill's value is old.
#[derive(Debug, Clone, Default)]
pub(crate) enum Seen {
    /// No entry.
    Nothing,
    /// These bytes: a tombstone, or an entry no use to the read (expired, invalidated, corrupt).
    Bytes(Bytes),
    /// The read failed or left the entry to another build: a fill does not write this layer.
    #[default]
    Unknown,
}

/// What a read found in the slots of the layers below L1, in their order; a layer past the end
/// was not read.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeenSlots(Vec<Seen>);

impl SeenSlots {
    pub(super) fn push(&mut self, seen: Seen) {
        self.0.push(seen);
    }

    /// For a back-fill: a copy of what a read found below may not replace a tombstone. The one a
    /// read saw above its hit may be that of a delete still on its way down (it has not yet
    /// reached the layer the read found the value in); only a load, whose value its loader made
    /// after its ticket, may replace a tombstone it saw (`docs/model.md#gaps-in-the-planned-fixes`).
    pub(super) fn without_tombstones(self) -> Self {
        SeenSlots(
            self.0
                .into_iter()
                .map(|seen| match seen {
                    Seen::Bytes(b) if is_tombstone(&b) => Seen::Unknown,
                    other => other,
                })
                .collect(),
        )
    }

    fn of(&self, tier: usize) -> &Seen {
        static UNKNOWN: Seen = Seen::Unknown;
        self.0.get(tier).unwrap_or(&UNKNOWN)
    }
}

/// A copy's credentials: the fence ticket taken before its read or load began, and what that
/// read found in each layer below L1.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fill {
    pub(crate) ticket: u64,
    pub(crate) seen: SeenSlots,
}

/// One write: its kind, expiry, the layers it may go to, and the tag stamps it carries.
#[derive(Debug)]
pub(crate) struct Write {
    pub(crate) kind: WriteKind,
    pub(crate) expiry: Expiry,
    pub(crate) layers: LayerSet,
    pub(crate) stamps: Box<[TagStamp]>,
    /// Layers outside `layers` that already hold this value (a counter's authority), which a
    /// `Set` therefore does not clean.
    pub(crate) already_written: LayerSet,
    /// For a fill: what its read found in each layer below L1.
    seen: SeenSlots,
    /// How a TTL expiry becomes a lifetime.
    pub(crate) aging: Aging,
    /// What the value's loader stored to revalidate it with, kept in every layer.
    pub(crate) validator: Option<Validator>,
}

impl Write {
    /// New truth from the caller.
    pub(crate) fn set(expiry: Expiry, layers: LayerSet, stamps: Box<[TagStamp]>) -> Write {
        Write {
            kind: WriteKind::Set,
            expiry,
            layers,
            stamps,
            already_written: LayerSet::default(),
            seen: SeenSlots::default(),
            aging: Aging::default(),
            validator: None,
        }
    }

    /// A copy read or loaded with `fill`'s credentials.
    pub(crate) fn fill(
        fill: Fill,
        expiry: Expiry,
        layers: LayerSet,
        stamps: Box<[TagStamp]>,
    ) -> Write {
        Write {
            kind: WriteKind::Fill {
                ticket: fill.ticket,
            },
            expiry,
            layers,
            stamps,
            already_written: LayerSet::default(),
            seen: fill.seen,
            aging: Aging::default(),
            validator: None,
        }
    }

    /// The same write, aged by `aging`.
    pub(crate) fn aged(mut self, aging: Aging) -> Write {
        self.aging = aging;
        self
    }

    /// The same write, with the value's validator: a value with one is kept stale past its TTL,
    /// for its next load to revalidate (a lifetime given `At` stays as it is).
    pub(crate) fn validated(mut self, validator: Option<Validator>) -> Write {
        self.validator = validator;
        self
    }
}

/// The options of a `set` or a `get_or_set`, as the handle collected them.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriteOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<String>,
    /// `None`: every enabled layer.
    pub(crate) layers: Option<LayerSet>,
}

impl Engine {
    /// `cache.set(..)`: validates and serializes now, so the future holds bytes rather than a
    /// borrow of a maybe-`!Sync` value, then stamps the tags and writes.
    pub(crate) fn set<'a, V: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        value: &V,
        options: WriteOptions,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.set_validated(key, value, options, Aging::default(), None)
    }

    /// [`Engine::set`] of a `#[cached]` function's refresh: aged as the function's fills are, and
    /// stored with the validator its body set, if any (`docs/architecture.md#conditional-refresh`).
    pub(crate) fn set_validated<'a, V: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        value: &V,
        options: WriteOptions,
        aging: Aging,
        validator: Option<Validator>,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        let serialization = self.config.serialization;
        let prepared = key::validate(key, "key")
            .and_then(|()| key::validate_tags(&options.tags))
            .and_then(|()| codec::serialize(serialization, value));
        async move {
            let payload = Bytes::from(prepared?);
            let stamps = match self.stamps_for(&options.tags).await {
                Ok(stamps) => stamps,
                Err(e) => {
                    // The layer of the tag versions is down: skipped, like any failing layer.
                    // A value whose tags cannot be stamped could never be invalidated by them,
                    // so it is not cached; the key's older value goes, so no read finds it.
                    tracing::warn!(key, error = %e, "tag versions unavailable; value not cached, older value removed");
                    // Boxed: a cold path, which inline would make every set's future as large
                    // as a delete's.
                    Box::pin(self.delete(key)).await?;
                    return Ok(());
                }
            };
            let write = Write::set(
                Expiry::Ttl(options.ttl),
                options.layers.unwrap_or(LayerSet::ALL),
                stamps,
            )
            .aged(aging)
            .validated(validator);
            self.write(key, payload, serialization, write, None).await
        }
    }

    /// `cache.set_owned(..)`: the value itself, so that an L1-only write can keep it decoded.
    pub(crate) async fn set_owned<V>(&self, key: &str, value: V) -> Result<()>
    where
        V: Serialize + Send + Sync + 'static,
    {
        if self.writes_decoded(LayerSet::ALL) {
            let write = Write::set(Expiry::Ttl(None), LayerSet::ALL, Box::default());
            return self
                .write_l1_decoded(key, write, Box::new(value), encoder::<V>())
                .await;
        }
        self.set(key, &value, WriteOptions::default()).await
    }

    /// Records a write of `key` in the fence.
    ///
    /// With L1 alone, only a load holds a ticket (a read takes one for back-fills, which need a
    /// layer below L1), and a load of `key` holds one only while `key` has a flight: the leader
    /// joins, then takes its ticket, writes, and only then leaves. So when `key` has no flight
    /// after the sequence moved on, every later ticket is at least this write's and the per-key
    /// record (a lock, an allocated key, a map insert) is not needed. The sequence moves first:
    /// a leader that joins after the check (through the flights' lock) sees it.
    ///
    /// A load of `key` in flight began before this write: it is detached, so that a caller after
    /// the write leads a load of its own rather than receive the older value
    /// (`docs/guarantees.md#g1-read-your-writes`).
    fn record_set(&self, key: &str) {
        if self.tiers.is_empty() {
            self.fence.advance();
            if !self.flights.in_flight(key) {
                return;
            }
        }
        self.fence.record(key, Fenced::Set);
        self.flights.forget(key);
    }

    /// Whether a write to `layers` may keep its value decoded, unencoded: L1 is the only layer
    /// it reaches, and no limit needs the encoded size (`Engine::l1_keeps_decoded`).
    pub(super) fn writes_decoded(&self, layers: LayerSet) -> bool {
        self.l1_keeps_decoded
            && self
                .selected(layers)
                .is_ok_and(|selected| selected == LayerSet::of(&[Layer::L1]))
    }

    /// Writes a decoded value to L1 alone, without encoding it (the caller checked
    /// [`Engine::writes_decoded`]); `encoder` makes its bytes if anything asks for them later.
    pub(super) async fn write_l1_decoded(
        &self,
        key: &str,
        write: Write,
        value: Decoded,
        encoder: Encoder,
    ) -> Result<()> {
        key::validate(key, "key")?;
        let Some(l1) = &self.l1 else {
            return Err(Self::nothing_selected());
        };
        if write.kind == WriteKind::Set {
            self.record_set(key);
        }
        let now = now_ms();
        let life = self.lifetime(write.expiry, write.aging, write.validator.is_some(), now);
        let entry = L1Entry::decoded(
            life.capped(l1.ttl_cap, now),
            now,
            Self::l1_stamps(&write.stamps),
            self.config.serialization,
            value,
            encoder,
        )
        .with_validator(write.validator);
        // With L1 alone there is no copy below to take back if a delete fenced the fill.
        let _ = self.insert_l1(key, entry, write.kind);
        if write.kind == WriteKind::Set {
            self.announce_key(key, None, false).await;
        }
        Ok(())
    }

    /// Inserts an L1 entry as its write's kind allows: a set at once; a fill only if the key was
    /// not invalidated after its ticket, atomically with the delete's fence record (either the
    /// delete sees this entry and removes it, or this fill sees the delete and is dropped). What
    /// the fence refused it for, if it did.
    fn insert_l1(&self, key: &str, entry: L1Entry, kind: WriteKind) -> Option<Fenced> {
        let l1 = self.l1.as_ref()?;
        match kind {
            WriteKind::Set => {
                l1.insert_set(key, entry);
                None
            }
            WriteKind::Fill { ticket } => self
                .fence
                .write_if_allowed(key, ticket, || l1.insert(key, entry)),
        }
    }

    /// Takes back the copies a fill wrote, each only if it is still there: replaced by a new
    /// tombstone where the store has compare-and-set (a newer value written meanwhile stays, and a
    /// load that began before this one still cannot fill), else deleted.
    async fn take_back(&self, key: &str, written: &[(&Tier, Bytes)]) {
        for (tier, bytes) in written {
            if let Err(e) = remove_if_unchanged(tier.store.as_ref(), key, bytes).await {
                self.skip(tier.layer, "delete", key, &e);
                self.recovery.owe_delete(tier.layer, &[key]);
            }
        }
    }

    /// Removes the older value of `key` from a layer a set did not reach, leaving a new tombstone
    /// where the store supports it, so that a load that began before this set cannot fill the
    /// slot either.
    pub(super) async fn invalidate_quietly(&self, tier: &Tier, key: &str) {
        match tier
            .store
            .tombstone(key, new_tombstone(), TOMBSTONE_TTL)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => self.remove_quietly(tier, key).await,
            Err(e) => {
                self.skip(tier.layer, "delete", key, &e);
                self.recovery.owe_delete(tier.layer, &[key]);
            }
        }
    }

    /// Writes a serialized value through the selected layers.
    ///
    /// `decoded` (the value itself) lets L1 answer the next read without decoding.
    pub(crate) async fn write(
        &self,
        key: &str,
        payload: Bytes,
        serialization: Serialization,
        write: Write,
        decoded: Option<Box<dyn Any + Send + Sync>>,
    ) -> Result<()> {
        // Only a set publishes a notice, whose wait the call's start bounds; a fill reads no clock.
        let began = if write.kind == WriteKind::Set {
            self.call_began()
        } else {
            None
        };
        let selected = self.selected(write.layers)?;
        if payload.len() > self.config.max_value_bytes {
            return Err(Error::new(
                ErrorKind::ValueTooLarge,
                format!(
                    "key `{key}`: the value is {} bytes; max_value_bytes is {}",
                    payload.len(),
                    self.config.max_value_bytes
                ),
            ));
        }
        match write.kind {
            WriteKind::Fill { ticket } => {
                if self.fence.check(key, ticket).is_some() {
                    return Ok(());
                }
            }
            WriteKind::Set => {
                self.record_set(key);
                self.recovery.superseded(key);
            }
        }
        let fill = matches!(write.kind, WriteKind::Fill { .. });
        let now = now_ms();
        let life = self.lifetime(write.expiry, write.aging, write.validator.is_some(), now);
        let mut accepted = 0usize;
        let mut first_error = None;

        // A set's L1 copy goes in only if no other process's write of the key arrived (as a
        // notice) after this one's record: theirs may be the newer one in the shared layers.
        let own_ticket = self.fence.ticket();

        // A fill writes the layers with compare-and-set first; the others only once those took
        // it, since they cannot tell a newer value or a tombstone from an empty slot.
        let mut puts = Vec::with_capacity(self.tiers.len());
        let mut plain_after = Vec::new();
        // The layers a `set` leaves out: their older value must go (read-your-writes).
        let mut skipped: Vec<&Tier> = Vec::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            if !selected.contains(tier.layer) {
                if !write.already_written.contains(tier.layer) {
                    skipped.push(tier);
                }
                continue;
            }
            if payload.len() > tier.max_value_bytes {
                Counters::bump(&self.counters.layer(tier.layer).too_large);
                skipped.push(tier);
                continue;
            }
            if fill && self.recovery.blocks(tier.layer, key) {
                continue;
            }
            let expected = match (fill, write.seen.of(i)) {
                (false, _) => None,
                (true, Seen::Unknown) => continue,
                (true, Seen::Nothing) => None,
                (true, Seen::Bytes(seen)) => Some(seen),
            };
            let (bytes, ttl) = Self::encode_for(
                tier,
                key,
                life,
                now,
                &write.stamps,
                serialization,
                &payload,
                write.validator.as_ref(),
            );
            if let (Some(behind), false) = (&tier.behind, fill) {
                if behind.enqueue(key, bytes, ttl, now) {
                    accepted += 1;
                } else {
                    Counters::bump(&self.counters.layer(tier.layer).write_behind_dropped);
                    tracing::warn!(layer = %tier.layer, key, "write-behind queue full; write dropped for this layer");
                    skipped.push(tier);
                }
                continue;
            }
            if fill && !tier.store.has_compare_and_set() {
                plain_after.push((tier, bytes, ttl));
                continue;
            }
            puts.push(async move {
                // A fill replaces only what its read saw: anything else there now (a newer
                // value, the tombstone of a later delete from any process) wins.
                let result = if fill {
                    tier.store
                        .compare_and_set(key, expected, bytes.clone(), ttl)
                        .await
                        .map(|swapped| swapped.unwrap_or(false))
                } else {
                    tier.store
                        .put(Slot::Entry(key), bytes.clone(), ttl)
                        .await
                        .map(|()| true)
                };
                (tier, bytes, result)
            });
        }
        let mut written = Vec::new();
        let mut superseded = false;
        for (tier, bytes, result) in join_all(puts).await {
            match result {
                Ok(true) => {
                    accepted += 1;
                    if !fill {
                        self.recovery.settled(tier.layer, key);
                        self.recovery.key_written(tier.layer, key, &bytes);
                    }
                    written.push((tier, bytes));
                }
                Ok(false) => superseded = true,
                Err(e) => {
                    self.skip(tier.layer, "write", key, &e);
                    first_error.get_or_insert(e);
                    skipped.push(tier);
                }
            }
        }
        if superseded {
            // Another process deleted or rewrote the key since this load began: its value is
            // old. Nothing of it may stay, here or in L1.
            Box::pin(self.take_back(key, &written)).await;
            return Ok(());
        }
        // Boxed, and only when there is one: most stacks have none, and inline its future would
        // make every write's (and every set's) larger.
        let plain = if plain_after.is_empty() {
            Vec::new()
        } else {
            Box::pin(join_all(plain_after.into_iter().map(
                |(tier, bytes, ttl)| async move {
                    let result = tier.store.put(Slot::Entry(key), bytes.clone(), ttl).await;
                    (tier, bytes, result)
                },
            )))
            .await
        };
        for (tier, bytes, result) in plain {
            match result {
                Ok(()) => {
                    accepted += 1;
                    written.push((tier, bytes));
                }
                Err(e) => {
                    self.skip(tier.layer, "write", key, &e);
                    first_error.get_or_insert(e);
                }
            }
        }
        if fill && !written.is_empty() && self.flush_epoch.outlived(&write.stamps).await {
            // Flushed since its load began (docs/consistency.md#flush-moves-an-epoch).
            Box::pin(self.take_back(key, &written)).await;
            return Ok(());
        }

        let mut l1_entry = None;
        if let (Some(l1), true) = (&self.l1, selected.contains(Layer::L1)) {
            if payload.len() > l1.max_value_bytes {
                Counters::bump(&self.counters.layer(Layer::L1).too_large);
            } else {
                let mut entry = L1Entry::new(
                    life.capped(l1.ttl_cap, now),
                    now,
                    Self::l1_stamps(&write.stamps),
                    serialization,
                    payload.clone(),
                )
                .with_validator(write.validator.clone());
                if let Some(decoded) = decoded {
                    entry = entry.with_decoded_any(decoded);
                }
                accepted += 1;
                l1_entry = Some(entry);
            }
        }
        match (write.kind, &self.l1) {
            (WriteKind::Fill { .. }, _) => {
                if let Some(entry) = l1_entry
                    && self.insert_l1(key, entry, write.kind) == Some(Fenced::Deleted)
                {
                    // Deleted while the copies below were written: take them back.
                    Box::pin(self.take_back(key, &written)).await;
                }
            }
            (WriteKind::Set, Some(l1)) if !self.tiers.is_empty() => {
                // The re-fence: a read that took its ticket after this set's first record may
                // have found the older value below, before the puts landed, and be about to copy
                // it into L1. Fence again now that the layers hold the new value, atomically with
                // this set's own L1 insert, which is refused when another process's write of the
                // key was noticed since the set began (its value may be the later one below);
                // whatever L1 holds then is older than this set, and goes.
                self.fence
                    .record_then(key, Fenced::Set, own_ticket, |allowed| match l1_entry {
                        Some(entry) if allowed => l1.insert_set(key, entry),
                        _ => {
                            l1.remove(key);
                        }
                    });
            }
            (WriteKind::Set, _) => {
                if let Some(entry) = l1_entry {
                    let _ = self.insert_l1(key, entry, write.kind);
                }
            }
        }
        if !fill && accepted > 0 {
            // A fill is a copy and skips what it likes; new truth may not leave an older value
            // in a layer it did not reach, where a later read would find it first. (A write no
            // layer took fails and changes nothing.)
            for tier in skipped {
                Box::pin(self.invalidate_quietly(tier, key)).await;
            }
            if let Some(l1) = &self.l1
                && (!selected.contains(Layer::L1) || payload.len() > l1.max_value_bytes)
            {
                l1.remove(key);
            }
        }
        if accepted > 0 {
            if write.kind == WriteKind::Set {
                self.announce_key(key, began, first_error.is_some()).await;
            }
            return Ok(());
        }
        Err(first_error.unwrap_or_else(|| {
            Error::new(
                ErrorKind::ValueTooLarge,
                format!(
                    "key `{key}`: the value ({} bytes) is over the max_value_bytes of every selected layer",
                    payload.len()
                ),
            )
        }))
    }
}
