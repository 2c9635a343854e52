//! The call builders [`Set`] and [`GetOrSet`]: they collect a call's options and hand them to the
//! engine when awaited.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use crate::engine::{DetachFn, LoadOptions, LoaderError, Served, WriteOptions};
use crate::error::Result;
use crate::layer::{Layer, LayerSet};
use crate::observe::traced;
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
        let engine = self.cache.engine();
        // Made here, not in the block: the value is serialized before the first await, so the
        // future holds no `&V` (which would have to be `Sync`).
        let call = engine.set(self.key, self.value, self.options);
        let key = self.key;
        Box::pin(async move { traced!(&engine.instruments, "set", Some(key), call) })
    }
}

/// A pending [`Cache::get_or_set`]. Await it to read or load.
#[must_use = "a GetOrSet does nothing until awaited"]
pub struct GetOrSet<'a, T, F> {
    pub(super) cache: &'a Cache,
    pub(super) key: &'a str,
    pub(super) loader: F,
    pub(super) options: WriteOptions,
    /// Boxed, and only once an option is set: most calls set none, and the builder moves into
    /// the call's future.
    pub(super) load: Option<Box<LoadOptions>>,
    /// `.fail_safe(..)`, the option most often set on a call, apart from the box so that setting
    /// it allocates nothing: it travels with the loader, and only a load reads it
    /// (`docs/performance.md#fail-safe-cost`).
    pub(super) fail_safe_max: Option<Duration>,
    pub(super) detach: Option<DetachFn<F, T>>,
    pub(super) _t: PhantomData<fn() -> T>,
}

/// A value from [`GetOrSet::fetch`], with its freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fetched<T> {
    /// The value.
    pub value: T,
    /// Whether it is fresh, or a stale value standing in for a failed or slow load.
    pub freshness: Freshness,
}

/// Whether a value is fresh or a stale stand-in (`docs/resilience.md#fail-safe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Freshness {
    /// Within its TTL: from the cache, or just loaded.
    Fresh,
    /// Past its TTL, inside its fail-safe window: served because the loader failed or passed a
    /// timeout. Never after an invalidation.
    Stale,
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
    fn load_options(&mut self) -> &mut LoadOptions {
        self.load.get_or_insert_default()
    }

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

    /// Fail-safe: keeps the loaded value up to `max` past its TTL, and when the loader fails or
    /// passes a timeout while such a stale value exists, answers with it instead of the error
    /// (`docs/resilience.md#fail-safe`). Never after an invalidation. `Duration::ZERO` turns off
    /// the config's `fail_safe_max` for this call.
    ///
    /// ```
    /// # async fn demo(cache: &vorte_cache::Cache) -> vorte_cache::Result<()> {
    /// use std::time::Duration;
    /// let price: u32 = cache
    ///     .get_or_set("price:7", || async { Ok::<_, std::io::Error>(42) })
    ///     .ttl(Duration::from_secs(60))
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .await?;
    /// # let _ = price; Ok(()) }
    /// ```
    pub fn fail_safe(mut self, max: Duration) -> Self {
        self.fail_safe_max = Some(max);
        self
    }

    /// How long a stale value that stood in for a failed load is cached as fresh, so the failing
    /// source is asked again at most once per `period` (default: the config's, 30 s).
    pub fn fail_safe_throttle(mut self, period: Duration) -> Self {
        self.load_options().fail_safe_throttle = Some(period);
        self
    }

    /// Ends the wait for a slow loader after `timeout`: with the stale value when there is one
    /// (fail-safe), else with an error of kind [`Timeout`](crate::ErrorKind::Timeout). A loader
    /// that cannot outlive the call is cancelled; one marked [`in_background`](Self::in_background)
    /// goes on and stores its value when it finishes.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.load_options().hard_timeout = Some(timeout);
        self
    }

    /// Multiplies the TTL by a random factor in `1 ± fraction`, so that keys written together
    /// do not expire together (default: the config's `ttl_jitter`).
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.load_options().ttl_jitter = Some(fraction.clamp(0.0, 0.99));
        self
    }

    /// With a shared layer and a bus, at most one process at a time runs this key's loader; the
    /// others wait for its value (`docs/resilience.md#distributed-single-flight`).
    pub fn distributed_lock(mut self, on: bool) -> Self {
        self.load_options().distributed_lock = Some(on);
        self
    }
}

/// Builds the future of a `'static` loader, which can outlive its caller.
fn detach_loader<T, F, Fut, E>(loader: F) -> BoxFuture<'static, std::result::Result<T, LoaderError>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    E: Into<LoaderError>,
{
    Box::pin(async move { loader().await.map_err(Into::into) })
}

/// The options that let a load go on after its caller has an answer: they need a loader that
/// owns what it uses (`'static`).
impl<T, F, Fut, E> GetOrSet<'_, T, F>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    E: Into<LoaderError>,
{
    /// Lets this call's load go on in the background after the caller has its answer, which
    /// turns on the config's `soft_timeout`, `eager_refresh` and `xfetch_beta` for it.
    pub fn in_background(mut self) -> Self {
        self.detach = Some(detach_loader::<T, F, Fut, E>);
        self
    }

    /// After `timeout`, answers with the stale value (when there is one) while the load goes on
    /// in the background and updates the cache when it completes
    /// (`docs/resilience.md#loader-timeouts`).
    pub fn soft_timeout(self, timeout: Duration) -> Self {
        let mut call = self.in_background();
        call.load_options().soft_timeout = Some(timeout);
        call
    }

    /// Eager refresh: a hit after `fraction` (0 < f < 1) of the entry's TTL starts one
    /// background load, so the key never expires in front of its callers
    /// (`docs/resilience.md#early-refresh`).
    ///
    /// ```
    /// # async fn demo(cache: &vorte_cache::Cache) -> vorte_cache::Result<()> {
    /// use std::time::Duration;
    /// let rates: Vec<f64> = cache
    ///     .get_or_set("fx:rates", || async { Ok::<_, std::io::Error>(vec![1.0, 1.1]) })
    ///     .ttl(Duration::from_secs(10))
    ///     .early_refresh(0.8)
    ///     .await?;
    /// # let _ = rates; Ok(()) }
    /// ```
    pub fn early_refresh(self, fraction: f64) -> Self {
        let mut call = self.in_background();
        call.load_options().eager_refresh = Some(fraction);
        call
    }

    /// Probabilistic early expiration (XFetch, Vattani et al., VLDB 2015) with this `beta`: a hit
    /// refreshes early with a probability that grows as the end of the TTL nears, scaled by the
    /// measured load time (`docs/resilience.md#early-refresh`). 1.0 is the paper's choice.
    pub fn xfetch(self, beta: f64) -> Self {
        let mut call = self.in_background();
        call.load_options().xfetch_beta = Some(beta);
        call
    }
}

impl<'a, T, F, Fut, E> GetOrSet<'a, T, F>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'a,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'a,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    /// Runs the call and answers with the value and its [`Freshness`]: whether a stale value
    /// stood in for a failed or slow load (`docs/resilience.md#fail-safe`).
    pub fn fetch(self) -> BoxFuture<'a, Result<Fetched<T>>> {
        Box::pin(async move {
            let (cache, key) = (self.cache, self.key);
            let served = traced!(
                &cache.engine().instruments,
                "get_or_set",
                Some(key),
                self.run()
            )?;
            Ok(Fetched {
                value: served.output,
                freshness: if served.stale {
                    Freshness::Stale
                } else {
                    Freshness::Fresh
                },
            })
        })
    }

    async fn run(self) -> Result<Served<T>> {
        let WriteOptions { ttl, tags, layers } = self.options;
        self.cache
            .engine_arc()
            .get_or_set(
                self.key,
                self.loader,
                self.detach,
                ttl,
                &tags,
                layers.unwrap_or(LayerSet::ALL),
                self.load.as_deref().unwrap_or(&LoadOptions::NONE),
                self.fail_safe_max,
            )
            .await
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

    // Always inlined with the `tracing` feature: its traced branch made it too large for the
    // compiler to inline on its own, which cost every untraced hit a call (without the feature,
    // forcing it costs the hit 12 instructions: the compiler's own choice is better there).
    #[cfg_attr(feature = "tracing", inline(always))]
    fn into_future(self) -> Self::IntoFuture {
        let (cache, key) = (self.cache, self.key);
        let call: Self::IntoFuture =
            Box::pin(async move { self.run().await.map(|served| served.output) });
        // The call's own future is the same with the feature or without (one instantiation of
        // `run`, inlined as before); a traced call wraps it in its span
        // (`docs/performance.md#tracing-and-metrics-overhead`).
        #[cfg(feature = "tracing")]
        if crate::observe::spans::active() {
            let instruments = &cache.engine().instruments;
            return crate::observe::spans::boxed_call("get_or_set", key, instruments, call);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (cache, key);
        call
    }
}
