//! Loads: the one single-flight cache-aside loop behind `get_or_set` and every `#[cached]` call.
//!
//! A caller checks only L1 before joining the key's flight: the leader then reads L2–L4 once for
//! all the waiters (so 10,000 concurrent misses do not become 10,000 reads of every layer), runs
//! the load, stores its value as a [fill](super::WriteKind::Fill) under the fence ticket it took
//! before the load began, and hands the value to the waiters. A waiter whose leader failed or was
//! cancelled goes round again, and may lead.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Engine, Expiry, Fill, SeenSlots, Write};
use crate::cached::{Callsite, Output};
use crate::codec::{self, TagStamp};
use crate::error::{Error, ErrorKind, Result};
use crate::flight::Role;
use crate::key;
use crate::layer::LayerSet;

/// What a load ran: the caller's answer, and what the cache keeps of it (with its TTL), if
/// anything.
pub(crate) struct LoadResult<O, S> {
    pub(crate) output: O,
    pub(crate) keep: Option<(S, Option<Duration>)>,
}

/// A load in the cache-aside loop: what runs on a miss, and how cache failures are treated.
pub(crate) trait Loader: Send {
    /// What the cache stores and the waiters receive.
    type Stored: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What the caller receives.
    type Output;
    /// The caller's error type: [`Error`] for `get_or_set`, [`Infallible`] for `#[cached]`, which
    /// never fails because of the cache.
    type Error;

    /// A cache failure (a type mismatch, a layer error, unavailable tag versions, a failed
    /// write) as the caller's error, or `None` to go on without the cache.
    fn cache_failure(e: Error) -> Option<Self::Error>;

    /// Runs the load.
    fn run(
        self,
    ) -> impl Future<
        Output = std::result::Result<LoadResult<Self::Output, Self::Stored>, Self::Error>,
    > + Send;

    /// The caller's answer from a cached value.
    fn from_stored(stored: Self::Stored) -> Self::Output;
}

impl Engine {
    /// The cache-aside loop: see the module docs. The caller has validated `key`.
    pub(crate) async fn load<L: Loader>(
        &self,
        key: &str,
        tags: &[String],
        layers: LayerSet,
        loader: L,
    ) -> std::result::Result<L::Output, L::Error> {
        loop {
            match self.try_l1_hit::<L::Stored>(key) {
                Some(Ok(v)) => return Ok(L::from_stored(v)),
                Some(Err(e)) => Self::fail::<L>(key, e)?,
                None => {}
            }
            match self.flights.join(key, tags) {
                Role::Leader(leader) => {
                    // Every layer now, once for all the waiters: the value may be below L1, or
                    // a previous leader may have stored it between our miss and our joining.
                    // What the layers hold now is what the fill will expect to replace: a delete
                    // after this read leaves a new tombstone, in any process, and refuses it.
                    let seen = match self.read_through_seeing::<L::Stored>(key).await {
                        Ok((Some(v), _)) => {
                            leader.finish(Some(Arc::new(v.clone())));
                            return Ok(L::from_stored(v));
                        }
                        Ok((None, seen)) => seen,
                        Err(e) => {
                            Self::fail::<L>(key, e)?;
                            SeenSlots::default()
                        }
                    };
                    // Taken before the load begins: an invalidation after this drops its value.
                    let fill = Fill {
                        ticket: self.fence.ticket(),
                        seen,
                    };
                    let stamps = match self.stamps_for(tags).await {
                        Ok(stamps) => Some(stamps),
                        Err(e) => {
                            // The layer of the tag versions is down: skipped, like any failing
                            // layer. The load runs; its value, unstampable, is not cached.
                            tracing::warn!(key, error = %e, "tag versions unavailable; the value is not cached");
                            None
                        }
                    };
                    let LoadResult { output, keep } = loader.run().await?;
                    let shared = match (keep, stamps) {
                        (Some((stored, ttl)), Some(stamps)) => {
                            // Boxed: the write path's future is several kilobytes, and inline it
                            // would make every call's future that large.
                            let stored_ok = Box::pin(
                                self.store_loaded(key, &stored, ttl, layers, stamps, fill),
                            )
                            .await;
                            if let Err(e) = stored_ok {
                                Self::fail::<L>(key, e)?;
                            }
                            Some(Arc::new(stored) as Arc<dyn Any + Send + Sync>)
                        }
                        _ => None,
                    };
                    leader.finish(shared);
                    return Ok(output);
                }
                Role::Waiter(waiter) => {
                    use crate::flight::Waited;
                    match waiter.wait(key, self.config.load_wait_timeout).await {
                        Waited::Value(shared) => {
                            if let Some(v) = shared.downcast_ref::<L::Stored>().cloned() {
                                return Ok(L::from_stored(v));
                            }
                        }
                        Waited::Retry => {}
                        // The flight is detached: going round again leads a load (or joins the
                        // one that another caller who gave up leads).
                        Waited::GaveUp => {
                            crate::stats::Counters::bump(&self.counters.load_wait_timeouts);
                            tracing::warn!(
                                key,
                                load_wait_timeout = ?self.config.load_wait_timeout,
                                "a load of this key ran past load_wait_timeout; this caller stopped \
                                 waiting for it and loads the value itself"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A cache failure inside a load: the caller's error, or logged and passed over.
    fn fail<L: Loader>(key: &str, e: Error) -> std::result::Result<(), L::Error> {
        match L::cache_failure(e.clone()) {
            Some(failure) => Err(failure),
            None => {
                tracing::warn!(key, error = %e, "cache unavailable for this call; the function runs uncached");
                Ok(())
            }
        }
    }

    /// Writes a loaded value as a fill with `fill`'s credentials.
    async fn store_loaded<T>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        layers: LayerSet,
        stamps: Box<[TagStamp]>,
        fill: Fill,
    ) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let write = Write::fill(fill, Expiry::Ttl(ttl), layers, stamps);
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

    /// `cache.get_or_set(..)`: see [`Cache::get_or_set`](crate::Cache::get_or_set).
    pub(crate) async fn get_or_set<T, F, Fut, E>(
        &self,
        key: &str,
        loader: F,
        ttl: Option<Duration>,
        tags: &[String],
        layers: LayerSet,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<T, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        key::validate(key, "key")?;
        key::validate_tags(tags)?;
        let load = LoaderFn { key, loader, ttl };
        self.load(key, tags, layers, load).await
    }

    /// The body of every `#[cached]` function: never fails because of the cache. Without a valid
    /// key, or with a tag `get_or_set` would refuse (`key::validate_tags`), it runs uncached.
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
        let checked = key
            .and_then(|k| key::validate(&k, "key").map(|()| k))
            .and_then(|k| key::validate_tags(&tags).map(|()| k));
        let key = match checked {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(function = callsite.path, error = %e, "no valid cache key and tags; running uncached");
                return body.await;
            }
        };
        let layers = callsite.layers.map_or(LayerSet::ALL, LayerSet::of);
        let load = CachedBody { callsite, body };
        match self.load(&key, &tags, layers, load).await {
            Ok(out) => out,
            Err(never) => match never {},
        }
    }
}

/// `get_or_set`'s loader: a loader error is the caller's error, and so is a cache failure.
struct LoaderFn<'k, F> {
    key: &'k str,
    loader: F,
    ttl: Option<Duration>,
}

impl<T, F, Fut, E> Loader for LoaderFn<'_, F>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = std::result::Result<T, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    type Stored = T;
    type Output = T;
    type Error = Error;

    fn cache_failure(e: Error) -> Option<Error> {
        Some(e)
    }

    async fn run(self) -> Result<LoadResult<T, T>> {
        let key = self.key;
        let value = (self.loader)().await.map_err(|e| {
            let source = e.into();
            Error::new(ErrorKind::Loader, format!("key `{key}`: {source}")).with_source(source)
        })?;
        Ok(LoadResult {
            output: value.clone(),
            keep: Some((value, self.ttl)),
        })
    }

    fn from_stored(stored: T) -> T {
        stored
    }
}

/// A `#[cached]` body: its output is always the caller's; what is kept depends on its shape.
struct CachedBody<F> {
    callsite: &'static Callsite,
    body: F,
}

impl<O, F> Loader for CachedBody<F>
where
    O: Output,
    F: Future<Output = O> + Send,
{
    type Stored = O::Stored;
    type Output = O;
    type Error = Infallible;

    fn cache_failure(_: Error) -> Option<Infallible> {
        None
    }

    async fn run(self) -> std::result::Result<LoadResult<O, O::Stored>, Infallible> {
        let output = self.body.await;
        let keep = output
            .to_stored(self.callsite.negative_ttl.is_some())
            .map(|stored| {
                let ttl = if O::is_negative(&stored) {
                    self.callsite.negative_ttl
                } else {
                    self.callsite.ttl
                };
                (stored, ttl)
            });
        Ok(LoadResult { output, keep })
    }

    fn from_stored(stored: O::Stored) -> O {
        O::from_stored(stored)
    }
}
