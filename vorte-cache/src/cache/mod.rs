//! [`Cache`]: the handle every call goes through. It only collects a call's arguments and hands
//! them to the engine.

mod builder;
mod inspect;
mod ops;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::CacheConfig;
use crate::engine::{Engine, WriteOptions};
use crate::error::Result;
use crate::observe::traced;
use crate::stats::{CacheStats, CacheUsage};

pub use builder::CacheBuilder;
pub use inspect::{InspectedEntry, InspectedTag, Inspection};
pub use ops::{Fetched, Freshness, GetOrSet, Set};

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
///
/// **The clock thread.** While a cache with an in-process layer (or a Redis layer) lives, one
/// OS thread of the crate, `vorte-clock`, wakes every millisecond to advance a coarse clock,
/// so that an L1 hit checks expiry with one atomic read instead of `Instant::now()`. It costs
/// about a thousand short wake-ups a second, shared by every cache of the process; it starts with
/// the first such cache and exits within a millisecond of the last one being dropped (the
/// [`Cache::global`] one, once built, lives as long as the process).
#[derive(Clone, Debug)]
pub struct Cache {
    engine: Arc<Engine>,
}

impl Cache {
    /// Builds an independent cache from its configuration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when a layer cannot be opened (the message
    /// names the config path), or names a backend this build does not include.
    pub async fn from_config(config: &CacheConfig) -> Result<Cache> {
        CacheBuilder::new(config).build().await
    }

    /// A builder for a cache that also takes stores of your own (see [`CacheBuilder::store`]).
    pub fn builder(config: &CacheConfig) -> CacheBuilder<'_> {
        CacheBuilder::new(config)
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, shared: loads that go on in the background hold it.
    pub(crate) fn engine_arc(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn from_engine(engine: Arc<Engine>) -> Cache {
        Cache { engine }
    }

    /// Whether this cache shares invalidations and events with other processes.
    pub fn has_bus(&self) -> bool {
        self.engine.has_bus()
    }

    /// What this cache's invalidation bus counted since the cache was built (publishes retried
    /// or dropped, gaps found, receiver failures, handlers that panicked or timed out), or `None`
    /// without a bus. Cheap: it reads counters, no server.
    pub fn bus_stats(&self) -> Option<crate::BusStats> {
        self.engine.bus_stats()
    }

    /// This cache's id on the bus, 16 hex digits, or `None` without a bus: every message it sends
    /// carries it, and [`Activity::origin`](crate::observe::Activity::origin) shows it, so a
    /// process that follows the bus (`vorte-cache tail`) can tell who sent what. Random, chosen
    /// when the cache is built.
    pub fn bus_origin(&self) -> Option<String> {
        self.engine.bus_origin().map(crate::observe::origin_id)
    }

    /// The configuration this cache was built from.
    pub fn config(&self) -> &CacheConfig {
        &self.engine.config
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
            options: WriteOptions::default(),
        }
    }

    /// Writes `value` under `key`, taking it by value, with the cache's `default_ttl` in every
    /// enabled layer. When L1 is the only layer and no size limit needs the encoded size, the
    /// value is stored decoded and never encoded unless something asks for its bytes (`exists`,
    /// `keys`, `increment`); otherwise this is [`Cache::set`].
    ///
    /// [`Cache::set`] takes `&V`, which cannot be kept without encoding or cloning it; this takes
    /// the value itself (`docs/performance.md`, L1 miss then insert).
    ///
    /// # Errors
    ///
    /// As [`Cache::set`].
    pub async fn set_owned<V>(&self, key: &str, value: V) -> Result<()>
    where
        V: Serialize + Send + Sync + 'static,
    {
        traced!(
            &self.engine.instruments,
            "set",
            Some(key),
            self.engine.set_owned(key, value)
        )
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
        // Whether to trace is decided first, and a traced call reads L1 inside its span below: a
        // span call between reading the hit and returning it would keep the value on the stack
        // across it, which costs the untraced hit ~30 instructions
        // (`docs/performance.md#tracing-and-metrics-overhead`).
        let traced = crate::observe::spans_active();
        if !traced && let Some(answer) = self.engine.get_l1_or_miss::<T>(key) {
            return answer;
        }
        // Boxed so that the future of an L1 hit stays small: the full read path only runs (and
        // allocates) on an L1 miss, where a store is asked anyway. One await point, traced or
        // not, as without the feature.
        Box::pin(self.get_below_l1(key, traced)).await
    }

    /// The read path below L1, in its span; while a subscriber listens (`traced`), L1 first, so
    /// that its hit has a span too.
    async fn get_below_l1<T>(&self, key: &str, traced: bool) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        #[cfg(feature = "tracing")]
        if traced && let Some(answer) = self.engine.get_l1_or_miss::<T>(key) {
            crate::observe::spans::l1_hit("get", key, &self.engine.instruments);
            return answer;
        }
        #[cfg(not(feature = "tracing"))]
        let _ = traced;
        traced!(
            &self.engine.instruments,
            "get",
            Some(key),
            self.engine.get(key)
        )
    }

    /// Removes `key` from every layer; `true` when some layer held it.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        traced!(
            &self.engine.instruments,
            "delete",
            Some(key),
            self.engine.delete(key)
        )
    }

    /// Whether `key` has a live entry in some layer.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        traced!(
            &self.engine.instruments,
            "exists",
            Some(key),
            self.engine.exists(key)
        )
    }

    /// Adds `delta` to the integer under `key` and returns the new value. A missing key counts as
    /// `0` and gets the `default_ttl`; an existing one keeps its remaining TTL and tags.
    ///
    /// Exact under concurrency, across processes too when the most shared layer has an atomic
    /// compare-and-set (Redis, Redis Cluster, Memcached); with only L1 and L4 it is exact within
    /// this process (`docs/guarantees.md#g5-exact-counters`).
    ///
    /// # Errors
    ///
    /// `NotAnInteger` when the value is not an integer or the sum overflows `i64`; the stored
    /// value is left unchanged.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        traced!(
            &self.engine.instruments,
            "increment",
            Some(key),
            self.engine.increment(key, delta)
        )
    }

    /// The live keys matching a Redis-style glob (`*`, `?`, `[...]`, `\` escapes), sorted and
    /// deduplicated across layers. Expired entries and entries invalidated by tag are not listed.
    ///
    /// # Errors
    ///
    /// `InvalidGlob` for a malformed pattern (an unclosed `[`, a trailing `\`); the error of a
    /// layer that could not list its keys, rather than an answer without them
    /// (`docs/consistency.md#redis-cluster-topology-changes`).
    pub async fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        traced!(
            &self.engine.instruments,
            "keys",
            None,
            self.engine.keys(pattern)
        )
    }

    /// Deletes each key; returns how many existed.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        traced!(
            &self.engine.instruments,
            "delete_many",
            keys.first().copied(),
            self.engine.delete_many(&keys)
        )
    }

    /// Removes every entry under this cache's `key_prefix`, in every layer, and nothing else.
    ///
    /// # Errors
    ///
    /// The error of a layer that could not be cleared (the others are cleared regardless).
    pub async fn flush(&self) -> Result<()> {
        traced!(&self.engine.instruments, "flush", None, self.engine.flush())
    }

    /// Invalidates every entry written with `tag`, in every layer, with one write (O(1) in the
    /// number of tagged entries).
    ///
    /// # Errors
    ///
    /// `InvalidKey` for an empty or over-long tag; the tag authority's error if the new version
    /// could not be written (nothing is invalidated then).
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        traced!(
            &self.engine.instruments,
            "invalidate_tag",
            Some(tag),
            self.engine.invalidate_tag(tag)
        )
    }

    /// What the cache did since it was built: hits and misses per layer, loads, leases, errors,
    /// circuit breakers; see [`CacheStats`]. Cheap: it reads counters and asks no server, so it
    /// can be called as often as a dashboard likes. What the cache holds is [`Cache::usage`].
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = vorte_cache::Cache::from_config(&Default::default()).await?;
    /// cache.set("user:1", &"Ada").await?;
    /// assert_eq!(cache.get::<String>("user:1").await?.as_deref(), Some("Ada"));
    /// let stats = cache.stats();
    /// assert_eq!((stats.l1_hits, stats.misses), (1, 0));
    /// assert_eq!(stats.hit_rate(), 1.0);
    /// # Ok::<(), vorte_cache::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> CacheStats {
        self.engine.stats()
    }

    /// The latest invalidations this cache made or received, and the events it received, oldest
    /// first: at most `[cache.observe] recent_activity` of them (100 by default). Keys and tags
    /// show as `record_keys` allows: not at all by default.
    pub fn recent_activity(&self) -> Vec<crate::observe::Activity> {
        self.engine.instruments.recent()
    }

    /// What each layer holds (keys and bytes, as its store reports them) and the distinct live
    /// keys over all of them; see [`CacheUsage`]. It asks every store: a listing of each, and a
    /// read of every key found, what [`Cache::keys`] costs. A layer that cannot answer counts 0
    /// and an error in [`LayerStats::errors`](crate::LayerStats::errors).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = vorte_cache::Cache::from_config(&Default::default()).await?;
    /// cache.set("user:1", &"Ada").await?;
    /// let usage = cache.usage().await?;
    /// assert_eq!(usage.total_keys, 1);
    /// assert!(usage.memory_used_mb > 0.0);
    /// # Ok::<(), vorte_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// None today: a layer that cannot answer is skipped and counted, not an error.
    pub async fn usage(&self) -> Result<CacheUsage> {
        self.engine.usage().await
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
            options: WriteOptions::default(),
            load: None,
            fail_safe_max: None,
            detach: None,
            _t: PhantomData,
        }
    }

    /// Whether a `#[cached]` function with these options may refresh entries early.
    pub(crate) fn refreshes_early(&self, loads: &crate::cached::CachedLoads) -> bool {
        let config = &self.engine.config.loads;
        loads.early_refresh.or(config.eager_refresh).is_some()
            || loads.xfetch.or(config.xfetch_beta).is_some()
    }

    /// The L1 hit of a `#[cached]` call, if there is one; anything else takes the full path.
    #[inline]
    pub(crate) fn cached_l1_hit<T>(&self, key: &str) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        // No validation needed: L1 holds only valid keys.
        self.engine.try_l1_hit::<T>(key)?.ok()
    }
}
