//! A per-layer circuit breaker around any [`Store`] (`docs/guarantees.md#f2-circuit-breaker`).
//!
//! After [`THRESHOLD`] consecutive failures the circuit *opens*: calls fail at once, without
//! touching the server, so a dead layer costs nothing but a skip. After [`COOLDOWN_MS`] one call
//! is let through as a probe; if it succeeds the circuit closes and the layer is back, with no
//! restart. A wrapper rather than code in each backend: every store gets the same behaviour,
//! except a store that reaches several servers and keeps one [`Breaker`] per server (memcached),
//! so that one dead server does not close the layer to the keys of the others.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{BoxFuture, Slot, Store, Usage};
use crate::clock;
use crate::error::{Error, ErrorKind, Result};

/// Consecutive failures that open the circuit.
pub(crate) const THRESHOLD: u32 = 5;
/// How long an open circuit refuses calls before it lets a probe through.
pub(crate) const COOLDOWN_MS: u64 = 500;

/// One circuit: counts consecutive failures, and refuses calls while open. [`CircuitStore`] keeps
/// one per layer; a store that reaches several servers may keep one per server instead
/// ([`Store::has_own_breakers`]).
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    failures: AtomicU32,
    /// 0 when closed; otherwise when the next probe may go (clock milliseconds).
    open_until: AtomicU64,
}

impl Breaker {
    /// Lets a call go when the circuit is closed, or as the probe of an open one; otherwise
    /// fails at once, naming `what` the circuit guards.
    pub(crate) fn admit(&self, what: &dyn Display) -> Result<()> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(());
        }
        let now = clock::precise_ms();
        // Half-open: the first caller past the cooldown moves it on and probes; others wait.
        if now >= until
            && self
                .open_until
                .compare_exchange(
                    until,
                    now + COOLDOWN_MS,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Backend,
            format!("{what}: circuit open after {THRESHOLD} consecutive failures"),
        ))
    }

    /// Counts the outcome of an admitted call, opening or closing the circuit of `what`.
    pub(crate) fn record<T>(&self, result: Result<T>, what: &dyn Display) -> Result<T> {
        match &result {
            Ok(_) => {
                self.failures.store(0, Ordering::Release);
                if self.open_until.load(Ordering::Acquire) != 0
                    && self.open_until.swap(0, Ordering::AcqRel) != 0
                {
                    tracing::info!(circuit = %what, "a call succeeded; circuit closed");
                }
            }
            Err(_) => {
                let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= THRESHOLD && self.open_until.load(Ordering::Acquire) == 0 {
                    tracing::warn!(circuit = %what, failures = n, "circuit opened");
                    self.open_until
                        .store(clock::precise_ms() + COOLDOWN_MS, Ordering::Release);
                }
            }
        }
        result
    }

    /// Whether calls are currently refused.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

/// A store behind one circuit for its whole layer. See the module docs.
#[derive(Debug)]
pub(crate) struct CircuitStore {
    inner: Arc<dyn Store>,
    /// What the circuit guards, for messages: `l2 redis`.
    name: String,
    breaker: Breaker,
}

impl CircuitStore {
    /// `store` behind a circuit of its own, unless it keeps its own circuits
    /// ([`Store::has_own_breakers`]).
    pub(crate) fn guard(store: Arc<dyn Store>, layer: &'static str) -> Arc<dyn Store> {
        if store.has_own_breakers() {
            return store;
        }
        Arc::new(CircuitStore {
            name: format!("{layer} {}", store.backend()),
            inner: store,
            breaker: Breaker::default(),
        })
    }

    fn admit(&self) -> Result<()> {
        self.breaker.admit(&self.name)
    }

    fn record<T>(&self, result: Result<T>) -> Result<T> {
        self.breaker.record(result, &self.name)
    }
}

macro_rules! guarded {
    ($self:ident, $call:expr) => {
        Box::pin(async move {
            $self.admit()?;
            $self.record($call.await)
        })
    };
}

impl Store for CircuitStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>> {
        guarded!(self, self.inner.get(slot))
    }
    fn put<'a>(&'a self, slot: Slot<'a>, value: Bytes, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        guarded!(self, self.inner.put(slot, value, ttl))
    }
    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        guarded!(self, self.inner.delete(slot))
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        guarded!(self, self.inner.list(prefix))
    }
    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        guarded!(self, self.inner.clear())
    }
    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        guarded!(self, self.inner.usage())
    }
    fn forget_cached_state(&self) {
        self.inner.forget_cached_state();
    }
    fn has_compare_and_set(&self) -> bool {
        self.inner.has_compare_and_set()
    }
    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        guarded!(self, self.inner.delete_many(keys, marker, ttl))
    }
    fn sweep(&self, batch: usize) -> BoxFuture<'_, Result<u64>> {
        guarded!(self, self.inner.sweep(batch))
    }
    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        guarded!(self, self.inner.tombstone(key, marker, ttl))
    }
    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        guarded!(self, self.inner.compare_and_set(key, expected, new, ttl))
    }
    fn has_leases(&self) -> bool {
        self.inner.has_leases()
    }
    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        guarded!(self, self.inner.lease_acquire(key, token, ttl))
    }
    fn lease_renew<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        guarded!(self, self.inner.lease_renew(key, token, ttl))
    }
    fn lease_release<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<bool>> {
        guarded!(self, self.inner.lease_release(key, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Op, TestStore};

    #[tokio::test]
    async fn opens_after_repeated_failures_and_closes_when_the_layer_is_back() {
        let server = TestStore::new();
        let store = CircuitStore {
            inner: Arc::new(server.clone()),
            name: "l2 test".to_owned(),
            breaker: Breaker::default(),
        };
        server.set_unavailable(true);
        for _ in 0..THRESHOLD {
            assert!(store.get(Slot::Entry("k")).await.is_err());
        }
        assert!(store.breaker.is_open());
        let reached = server.calls(Op::Get, "k");
        for _ in 0..100 {
            assert!(store.get(Slot::Entry("k")).await.is_err());
        }
        assert_eq!(
            server.calls(Op::Get, "k"),
            reached,
            "an open circuit spares the server"
        );

        server.set_unavailable(false);
        tokio::time::sleep(Duration::from_millis(COOLDOWN_MS + 50)).await;
        assert!(
            store.get(Slot::Entry("k")).await.is_ok(),
            "the probe goes through"
        );
        assert!(!store.breaker.is_open());
        assert!(store.get(Slot::Entry("k")).await.is_ok());
    }
}
