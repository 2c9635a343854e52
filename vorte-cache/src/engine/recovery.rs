//! The recovery queue: invalidations that did not reach a layer, retried until they do
//! (`docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back`).
//!
//! A `delete` that fails on one layer still returns `Ok` when the others took it, but that layer
//! keeps the old value. Until a retry has delivered the delete there, the key is *blocked* on
//! that layer: reads skip it (a miss, never the deleted value) and fills do not write it. A `set`
//! that reaches the layer replaces the old value and unblocks the key. A `flush` that failed on a
//! layer blocks the whole layer until a retry of its clear succeeds. Too many blocked keys on one
//! layer (it has been away long) turn into the same: the layer is cleared when it is back.
//!
//! A tag invalidation whose new version could not be written to the layer holding tag records is
//! owed too: the tag index keeps a local version for it meanwhile (`tags.rs`), and the retry
//! writes a new record, then tells the other processes, as the invalidation would have.
//!
//! One background task per cache retries, with a backoff from 100 ms to 1 s, and ends with the
//! cache. It starts with the first debt. (A shorter backoff was tried: its retries, large deletes,
//! became the probes of a slow server's half-open breaker, timed out, and kept the layer closed to
//! reads for good: the chaos suite's object-store row.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::bus::{Notice, Publisher};
use crate::layer::Layer;
use crate::stats::LayerCounters;
use crate::store::{Slot, Store};
use crate::tags::TagIndex;

use super::invalidate::{TOMBSTONE_TTL, new_tombstone};
use super::takeover::{self, RecentWrites, Verdict, Written};

/// Blocked keys per layer beyond which the layer is cleared instead (its keys are then unknown).
const MAX_BLOCKED: usize = 100_000;
/// Keys per retried `delete_many`.
const RETRY_CHUNK: usize = 500;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A debt is delivered within this long of its layer's coming back.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the idle task checks that its cache still exists.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// How often it checks for a takeover on a layer that can have one.
const TAKEOVER_CHECK: Duration = Duration::from_millis(200);

/// What one layer still owes.
#[derive(Debug, Default)]
struct Owed {
    /// Keys whose delete did not reach the layer, each with the number of its latest block (a
    /// retry unblocks a key only if nobody blocked it again meanwhile).
    keys: HashMap<String, u64>,
    next: u64,
    /// A flush did not reach the layer: everything in it is suspect until a clear succeeds.
    everything: bool,
}

#[derive(Debug)]
struct Layered {
    layer: Layer,
    store: Arc<dyn Store>,
    counters: Arc<LayerCounters>,
    owed: Mutex<Owed>,
    /// Keys blocked, or `usize::MAX` when everything is: read without the lock on every read.
    blocked: AtomicUsize,
    /// The writes a takeover of the layer's servers may lose, when its store tells of takeovers
    /// (`takeover.rs`), and how many takeovers were caught up with.
    recent: Option<RecentWrites>,
    takeovers_seen: AtomicU64,
}

impl Layered {
    fn owed(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the size of the queue after a change (under the lock).
    fn publish(&self, owed: &Owed) {
        let n = if owed.everything {
            usize::MAX
        } else {
            owed.keys.len()
        };
        self.blocked.store(n, Ordering::Release);
        let gauge = if owed.everything { 1 } else { owed.keys.len() };
        self.counters
            .recovery_pending
            .store(gauge as u64, Ordering::Relaxed);
    }
}

/// The tag versions owed to the layer holding the records, and who to tell once delivered.
#[derive(Debug)]
pub(super) struct OwedTags {
    pub(super) tags: Arc<TagIndex>,
    /// The layer holding the records (counted there).
    pub(super) authority: Layer,
    pub(super) publisher: Option<Arc<Publisher>>,
}

#[derive(Debug)]
struct Shared {
    layers: Vec<Layered>,
    tags: Option<OwedTags>,
    /// Tells the other processes of the writes made again after a takeover.
    publisher: Option<Arc<Publisher>>,
    wake: Arc<tokio::sync::Notify>,
    started: AtomicBool,
}

/// See the module docs. Owned by the engine and the writers of write-behind layers; its task
/// holds only a weak reference.
#[derive(Debug, Clone)]
pub(super) struct Recovery {
    shared: Arc<Shared>,
}

impl Recovery {
    pub(super) fn new(
        layers: Vec<(Layer, Arc<dyn Store>, Arc<LayerCounters>)>,
        tags: Option<OwedTags>,
        publisher: Option<Arc<Publisher>>,
    ) -> Self {
        let layers = layers
            .into_iter()
            .map(|(layer, store, counters)| {
                let takeovers = store.takeovers();
                Layered {
                    layer,
                    store,
                    counters,
                    owed: Mutex::default(),
                    blocked: AtomicUsize::new(0),
                    recent: takeovers.map(|_| RecentWrites::default()),
                    takeovers_seen: AtomicU64::new(takeovers.unwrap_or(0)),
                }
            })
            .collect();
        Recovery {
            shared: Arc::new(Shared {
                layers,
                tags,
                publisher,
                wake: Arc::new(tokio::sync::Notify::new()),
                started: AtomicBool::new(false),
            }),
        }
    }

    fn layer(&self, layer: Layer) -> Option<&Layered> {
        self.shared.layers.iter().find(|l| l.layer == layer)
    }

    /// Whether `key` may not be read from or filled into `layer` now.
    #[inline]
    pub(super) fn blocks(&self, layer: Layer, key: &str) -> bool {
        let Some(l) = self.layer(layer) else {
            return false;
        };
        match l.blocked.load(Ordering::Acquire) {
            0 => false,
            usize::MAX => true,
            _ => l.owed().keys.contains_key(key),
        }
    }

    /// The layers on which any of `keys` is blocked: what this process owes them, for the
    /// notice that tells the other processes to hold the keys off those layers too.
    pub(super) fn owed_layers(&self, keys: &[&str]) -> Vec<Layer> {
        self.shared
            .layers
            .iter()
            .filter(|l| match l.blocked.load(Ordering::Acquire) {
                0 => false,
                usize::MAX => true,
                _ => {
                    let owed = l.owed();
                    owed.everything || keys.iter().any(|k| owed.keys.contains_key(*k))
                }
            })
            .map(|l| l.layer)
            .collect()
    }

    /// Queues the delete of `keys` on `layer`, which failed.
    pub(super) fn owe_delete(&self, layer: Layer, keys: &[&str]) {
        let Some(l) = self.layer(layer) else {
            return;
        };
        {
            let mut owed = l.owed();
            if owed.keys.len() + keys.len() > MAX_BLOCKED {
                tracing::warn!(layer = %layer, "too many invalidations owed to this layer; it will be cleared when it is back");
                owed.keys.clear();
                owed.everything = true;
            } else if !owed.everything {
                for key in keys {
                    owed.next += 1;
                    let n = owed.next;
                    owed.keys.insert((*key).to_owned(), n);
                }
            }
            l.publish(&owed);
        }
        self.start();
    }

    /// Queues the clear of `layer`, which failed.
    pub(super) fn owe_clear(&self, layer: Layer) {
        let Some(l) = self.layer(layer) else {
            return;
        };
        {
            let mut owed = l.owed();
            owed.keys.clear();
            owed.everything = true;
            l.publish(&owed);
        }
        self.start();
    }

    /// A tag's new version could not be written (the tag index keeps it, see [`OwedTags`]).
    pub(super) fn owe_tag(&self) {
        self.start();
    }

    /// `key` reached `layer` anew (a set, or a delete that succeeded): nothing is owed for it.
    pub(super) fn settled(&self, layer: Layer, key: &str) {
        let Some(l) = self.layer(layer) else {
            return;
        };
        if l.blocked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut owed = l.owed();
        if !owed.everything && owed.keys.remove(key).is_some() {
            l.publish(&owed);
        }
    }

    /// `key` was set or deleted on `layer`, which now holds `bytes` for it (`takeover.rs`).
    pub(super) fn key_written(&self, layer: Layer, key: &str, bytes: &[u8]) {
        self.wrote(layer, Written::Key(key.into()), bytes);
    }

    /// `tag` moved to `version` on `layer`, the layer of tag records (`takeover.rs`).
    pub(super) fn tag_moved(&self, layer: Layer, tag: &str, version: u64) {
        self.wrote(layer, Written::Tag(tag.into()), &version.to_be_bytes());
    }

    /// Keeps a write a takeover may lose; the retrying task watches for takeovers from then on.
    fn wrote(&self, layer: Layer, written: Written, bytes: &[u8]) {
        if let Some(recent) = self.layer(layer).and_then(|l| l.recent.as_ref()) {
            recent.record(written, bytes);
            if !self.shared.started.load(Ordering::Acquire) {
                self.start();
            }
        }
    }

    /// A set or delete of `key` begins: what a takeover lost of it is about to be replaced, so a
    /// check must not call the layer's value lost (the write may land between the check's read
    /// and its verdict, and the check would delete it).
    pub(super) fn superseded(&self, key: &str) {
        for recent in self.shared.layers.iter().filter_map(|l| l.recent.as_ref()) {
            // Checked first: the common case, no takeover pending, allocates nothing.
            if recent.has_suspects() {
                recent.supersede(&Written::Key(key.into()));
            }
        }
    }

    /// Turns the writes of the window into suspects if a server of `l`'s layer took over since
    /// the last call (`takeover.rs`). Cheap when nothing happened: one load of a counter.
    fn catch_up_with_takeover(&self, l: &Layered) {
        let layer = l.layer;
        let (Some(recent), Some(now)) = (&l.recent, l.store.takeovers()) else {
            return;
        };
        if l.takeovers_seen.swap(now, Ordering::AcqRel) == now {
            return;
        }
        let suspects = recent.suspect_all(Instant::now());
        tracing::warn!(
            layer = %layer,
            suspects,
            "a server of this layer took over from another, which may have acknowledged writes it \
             had not replicated: this process's writes of the last {:?} are checked",
            takeover::WINDOW
        );
        if suspects > 0 {
            self.start();
        }
    }

    /// Whether a read of `key` on `layer` that found `held` may be used: a suspect found
    /// changed was lost in a takeover, and is owed again (`takeover.rs`). A takeover since the
    /// last check turns the writes of the window into suspects first.
    #[inline]
    pub(super) fn read_is_intact(&self, layer: Layer, key: &str, held: &[u8]) -> bool {
        let Some(l) = self.layer(layer) else {
            return true;
        };
        let Some(recent) = &l.recent else {
            return true;
        };
        self.catch_up_with_takeover(l);
        if !recent.has_suspects() {
            return true;
        }
        match recent.check(&Written::Key(key.into()), Some(held)) {
            Verdict::Trusted | Verdict::Intact => true,
            Verdict::Lost => {
                self.lost(layer, vec![Written::Key(key.into())]);
                false
            }
        }
    }

    /// Owes again what a takeover lost on `layer`, and tells the other processes.
    fn lost(&self, layer: Layer, lost: Vec<Written>) {
        tracing::warn!(layer = %layer, writes = lost.len(), "writes lost in a takeover are made again");
        let keys: Vec<&str> = lost
            .iter()
            .filter_map(|w| match w {
                Written::Key(k) => Some(&**k),
                Written::Tag(_) => None,
            })
            .collect();
        if !keys.is_empty() {
            self.owe_delete(layer, &keys);
        }
        let mut notices: Vec<Notice> = keys
            .chunks(RETRY_CHUNK)
            .map(|chunk| Notice::Keys {
                keys: chunk.iter().map(|k| (*k).to_owned()).collect(),
                owed: vec![layer],
            })
            .collect();
        if let Some(owed) = self.shared.tags.as_ref().filter(|t| t.authority == layer) {
            let before = notices.len();
            for w in &lost {
                if let Written::Tag(tag) = w {
                    let version = owed.tags.owe(tag);
                    notices.push(Notice::Tag {
                        tag: tag.to_string(),
                        version,
                        owed: true,
                    });
                }
            }
            if notices.len() > before {
                self.owe_tag();
            }
        }
        if let (Some(publisher), Ok(runtime)) = (
            self.shared.publisher.clone(),
            tokio::runtime::Handle::try_current(),
        ) && !notices.is_empty()
        {
            runtime.spawn(async move {
                for notice in notices {
                    if let Err(e) = publisher.publish(notice, Duration::ZERO).await {
                        tracing::warn!(error = %e, "invalidation made again after a takeover not published");
                    }
                }
            });
        }
    }

    /// Checks the suspects no read has checked yet; `true` when none is left.
    async fn check_suspects(&self, l: &Layered) -> bool {
        let Some(recent) = &l.recent else {
            return true;
        };
        let mut lost = Vec::new();
        for written in recent.suspect_list() {
            let slot = match &written {
                Written::Key(k) => Slot::Entry(k),
                Written::Tag(t) => Slot::Tag(t),
            };
            // A layer that does not answer: checked again next round.
            if let Ok(held) = l.store.get(slot).await
                && recent.check(&written, held.as_deref()) == Verdict::Lost
            {
                lost.push(written);
            }
        }
        if !lost.is_empty() {
            self.lost(l.layer, lost);
        }
        !recent.has_suspects()
    }

    /// Starts the retrying task once, in the runtime of the call that needed it.
    fn start(&self) {
        if self.shared.started.swap(true, Ordering::AcqRel) {
            self.shared.wake.notify_one();
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.shared.started.store(false, Ordering::Release);
            return;
        };
        let shared = Arc::downgrade(&self.shared);
        runtime.spawn(retry_until_settled(shared, self.shared.wake.clone()));
    }
}

/// The retrying task: each round retries what every layer owes; it backs off while something
/// stays owed, sleeps until woken when nothing is, and ends when the cache is gone.
async fn retry_until_settled(shared: Weak<Shared>, wake: Arc<tokio::sync::Notify>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        // A quiet process learns of a takeover here, not only when it reads the layer.
        let recovery = Recovery {
            shared: strong.clone(),
        };
        let mut still_owed = false;
        for l in &strong.layers {
            recovery.catch_up_with_takeover(l);
            still_owed |= !recovery.check_suspects(l).await;
        }
        drop(recovery);
        for l in &strong.layers {
            still_owed |= !retry(l).await;
        }
        if let Some(tags) = &strong.tags {
            still_owed |= !retry_tags(tags, &strong.layers).await;
        }
        if still_owed {
            drop(strong);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = FIRST_BACKOFF;
        // Wakes for new debts; checks now and then that the cache still exists, and more often
        // for a takeover when a layer can have one.
        let idle = if strong.layers.iter().any(|l| l.recent.is_some()) {
            TAKEOVER_CHECK
        } else {
            IDLE_CHECK
        };
        drop(strong);
        let _ = tokio::time::timeout(idle, wake.notified()).await;
    }
}

/// Writes the records of the tags owed, and tells the other processes each new version; `true`
/// when nothing is owed any more.
async fn retry_tags(owed: &OwedTags, layers: &[Layered]) -> bool {
    let mut settled = true;
    for (tag, local) in owed.tags.owed() {
        match owed.tags.deliver(&tag, local).await {
            Ok(version) => {
                if let Some(l) = layers.iter().find(|l| l.layer == owed.authority) {
                    l.counters.recovered.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(tag = %tag, "owed tag invalidation delivered");
                if let Some(publisher) = &owed.publisher {
                    let notice = Notice::Tag {
                        tag: tag.to_string(),
                        version,
                        owed: false,
                    };
                    if let Err(e) = publisher.publish(notice, Duration::MAX).await {
                        tracing::warn!(error = %e, "owed tag invalidation not published; other processes keep their tag versions until their memo expires");
                    }
                }
            }
            Err(e) => {
                tracing::debug!(tag = %tag, error = %e, "owed tag invalidation not delivered yet");
                settled = false;
            }
        }
    }
    settled && owed.tags.owed().is_empty()
}

/// Retries what `l` owes; `true` when it owes nothing any more.
async fn retry(l: &Layered) -> bool {
    let (everything, batch): (bool, Vec<(String, u64)>) = {
        let owed = l.owed();
        (
            owed.everything,
            owed.keys
                .iter()
                .take(RETRY_CHUNK)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        )
    };
    if everything {
        return match l.store.clear().await {
            Ok(_) => {
                let mut owed = l.owed();
                owed.everything = false;
                l.publish(&owed);
                l.counters.recovered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(layer = %l.layer, "owed flush delivered");
                owed.keys.is_empty()
            }
            Err(e) => {
                tracing::debug!(layer = %l.layer, error = %e, "owed flush not delivered yet");
                false
            }
        };
    }
    if batch.is_empty() {
        return true;
    }
    let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
    match l
        .store
        .delete_many(&keys, new_tombstone(), TOMBSTONE_TTL)
        .await
    {
        Ok(_) => {
            let mut owed = l.owed();
            let mut delivered = 0u64;
            for (key, n) in &batch {
                if owed.keys.get(key) == Some(n) {
                    owed.keys.remove(key);
                    delivered += 1;
                }
            }
            l.publish(&owed);
            l.counters.recovered.fetch_add(delivered, Ordering::Relaxed);
            owed.keys.is_empty() && !owed.everything
        }
        Err(e) => {
            tracing::debug!(layer = %l.layer, error = %e, keys = keys.len(), "owed deletes not delivered yet");
            false
        }
    }
}
