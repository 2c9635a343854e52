//! The read path: L1 first, then each layer below in order; the first live, valid entry wins and
//! is copied into the layers above it.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;

use bytes::Bytes;

use super::Tally;
use super::epoch::FlushEpoch;
use super::invalidate::{Removed, remove_if_unchanged};
use super::{Engine, Expiry, Fill, Seen, SeenSlots, Tier, Write};
use crate::clock::now_ms;
use crate::codec::{self, Corrupt, Envelope, TagStamp};
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::l1::L1Entry;
use crate::layer::{Layer, LayerSet};
use crate::stats::Counters;
use crate::store::{Slot, is_tombstone};

/// What one layer's read found.
pub(super) enum TierRead {
    /// A fresh, valid entry.
    Hit(Envelope),
    /// A valid entry past its freshness, inside its fail-safe window: a miss to every read, kept
    /// for a load whose loader fails (`docs/resilience.md#fail-safe`). A fill expects its bytes.
    Stale(Envelope, Bytes),
    /// No usable entry, and what the slot held.
    Miss(Seen),
    /// The layer could not be read (its server failed, it is held off while the bus it carries
    /// is out, or the entry's tag versions are unavailable): whether it holds a live entry is not
    /// known. To a read, a miss whose slot is unknown; a listing cannot leave the key out
    /// (`docs/consistency.md#redis-cluster-topology-changes`).
    Failed(Error),
}

/// A valid entry past its freshness, which a failing load may serve instead of an error.
pub(crate) struct Stale<T> {
    pub(crate) value: T,
    pub(crate) payload: Bytes,
    pub(crate) serialization: crate::config::Serialization,
    pub(crate) life: crate::codec::Lifetime,
    /// What its loader stored to revalidate it with (`docs/architecture.md#conditional-refresh`).
    pub(crate) validator: Option<crate::codec::Validator>,
}

/// What a read through every layer found.
pub(crate) struct ReadThrough<T> {
    /// The fresh value, if any layer had one.
    pub(crate) value: Option<T>,
    /// On a miss, what each layer's slot held, for a fill to expect.
    pub(crate) seen: SeenSlots,
    /// On a miss, the first stale entry found, when the read asked for one. Boxed: it lives
    /// across the read's awaits, and inline it would grow every read's future.
    pub(crate) stale: Option<Box<Stale<T>>>,
}

impl Engine {
    /// Whether an L1 entry's tags are all current.
    async fn l1_tags_valid(&self, entry: &L1Entry) -> bool {
        if entry.tags.is_empty() {
            return true;
        }
        let epoch = self.tags.epoch();
        if entry.checked_epoch.load(Ordering::Acquire) == epoch {
            return true;
        }
        let valid = match self.tags.check_memoised(&entry.tags) {
            Some(v) => v,
            None => match self.tags.check(&entry.tags).await {
                Ok(v) => v,
                Err(e) => {
                    // Unverifiable is treated as invalid: a miss is safe, a stale value is not.
                    tracing::warn!(error = %e, "tag versions unavailable; tagged entry treated as a miss");
                    false
                }
            },
        };
        if valid {
            entry.checked_epoch.store(epoch, Ordering::Release);
        }
        valid
    }

    /// Where a read's hits and misses are counted: a scan's reads are not the application's
    /// (`docs/observability.md#stats`), and go to a counter nobody reports.
    fn reads_of(&self, layer: Layer, tally: Tally) -> &crate::stats::LayerCounters {
        match tally {
            Tally::Count => self.counters.layer(layer),
            Tally::Quiet => &self.uncounted,
        }
    }

    /// The fresh, valid L1 entry of `key`, removing it when expired or invalidated.
    #[inline]
    pub(super) async fn l1_entry(&self, key: &str, tally: Tally) -> Option<Arc<L1Entry>> {
        match self.l1_entry_or_stale(key, tally).await {
            Some(entry) if entry.is_live() => Some(entry),
            _ => None,
        }
    }

    /// The valid L1 entry of `key`, fresh or stale inside its fail-safe window, removing it when
    /// past that or invalidated. Anything but a fresh entry counts as a miss.
    async fn l1_entry_or_stale(&self, key: &str, tally: Tally) -> Option<Arc<L1Entry>> {
        let l1 = self.l1.as_ref()?;
        let counters = self.reads_of(Layer::L1, tally);
        let Some(entry) = l1.get(key) else {
            Counters::bump(&counters.misses);
            return None;
        };
        if !entry.is_kept() || !self.l1_tags_valid(&entry).await {
            l1.remove_entry(key, &entry);
            Counters::bump(&counters.misses);
            return None;
        }
        if !entry.is_live() {
            Counters::bump(&counters.misses);
        }
        Some(entry)
    }

    /// Reads `key` from one layer below L1: a live, valid envelope (a hit), a miss (counted)
    /// with what the slot held, for a later fill to expect, or the layer's failure.
    ///
    /// An expired, invalidated or corrupt entry is left where it is in a store with
    /// compare-and-set (native expiry reclaims it, and a fill replaces it by compare-and-set
    /// expecting exactly these bytes): removing it unconditionally could remove a tombstone a
    /// delete wrote meanwhile (`docs/consistency.md#cleanup-never-removes-a-newer-write`).
    pub(super) async fn read_tier(&self, tier: &Tier, key: &str, tally: Tally) -> TierRead {
        let counters = self.reads_of(tier.layer, tally);
        if (self.recovery.blocks(tier.layer, key) || self.bus_server_silent(tier.layer))
            && tier
                .behind
                .as_ref()
                .is_none_or(|b| b.waiting(key).is_none())
        {
            // This layer missed an invalidation of the key, or may have missed another process's
            // while the bus is out: whatever it holds may be stale (a write of this process still
            // waiting to be written there is not, and is read below). The second is an outage of
            // the layer's server, counted as its errors.
            if self.bus_server_silent(tier.layer) {
                Counters::bump(&counters.errors);
                return TierRead::Failed(Error::new(
                    ErrorKind::Backend,
                    format!(
                        "{} is not read while the bus it carries is out: what other processes \
                         removed from it meanwhile is not known yet",
                        tier.layer
                    ),
                ));
            }
            Counters::bump(&counters.misses);
            return TierRead::Miss(Seen::Unknown);
        }
        let mut reread = false;
        let (env, bytes) = loop {
            // A write still waiting for a write-behind layer is newer than what the layer holds.
            let waiting = tier.behind.as_ref().and_then(|b| b.waiting(key));
            let from_store = waiting.is_none();
            let got = match waiting {
                Some(bytes) => Ok(Some(bytes)),
                None => tier.store.get(Slot::Entry(key)).await,
            };
            let bytes = match got {
                // A server that took over may lack this process's last write of the key
                // (`takeover.rs`): then what it holds is older, and the write is made again.
                Ok(Some(bytes))
                    if from_store && !self.recovery.read_is_intact(tier.layer, key, &bytes) =>
                {
                    Counters::bump(&counters.misses);
                    return TierRead::Miss(Seen::Unknown);
                }
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    Counters::bump(&counters.misses);
                    return TierRead::Miss(Seen::Nothing);
                }
                Err(e) => {
                    self.skip(tier.layer, "read", key, &e);
                    return TierRead::Failed(e);
                }
            };
            if is_tombstone(&bytes) {
                Counters::bump(&counters.misses);
                return TierRead::Miss(Seen::Bytes(bytes));
            }
            let env = match Envelope::decode(&bytes, self.config.max_value_bytes) {
                Ok(env) if env.key == key => env,
                // Another key's entry: the client mixed up its replies (fred did, while cluster
                // slots moved: `docs/resilience.md#open-findings`, 11), not a corrupt entry. Read
                // once more; a second such answer is a miss, and nothing is removed for it.
                Ok(_) if !reread => {
                    reread = true;
                    continue;
                }
                Ok(_) => {
                    Counters::bump(&counters.misses);
                    tracing::warn!(layer = %tier.layer, key, "the layer answered with another key's entry twice; a miss");
                    return TierRead::Miss(Seen::Unknown);
                }
                Err(e) if !Self::removes_undecodable(&e) => {
                    // Another build wrote what this one cannot read: a miss here, kept for them.
                    Counters::bump(&counters.misses);
                    tracing::debug!(layer = %tier.layer, key, reason = e.0, "entry unreadable by this build; left in place");
                    return TierRead::Miss(Seen::Unknown);
                }
                Err(_) => {
                    Counters::bump(&counters.corrupt);
                    tracing::warn!(layer = %tier.layer, key, "corrupt entry; a miss");
                    return TierRead::Miss(self.clean_up(tier, key, bytes).await);
                }
            };
            break (env, bytes);
        };
        let now = now_ms();
        let valid = env.expires_at_ms > now
            && match self.stamps_valid(&env.tags).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "tag versions unavailable; tagged entry treated as a miss");
                    return TierRead::Failed(e);
                }
            };
        if !valid {
            Counters::bump(&counters.misses);
            return TierRead::Miss(self.clean_up(tier, key, bytes).await);
        }
        if env.fresh_until_ms <= now {
            // Left in place: the store drops it at the end of its window, and a fill replaces it.
            Counters::bump(&counters.misses);
            return TierRead::Stale(env, bytes);
        }
        TierRead::Hit(env)
    }

    /// Whether the stamps of an entry below L1 are current: its flush epoch is not older than the
    /// cache's, and its tags' versions are the current ones. An unreadable epoch (its authority is
    /// down) passes: a failing layer costs the flush's protection for that while, not every read.
    pub(super) async fn stamps_valid(&self, stamps: &[TagStamp]) -> Result<bool> {
        let (epoch, tags) = FlushEpoch::split(stamps);
        match self.flush_epoch.current().await {
            Ok(current) if epoch < current => return Ok(false),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "flush epoch unavailable; not checked"),
        }
        if tags.is_empty() {
            return Ok(true);
        }
        self.tags.check(tags).await
    }

    /// Removes an entry that is no use (expired, invalidated, corrupt), only if it is still the
    /// one read: by compare-and-set to a new tombstone where the store has one, so a newer write
    /// or a delete's tombstone that landed meanwhile stays
    /// (`docs/consistency.md#cleanup-never-removes-a-newer-write`); else by a plain delete (the fill
    /// is then a plain put, after the layers with compare-and-set took it). What the slot holds
    /// after it, for a fill to expect.
    async fn clean_up(&self, tier: &Tier, key: &str, bytes: Bytes) -> Seen {
        match remove_if_unchanged(tier.store.as_ref(), key, &bytes).await {
            Ok(Removed::Buried(tombstone)) => Seen::Bytes(tombstone),
            Ok(Removed::Deleted) => Seen::Nothing,
            Ok(Removed::Changed) => Seen::Unknown,
            Err(e) => {
                self.skip(tier.layer, "delete", key, &e);
                Seen::Unknown
            }
        }
    }

    /// Whether an entry that does not decode is removed (corrupt) or left for the builds that
    /// can read it (`docs/guarantees.md#f4-a-corrupt-entry-is-a-miss-a-type-mismatch-is-an-error`).
    pub(super) fn removes_undecodable(e: &Corrupt) -> bool {
        !e.readable_elsewhere()
    }

    pub(super) async fn remove_quietly(&self, tier: &Tier, key: &str) {
        if let Err(e) = tier.store.delete(Slot::Entry(key)).await {
            self.skip(tier.layer, "delete", key, &e);
        }
    }

    /// An L1 hit answered without awaiting anything: `Some(Ok)` on a hit, `Some(Err)` on a type
    /// mismatch, `None` when the full read path must decide (absent, expired, or a tagged entry
    /// whose stamps must be checked). The caller has validated the key.
    #[inline(always)]
    pub(crate) fn try_l1_hit<T>(&self, key: &str) -> Option<Result<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let entry = self.l1.as_ref()?.get(key)?;
        self.l1_hit_now(key, &entry)
    }

    /// The value of a live L1 entry whose tags need no check; see [`Engine::try_l1_hit`].
    #[inline(always)]
    pub(super) fn l1_hit_now<T>(&self, key: &str, entry: &L1Entry) -> Option<Result<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if !entry.is_live()
            || (!entry.tags.is_empty()
                && entry.checked_epoch.load(Ordering::Acquire) != self.tags.epoch())
        {
            return None;
        }
        let value = entry.value::<T>(key);
        if value.is_ok() {
            Counters::bump(&self.counters.layer(Layer::L1).hits);
        }
        Some(value)
    }

    /// What `get` can answer from L1 without awaiting anything, with one lookup: an L1 hit (or
    /// its type mismatch), or, when L1 is the only layer and holds nothing under `key`, a miss
    /// (counted, after validating the key) without the boxed full read path. `None` when the full
    /// path must decide (layers below L1, an expired entry, or tagged stamps to check).
    #[inline]
    pub(crate) fn get_l1_or_miss<T>(&self, key: &str) -> Option<Result<Option<T>>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let l1 = self.l1.as_ref()?;
        let Some(entry) = l1.get(key) else {
            if !self.tiers.is_empty() {
                return None;
            }
            if let Err(e) = key::validate(key, "key") {
                return Some(Err(e));
            }
            Counters::bump(&self.counters.layer(Layer::L1).misses);
            Counters::bump(&self.counters.misses);
            return Some(Ok(None));
        };
        self.l1_hit_now(key, &entry).map(|hit| hit.map(Some))
    }

    /// Reads `key` as `T` through every layer.
    pub(crate) async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        key::validate(key, "key")?;
        self.read_through(key).await
    }

    /// [`Engine::get`] for a key its caller has validated.
    async fn read_through<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        Ok(self.read_through_seeing(key, false).await?.value)
    }

    /// Reads `key` through every layer, back-filling the layers above a hit; on a miss, also what
    /// each layer's slot held, which a load's fill then expects to find unchanged, and, when
    /// `want_stale`, the first stale entry (`docs/resilience.md#fail-safe`). (A load validates
    /// its key once, up front.)
    pub(super) async fn read_through_seeing<T>(
        &self,
        key: &str,
        want_stale: bool,
    ) -> Result<ReadThrough<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let mut stale = None;
        if let Some(entry) = self.l1_entry_or_stale(key, Tally::Count).await {
            if entry.is_live() {
                let v = entry.value::<T>(key)?;
                Counters::bump(&self.counters.layer(Layer::L1).hits);
                #[cfg(feature = "tracing")]
                crate::observe::spans::answered(Some(Layer::L1));
                return Ok(ReadThrough {
                    value: Some(v),
                    seen: SeenSlots::default(),
                    stale: None,
                });
            }
            if want_stale && let Ok(payload) = entry.payload() {
                stale = Some(Box::new(Stale {
                    value: entry.value::<T>(key)?,
                    payload,
                    serialization: entry.serialization,
                    life: entry.lifetime(),
                    validator: entry.validator.clone(),
                }));
            }
        }
        let ticket = self.fence.ticket();
        let mut seen = SeenSlots::default();
        for (i, tier) in self.tiers.iter().enumerate() {
            match self.read_tier(tier, key, Tally::Count).await {
                TierRead::Stale(env, bytes) => {
                    if want_stale && stale.is_none() {
                        stale = Some(Box::new(Stale {
                            value: codec::deserialize(env.serialization, key, &env.payload)?,
                            life: env.lifetime(),
                            payload: env.payload,
                            serialization: env.serialization,
                            validator: env.validator,
                        }));
                    }
                    seen.push(Seen::Bytes(bytes));
                }
                TierRead::Hit(env) => {
                    let v: T = codec::deserialize(env.serialization, key, &env.payload)?;
                    Counters::bump(&self.counters.layer(tier.layer).hits);
                    #[cfg(feature = "tracing")]
                    crate::observe::spans::answered(Some(tier.layer));
                    // Only when some layer above it is enabled (with L1 off and a hit in the
                    // first remote layer there is nothing to fill).
                    if self.l1.is_some() || i > 0 {
                        let fill = Fill {
                            ticket,
                            seen: std::mem::take(&mut seen).without_tombstones(),
                        };
                        // Boxed: the write path's future is several kilobytes, and inline it
                        // would make every read's future that large, allocated and moved on
                        // every call.
                        Box::pin(self.backfill(key, &env, i, fill, Box::new(v.clone()))).await;
                    }
                    return Ok(ReadThrough {
                        value: Some(v),
                        seen: SeenSlots::default(),
                        stale: None,
                    });
                }
                TierRead::Miss(what) => seen.push(what),
                TierRead::Failed(_) => seen.push(Seen::Unknown),
            }
        }
        Counters::bump(&self.counters.misses);
        #[cfg(feature = "tracing")]
        crate::observe::spans::answered(None);
        Ok(ReadThrough {
            value: None,
            seen,
            stale,
        })
    }

    /// The first live, valid entry of `key`, without decoding or back-filling; a layer that
    /// could not be read counts as holding none (its failure is counted and logged).
    pub(super) async fn find(&self, key: &str, tally: Tally) -> Option<(Layer, Envelope)> {
        self.find_or_fail(key, tally).await.ok().flatten()
    }

    /// [`Engine::find`], telling a key no layer holds from one that a layer which could not be
    /// read may hold: then the first such layer's error. A listing needs that difference: it
    /// cannot leave out a key it could not read
    /// (`docs/consistency.md#redis-cluster-topology-changes`).
    pub(super) async fn find_or_fail(
        &self,
        key: &str,
        tally: Tally,
    ) -> Result<Option<(Layer, Envelope)>> {
        if let Some(entry) = self.l1_entry(key, tally).await {
            // An entry written decoded is encoded here, once; one whose value does not encode
            // cannot be listed, counted or copied: it is dropped like a corrupt entry.
            match entry.payload() {
                Ok(payload) => {
                    return Ok(Some((
                        Layer::L1,
                        Envelope {
                            expires_at_ms: entry.expires_at_ms,
                            created_at_ms: entry.created_at_ms,
                            fresh_until_ms: entry.fresh_until_ms,
                            load_ms: entry.load_ms,
                            validator: entry.validator.clone(),
                            key: key.to_owned(),
                            tags: entry.tags.to_vec(),
                            serialization: entry.serialization,
                            payload,
                        },
                    )));
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "L1 entry does not encode; removed");
                    Counters::bump(&self.counters.layer(Layer::L1).corrupt);
                    if let Some(l1) = &self.l1 {
                        l1.remove_entry(key, &entry);
                    }
                }
            }
        }
        let mut unread = None;
        for tier in &self.tiers {
            match self.read_tier(tier, key, tally).await {
                TierRead::Hit(env) => return Ok(Some((tier.layer, env))),
                TierRead::Failed(e) => {
                    unread.get_or_insert(e);
                }
                TierRead::Stale(..) | TierRead::Miss(_) => {}
            }
        }
        unread.map_or(Ok(None), Err)
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        key::validate(key, "key")?;
        Ok(self.find(key, Tally::Count).await.is_some())
    }

    /// Copies an entry found in `tiers[found]` into L1 and the remote layers above it.
    async fn backfill(
        &self,
        key: &str,
        env: &Envelope,
        found: usize,
        fill: Fill,
        decoded: Box<dyn Any + Send + Sync>,
    ) {
        let mut targets = LayerSet::default();
        if self.l1.is_some() {
            targets.insert(Layer::L1);
        }
        for tier in &self.tiers[..found] {
            targets.insert(tier.layer);
        }
        let write = Write::fill(
            fill,
            Expiry::At(env.lifetime()),
            targets,
            env.tags.clone().into_boxed_slice(),
        )
        .validated(env.validator.clone());
        if let Err(e) = self
            .write(
                key,
                env.payload.clone(),
                env.serialization,
                write,
                Some(decoded),
            )
            .await
        {
            tracing::debug!(key, error = %e, "back-fill skipped");
        }
    }
}
