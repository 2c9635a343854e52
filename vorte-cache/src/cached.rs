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
        }
    }
}

/// What the cached call of a function returned, and how to cache it.
///
/// The macro picks the impl from the written return type: `Result<T, E>` caches `Ok` only,
/// `Option<T>` caches `Some` (and `None` with negative caching), `Result<Option<T>, E>` caches
/// `Ok(Some)` (and `Ok(None)` with negative caching), and anything else is cached as it is.
pub trait Output: Sized + Send {
    /// The cached form.
    type Stored: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The value to cache, if this result is cacheable. `negative` says whether negative caching
    /// is on; a negative result is stored as `None`.
    fn to_stored(&self, negative: bool) -> Option<Self::Stored>;
    /// Rebuilds the result from a cached value.
    fn from_stored(stored: Self::Stored) -> Self;
    /// Whether this stored value is a cached negative result.
    fn is_negative(stored: &Self::Stored) -> bool;
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
    E: Send,
{
    type Stored = T;
    fn to_stored(&self, _negative: bool) -> Option<T> {
        self.0.as_ref().ok().cloned()
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
    E: Send,
{
    type Stored = Option<T>;
    fn to_stored(&self, negative: bool) -> Option<Option<T>> {
        match &self.0 {
            Ok(Some(v)) => Some(Some(v.clone())),
            Ok(None) if negative => Some(None),
            _ => None,
        }
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
