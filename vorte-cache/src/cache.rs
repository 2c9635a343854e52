//! [`Cache`]: the handle every call goes through.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::{Callsite, Output};
use crate::codec;
use crate::config::CacheConfig;
use crate::error::Result;
use crate::key;
use crate::layer::{Layer, LayerSet};
use crate::router::{Router, WriteSpec};
use crate::stats::CacheStats;
use crate::store::BoxFuture;

/// A four-layer cache: a cheap, cloneable handle.
///
/// [`Cache::global`] is the application's cache (what `#[cached]` and the seed's `Cache()` use);
/// [`Cache::from_config`] builds an independent one.
///
/// ```
/// use std::time::Duration;
/// use vorte_cache::Cache;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
/// let cache = Cache::from_config(&Default::default()).await?;   // L1 only
/// cache.set("user:1", &"Alice").ttl(Duration::from_secs(300)).await?;
/// assert_eq!(cache.get::<String>("user:1").await?.as_deref(), Some("Alice"));
/// assert!(cache.delete("user:1").await?);
/// assert!(!cache.exists("user:1").await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    router: Arc<Router>,
}

impl Cache {
    /// Builds an independent cache from its configuration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when a layer cannot be opened (the message
    /// names the config path), or names a backend this build does not include.
    pub async fn from_config(config: &CacheConfig) -> Result<Cache> {
        let router = Arc::new(Router::build(config).await?);
        router.start_sweepers();
        #[cfg(feature = "redis")]
        if let Some(setup) = crate::bus::bus_config(config)? {
            let bus = crate::bus::Bus::connect(setup, &config.key_prefix, Arc::downgrade(&router))
                .await?;
            let _ = router.bus.set(bus);
        }
        Ok(Cache { router })
    }

    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    /// Whether this cache shares invalidations and events with other processes.
    pub fn has_bus(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.router.bus.get().is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    pub(crate) fn from_router(router: Router) -> Cache {
        Cache {
            router: Arc::new(router),
        }
    }

    /// The application's cache: the one installed by
    /// [`VorteBuilder::build`](crate::VorteBuilder::build), or before any build the embedded
    /// default (L1 only, nothing to run).
    pub fn global() -> Cache {
        crate::vorte::global_cache()
    }

    /// The configuration this cache was built from.
    pub fn config(&self) -> &CacheConfig {
        &self.router.config
    }

    /// Writes `value` under `key` in every enabled layer (write-through). Await the returned
    /// builder; set [`ttl`](Set::ttl), [`tags`](Set::tags) or [`layer`](Set::layer) first.
    ///
    /// # Errors
    ///
    /// `InvalidKey`, `Serialize`, `ValueTooLarge` (over `max_value_bytes`, or over every selected
    /// layer's limit), `Config` when no selected layer is enabled, and the layer's error when
    /// every selected layer failed. A layer that fails while another accepts the value is skipped,
    /// counted in [`LayerStats::errors`](crate::LayerStats::errors) and logged.
    pub fn set<'a, V: Serialize + ?Sized>(&'a self, key: &'a str, value: &'a V) -> Set<'a, V> {
        Set {
            cache: self,
            key,
            value,
            ttl: None,
            tags: Vec::new(),
            layers: None,
        }
    }

    /// Writes `value` under `key`, taking it by value, with the cache's `default_ttl` in every
    /// enabled layer. When L1 is the only layer and no size limit needs the encoded size, the
    /// value is stored decoded and never encoded unless something asks for its bytes (`exists`,
    /// `keys`, `increment`); otherwise this is [`Cache::set`].
    ///
    /// Prototype of `docs/performance.md#l1-miss-then-insert`: the engine's `Set` cannot keep a
    /// borrowed `&V` decoded.
    ///
    /// # Errors
    ///
    /// As [`Cache::set`].
    pub async fn set_owned<V>(&self, key: &str, value: V) -> Result<()>
    where
        V: Serialize + Send + Sync + 'static,
    {
        if self.router.writes_decoded(LayerSet::ALL) {
            return self
                .router
                .write_l1_decoded(
                    key,
                    None,
                    Box::default(),
                    Box::new(value),
                    crate::store::memory::encoder::<V>(),
                    None,
                )
                .await;
        }
        self.set(key, &value).await
    }

    /// Reads `key` as `T`, L1 first; a hit in a lower layer back-fills the layers above it with
    /// the remaining TTL. A repeated L1 hit decodes nothing.
    ///
    /// # Errors
    ///
    /// `InvalidKey`, and `TypeMismatch` when the stored value does not decode as `T` (the value
    /// stays). Layer failures are skipped, not returned.
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        // L1 holds only valid keys, so a hit needs no validation; a miss is validated before it
        // is answered or any store sees the key.
        if let Some(answer) = self.router.get_l1_or_miss::<T>(key) {
            return answer;
        }
        // Boxed so that the future of an L1 hit stays small: the full read path only runs (and
        // allocates) on an L1 miss, where a store is asked anyway.
        Box::pin(self.router.get(key)).await
    }

    /// Removes `key` from every layer; `true` when some layer held it.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.router.delete(key).await
    }

    /// Whether `key` has a live entry in some layer.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        self.router.exists(key).await
    }

    /// Adds `delta` to the integer under `key` and returns the new value. A missing key counts as
    /// `0` and gets the `default_ttl`; an existing one keeps its remaining TTL and tags.
    ///
    /// Exact under concurrency within this process.
    ///
    /// # Errors
    ///
    /// `NotAnInteger` when the value is not an integer or the sum overflows `i64`; the stored
    /// value is left unchanged.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        self.router.increment(key, delta).await
    }

    /// The live keys matching a Redis-style glob (`*`, `?`, `[...]`, `\` escapes), sorted and
    /// deduplicated across layers. Expired entries and entries invalidated by tag are not listed.
    ///
    /// # Errors
    ///
    /// `InvalidGlob` for a malformed pattern (an unclosed `[`, a trailing `\`).
    pub async fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        self.router.keys(pattern).await
    }

    /// Deletes each key; returns how many existed.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        self.router.delete_many(&keys).await
    }

    /// Removes every entry under this cache's `key_prefix`, in every layer, and nothing else.
    ///
    /// # Errors
    ///
    /// The error of a layer that could not be cleared (the others are cleared regardless).
    pub async fn flush(&self) -> Result<()> {
        self.router.flush().await
    }

    /// Invalidates every entry written with `tag`, in every layer, with one write (O(1) in the
    /// number of tagged entries).
    ///
    /// # Errors
    ///
    /// `InvalidKey` for an empty or over-long tag; the tag authority's error if the new version
    /// could not be written (nothing is invalidated then).
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        self.router.invalidate_tag(tag).await
    }

    /// A snapshot of hits, misses, keys and bytes; see [`CacheStats`] for how each is measured.
    pub async fn stats(&self) -> Result<CacheStats> {
        self.router.stats().await
    }

    /// Reads `key`, or on a miss runs `loader`, caches its value and returns it.
    ///
    /// Concurrent misses on one key run the loader once; the others wait and receive its value.
    /// A loader error is returned as [`ErrorKind::Loader`](crate::ErrorKind::Loader) with the
    /// source kept, and is never cached: a waiting caller then runs its own loader.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use vorte_cache::Cache;
    ///
    /// # #[tokio::main] async fn main() -> vorte_cache::Result<()> {
    /// let cache = Cache::from_config(&Default::default()).await?;
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let tasks: Vec<_> = (0..100).map(|_| {
    ///     let (cache, calls) = (cache.clone(), calls.clone());
    ///     tokio::spawn(async move {
    ///         cache.get_or_set("answer", || async move {
    ///             calls.fetch_add(1, Ordering::SeqCst);
    ///             tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    ///             Ok::<_, std::io::Error>(42u32)
    ///         }).await
    ///     })
    /// }).collect();
    /// for t in tasks {
    ///     assert_eq!(t.await.expect("task")?, 42);
    /// }
    /// assert_eq!(calls.load(Ordering::SeqCst), 1);
    /// # Ok(()) }
    /// ```
    pub fn get_or_set<'a, T, F, Fut, E>(&'a self, key: &'a str, loader: F) -> GetOrSet<'a, T, F>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'a,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        GetOrSet {
            cache: self,
            key,
            loader,
            ttl: None,
            tags: Vec::new(),
            layers: None,
            _t: PhantomData,
        }
    }

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
        if let Some(stored) = key
            .as_ref()
            .ok()
            .and_then(|k| self.cached_l1_hit::<O::Stored>(k))
        {
            return O::from_stored(stored);
        }
        Box::pin(self.router.run_cached(callsite, key, tags, body)).await
    }

    /// The L1 hit of a `#[cached]` call, if there is one; anything else takes the full path.
    #[inline]
    pub(crate) fn cached_l1_hit<T>(&self, key: &str) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        // No validation needed: L1 holds only valid keys.
        self.router.get_l1_now::<T>(key)?.ok()
    }
}

fn add_layer(layers: &mut Option<LayerSet>, layer: Layer) {
    layers.get_or_insert_with(LayerSet::default).insert(layer);
}

/// A pending [`Cache::set`]. Await it to write.
#[must_use = "a Set does nothing until awaited"]
#[derive(Debug)]
pub struct Set<'a, V: ?Sized> {
    cache: &'a Cache,
    key: &'a str,
    value: &'a V,
    ttl: Option<Duration>,
    tags: Vec<String>,
    layers: Option<LayerSet>,
}

impl<'a, V: Serialize + ?Sized> Set<'a, V> {
    /// The entry's time to live; without it, the cache's `default_ttl`. Each layer's `ttl` caps it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags for [`Cache::invalidate_tag`].
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Writes only to this layer; call again to add more. Without it, every enabled layer.
    pub fn layer(mut self, layer: Layer) -> Self {
        add_layer(&mut self.layers, layer);
        self
    }
}

impl<'a, V: Serialize + ?Sized> IntoFuture for Set<'a, V> {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'a, Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        // Serialize now, so the future holds bytes rather than a borrow of a maybe-!Sync value.
        let router = &self.cache.router;
        let serialization = router.config.serialization;
        let prepared = key::validate(self.key, "key")
            .and_then(|()| validate_tags(&self.tags))
            .and_then(|()| codec::serialize(serialization, self.value));
        let (key, ttl, tags, layers) = (self.key, self.ttl, self.tags, self.layers);
        Box::pin(async move {
            let payload = Bytes::from(prepared?);
            let stamps = router.tags_stamps(&tags).await?;
            let spec = WriteSpec {
                ttl,
                expires_at_ms: None,
                layers: layers.unwrap_or(LayerSet::ALL),
                stamps,
                ticket: None,
            };
            router.write(key, payload, serialization, spec, None).await
        })
    }
}

fn validate_tags(tags: &[String]) -> Result<()> {
    if tags.len() > key::MAX_TAGS {
        return Err(crate::Error::new(
            crate::ErrorKind::InvalidKey,
            format!("{} tags given; the limit is {}", tags.len(), key::MAX_TAGS),
        ));
    }
    tags.iter().try_for_each(|t| key::validate(t, "tag"))
}

/// A pending [`Cache::get_or_set`]. Await it to read or load.
#[must_use = "a GetOrSet does nothing until awaited"]
pub struct GetOrSet<'a, T, F> {
    cache: &'a Cache,
    key: &'a str,
    loader: F,
    ttl: Option<Duration>,
    tags: Vec<String>,
    layers: Option<LayerSet>,
    _t: PhantomData<fn() -> T>,
}

impl<T, F> std::fmt::Debug for GetOrSet<'_, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOrSet")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl<T, F> GetOrSet<'_, T, F> {
    /// The loaded entry's time to live; without it, the cache's `default_ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags of the loaded entry.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Stores the loaded value only in this layer; call again to add more.
    pub fn layer(mut self, layer: Layer) -> Self {
        add_layer(&mut self.layers, layer);
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
            validate_tags(&self.tags)?;
            self.cache
                .router
                .get_or_set(
                    self.key,
                    self.loader,
                    self.ttl,
                    &self.tags,
                    self.layers.unwrap_or(LayerSet::ALL),
                )
                .await
        })
    }
}
