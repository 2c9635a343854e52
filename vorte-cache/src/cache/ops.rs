//! The call builders [`Set`] and [`GetOrSet`]: they collect a call's options and hand them to the
//! engine when awaited.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use crate::engine::WriteOptions;
use crate::error::Result;
use crate::layer::{Layer, LayerSet};
use crate::store::BoxFuture;

fn add_layer(options: &mut WriteOptions, layer: Layer) {
    options
        .layers
        .get_or_insert_with(LayerSet::default)
        .insert(layer);
}

/// A pending [`Cache::set`]. Await it to write.
#[must_use = "a Set does nothing until awaited"]
#[derive(Debug)]
pub struct Set<'a, V: ?Sized> {
    pub(super) cache: &'a Cache,
    pub(super) key: &'a str,
    pub(super) value: &'a V,
    pub(super) options: WriteOptions,
}

impl<'a, V: Serialize + ?Sized> Set<'a, V> {
    /// The entry's time to live; without it, the cache's `default_ttl`. Each layer's `ttl` caps it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = Some(ttl);
        self
    }

    /// Tags for [`Cache::invalidate_tag`].
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Writes only to this layer; call again to add more. Without it, every enabled layer. The
    /// enabled layers left out drop their older value of the key, so that the next read finds
    /// this one (`docs/guarantees.md#g1-read-your-writes`).
    pub fn layer(mut self, layer: Layer) -> Self {
        add_layer(&mut self.options, layer);
        self
    }
}

impl<'a, V: Serialize + ?Sized> IntoFuture for Set<'a, V> {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'a, Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.cache.engine().set(self.key, self.value, self.options))
    }
}

/// A pending [`Cache::get_or_set`]. Await it to read or load.
#[must_use = "a GetOrSet does nothing until awaited"]
pub struct GetOrSet<'a, T, F> {
    pub(super) cache: &'a Cache,
    pub(super) key: &'a str,
    pub(super) loader: F,
    pub(super) options: WriteOptions,
    pub(super) _t: PhantomData<fn() -> T>,
}

impl<T, F> std::fmt::Debug for GetOrSet<'_, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOrSet")
            .field("key", &self.key)
            .field("ttl", &self.options.ttl)
            .field("tags", &self.options.tags)
            .finish_non_exhaustive()
    }
}

impl<T, F> GetOrSet<'_, T, F> {
    /// The loaded entry's time to live; without it, the cache's `default_ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = Some(ttl);
        self
    }

    /// Tags of the loaded entry.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Stores the loaded value only in this layer; call again to add more.
    pub fn layer(mut self, layer: Layer) -> Self {
        add_layer(&mut self.options, layer);
        self
    }
}

impl<'a, T, F, Fut, E> IntoFuture for GetOrSet<'a, T, F>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'a,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'a,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    type Output = Result<T>;
    type IntoFuture = BoxFuture<'a, Result<T>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let WriteOptions { ttl, tags, layers } = self.options;
            self.cache
                .engine()
                .get_or_set(
                    self.key,
                    self.loader,
                    ttl,
                    &tags,
                    layers.unwrap_or(LayerSet::ALL),
                )
                .await
        })
    }
}
