//! Storing a loaded value: the fill a load (in the foreground, in the background after a soft
//! timeout, or an early refresh) writes under the fence ticket it took before it began, within
//! what is left of the call's budget (`docs/resilience.md#one-timeout-per-call`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::lease::LeaseGuard;
use super::{Engine, Expiry, Fill, Write};
use crate::codec::{self, TagStamp};
use crate::error::Result;
use crate::layer::LayerSet;
use crate::stats::Counters;
use crate::store::BoxFuture;

/// How a loaded value is stored: everything of its fill but the key and the value.
pub(super) struct FillJob {
    pub(super) ttl: Option<Duration>,
    pub(super) layers: LayerSet,
    pub(super) stamps: Box<[TagStamp]>,
    pub(super) fill: Fill,
    pub(super) aging: super::Aging,
    pub(super) validator: Option<crate::codec::Validator>,
}

impl Engine {
    /// Stores a loaded value, waiting at most what the call's reads (`spent`) left of its budget
    /// (the longest layer timeout): past that the caller has its answer and the fill goes on in
    /// the background, with the lease, which it releases once the value is stored
    /// (`docs/resilience.md#one-timeout-per-call`). Safe whenever it lands: its compare-and-set
    /// expects what the read saw and its L1 copy is fenced by its ticket, so an invalidation
    /// after the caller returned still refuses it.
    pub(super) async fn fill_within<T>(
        self: &Arc<Self>,
        key: &str,
        value: &T,
        job: FillJob,
        spent: Duration,
        lease: &mut Option<LeaseGuard>,
    ) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        // Boxed either way: the write path's future is several kilobytes, and inline it would
        // make every call's future that large.
        let Some(budget) = self
            .call_budget
            .filter(|_| !self.writes_decoded(job.layers))
        else {
            return Box::pin(self.store_loaded(key, value, job)).await;
        };
        let engine = Arc::clone(self);
        let (owned_key, value) = (key.to_owned(), value.clone());
        let mut storing: BoxFuture<'static, Result<()>> =
            Box::pin(async move { engine.store_loaded(&owned_key, &value, job).await });
        if let Ok(stored) = tokio::time::timeout(budget.saturating_sub(spent), &mut storing).await {
            return stored;
        }
        Counters::bump(&self.counters.loads.late_fills);
        let lease = lease.take();
        let key = key.to_owned();
        tokio::spawn(async move {
            if let Err(e) = storing.await {
                tracing::debug!(key, error = %e, "a late fill was not stored");
            }
            if let Some(guard) = lease {
                guard.release().await;
            }
        });
        Ok(())
    }

    /// Writes a loaded value as a fill with its job's credentials; a value with a validator is
    /// kept stale past its TTL, for its next load to revalidate ([`Write::validated`]).
    pub(super) async fn store_loaded<T>(&self, key: &str, value: &T, job: FillJob) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let FillJob {
            ttl,
            layers,
            stamps,
            fill,
            aging,
            validator,
        } = job;
        let write = Write::fill(fill, Expiry::Ttl(ttl), layers, stamps)
            .aged(aging)
            .validated(validator);
        if self.writes_decoded(layers) {
            // L1 alone: kept decoded, encoded only if its bytes are asked for.
            let value = Box::new(value.clone());
            return self
                .write_l1_decoded(key, write, value, crate::l1::encoder::<T>())
                .await;
        }
        let serialization = self.config.serialization;
        let payload = Bytes::from(codec::serialize(serialization, value)?);
        self.write(
            key,
            payload,
            serialization,
            write,
            Some(Box::new(value.clone())),
        )
        .await
    }
}
