//! Counters: `increment`, exact across processes through a compare-and-set loop on the most
//! shared layer when it has one, else exact within this process under a striped lock.

use bytes::Bytes;

use super::epoch::FlushEpoch;
use super::{Aging, Engine, Expiry, Tally, Tier, Write};
use crate::clock::now_ms;
use crate::codec::{self, Envelope, Lifetime};
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::layer::{Layer, LayerSet};
use crate::store::Slot;

impl Engine {
    /// A count is exact or absent: never jittered, never kept stale.
    const COUNTER_AGING: Aging = Aging {
        stale_for: Some(std::time::Duration::ZERO),
        jitter: Some(0.0),
        load_ms: 0,
    };

    pub(crate) async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        key::validate(key, "key")?;
        let stripe = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize % self.counter_locks.len();
        let _guard = self.counter_locks[stripe].lock().await;
        if let Some(authority) = self.authority.map(|i| &self.tiers[i])
            && authority.store.has_compare_and_set()
            && let Some(next) = self.increment_atomically(authority, key, delta).await?
        {
            return Ok(next);
        }
        // No atomic compare-and-set below L1: exact within this process (the stripe lock).
        let (current, expires_at_ms, stamps) = match self.find(key, Tally::Count).await {
            Some((_, env)) => {
                let n = Self::counter_value(key, &env)?;
                // New truth: its tags as they were, under the current flush epoch (a copy from
                // L1 has none).
                let (_, tags) = FlushEpoch::split(&env.tags);
                let epoch = self.flush_epoch.current().await.unwrap_or(0);
                let stamps = FlushEpoch::stamp(tags.into(), epoch);
                (n, Some(env.fresh_until_ms), stamps)
            }
            None => (0, None, self.stamps_for(&[]).await?),
        };
        let next = Self::add(key, current, delta)?;
        let serialization = self.config.serialization;
        let payload = Bytes::from(codec::serialize(serialization, &next)?);
        let expiry = expires_at_ms.map_or(Expiry::Ttl(None), |at| Expiry::At(Lifetime::plain(at)));
        let write = Write::set(expiry, LayerSet::ALL, stamps).aged(Self::COUNTER_AGING);
        self.write(key, payload, serialization, write, Some(Box::new(next)))
            .await?;
        Ok(next)
    }

    fn counter_value(key: &str, env: &Envelope) -> Result<i64> {
        codec::deserialize(env.serialization, key, &env.payload).map_err(|_| {
            Error::new(
                ErrorKind::NotAnInteger,
                format!("key `{key}` does not hold an integer"),
            )
        })
    }

    fn add(key: &str, current: i64, delta: i64) -> Result<i64> {
        current.checked_add(delta).ok_or_else(|| {
            Error::new(
                ErrorKind::NotAnInteger,
                format!("key `{key}`: {current} + {delta} overflows i64"),
            )
        })
    }

    /// Increments through a compare-and-set loop on the authority, which makes the sum exact
    /// across processes (`docs/guarantees.md#g5-exact-counters`). `None` when the authority has no compare-and-set.
    async fn increment_atomically(
        &self,
        authority: &Tier,
        key: &str,
        delta: i64,
    ) -> Result<Option<i64>> {
        const ATTEMPTS: usize = 1_000;
        for _ in 0..ATTEMPTS {
            let raw = authority.store.get(Slot::Entry(key)).await?;
            let now = now_ms();
            let live = match raw
                .as_ref()
                .map(|b| Envelope::decode(b, self.config.max_value_bytes))
            {
                Some(Ok(env)) if env.key == key && env.fresh_until_ms > now => {
                    if self.stamps_valid(&env.tags).await? {
                        Some(env)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            let (current, expires_at_ms, tags) = match &live {
                Some(env) => (
                    Self::counter_value(key, env)?,
                    env.fresh_until_ms,
                    env.tags.clone(),
                ),
                None => (
                    0,
                    now.saturating_add(self.config.default_ttl.as_millis() as u64),
                    self.stamps_for(&[]).await?.into_vec(),
                ),
            };
            let next = Self::add(key, current, delta)?;
            let serialization = self.config.serialization;
            let payload = Bytes::from(codec::serialize(serialization, &next)?);
            let (bytes, ttl) = Self::encode_for(
                authority,
                key,
                Lifetime::plain(expires_at_ms),
                now,
                &tags,
                serialization,
                &payload,
                None,
            );
            match authority
                .store
                .compare_and_set(key, raw.as_ref(), bytes, ttl)
                .await?
            {
                None => return Ok(None),
                Some(false) => continue,
                Some(true) => {
                    // Only L1 keeps a copy. Copies in the other shared layers, written by several
                    // processes in no order, could hold an older count in front of the
                    // authority: they get a new tombstone instead (a set that skips a layer),
                    // and reads fall through to the authority and fill them by compare-and-set.
                    let mut write = Write::set(
                        Expiry::At(Lifetime::plain(expires_at_ms)),
                        LayerSet::of(&[Layer::L1]),
                        tags.into_boxed_slice(),
                    );
                    write.already_written.insert(authority.layer);
                    if self.l1.is_some() {
                        if let Err(e) = self
                            .write(key, payload, serialization, write, Some(Box::new(next)))
                            .await
                        {
                            tracing::debug!(key, error = %e, "counter copy not written");
                        }
                    } else {
                        for tier in &self.tiers {
                            if tier.layer != authority.layer {
                                self.invalidate_quietly(tier, key).await;
                            }
                        }
                        self.announce_key(key, None, false).await;
                    }
                    return Ok(Some(next));
                }
            }
        }
        Err(Error::new(
            ErrorKind::Backend,
            format!("increment of `{key}`: {ATTEMPTS} compare-and-set attempts all conflicted"),
        ))
    }
}
