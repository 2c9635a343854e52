//! [`ObservedStore`]: times each call to a layer's store, and with the `tracing` feature opens a
//! child span for it, then hands the measurement to [`Instruments`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Instruments, StoreCall};
use crate::error::Result;
use crate::layer::Layer;
use crate::stats::CircuitStats;
use crate::store::{BoxFuture, Slot, Store, Usage};

/// What a store was asked, in a [`StoreCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOp {
    /// Read an entry or a tag record.
    Get,
    /// Write one.
    Put,
    /// Delete one.
    Delete,
    /// Write a tombstone over an entry.
    Tombstone,
    /// Delete several entries.
    DeleteMany,
    /// List the keys under a prefix.
    List,
    /// Remove everything under the cache's prefix.
    Clear,
    /// Count keys and bytes.
    Usage,
    /// Delete expired objects (a sweeper's pass).
    Sweep,
    /// An atomic compare-and-set (counters, fills).
    CompareAndSet,
    /// Take, renew or release a lease of the distributed single flight.
    Lease,
}

impl StoreOp {
    /// A short lower-case name, the label metrics carry: `get`, `put`, `compare_and_set`, …
    pub fn name(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Put => "put",
            StoreOp::Delete => "delete",
            StoreOp::Tombstone => "tombstone",
            StoreOp::DeleteMany => "delete_many",
            StoreOp::List => "list",
            StoreOp::Clear => "clear",
            StoreOp::Usage => "usage",
            StoreOp::Sweep => "sweep",
            StoreOp::CompareAndSet => "compare_and_set",
            StoreOp::Lease => "lease",
        }
    }
}

/// A layer's store, measured. The outermost wrapper (around the circuit breaker), so that a
/// call refused by an open breaker is measured too: it is what the caller waited.
#[derive(Debug)]
pub(crate) struct ObservedStore {
    inner: Arc<dyn Store>,
    layer: Layer,
    instruments: Arc<Instruments>,
}

impl ObservedStore {
    pub(crate) fn wrap(
        inner: Arc<dyn Store>,
        layer: Layer,
        instruments: Arc<Instruments>,
    ) -> Arc<dyn Store> {
        Arc::new(ObservedStore {
            inner,
            layer,
            instruments,
        })
    }

    async fn time<'a, T>(&'a self, op: StoreOp, call: BoxFuture<'a, Result<T>>) -> Result<T> {
        let started = Instant::now();
        #[cfg(feature = "tracing")]
        let result = {
            use tracing::Instrument;
            let span = super::spans::store_call(self.layer, self.inner.backend(), op);
            let result = call.instrument(span.clone()).await;
            super::spans::store_outcome(&span, result.as_ref().err());
            result
        };
        #[cfg(not(feature = "tracing"))]
        let result = call.await;
        self.instruments.store_call(StoreCall {
            layer: self.layer,
            backend: self.inner.backend(),
            operation: op,
            elapsed: started.elapsed(),
            ok: result.is_ok(),
        });
        result
    }
}

impl Store for ObservedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(self.time(StoreOp::Get, self.inner.get(slot)))
    }
    fn put<'a>(&'a self, slot: Slot<'a>, value: Bytes, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.time(StoreOp::Put, self.inner.put(slot, value, ttl)))
    }
    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.time(StoreOp::Delete, self.inner.delete(slot)))
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.time(StoreOp::List, self.inner.list(prefix)))
    }
    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.time(StoreOp::Clear, self.inner.clear()))
    }
    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        Box::pin(self.time(StoreOp::Usage, self.inner.usage()))
    }
    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(self.time(StoreOp::Tombstone, self.inner.tombstone(key, marker, ttl)))
    }
    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(self.time(
            StoreOp::DeleteMany,
            self.inner.delete_many(keys, marker, ttl),
        ))
    }
    fn has_own_breakers(&self) -> bool {
        self.inner.has_own_breakers()
    }
    fn circuits(&self) -> Vec<CircuitStats> {
        self.inner.circuits()
    }
    fn forget_cached_state(&self) {
        self.inner.forget_cached_state();
    }
    fn takeovers(&self) -> Option<u64> {
        self.inner.takeovers()
    }
    fn sweep(&self, batch: usize) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.time(StoreOp::Sweep, self.inner.sweep(batch)))
    }
    fn has_compare_and_set(&self) -> bool {
        self.inner.has_compare_and_set()
    }
    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(self.time(
            StoreOp::CompareAndSet,
            self.inner.compare_and_set(key, expected, new, ttl),
        ))
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
        Box::pin(self.time(StoreOp::Lease, self.inner.lease_acquire(key, token, ttl)))
    }
    fn lease_renew<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.time(StoreOp::Lease, self.inner.lease_renew(key, token, ttl)))
    }
    fn lease_release<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.time(StoreOp::Lease, self.inner.lease_release(key, token)))
    }
}
