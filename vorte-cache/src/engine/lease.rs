//! Distributed single-flight: with a shared layer that keeps leases and a bus between the
//! processes, at most one process at a time loads a key (`docs/leases.md`).
//!
//! The local single-flight (`flight.rs`) already makes one caller per process the leader of a
//! key's load; that leader asks [`Leases::acquire`]. It either takes the key's lease in the
//! lease layer ([`LeaseOutcome::Held`]: it loads, the lease is renewed meanwhile, and
//! [`LeaseGuard::release`] ends it and announces [`Notice::Landed`](crate::bus::Notice) on the
//! bus), or finds it held by another process and waits for that process's `Landed`
//! ([`LeaseOutcome::Landed`]: read the layers again), at most `wait_bound`
//! ([`LeaseOutcome::Proceed`]: load without the lease). Waiting never polls: the waiter is
//! registered before it tries the lease, so a `Landed` that arrives between the failed try and
//! the wait wakes it all the same. A holder that dies stops renewing; its lease lapses after the
//! lease TTL, and its waiters load at their bound.
//!
//! Without a bus, a waiter could only learn that a load landed by polling, so no [`Leases`] is
//! built (`docs/leases.md#without-a-bus`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::{Notice, Publisher};
use crate::error::Result;
use crate::layer::Layer;
use crate::stats::{Counters, LeaseCounters};
use crate::store::{BoxFuture, Store};

/// How long a lease lives unless renewed: what a holder that died costs its waiters at most,
/// when their bound is longer. Renewed every third of it while the load runs.
pub(crate) const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// Where a finished load is announced to the other processes: the bus, or a test's stand-in.
pub(crate) trait Announce: Send + Sync + Debug {
    /// Tells the other processes that the load of `key` landed or gave up. Best effort: a
    /// notice that is lost only makes their waiters load at their bound.
    fn landed(&self, key: &str) -> BoxFuture<'_, Result<()>>;
}

impl Announce for Publisher {
    fn landed(&self, key: &str) -> BoxFuture<'_, Result<()>> {
        let notice = Notice::Landed {
            key: key.to_owned(),
        };
        Box::pin(self.publish_hint(notice))
    }
}

/// What [`Leases::acquire`] decided for the caller's load.
#[derive(Debug)]
pub(crate) enum LeaseOutcome {
    /// This process loads; the lease is renewed in the background until the guard is released
    /// or dropped.
    Held(LeaseGuard),
    /// Another process's load of the key finished (or gave up) while we waited: read the layers
    /// again.
    Landed,
    /// Load without a lease: the lease layer failed, or the wait reached its bound.
    Proceed,
}

/// The distributed single-flight of one cache. See the module docs.
#[derive(Debug)]
pub(crate) struct Leases {
    store: Arc<dyn Store>,
    layer: Layer,
    bus: Arc<dyn Announce>,
    ttl: Duration,
    /// Per key being waited for: bumped by each `Landed` notice of the key.
    waiting: Mutex<HashMap<String, watch::Sender<u64>>>,
    counters: Arc<LeaseCounters>,
}

impl Leases {
    /// The leases of a cache whose layers below L1 are `tiers`: kept in the most shared layer
    /// that keeps leases (L3, else L2, else L4, as tag records are), so that every process that
    /// shares it meets the same lease. `None` without such a layer, or without a bus to carry
    /// `Landed` (`docs/leases.md#without-a-bus`).
    pub(crate) fn build(
        tiers: &[(Layer, Arc<dyn Store>)],
        bus: Option<Arc<dyn Announce>>,
        ttl: Duration,
        counters: Arc<LeaseCounters>,
    ) -> Option<Leases> {
        let bus = bus?;
        let (layer, store) = [Layer::L3, Layer::L2, Layer::L4].iter().find_map(|layer| {
            tiers
                .iter()
                .find(|(l, store)| l == layer && store.has_leases())
        })?;
        Some(Leases {
            store: store.clone(),
            layer: *layer,
            bus,
            ttl,
            waiting: Mutex::default(),
            counters,
        })
    }

    /// Takes the lease of `key`, or waits up to `wait_bound` for the process that holds it to
    /// finish (see [`LeaseOutcome`]). Meant for the local leader of a key's load only: one
    /// caller per key per process.
    pub(crate) async fn acquire(&self, key: &str, wait_bound: Duration) -> LeaseOutcome {
        // Registered before the try: a `Landed` between the failed try and the wait is kept.
        let mut waiting = self.register(key);
        let token = rand::random::<u64>();
        match self.store.lease_acquire(key, token, self.ttl).await {
            Ok(Some(true)) => {
                Counters::bump(&self.counters.acquired);
                LeaseOutcome::Held(LeaseGuard::start(self, key, token))
            }
            Ok(Some(false)) => match tokio::time::timeout(wait_bound, waiting.landed()).await {
                Ok(true) => {
                    Counters::bump(&self.counters.waits_landed);
                    LeaseOutcome::Landed
                }
                Ok(false) => LeaseOutcome::Proceed,
                Err(_) => {
                    Counters::bump(&self.counters.waits_bounded);
                    tracing::debug!(key, bound = ?wait_bound, "lease wait reached its bound; loading");
                    LeaseOutcome::Proceed
                }
            },
            Ok(None) => LeaseOutcome::Proceed,
            Err(e) => {
                Counters::bump(&self.counters.errors);
                tracing::warn!(layer = %self.layer, key, error = %e, "lease not taken; loading without it");
                // A timed-out `SET NX` may have taken it all the same: give it back, so that
                // other processes do not wait on a lease nobody will announce.
                let (store, key) = (self.store.clone(), key.to_owned());
                drop(tokio::spawn(async move {
                    let _ = store.lease_release(&key, token).await;
                }));
                LeaseOutcome::Proceed
            }
        }
    }

    /// Wakes this process's waiter for `key`, if any: another process's load of it finished.
    /// Called by the bus's `Landed` notice; drops nothing.
    pub(crate) fn notify_landed(&self, key: &str) {
        if let Some(landed) = self.lock().get(key) {
            landed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register<'a>(&'a self, key: &'a str) -> Registration<'a> {
        let landed = self
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        Registration {
            leases: self,
            key,
            landed: Some(landed),
        }
    }
}

/// A waiter's place in [`Leases::waiting`], removed with the last waiter of its key (also when
/// the waiting future is dropped).
struct Registration<'a> {
    leases: &'a Leases,
    key: &'a str,
    landed: Option<watch::Receiver<u64>>,
}

impl Registration<'_> {
    /// Waits for the next `Landed` of the key since registering; `false` if none can come.
    async fn landed(&mut self) -> bool {
        match &mut self.landed {
            Some(landed) => landed.changed().await.is_ok(),
            None => false,
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        drop(self.landed.take());
        let mut waiting = self.leases.lock();
        if waiting
            .get(self.key)
            .is_some_and(|landed| landed.receiver_count() == 0)
        {
            waiting.remove(self.key);
        }
    }
}

/// A lease this process holds. [`LeaseGuard::release`] ends it once the value is in the shared
/// layers (or the load gave up); dropping it unreleased ends it too, in a spawned task when a
/// runtime is there (otherwise it lapses at its TTL).
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    held: Option<Held>,
}

/// What a held lease needs to be renewed and ended.
#[derive(Debug)]
struct Held {
    key: String,
    token: u64,
    store: Arc<dyn Store>,
    bus: Arc<dyn Announce>,
    counters: Arc<LeaseCounters>,
    renewer: Renewer,
}

/// The renewal task of a held lease, stopped when this is dropped.
#[derive(Debug)]
struct Renewer(JoinHandle<()>);

impl Drop for Renewer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LeaseGuard {
    fn start(leases: &Leases, key: &str, token: u64) -> LeaseGuard {
        let renewer = tokio::spawn(renew(
            leases.store.clone(),
            key.to_owned(),
            token,
            leases.ttl,
            leases.counters.clone(),
        ));
        LeaseGuard {
            held: Some(Held {
                key: key.to_owned(),
                token,
                store: leases.store.clone(),
                bus: leases.bus.clone(),
                counters: leases.counters.clone(),
                renewer: Renewer(renewer),
            }),
        }
    }

    /// Releases the lease (if the token still holds it) and publishes `Notice::Landed { key }`
    /// on the bus. Call it once the loaded value is in the shared layers, or the load gave up.
    pub(crate) async fn release(mut self) {
        if let Some(held) = self.held.take() {
            held.finish().await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(held) = self.held.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(runtime.spawn(held.finish()));
        }
    }
}

impl Held {
    async fn finish(self) {
        let Held {
            key,
            token,
            store,
            bus,
            counters,
            renewer,
        } = self;
        // Renewal stops first. One already sent compares the token too, so it cannot bring the
        // lease back after the release.
        drop(renewer);
        match store.lease_release(&key, token).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(key, "the lease had lapsed before its release"),
            Err(e) => {
                Counters::bump(&counters.errors);
                tracing::warn!(key, error = %e, "lease not released; it ends at its TTL");
            }
        }
        // After the release, so that a waiter woken by it may take the lease at once.
        if let Err(e) = bus.landed(&key).await {
            tracing::debug!(key, error = %e, "landed notice not published; waiters load at their bound");
        }
    }
}

/// Renews the lease every third of its TTL until stopped, or until it is found lost.
async fn renew(
    store: Arc<dyn Store>,
    key: String,
    token: u64,
    ttl: Duration,
    counters: Arc<LeaseCounters>,
) {
    let every = (ttl / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        match store.lease_renew(&key, token, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                Counters::bump(&counters.errors);
                tracing::warn!(
                    key,
                    "lease lost before the load ended (it lapsed): another process may load this key too"
                );
                return;
            }
            Err(e) => {
                Counters::bump(&counters.errors);
                tracing::warn!(key, error = %e, "lease not renewed; trying again at the next period");
            }
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
