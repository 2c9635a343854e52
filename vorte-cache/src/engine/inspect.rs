//! `inspect`: what the layers hold of one key, read without changing anything: no back-fill, no
//! clean-up of an expired or invalidated entry, no hit or miss counted
//! (`Cache::inspect`, the handle's side, turns it into the public answer).

use std::sync::Arc;

use bytes::Bytes;

use super::epoch::FlushEpoch;
use super::{Engine, Tier};
use crate::clock::now_ms;
use crate::codec::{Envelope, Lifetime, Serialization, TagStamp};
use crate::error::{Error, Result};
use crate::key;
use crate::layer::Layer;
use crate::store::{Slot, is_tombstone};

/// One layer's entry of a key, as [`Engine::inspect`] found it.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) layer: Layer,
    pub(crate) life: Lifetime,
    pub(crate) created_at_ms: u64,
    /// Each tag, and whether its version is still the current one (`None`: could not be told).
    pub(crate) tags: Vec<(Arc<str>, Option<bool>)>,
    /// `Some(true)` when the entry was written before the cache's last flush (below L1 only:
    /// L1 is emptied by a flush); `None` when the flush epoch could not be read.
    pub(crate) flushed: Option<bool>,
    pub(crate) serialization: Serialization,
    pub(crate) payload: Bytes,
}

impl Held {
    /// Whether a read would answer with it now: fresh, every tag current, not flushed.
    pub(crate) fn readable(&self, now: u64) -> bool {
        self.life.fresh_until_ms > now
            && self.tags.iter().all(|(_, valid)| *valid == Some(true))
            && self.flushed == Some(false)
    }
}

/// What [`Engine::inspect`] found.
#[derive(Debug, Default)]
pub(crate) struct Inspected {
    /// The entry a read would answer with (the first readable one, in read order), else the
    /// first one a layer still keeps (stale, invalidated or flushed).
    pub(crate) held: Option<Held>,
    /// The layers that could not be read, with their errors.
    pub(crate) failed: Vec<(Layer, Error)>,
}

impl Engine {
    /// Reads `key` in every layer, L1 first, and keeps the first readable entry, else the first
    /// one kept at all; writes nothing anywhere (a tag's version record is created when it has
    /// none, as any read of the tag does).
    pub(crate) async fn inspect(&self, key: &str) -> Result<Inspected> {
        key::validate(key, "key")?;
        let now = now_ms();
        let mut out = Inspected::default();
        let mut first_kept: Option<Held> = None;
        if let Some(entry) = self.l1.as_ref().and_then(|l1| l1.get(key))
            && entry.is_kept()
        {
            // An entry written decoded is encoded here. One that does not encode cannot be shown;
            // it is passed over (a read path drops it: `Engine::find`), not removed here.
            match entry.payload() {
                Ok(payload) => {
                    let held = self.held_in_l1(&entry, payload).await;
                    if held.readable(now) {
                        out.held = Some(held);
                        return Ok(out);
                    }
                    first_kept = Some(held);
                }
                Err(e) => tracing::debug!(key, error = %e, "L1 entry does not encode; not shown"),
            }
        }
        for tier in &self.tiers {
            match self.inspect_tier(tier, key, now).await {
                Ok(Some(held)) if held.readable(now) => {
                    out.held = Some(held);
                    return Ok(out);
                }
                Ok(Some(held)) => {
                    first_kept.get_or_insert(held);
                }
                Ok(None) => {}
                Err(e) => {
                    self.skip(tier.layer, "inspect", key, &e);
                    out.failed.push((tier.layer, e));
                }
            }
        }
        out.held = first_kept;
        Ok(out)
    }

    /// An L1 entry as [`Held`]: L1 carries no flush epoch (a flush empties it).
    async fn held_in_l1(&self, entry: &crate::l1::L1Entry, payload: Bytes) -> Held {
        let (_, tags) = FlushEpoch::split(&entry.tags);
        Held {
            layer: Layer::L1,
            life: entry.lifetime(),
            created_at_ms: entry.created_at_ms,
            tags: self.tag_states(tags).await,
            flushed: Some(false),
            serialization: entry.serialization,
            payload,
        }
    }

    /// The entry one layer below L1 keeps for `key` (fresh or stale, valid or not), or `None`
    /// for nothing, a tombstone, an expired entry or one this build cannot read.
    async fn inspect_tier(&self, tier: &Tier, key: &str, now: u64) -> Result<Option<Held>> {
        // A write still waiting for a write-behind layer is newer than what the layer holds.
        let bytes = match tier.behind.as_ref().and_then(|b| b.waiting(key)) {
            Some(bytes) => bytes,
            None => match tier.store.get(Slot::Entry(key)).await? {
                Some(bytes) => bytes,
                None => return Ok(None),
            },
        };
        if is_tombstone(&bytes) {
            return Ok(None);
        }
        let env = match Envelope::decode(&bytes, self.config.max_value_bytes) {
            Ok(env) if env.key == key && env.expires_at_ms > now => env,
            // Another key's entry (a mixed-up reply), expired, corrupt or from another build:
            // nothing a read would use.
            _ => return Ok(None),
        };
        let (epoch, tags) = FlushEpoch::split(&env.tags);
        let flushed = match self.flush_epoch.current().await {
            Ok(current) => Some(epoch < current),
            Err(_) => None,
        };
        Ok(Some(Held {
            layer: tier.layer,
            life: env.lifetime(),
            created_at_ms: env.created_at_ms,
            tags: self.tag_states(tags).await,
            flushed,
            serialization: env.serialization,
            payload: env.payload,
        }))
    }

    /// Each stamp's tag and whether its version is the current one (`None` when the tag
    /// authority could not be asked).
    async fn tag_states(&self, stamps: &[TagStamp]) -> Vec<(Arc<str>, Option<bool>)> {
        let mut states = Vec::with_capacity(stamps.len());
        for stamp in stamps {
            let valid = self
                .tags
                .current(&stamp.name)
                .await
                .ok()
                .map(|current| current == stamp.version);
            states.push((stamp.name.clone(), valid));
        }
        states
    }
}
