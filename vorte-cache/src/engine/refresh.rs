//! Early refresh: a hit on an entry near the end of its freshness starts one background load,
//! so that a hot key never expires in front of its callers (`docs/resilience.md#early-refresh`).
//!
//! When is decided per hit by [`L1Entry::refresh_due`](crate::l1::L1Entry::refresh_due): past a
//! fraction of the TTL (eager refresh), or by XFetch from the entry's measured load time. One
//! refresh per key at a time per process; the caller that triggered it gets the fresh value it
//! hit, at once. The refreshed value is a fill under a ticket taken before the load, expecting
//! exactly the bytes each layer held when it began: a delete, a set or a refresh by another
//! process meanwhile wins, as for any load.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::fallback::Policy;
use super::load::{LoadResult, Loader};
use super::{Engine, Fill, Seen, SeenSlots};
use crate::layer::LayerSet;
use crate::stats::Counters;
use crate::store::Slot;

/// The keys this process is refreshing now.
#[derive(Debug, Default)]
pub(crate) struct Refreshing(Mutex<HashSet<String>>);

impl Refreshing {
    /// Claims `key`; false when a refresh of it is running already.
    fn claim(&self, key: &str) -> bool {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if keys.contains(key) {
            return false;
        }
        keys.insert(key.to_owned())
    }

    fn release(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Releases a claim when the refresh task ends, however it ends.
struct Claim {
    engine: Arc<Engine>,
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.engine.refreshing.release(&self.key);
    }
}

impl Engine {
    /// Starts a background refresh of `key` with `loader`, unless one runs already, a load of the
    /// key is in flight, or the loader cannot outlive its caller (then the entry simply expires).
    /// `given` (the entry it replaces, a copy of its value) is made only for a refresh that starts:
    /// every hit while one runs asks again.
    pub(super) fn refresh_early<L: Loader>(
        self: &Arc<Self>,
        key: &str,
        tags: &[String],
        layers: LayerSet,
        policy: &Policy,
        loader: L,
        given: impl FnOnce() -> crate::load::Given,
    ) {
        if self.flights.in_flight(key)
            || tokio::runtime::Handle::try_current().is_err()
            || !self.refreshing.claim(key)
        {
            return;
        }
        // Released when dropped: by the task once it ends, or here if it does not start.
        let claim = Claim {
            engine: Arc::clone(self),
            key: key.to_owned(),
        };
        let Ok(load) = loader.detach(given()) else {
            tracing::debug!(
                key,
                "early refresh needs a loader that can outlive its caller"
            );
            return;
        };
        Counters::bump(&self.counters.loads.early_refreshes);
        let tags = tags.to_vec();
        let policy = *policy;
        tokio::spawn(async move {
            let engine = &claim.engine;
            let key = claim.key.as_str();
            // Before the load: an invalidation after this drops its value.
            let ticket = engine.fence.ticket();
            let seen = engine.seen_now(key).await;
            let stamps = match engine.stamps_for(&tags).await {
                Ok(stamps) => stamps,
                Err(e) => {
                    tracing::debug!(key, error = %e, "tag versions unavailable; no early refresh");
                    return;
                }
            };
            Counters::bump(&engine.counters.loads.runs);
            let tag_epoch = engine.tags.epoch();
            let started = Instant::now();
            let result = load.await;
            let load_ms = engine.load_ended(started, !L::failed(&result));
            if L::failed(&result) {
                // The entry stays until it expires; the next hit past its due time tries again.
                Counters::bump(&engine.counters.loads.failures);
                return;
            }
            // The refresh's loader decides about its entry as a load's does.
            if let Ok(LoadResult {
                keep: Some((value, ttl)),
                adapted,
                ..
            }) = result
                && let Some(to) = engine
                    .adapt(key, &adapted, ttl, layers, stamps, tag_epoch)
                    .await
            {
                let job = to.into_job(Fill { ticket, seen }, policy.aging(load_ms));
                if let Err(e) = engine.store_loaded(key, &value, job).await {
                    tracing::debug!(key, error = %e, "early refresh not stored");
                }
            }
        });
    }

    /// What each layer below L1 holds for `key` now, for a fill that replaces it.
    async fn seen_now(&self, key: &str) -> SeenSlots {
        let mut seen = SeenSlots::default();
        for tier in &self.tiers {
            let what = if self.recovery.blocks(tier.layer, key)
                || tier
                    .behind
                    .as_ref()
                    .is_some_and(|b| b.waiting(key).is_some())
            {
                Seen::Unknown
            } else {
                match tier.store.get(Slot::Entry(key)).await {
                    Ok(Some(bytes)) => Seen::Bytes(bytes),
                    Ok(None) => Seen::Nothing,
                    Err(_) => Seen::Unknown,
                }
            };
            seen.push(what);
        }
        seen
    }
}
