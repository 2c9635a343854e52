//! The runtime side of `#[cached]`: what a cached function knows at compile time
//! ([`Callsite`]), and how each return shape is cached ([`Output`]). The engine's loads use these;
//! the macro door `__private` re-exports them for generated code.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::layer::Layer;

/// Everything a `#[cached]` function knows at compile time, kept in a fn-local `static`.
#[derive(Debug)]
pub struct Callsite {
    /// `module_path!()::fn_name`.
    pub path: &'static str,
    /// The entry's TTL; `None` uses the cache's `default_ttl`.
    pub ttl: Option<Duration>,
    /// When set, `None` (and `Ok(None)`) results are cached for this long.
    pub negative_ttl: Option<Duration>,
    /// The layers to use; `None` means every enabled layer.
    pub layers: Option<&'static [Layer]>,
    /// The attribute's resilience options; `None` fields take the config's `[cache.loads]`.
    pub loads: CachedLoads,
}

/// The resilience options of one `#[cached]` function (`docs/resilience.md`): each `None` takes
/// the config's `[cache.loads]` value; a zero duration turns its option off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CachedLoads {
    /// `fail_safe = "1h"`.
    pub fail_safe: Option<Duration>,
    /// `fail_safe_throttle = "30s"`.
    pub fail_safe_throttle: Option<Duration>,
    /// `soft_timeout = "100ms"`.
    pub soft_timeout: Option<Duration>,
    /// `hard_timeout = "2s"`.
    pub hard_timeout: Option<Duration>,
    /// `early_refresh = 0.8`: the eager-refresh fraction of the TTL.
    pub early_refresh: Option<f64>,
    /// `xfetch = 1.0`: XFetch's β.
    pub xfetch: Option<f64>,
    /// `distributed_lock = true`.
    pub distributed_lock: Option<bool>,
}

impl CachedLoads {
    /// Every option from the config.
    pub const NONE: CachedLoads = CachedLoads {
        fail_safe: None,
        fail_safe_throttle: None,
        soft_timeout: None,
        hard_timeout: None,
        early_refresh: None,
        xfetch: None,
        distributed_lock: None,
    };
}

impl Callsite {
    /// The callsite of one `#[cached]` function.
    pub const fn new(
        path: &'static str,
        ttl: Option<Duration>,
        negative_ttl: Option<Duration>,
        layers: Option<&'static [Layer]>,
    ) -> Self {
        Callsite {
            path,
            ttl,
            negative_ttl,
            layers,
            loads: CachedLoads::NONE,
        }
    }

    /// The same callsite with the attribute's resilience options.
    pub const fn with_loads(mut self, loads: CachedLoads) -> Self {
        self.loads = loads;
        self
    }

    /// What a call keeps of `output`, and for how long (before its body's own decisions): a
    /// negative result takes the `negative_ttl`. The one rule of a miss's load and of a
    /// `refresh`.
    pub(crate) fn kept<O: Output>(&self, output: &O) -> Option<(O::Stored, Option<Duration>)> {
        let stored = output.to_stored(self.negative_ttl.is_some())?;
        let ttl = if O::is_negative(&stored) {
            self.negative_ttl
        } else {
            self.ttl
        };
        Some((stored, ttl))
    }
}

/// What the cached call of a function returned, and how to cache it.
///
/// The macro picks the impl from the written return type: `Result<T, E>` caches `Ok` only,
/// `Option<T>` caches `Some` (and `None` with negative caching), `Result<Option<T>, E>` caches
/// `Ok(Some)` (and `Ok(None)` with negative caching), and anything else is cached as it is.
pub trait Output: Sized + Send + 'static {
    /// The cached form.
    type Stored: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The value to cache, if this result is cacheable. `negative` says whether negative caching
    /// is on; a negative result is stored as `None`.
    fn to_stored(&self, negative: bool) -> Option<Self::Stored>;
    /// Rebuilds the result from a cached value.
    fn from_stored(stored: Self::Stored) -> Self;
    /// Whether this stored value is a cached negative result.
    fn is_negative(stored: &Self::Stored) -> bool;
    /// Whether this result is a failure (an `Err`), for which a stale value may stand in
    /// (`docs/resilience.md#fail-safe`).
    fn is_failure(&self) -> bool {
        false
    }
}

/// `Result<T, E>`: `Ok` is cached.
#[derive(Debug)]
pub struct ResultShape<R>(pub R);
/// `Option<T>`: `Some` is cached; `None` with negative caching.
#[derive(Debug)]
pub struct OptionShape<R>(pub R);
/// `Result<Option<T>, E>`: `Ok(Some)` is cached; `Ok(None)` with negative caching.
#[derive(Debug)]
pub struct ResultOptionShape<R>(pub R);
/// Any other type: always cached.
#[derive(Debug)]
pub struct ValueShape<R>(pub R);

impl<T, E> Output for ResultShape<Result<T, E>>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    E: Send + 'static,
{
    type Stored = T;
    fn to_stored(&self, _negative: bool) -> Option<T> {
        self.0.as_ref().ok().cloned()
    }
    fn is_failure(&self) -> bool {
        self.0.is_err()
    }
    fn from_stored(stored: T) -> Self {
        ResultShape(Ok(stored))
    }
    fn is_negative(_: &T) -> bool {
        false
    }
}

impl<T> Output for OptionShape<Option<T>>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Stored = Option<T>;
    fn to_stored(&self, negative: bool) -> Option<Option<T>> {
        match &self.0 {
            Some(v) => Some(Some(v.clone())),
            None if negative => Some(None),
            None => None,
        }
    }
    fn from_stored(stored: Option<T>) -> Self {
        OptionShape(stored)
    }
    fn is_negative(stored: &Option<T>) -> bool {
        stored.is_none()
    }
}

impl<T, E> Output for ResultOptionShape<Result<Option<T>, E>>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    E: Send + 'static,
{
    type Stored = Option<T>;
    fn to_stored(&self, negative: bool) -> Option<Option<T>> {
        match &self.0 {
            Ok(Some(v)) => Some(Some(v.clone())),
            Ok(None) if negative => Some(None),
            _ => None,
        }
    }
    fn is_failure(&self) -> bool {
        self.0.is_err()
    }
    fn from_stored(stored: Option<T>) -> Self {
        ResultOptionShape(Ok(stored))
    }
    fn is_negative(stored: &Option<T>) -> bool {
        stored.is_none()
    }
}

impl<T> Output for ValueShape<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Stored = T;
    fn to_stored(&self, _negative: bool) -> Option<T> {
        Some(self.0.clone())
    }
    fn from_stored(stored: T) -> Self {
        ValueShape(stored)
    }
    fn is_negative(_: &T) -> bool {
        false
    }
}
