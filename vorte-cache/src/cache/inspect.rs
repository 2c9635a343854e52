//! [`Cache::inspect`]: what the layers hold of one key, for operators (`vorte-cache get`,
//! `docs/cli.md#get`), read without changing anything.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Cache;
use crate::codec::{self, Serialization};
use crate::engine::{Held, Inspected};
use crate::error::{Error, Result};
use crate::layer::Layer;

/// What [`Cache::inspect`] found of a key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Inspection {
    /// The entry a read would answer with (the first readable one, L1 first); when no layer has
    /// a readable one, the first entry a layer still keeps: stale (past its TTL, inside its
    /// fail-safe window), invalidated by a tag, or written before a flush. `None` when no layer
    /// that answered keeps anything under the key.
    pub entry: Option<InspectedEntry>,
    /// The layers that could not be read, with their errors (the others were read all the same).
    /// A key missing from the answer while this is not empty may be in a layer that failed.
    pub failed: Vec<(Layer, Error)>,
}

/// One layer's entry of a key, in an [`Inspection`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InspectedEntry {
    /// The layer it was read from.
    pub layer: Layer,
    /// How long it stays fresh; `None` when it no longer is (it is then stale: kept for a
    /// fail-safe load, `docs/resilience.md#fail-safe`, and never returned by a read).
    pub fresh_for: Option<Duration>,
    /// How long until every layer drops it: the fresh time left plus its stale window.
    pub expires_in: Duration,
    /// The length of its stale (fail-safe) window, after its freshness; zero without fail-safe.
    pub stale_window: Duration,
    /// When it was written (wall clock of the writing process).
    pub created_at: SystemTime,
    /// Its tags, each with whether it is still valid.
    pub tags: Vec<InspectedTag>,
    /// Whether it was written before the cache's last `flush` (so it reads as missing); `None`
    /// when that could not be told (the layer holding the flush record did not answer). Always
    /// `Some(false)` in L1, which a flush empties.
    pub flushed: Option<bool>,
    /// How its value is encoded.
    pub serialization: Serialization,
    /// The size of its serialized value, in bytes (after decompression).
    pub size: usize,
    /// Its value decoded to JSON, or why it does not decode (a `TypeMismatch` error; for
    /// instance MessagePack binary, which has no JSON form).
    pub value: Result<serde_json::Value>,
}

/// One tag of an [`InspectedEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectedTag {
    /// The tag.
    pub name: String,
    /// `Some(true)` while no `invalidate_tag` of it happened since the entry was written,
    /// `Some(false)` after one, `None` when the tag authority did not answer.
    pub valid: Option<bool>,
}

impl InspectedEntry {
    /// Whether a read would answer with this entry now: fresh, every tag valid, not flushed.
    pub fn readable(&self) -> bool {
        self.fresh_for.is_some()
            && self.tags.iter().all(|t| t.valid == Some(true))
            && self.flushed == Some(false)
    }

    fn from_held(key: &str, held: Held, now_ms: u64) -> InspectedEntry {
        let life = held.life;
        let left = |until: u64| Duration::from_millis(until.saturating_sub(now_ms));
        InspectedEntry {
            layer: held.layer,
            fresh_for: (life.fresh_until_ms > now_ms).then(|| left(life.fresh_until_ms)),
            expires_in: left(life.expires_at_ms),
            stale_window: Duration::from_millis(
                life.expires_at_ms.saturating_sub(life.fresh_until_ms),
            ),
            created_at: UNIX_EPOCH + Duration::from_millis(held.created_at_ms),
            tags: held
                .tags
                .into_iter()
                .map(|(name, valid)| InspectedTag {
                    name: name.to_string(),
                    valid,
                })
                .collect(),
            flushed: held.flushed,
            serialization: held.serialization,
            size: held.payload.len(),
            value: codec::deserialize(held.serialization, key, &held.payload),
        }
    }
}

impl Cache {
    /// What the layers hold of `key`, for an operator: the layer, the time left (fresh and
    /// stale), the tags and whether each is still valid, the encoding, and the value as JSON.
    ///
    /// Unlike [`Cache::get`], it changes nothing: a hit in a lower layer is not copied into the
    /// layers above it, an expired or invalidated entry is not removed, and no hit or miss is
    /// counted in [`Cache::stats`] (a layer that fails is, in its `errors`). It reports entries a
    /// read would not return (stale, invalidated, flushed), saying why. It reads every layer
    /// until it finds a readable entry: a remote read per layer at most, plus one per tag.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vorte_cache::{Cache, Layer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
    /// let cache = Cache::from_config(&Default::default()).await?;   // L1 only
    /// cache.set("user:1", &serde_json::json!({"name": "Ada"}))
    ///     .ttl(Duration::from_secs(60))
    ///     .tags(["users"])
    ///     .await?;
    /// cache.invalidate_tag("users").await?;
    ///
    /// let found = cache.inspect("user:1").await?;
    /// let entry = found.entry.expect("L1 keeps it until a read drops it");
    /// assert_eq!(entry.layer, Layer::L1);
    /// assert!(entry.fresh_for.is_some_and(|left| left <= Duration::from_secs(60)));
    /// assert_eq!(entry.tags[0].name, "users");
    /// assert_eq!(entry.tags[0].valid, Some(false));      // invalidated
    /// assert!(!entry.readable());
    /// assert_eq!(entry.value?["name"], "Ada");
    /// assert!(cache.inspect("user:2").await?.entry.is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidKey`. A layer that fails is not an error: it is listed in
    /// [`Inspection::failed`].
    pub async fn inspect(&self, key: &str) -> Result<Inspection> {
        let Inspected { held, failed } = self.engine().inspect(key).await?;
        let now_ms = crate::clock::now_ms();
        Ok(Inspection {
            entry: held.map(|held| InspectedEntry::from_held(key, held, now_ms)),
            failed,
        })
    }
}
