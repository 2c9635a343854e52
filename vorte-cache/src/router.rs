//! The router: composes L1 and the stores of L2–L4 into one cache.
//!
//! - Reads go L1 → L2 → L3 → L4. The first live, valid entry wins; the layers above it are
//!   back-filled with its *remaining* TTL, capped by each layer's `ttl`.
//! - Writes go through to every enabled layer the call selects.
//! - A layer that fails is skipped for that call, counted and logged (SPEC F1).
//! - Expiry is checked from the envelope on every read, so no layer returns an entry past its TTL
//!   whatever the backend does.
//! - A corrupt entry is a miss: removed and counted (SPEC F4). A well-formed entry of another type
//!   is a `TypeMismatch` error, and stays (SPEC B1).

use std::any::Any;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde::de::DeserializeOwned;

use crate::__private::{Callsite, Output};
use crate::codec::{self, Envelope, TagStamp};
use crate::config::CacheConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fence::{Fence, Fenced};
use crate::flight::{Flights, Role};
use crate::glob::Glob;
use crate::key::{self, now_ms};
use crate::layer::{Layer, LayerSet};
use crate::stats::{CacheStats, Counters, LayerStats};
use crate::store::memory::{L1Entry, MemoryLayer};
use crate::store::{Slot, Store};
use crate::tags::TagIndex;

/// Concurrent store calls in `keys` and `delete_many`.
const FAN_OUT: usize = 16;

/// What `delete` leaves in stores that support it, instead of nothing: a load that began before
/// the delete, in any process, then fails its compare-and-set and cannot write the old value back
/// (SPEC G3). Never a valid envelope (no `vc` magic), so it reads as a miss, never as corrupt.
pub(crate) const TOMBSTONE: &[u8] = b"vorte-tombstone";

/// How long a tombstone stays: a load slower than this after a delete could still write back.
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// A layer below L1.
#[derive(Debug)]
struct Remote {
    layer: Layer,
    store: Arc<dyn Store>,
    ttl_cap: Option<Duration>,
    max_value_bytes: usize,
    /// This layer's own compression, else the cache's.
    compression: crate::config::Compression,
    /// The queue of a write-behind layer.
    behind: Option<tokio::sync::mpsc::Sender<QueuedWrite>>,
    /// How often to sweep expired objects, for object stores that ask for it.
    sweep: Option<(Duration, usize)>,
}

/// A write waiting for a write-behind layer.
struct QueuedWrite {
    key: String,
    bytes: Bytes,
    ttl: Duration,
    /// The fence ticket just after this write was recorded: if the key is deleted or rewritten
    /// later, the queued write is stale and dropped.
    ticket: u64,
}

/// What a write carries besides the payload.
pub(crate) struct WriteSpec {
    pub(crate) ttl: Option<Duration>,
    /// Absolute expiry; when set, `ttl` is ignored (increment keeps the remaining TTL).
    pub(crate) expires_at_ms: Option<u64>,
    pub(crate) layers: LayerSet,
    pub(crate) stamps: Box<[TagStamp]>,
    /// A load's ticket: the write is dropped if the key was invalidated after it.
    pub(crate) ticket: Option<u64>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) config: CacheConfig,
    l1: Option<MemoryLayer>,
    remotes: Vec<Remote>,
    /// Index in `remotes` of the most shared layer: it holds tag records and decides counters.
    authority: Option<usize>,
    enabled: LayerSet,
    tags: TagIndex,
    flights: Flights,
    fence: Arc<Fence>,
    counters: Counters,
    counter_locks: Box<[tokio::sync::Mutex<()>]>,
    /// This cache's id on the bus: random, so no two caches share one.
    #[cfg(feature = "redis")]
    id: u64,
    /// The invalidation bus, once connected (see [`crate::bus`]).
    #[cfg(feature = "redis")]
    pub(crate) bus: std::sync::OnceLock<crate::bus::Bus>,
}

impl Router {
    pub(crate) async fn build(config: &CacheConfig) -> Result<Router> {
        let layers = &config.layers;
        let max_value = config.max_value_bytes;
        let mut remotes = Vec::new();
        let mut queues = Vec::new();
        for (layer, cfg) in [
            (Layer::L2, &layers.l2),
            (Layer::L3, &layers.l3),
            (Layer::L4, &layers.l4),
        ] {
            if let Some(cfg) = cfg {
                let store = crate::store::open(layer, cfg, &config.key_prefix).await?;
                remotes.push(Remote {
                    layer,
                    store: Arc::new(crate::store::circuit::CircuitStore::new(
                        store,
                        layer.name(),
                    )),
                    ttl_cap: cfg.ttl,
                    max_value_bytes: cfg.max_value_bytes.unwrap_or(max_value).min(max_value),
                    compression: cfg.compression.unwrap_or(config.compression),
                    behind: None,
                    sweep: cfg.sweep_interval.map(|every| (every, cfg.sweep_batch)),
                });
                if cfg.write_policy == crate::config::WritePolicy::Behind {
                    queues.push((remotes.len() - 1, cfg.write_behind_queue));
                }
            }
        }
        let router = Router::with_remotes(config, remotes);
        let mut router = router;
        for (i, capacity) in queues {
            router.remotes[i].behind = Some(router.start_write_behind(i, capacity));
        }
        Ok(router)
    }

    /// Starts the background writer of the write-behind layer `remotes[i]`.
    fn start_write_behind(
        &self,
        i: usize,
        capacity: usize,
    ) -> tokio::sync::mpsc::Sender<QueuedWrite> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<QueuedWrite>(capacity.max(1));
        let remote = &self.remotes[i];
        let (store, layer) = (remote.store.clone(), remote.layer);
        let (fence, counters) = (
            self.fence.clone(),
            self.counters.layers[layer.index()].clone(),
        );
        tokio::spawn(async move {
            // Ends when the router (the only sender) is dropped.
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

    /// Starts the sweepers of the layers that ask for one; each stops with the router.
    pub(crate) fn start_sweepers(self: &Arc<Self>) {
        for (i, remote) in self.remotes.iter().enumerate() {
            let Some((every, batch)) = remote.sweep else {
                continue;
            };
            let router = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(router) = router.upgrade() else {
                        return;
                    };
                    let remote = &router.remotes[i];
                    match remote.store.sweep(batch).await {
                        Ok(removed) => {
                            router
                                .counters
                                .layer(remote.layer)
                                .swept
                                .fetch_add(removed, Ordering::Relaxed);
                        }
                        Err(e) => router.skip(remote.layer, "sweep", "*", &e),
                    }
                }
            });
        }
    }

    /// A router over already opened stores; cannot fail.
    fn with_remotes(config: &CacheConfig, remotes: Vec<Remote>) -> Router {
        let layers = &config.layers;
        let max_value = config.max_value_bytes;
        let l1 = layers.l1.enabled.then(|| {
            MemoryLayer::new(
                layers.l1.max_size,
                layers.l1.max_bytes,
                layers.l1.ttl,
                layers
                    .l1
                    .max_value_bytes
                    .unwrap_or(max_value)
                    .min(max_value),
            )
        });
        let mut enabled = LayerSet::default();
        if l1.is_some() {
            enabled.insert(Layer::L1);
        }
        for remote in &remotes {
            enabled.insert(remote.layer);
        }
        // Tag records live in, and counters are decided by, the most shared layer: L3, else L2,
        // else L4.
        let authority = [Layer::L3, Layer::L2, Layer::L4]
            .iter()
            .find_map(|l| remotes.iter().position(|r| r.layer == *l));
        let authority_store = authority.map(|i| remotes[i].store.clone());
        let memo_ttl = layers.l1.ttl.unwrap_or(config.default_ttl);
        Router {
            config: config.clone(),
            l1,
            remotes,
            enabled,
            tags: TagIndex::new(authority_store, memo_ttl),
            authority,
            flights: Flights::default(),
            fence: Arc::default(),
            counters: Counters::default(),
            counter_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            #[cfg(feature = "redis")]
            id: rand::random(),
            #[cfg(feature = "redis")]
            bus: std::sync::OnceLock::new(),
        }
    }

    // ----- the bus -----------------------------------------------------------------------------

    /// Tells the other processes, when there is a bus; a failure is logged, never returned.
    pub(crate) async fn announce(&self, notice: impl FnOnce() -> crate::bus::Notice) {
        #[cfg(feature = "redis")]
        if let Some(bus) = self.bus.get()
            && let Err(e) = bus.publish(self.id, notice()).await
        {
            tracing::warn!(error = %e, "invalidation not published; other processes keep their L1 copies until their TTL");
        }
        #[cfg(not(feature = "redis"))]
        let _ = notice;
    }

    /// Takes a message from the bus: another cache's invalidations, and events from other
    /// processes when this is the global cache.
    #[cfg(feature = "redis")]
    pub(crate) async fn receive(&self, message: crate::bus::Message) {
        if message.origin == self.id {
            return;
        }
        if let crate::bus::Notice::Event { .. } = &message.notice {
            let global = crate::vorte::with_global(|c| std::ptr::eq(c.router(), self));
            if !global || message.process == crate::events::process_id() {
                return;
            }
        }
        self.apply(message.notice).await;
    }

    /// Applies another cache's notice to this cache's L1 and tag versions.
    #[cfg_attr(
        not(feature = "redis"),
        expect(dead_code, reason = "only the Redis bus delivers notices")
    )]
    pub(crate) async fn apply(&self, notice: crate::bus::Notice) {
        use crate::bus::Notice;
        match notice {
            Notice::Keys { keys } => {
                for key in &keys {
                    self.fence.record(key, Fenced::Deleted);
                    if let Some(l1) = &self.l1 {
                        l1.remove(key);
                    }
                }
            }
            Notice::Tag { tag, version } => self.tags.learn(&tag, version),
            Notice::Flush => self.drop_local_state(),
            Notice::Event { event, payload } => {
                let message = crate::events::EventMessage {
                    event,
                    payload,
                    origin: 0,
                };
                if let Err(e) = crate::vorte::installed_bus().dispatch(message).await {
                    tracing::warn!(error = %e, "a handler of a remote event failed");
                }
            }
        }
    }

    /// Forgets everything held in this process: L1, tag versions, and loads in flight.
    pub(crate) fn drop_local_state(&self) {
        self.fence.record_all();
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
        self.tags.forget_all();
        for remote in &self.remotes {
            remote.store.forget_cached_state();
        }
    }

    /// The embedded default: L1 only.
    pub(crate) fn embedded_default() -> Router {
        Router::with_remotes(&CacheConfig::default(), Vec::new())
    }

    fn skip(&self, layer: Layer, what: &str, key: &str, e: &Error) {
        Counters::bump(&self.counters.layer(layer).errors);
        tracing::warn!(layer = %layer, key, error = %e, "{what} failed; layer skipped for this call");
    }

    // ----- reads -------------------------------------------------------------------------------

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

    /// The live, valid L1 entry of `key`, removing it when expired or invalidated.
    #[inline]
    async fn l1_entry(&self, key: &str) -> Option<Arc<L1Entry>> {
        let l1 = self.l1.as_ref()?;
        let counters = self.counters.layer(Layer::L1);
        let Some(entry) = l1.get(key) else {
            Counters::bump(&counters.misses);
            return None;
        };
        if !entry.is_live() || !self.l1_tags_valid(&entry).await {
            l1.remove_entry(key, &entry);
            Counters::bump(&counters.misses);
            return None;
        }
        Some(entry)
    }

    /// Reads `key` from one remote layer: a live, valid envelope, or `None` (counted).
    async fn read_remote(&self, remote: &Remote, key: &str) -> Option<Envelope> {
        let counters = self.counters.layer(remote.layer);
        let bytes = match remote.store.get(Slot::Entry(key)).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                Counters::bump(&counters.misses);
                return None;
            }
            Err(e) => {
                self.skip(remote.layer, "read", key, &e);
                return None;
            }
        };
        if bytes.as_ref() == TOMBSTONE {
            Counters::bump(&counters.misses);
            return None;
        }
        let env = match Envelope::decode(&bytes, self.config.max_value_bytes) {
            Ok(env) if env.key == key => env,
            Ok(_) | Err(_) => {
                Counters::bump(&counters.corrupt);
                tracing::warn!(layer = %remote.layer, key, "corrupt entry removed");
                self.remove_quietly(remote, key).await;
                return None;
            }
        };
        let live = env.expires_at_ms > now_ms();
        let valid = live
            && (env.tags.is_empty()
                || match self.tags.check(&env.tags).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "tag versions unavailable; tagged entry treated as a miss");
                        return None;
                    }
                });
        if !valid {
            Counters::bump(&counters.misses);
            self.remove_quietly(remote, key).await;
            return None;
        }
        Some(env)
    }

    async fn remove_quietly(&self, remote: &Remote, key: &str) {
        if let Err(e) = remote.store.delete(Slot::Entry(key)).await {
            self.skip(remote.layer, "delete", key, &e);
        }
    }

    /// An L1 hit answered without awaiting anything: `Some(Ok)` on a hit, `Some(Err)` on a type
    /// mismatch, `None` when the full read path must decide (absent, expired, or a tagged entry
    /// whose stamps must be checked). The caller has validated the key.
    #[inline]
    pub(crate) fn get_l1_now<T>(&self, key: &str) -> Option<Result<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let entry = self.l1.as_ref()?.get(key)?;
        self.l1_hit_now(key, &entry)
    }

    /// The value of a live L1 entry whose tags need no check; see [`Router::get_l1_now`].
    #[inline]
    fn l1_hit_now<T>(&self, key: &str, entry: &L1Entry) -> Option<Result<T>>
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
    /// path must decide (remote layers, an expired entry, or tagged stamps to check).
    #[inline]
    pub(crate) fn get_l1_or_miss<T>(&self, key: &str) -> Option<Result<Option<T>>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let l1 = self.l1.as_ref()?;
        let Some(entry) = l1.get(key) else {
            if !self.remotes.is_empty() {
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
        if let Some(entry) = self.l1_entry(key).await {
            let v = entry.value::<T>(key)?;
            Counters::bump(&self.counters.layer(Layer::L1).hits);
            return Ok(Some(v));
        }
        let ticket = self.fence.ticket();
        for (i, remote) in self.remotes.iter().enumerate() {
            if let Some(env) = self.read_remote(remote, key).await {
                let v: T = codec::deserialize(env.serialization, key, &env.payload)?;
                Counters::bump(&self.counters.layer(remote.layer).hits);
                // Only when some layer above it is enabled (with L1 off and a hit in the first
                // remote layer there is nothing to fill).
                if self.l1.is_some() || i > 0 {
                    // Boxed: the write path's future is several kilobytes, and inline it would
                    // make every read's future that large, allocated and moved on every call.
                    Box::pin(self.backfill(key, &env, i, ticket, Box::new(v.clone()))).await;
                }
                return Ok(Some(v));
            }
        }
        Counters::bump(&self.counters.misses);
        Ok(None)
    }

    /// The first live, valid entry of `key`, without decoding or back-filling.
    async fn find(&self, key: &str) -> Option<(Layer, Envelope)> {
        if let Some(entry) = self.l1_entry(key).await {
            // An entry written decoded is encoded here, once; one whose value does not encode
            // cannot be listed, counted or copied: it is dropped like a corrupt entry.
            match entry.payload() {
                Ok(payload) => {
                    return Some((
                        Layer::L1,
                        Envelope {
                            expires_at_ms: entry.expires_at_ms,
                            created_at_ms: entry.created_at_ms,
                            key: key.to_owned(),
                            tags: entry.tags.to_vec(),
                            serialization: entry.serialization,
                            payload,
                        },
                    ));
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
        for remote in &self.remotes {
            if let Some(env) = self.read_remote(remote, key).await {
                return Some((remote.layer, env));
            }
        }
        None
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        key::validate(key, "key")?;
        Ok(self.find(key).await.is_some())
    }

    /// Copies an entry found in `remotes[found]` into L1 and the remote layers above it.
    async fn backfill(
        &self,
        key: &str,
        env: &Envelope,
        found: usize,
        ticket: u64,
        decoded: Box<dyn Any + Send + Sync>,
    ) {
        let mut targets = LayerSet::default();
        if self.l1.is_some() {
            targets.insert(Layer::L1);
        }
        for remote in &self.remotes[..found] {
            targets.insert(remote.layer);
        }
        let spec = WriteSpec {
            ttl: None,
            expires_at_ms: Some(env.expires_at_ms),
            layers: targets,
            stamps: env.tags.clone().into_boxed_slice(),
            ticket: Some(ticket),
        };
        if let Err(e) = self
            .write(
                key,
                env.payload.clone(),
                env.serialization,
                spec,
                Some(decoded),
            )
            .await
        {
            tracing::debug!(key, error = %e, "back-fill skipped");
        }
    }

    // ----- writes ------------------------------------------------------------------------------

    fn selected(&self, layers: LayerSet) -> Result<LayerSet> {
        let mut selected = LayerSet::default();
        for layer in Layer::ALL {
            if layers.contains(layer) && self.enabled.contains(layer) {
                selected.insert(layer);
            }
        }
        if selected == LayerSet::default() {
            return Err(Error::new(
                ErrorKind::Config,
                "none of the layers selected for this write is enabled",
            ));
        }
        Ok(selected)
    }

    fn expiry(&self, spec: &WriteSpec, now: u64) -> u64 {
        spec.expires_at_ms.unwrap_or_else(|| {
            let ttl = spec.ttl.unwrap_or(self.config.default_ttl);
            now.saturating_add(ttl.as_millis().max(1) as u64)
        })
    }

    fn capped(expires_at_ms: u64, cap: Option<Duration>, now: u64) -> u64 {
        match cap {
            Some(cap) => expires_at_ms.min(now.saturating_add(cap.as_millis() as u64)),
            None => expires_at_ms,
        }
    }

    /// Records a write of `key` in the fence.
    ///
    /// With L1 alone, only a load holds a ticket (a read takes one for back-fills, which need a
    /// layer below L1), and a load of `key` holds one only while `key` has a flight: the leader
    /// joins, then takes its ticket, writes, and only then leaves. So when `key` has no flight
    /// after the sequence moved on, every later ticket is at least this write's and the per-key
    /// record (a lock, an allocated key, a map insert) is not needed. The sequence moves first:
    /// a leader that joins after the check (through the flights' lock) sees it.
    fn record_set(&self, key: &str) {
        if self.remotes.is_empty() {
            self.fence.advance();
            if !self.flights.in_flight(key) {
                return;
            }
        }
        self.fence.record(key, Fenced::Set);
    }

    /// Whether a write to `layers` may keep its value decoded, unencoded: L1 is the only layer
    /// it reaches, and no limit needs the encoded size (L1 is bounded by entries, not bytes, and
    /// neither L1 nor the cache sets a `max_value_bytes` below the default). See
    /// `docs/performance.md#l1-miss-then-insert`.
    pub(crate) fn writes_decoded(&self, layers: LayerSet) -> bool {
        let Some(l1) = &self.l1 else {
            return false;
        };
        let mut l1_only = LayerSet::default();
        l1_only.insert(Layer::L1);
        self.selected(layers)
            .is_ok_and(|selected| selected == l1_only)
            && !l1.weighs_bytes()
            && self.config.layers.l1.max_value_bytes.is_none()
            && self.config.max_value_bytes >= crate::config::DEFAULT_MAX_VALUE_BYTES
    }

    /// Writes a decoded value to L1 alone, without encoding it (the caller checked
    /// [`Router::writes_decoded`]); `encoder` makes its bytes if anything asks for them later.
    /// `ticket` is a load's: the value is dropped if the key was written or deleted since.
    pub(crate) async fn write_l1_decoded(
        &self,
        key: &str,
        ttl: Option<Duration>,
        stamps: Box<[TagStamp]>,
        value: crate::store::memory::Decoded,
        encoder: crate::store::memory::Encoder,
        ticket: Option<u64>,
    ) -> Result<()> {
        key::validate(key, "key")?;
        let Some(l1) = &self.l1 else {
            return Err(Error::new(
                ErrorKind::Config,
                "none of the layers selected for this write is enabled",
            ));
        };
        if ticket.is_none() {
            self.record_set(key);
        }
        let now = now_ms();
        let ttl = ttl.unwrap_or(self.config.default_ttl);
        let expires_at_ms = now.saturating_add(ttl.as_millis().max(1) as u64);
        let entry = L1Entry::decoded(
            Self::capped(expires_at_ms, l1.ttl_cap, now),
            now,
            stamps,
            self.config.serialization,
            value,
            encoder,
        );
        match ticket {
            None => {
                l1.insert(key, entry);
                self.announce(|| crate::bus::Notice::Keys {
                    keys: vec![key.to_owned()],
                })
                .await;
            }
            // A load: atomic with a delete's fence record, as in `write`; with L1 alone there
            // is no remote copy to take back.
            Some(ticket) => {
                let _ = self
                    .fence
                    .write_if_allowed(key, ticket, || l1.insert(key, entry));
            }
        }
        Ok(())
    }

    /// Writes a serialized value through the selected layers.
    ///
    /// `decoded` (the value itself) lets L1 answer the next read without decoding.
    pub(crate) async fn write(
        &self,
        key: &str,
        payload: Bytes,
        serialization: crate::config::Serialization,
        spec: WriteSpec,
        decoded: Option<Box<dyn Any + Send + Sync>>,
    ) -> Result<()> {
        let selected = self.selected(spec.layers)?;
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
        match spec.ticket {
            Some(ticket) => {
                if self.fence.check(key, ticket).is_some() {
                    return Ok(());
                }
            }
            None => self.record_set(key),
        }
        let announce = spec.ticket.is_none();
        let now = now_ms();
        let expires_at_ms = self.expiry(&spec, now);
        let mut accepted = 0usize;
        let mut first_error = None;

        let remotes: Vec<&Remote> = self
            .remotes
            .iter()
            .filter(|r| selected.contains(r.layer))
            .collect();
        let is_load = spec.ticket.is_some();
        let mut puts = Vec::with_capacity(remotes.len());
        for remote in remotes.iter().copied() {
            if payload.len() > remote.max_value_bytes {
                Counters::bump(&self.counters.layer(remote.layer).too_large);
                continue;
            }
            let env = Envelope {
                expires_at_ms: Self::capped(expires_at_ms, remote.ttl_cap, now),
                created_at_ms: now,
                key: key.to_owned(),
                tags: spec.stamps.to_vec(),
                serialization,
                payload: payload.clone(),
            };
            let bytes = env.encode(remote.compression);
            let ttl = Duration::from_millis(env.expires_at_ms.saturating_sub(now).max(1));
            if let (Some(queue), false) = (&remote.behind, is_load) {
                let queued = QueuedWrite {
                    key: key.to_owned(),
                    bytes,
                    ttl,
                    ticket: self.fence.ticket(),
                };
                match queue.try_send(queued) {
                    Ok(()) => accepted += 1,
                    Err(_) => {
                        Counters::bump(&self.counters.layer(remote.layer).write_behind_dropped);
                        tracing::warn!(layer = %remote.layer, key, "write-behind queue full; write dropped for this layer");
                    }
                }
                continue;
            }
            puts.push(async move {
                // A load or back-fill only fills an empty slot: if anything is there now (a newer
                // value, or the tombstone of a delete from any process), it stands down.
                let result = if is_load {
                    match remote
                        .store
                        .compare_and_set(key, None, bytes.clone(), ttl)
                        .await
                    {
                        Ok(Some(stored)) => Ok(stored),
                        Ok(None) => remote
                            .store
                            .put(Slot::Entry(key), bytes, ttl)
                            .await
                            .map(|()| true),
                        Err(e) => Err(e),
                    }
                } else {
                    remote
                        .store
                        .put(Slot::Entry(key), bytes, ttl)
                        .await
                        .map(|()| true)
                };
                (remote, result)
            });
        }
        let mut written = Vec::new();
        let mut superseded = false;
        for (remote, result) in join_all(puts).await {
            match result {
                Ok(true) => {
                    accepted += 1;
                    written.push(remote);
                }
                Ok(false) => superseded = true,
                Err(e) => {
                    self.skip(remote.layer, "write", key, &e);
                    first_error.get_or_insert(e);
                }
            }
        }
        if superseded {
            // Another process deleted or rewrote the key since this load began: its value is
            // old. Nothing of it may stay, here or in L1.
            for remote in written {
                self.remove_quietly(remote, key).await;
            }
            return Ok(());
        }

        if let (Some(l1), true) = (&self.l1, selected.contains(Layer::L1)) {
            if payload.len() > l1.max_value_bytes {
                Counters::bump(&self.counters.layer(Layer::L1).too_large);
            } else {
                let mut entry = L1Entry::new(
                    Self::capped(expires_at_ms, l1.ttl_cap, now),
                    now,
                    spec.stamps.clone(),
                    serialization,
                    payload.clone(),
                );
                if let Some(decoded) = decoded {
                    entry = entry.with_decoded_any(decoded);
                }
                accepted += 1;
                match spec.ticket {
                    None => l1.insert(key, entry),
                    Some(ticket) => {
                        // Atomic with delete's fence record: either the delete sees this entry
                        // and removes it, or this write sees the delete and is dropped.
                        if self
                            .fence
                            .write_if_allowed(key, ticket, || l1.insert(key, entry))
                            == Some(Fenced::Deleted)
                        {
                            // Deleted while the remote copies were written: take them back.
                            for remote in written {
                                self.remove_quietly(remote, key).await;
                            }
                        }
                    }
                }
            }
        }
        if accepted > 0 {
            if announce {
                self.announce(|| crate::bus::Notice::Keys {
                    keys: vec![key.to_owned()],
                })
                .await;
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

    // ----- invalidation ------------------------------------------------------------------------

    pub(crate) async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Deletes `keys` from every layer: one bulk call per store, one bus message.
    pub(crate) async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        for key in keys {
            key::validate(key, "key")?;
        }
        let mut existed = vec![false; keys.len()];
        for (key, existed) in keys.iter().zip(existed.iter_mut()) {
            self.fence.record(key, Fenced::Deleted);
            *existed = self.l1.as_ref().is_some_and(|l1| l1.remove(key));
        }
        let deletes = self.remotes.iter().map(|r| async move {
            (
                r,
                r.store
                    .delete_many(keys, Bytes::from_static(TOMBSTONE), TOMBSTONE_TTL)
                    .await,
            )
        });
        for (remote, result) in join_all(deletes).await {
            match result {
                Ok(found) => {
                    for (e, f) in existed.iter_mut().zip(found) {
                        *e |= f;
                    }
                }
                Err(e) => self.skip(
                    remote.layer,
                    "delete",
                    keys.first().copied().unwrap_or(""),
                    &e,
                ),
            }
        }
        self.announce(|| crate::bus::Notice::Keys {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        })
        .await;
        Ok(existed.iter().filter(|e| **e).count() as u64)
    }

    pub(crate) async fn tags_stamps(&self, tags: &[String]) -> Result<Box<[TagStamp]>> {
        self.tags.stamps(tags).await
    }

    pub(crate) async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        key::validate(tag, "tag")?;
        let version = self.tags.invalidate(tag).await?;
        self.announce(|| crate::bus::Notice::Tag {
            tag: tag.to_owned(),
            version,
        })
        .await;
        Ok(())
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        self.fence.record_all();
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
        let clears = self
            .remotes
            .iter()
            .map(|r| async move { (r, r.store.clear().await) });
        let mut first_error = None;
        for (remote, result) in join_all(clears).await {
            if let Err(e) = result {
                self.skip(remote.layer, "flush", "*", &e);
                first_error.get_or_insert(e);
            }
        }
        self.tags.forget_all();
        self.announce(|| crate::bus::Notice::Flush).await;
        // A flush that left a layer full would serve old values later: report it.
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ----- counters, listing, stats ------------------------------------------------------------

    pub(crate) async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        key::validate(key, "key")?;
        let stripe = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize % self.counter_locks.len();
        let _guard = self.counter_locks[stripe].lock().await;
        if let Some(authority) = self.authority.map(|i| &self.remotes[i])
            && authority.store.has_compare_and_set()
            && let Some(next) = self.increment_atomically(authority, key, delta).await?
        {
            return Ok(next);
        }
        // No atomic compare-and-set below L1: exact within this process (the stripe lock).
        let (current, expires_at_ms, stamps) = match self.find(key).await {
            Some((_, env)) => {
                let n = Self::counter_value(key, &env)?;
                (n, Some(env.expires_at_ms), env.tags.into_boxed_slice())
            }
            None => (0, None, Box::default()),
        };
        let next = Self::add(key, current, delta)?;
        let serialization = self.config.serialization;
        let payload = Bytes::from(codec::serialize(serialization, &next)?);
        let spec = WriteSpec {
            ttl: None,
            expires_at_ms,
            layers: LayerSet::ALL,
            stamps,
            ticket: None,
        };
        self.write(key, payload, serialization, spec, Some(Box::new(next)))
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
    /// across processes (SPEC G5). `None` when the authority has no compare-and-set.
    async fn increment_atomically(
        &self,
        authority: &Remote,
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
                Some(Ok(env)) if env.key == key && env.expires_at_ms > now => {
                    if env.tags.is_empty() || self.tags.check(&env.tags).await? {
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
                    env.expires_at_ms,
                    env.tags.clone(),
                ),
                None => (
                    0,
                    now.saturating_add(self.config.default_ttl.as_millis() as u64),
                    Vec::new(),
                ),
            };
            let next = Self::add(key, current, delta)?;
            let serialization = self.config.serialization;
            let payload = Bytes::from(codec::serialize(serialization, &next)?);
            let env = Envelope {
                expires_at_ms: Self::capped(expires_at_ms, authority.ttl_cap, now),
                created_at_ms: now,
                key: key.to_owned(),
                tags: tags.clone(),
                serialization,
                payload: payload.clone(),
            };
            let ttl = Duration::from_millis(env.expires_at_ms.saturating_sub(now).max(1));
            let bytes = env.encode(authority.compression);
            match authority
                .store
                .compare_and_set(key, raw.as_ref(), bytes, ttl)
                .await?
            {
                None => return Ok(None),
                Some(false) => continue,
                Some(true) => {
                    // The other layers follow the authority; a failure there is only a skip.
                    let mut others = LayerSet::ALL;
                    others.remove(authority.layer);
                    let spec = WriteSpec {
                        ttl: None,
                        expires_at_ms: Some(expires_at_ms),
                        layers: others,
                        stamps: tags.into_boxed_slice(),
                        ticket: None,
                    };
                    if self.selected(others).is_ok()
                        && let Err(e) = self
                            .write(key, payload, serialization, spec, Some(Box::new(next)))
                            .await
                    {
                        tracing::debug!(key, error = %e, "counter copy not written");
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

    async fn is_live(&self, key: &str) -> bool {
        self.find(key).await.is_some()
    }

    pub(crate) async fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        let glob = Glob::new(pattern)?;
        let mut candidates = BTreeSet::new();
        if let Some(l1) = &self.l1 {
            candidates.extend(
                l1.entries()
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| glob.matches(k)),
            );
        }
        for remote in &self.remotes {
            match remote.store.list(glob.literal_prefix()).await {
                Ok(keys) => candidates.extend(keys.into_iter().filter(|k| glob.matches(k))),
                Err(e) => self.skip(remote.layer, "list", pattern, &e),
            }
        }
        let live: Vec<Option<String>> = futures_util::stream::iter(candidates)
            .map(|k| async move { self.is_live(&k).await.then_some(k) })
            .buffered(FAN_OUT)
            .collect()
            .await;
        Ok(live.into_iter().flatten().collect())
    }

    pub(crate) async fn stats(&self) -> Result<CacheStats> {
        let layer_stats = |layer: Layer, backend: &'static str, keys: u64, bytes: u64| {
            let c = self.counters.layer(layer);
            LayerStats {
                layer,
                backend,
                hits: c.hits.load(Ordering::Relaxed),
                misses: c.misses.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                corrupt: c.corrupt.load(Ordering::Relaxed),
                too_large: c.too_large.load(Ordering::Relaxed),
                write_behind_dropped: c.write_behind_dropped.load(Ordering::Relaxed),
                swept: c.swept.load(Ordering::Relaxed),
                keys,
                bytes,
            }
        };
        let mut layers = Vec::new();
        let mut l1_bytes = 0;
        if let Some(l1) = &self.l1 {
            let (keys, bytes) = l1.usage();
            l1_bytes = bytes;
            layers.push(layer_stats(Layer::L1, "memory", keys, bytes));
        }
        for remote in &self.remotes {
            let usage = match remote.store.usage().await {
                Ok(u) => u,
                Err(e) => {
                    self.skip(remote.layer, "usage", "*", &e);
                    Default::default()
                }
            };
            layers.push(layer_stats(
                remote.layer,
                remote.store.backend(),
                usage.keys,
                usage.bytes,
            ));
        }
        let hits = |l: Layer| self.counters.layer(l).hits.load(Ordering::Relaxed);
        Ok(CacheStats {
            l1_hits: hits(Layer::L1),
            l2_hits: hits(Layer::L2),
            l3_hits: hits(Layer::L3),
            l4_hits: hits(Layer::L4),
            misses: self.counters.misses.load(Ordering::Relaxed),
            total_keys: self.keys("*").await?.len() as u64,
            memory_used_mb: l1_bytes as f64 / (1024.0 * 1024.0),
            layers,
        })
    }

    // ----- loads -------------------------------------------------------------------------------

    /// Cache-aside with single-flight: see [`Cache::get_or_set`](crate::Cache::get_or_set).
    pub(crate) async fn get_or_set<T, F, Fut, E>(
        &self,
        key: &str,
        loader: F,
        ttl: Option<Duration>,
        tags: &[String],
        layers: LayerSet,
    ) -> Result<T>
    where
        T: serde::Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        for tag in tags {
            key::validate(tag, "tag")?;
        }
        key::validate(key, "key")?;
        let mut loader = Some(loader);
        loop {
            // Only L1 before joining the flight: the leader reads the lower layers once for
            // everyone, so 10,000 concurrent misses do not become 10,000 reads of L2–L4.
            if let Some(hit) = self.get_l1_now::<T>(key) {
                return hit;
            }
            match self.flights.join(key) {
                Role::Leader(leader) => {
                    // Every layer now, once for all the waiters: the value may be below L1, or
                    // a previous leader may have stored it between our miss and our joining.
                    if let Some(v) = self.get::<T>(key).await? {
                        leader.finish(Some(Arc::new(v.clone())));
                        return Ok(v);
                    }
                    let ticket = self.fence.ticket();
                    let stamps = self.tags.stamps(tags).await?;
                    let Some(load) = loader.take() else {
                        return Err(Error::new(ErrorKind::Loader, "loader already used"));
                    };
                    let value = load().await.map_err(|e| {
                        let source = e.into();
                        Error::new(ErrorKind::Loader, format!("key `{key}`: {source}"))
                            .with_source(source)
                    })?;
                    if self.writes_decoded(layers) {
                        // L1 alone: kept decoded, encoded only if bytes are asked for
                        // (`docs/performance.md#l1-miss-then-insert`).
                        Box::pin(self.write_l1_decoded(
                            key,
                            ttl,
                            stamps,
                            Box::new(value.clone()),
                            crate::store::memory::encoder::<T>(),
                            Some(ticket),
                        ))
                        .await?;
                        leader.finish(Some(Arc::new(value.clone())));
                        return Ok(value);
                    }
                    let serialization = self.config.serialization;
                    let payload = Bytes::from(codec::serialize(serialization, &value)?);
                    let spec = WriteSpec {
                        ttl,
                        expires_at_ms: None,
                        layers,
                        stamps,
                        ticket: Some(ticket),
                    };
                    // Boxed, as in `get`: the write path's future would bloat every call's.
                    Box::pin(self.write(
                        key,
                        payload,
                        serialization,
                        spec,
                        Some(Box::new(value.clone())),
                    ))
                    .await?;
                    leader.finish(Some(Arc::new(value.clone())));
                    return Ok(value);
                }
                Role::Waiter(waiter) => {
                    if let Some(v) = waiter
                        .wait()
                        .await
                        .and_then(|s| s.downcast_ref::<T>().cloned())
                    {
                        return Ok(v);
                    }
                }
            }
        }
    }

    /// The body of every `#[cached]` function: never fails because of the cache.
    pub(crate) async fn run_cached<O, F>(
        &self,
        callsite: &'static Callsite,
        key: Result<String>,
        tags: Vec<String>,
        body: F,
    ) -> O
    where
        O: Output,
        F: Future<Output = O> + Send,
    {
        let key = match key.and_then(|k| key::validate(&k, "key").map(|()| k)) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(function = callsite.path, error = %e, "no cache key; running uncached");
                return body.await;
            }
        };
        let layers = callsite.layers.map_or(LayerSet::ALL, LayerSet::of);
        let mut body = Some(body);
        loop {
            // Only L1 before joining the flight (see `get_or_set`); the leader reads the rest.
            if let Some(Ok(stored)) = self.get_l1_now::<O::Stored>(&key) {
                return O::from_stored(stored);
            }
            match self.flights.join(&key) {
                Role::Leader(leader) => {
                    // As in `get_or_set`: every layer, once for all the waiters.
                    if let Ok(Some(stored)) = self.get::<O::Stored>(&key).await {
                        leader.finish(Some(Arc::new(stored.clone())));
                        return O::from_stored(stored);
                    }
                    let Some(body) = body.take() else {
                        unreachable!("a caller leads at most once, then returns")
                    };
                    let ticket = self.fence.ticket();
                    let stamps = self.tags.stamps(&tags).await;
                    let out = body.await;
                    let negative = callsite.negative_ttl.is_some();
                    let shared = match (out.to_stored(negative), stamps) {
                        (Some(stored), Ok(stamps)) => {
                            let ttl = if O::is_negative(&stored) {
                                callsite.negative_ttl
                            } else {
                                callsite.ttl
                            };
                            // Boxed, as in `get`: the write path's future would bloat every
                            // call's.
                            Box::pin(self.store_cached(&key, &stored, ttl, layers, stamps, ticket))
                                .await;
                            Some(Arc::new(stored) as Arc<dyn Any + Send + Sync>)
                        }
                        (_, Err(e)) => {
                            tracing::warn!(key, error = %e, "tag versions unavailable; result not cached");
                            None
                        }
                        (None, _) => None,
                    };
                    leader.finish(shared);
                    return out;
                }
                Role::Waiter(waiter) => {
                    if let Some(stored) = waiter
                        .wait()
                        .await
                        .and_then(|s| s.downcast_ref::<O::Stored>().cloned())
                    {
                        return O::from_stored(stored);
                    }
                }
            }
        }
    }

    async fn store_cached<T>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        layers: LayerSet,
        stamps: Box<[TagStamp]>,
        ticket: u64,
    ) where
        T: serde::Serialize + Clone + Send + Sync + 'static,
    {
        if self.writes_decoded(layers) {
            // L1 alone: kept decoded (`docs/performance.md#l1-miss-then-insert`).
            if let Err(e) = self
                .write_l1_decoded(
                    key,
                    ttl,
                    stamps,
                    Box::new(value.clone()),
                    crate::store::memory::encoder::<T>(),
                    Some(ticket),
                )
                .await
            {
                tracing::warn!(key, error = %e, "result not cached");
            }
            return;
        }
        let serialization = self.config.serialization;
        let payload = match codec::serialize(serialization, value) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::warn!(key, error = %e, "result not cached");
                return;
            }
        };
        let spec = WriteSpec {
            ttl,
            expires_at_ms: None,
            layers,
            stamps,
            ticket: Some(ticket),
        };
        if let Err(e) = self
            .write(
                key,
                payload,
                serialization,
                spec,
                Some(Box::new(value.clone())),
            )
            .await
        {
            tracing::warn!(key, error = %e, "result not cached");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read path's futures are allocated and moved on every call that misses L1: the write
    /// path (back-fill, the loader's store) is boxed inside them only when it runs. Inline, it
    /// made `get`'s future 6.5 KB; boxed, `get`'s is 0.7 KB and `get_or_set`'s 0.9 KB.
    #[test]
    fn read_futures_stay_small() {
        let router = Router::embedded_default();
        let get = router.get::<String>("k");
        assert!(
            std::mem::size_of_val(&get) <= 1_024,
            "Router::get future: {} bytes",
            std::mem::size_of_val(&get)
        );
        let get_or_set = router.get_or_set::<i32, _, _, std::io::Error>(
            "k",
            || async { Ok(1) },
            None,
            &[],
            LayerSet::ALL,
        );
        assert!(
            std::mem::size_of_val(&get_or_set) <= 1_536,
            "Router::get_or_set future: {} bytes",
            std::mem::size_of_val(&get_or_set)
        );
    }
}
