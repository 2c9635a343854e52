//! The two loaders of the cache-aside loop (`load.rs`): `get_or_set`'s closure, whose errors are
//! the caller's, and a `#[cached]` body, which never fails because of the cache; and the engine's
//! entry points that build them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Engine;
use super::fallback::LoadOptions;
use super::load::{DetachedLoad, LoadResult, Loaded, Loader, Served, TimeoutAnswer};
use crate::cached::{Callsite, Output};
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::layer::LayerSet;
use crate::load::{self, Given};
use crate::store::BoxFuture;

/// The error a `get_or_set` loader returns.
pub(crate) type LoaderError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Makes a `get_or_set` loader's future outlive its caller; exists only for `'static` loaders.
pub(crate) type DetachFn<F, T> = fn(F) -> BoxFuture<'static, std::result::Result<T, LoaderError>>;

/// Makes a `#[cached]` body outlive its caller; exists only for bodies with owned arguments.
pub(crate) type DetachBody<F, O> = fn(F) -> BoxFuture<'static, O>;

impl Engine {
    /// `cache.get_or_set(..)`: see [`Cache::get_or_set`](crate::Cache::get_or_set).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn get_or_set<T, F, Fut, E>(
        self: &Arc<Self>,
        key: &str,
        loader: F,
        detach: Option<DetachFn<F, T>>,
        ttl: Option<Duration>,
        tags: &[String],
        layers: LayerSet,
        options: &LoadOptions,
        fail_safe_max: Option<Duration>,
    ) -> Result<Served<T>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<T, E>> + Send,
        E: Into<LoaderError>,
    {
        key::validate(key, "key")?;
        key::validate_tags(tags)?;
        let load = LoaderFn {
            key,
            loader,
            detach,
            ttl,
            fail_safe_max,
        };
        self.load(key, tags, layers, options, load).await
    }

    /// The body of every `#[cached]` function: never fails because of the cache. Without a valid
    /// key, or with a tag `get_or_set` would refuse (`key::validate_tags`), it runs uncached.
    pub(crate) async fn run_cached<O, F>(
        self: &Arc<Self>,
        callsite: &'static Callsite,
        key: Result<String>,
        tags: Vec<String>,
        body: F,
        detach: Option<DetachBody<F, O>>,
        on_timeout: Option<fn(Error) -> O>,
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
        let options = LoadOptions::of(&callsite.loads);
        let load = CachedBody {
            callsite,
            body,
            detach,
            on_timeout,
        };
        match self.load(&key, &tags, layers, &options, load).await {
            Ok(served) => served.output,
            Err(never) => match never {},
        }
    }
}

/// `get_or_set`'s loader: a loader error is the caller's error, and so is a cache failure.
struct LoaderFn<'k, F, T> {
    key: &'k str,
    loader: F,
    detach: Option<DetachFn<F, T>>,
    ttl: Option<Duration>,
    fail_safe_max: Option<Duration>,
}

fn loader_error(key: &str, source: LoaderError) -> Error {
    Error::new(ErrorKind::Loader, format!("key `{key}`: {source}")).with_source(source)
}

impl<T, F, Fut, E> Loader for LoaderFn<'_, F, T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = std::result::Result<T, E>> + Send,
    E: Into<LoaderError>,
{
    type Stored = T;
    type Output = T;
    type Error = Error;

    fn cache_failure(e: Error) -> Option<Error> {
        Some(e)
    }

    async fn run(self, given: Given) -> Result<LoadResult<T, T>> {
        let key = self.key;
        let (value, adapted) = load::scoped(given, (self.loader)()).await;
        let value = value.map_err(|e| loader_error(key, e.into()))?;
        Ok(LoadResult {
            output: value.clone(),
            keep: Some((value, self.ttl)),
            adapted,
        })
    }

    fn detach(self, given: Given) -> std::result::Result<DetachedLoad<Self>, Self> {
        let Some(detach) = self.detach else {
            return Err(self);
        };
        let load = detach(self.loader);
        let key = self.key.to_owned();
        let ttl = self.ttl;
        Ok(Box::pin(async move {
            let (value, adapted) = load::scoped(given, load).await;
            let value = value.map_err(|e| loader_error(&key, e))?;
            Ok(LoadResult {
                output: value.clone(),
                keep: Some((value, ttl)),
                adapted,
            })
        }))
    }

    fn from_stored(stored: T) -> T {
        stored
    }

    fn failed(result: &Loaded<Self>) -> bool {
        result.is_err()
    }

    fn timeout_answer(&self) -> Option<TimeoutAnswer<T, Error>> {
        Some(TimeoutAnswer::Error(|e| e))
    }

    fn fail_safe_max(&self) -> Option<Duration> {
        self.fail_safe_max
    }
}

/// A `#[cached]` body: its output is always the caller's; what is kept depends on its shape.
struct CachedBody<F, O> {
    callsite: &'static Callsite,
    body: F,
    detach: Option<DetachBody<F, O>>,
    on_timeout: Option<fn(Error) -> O>,
}

impl<O, F> Loader for CachedBody<F, O>
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

    async fn run(self, given: Given) -> std::result::Result<LoadResult<O, O::Stored>, Infallible> {
        let (output, adapted) = load::scoped(given, self.body).await;
        let keep = self.callsite.kept(&output);
        Ok(LoadResult {
            output,
            keep,
            adapted,
        })
    }

    fn detach(self, given: Given) -> std::result::Result<DetachedLoad<Self>, Self> {
        let Some(detach) = self.detach else {
            return Err(self);
        };
        let body = detach(self.body);
        let callsite = self.callsite;
        Ok(Box::pin(async move {
            let (output, adapted) = load::scoped(given, body).await;
            let keep = callsite.kept(&output);
            Ok(LoadResult {
                output,
                keep,
                adapted,
            })
        }))
    }

    fn from_stored(stored: O::Stored) -> O {
        O::from_stored(stored)
    }

    fn failed(result: &Loaded<Self>) -> bool {
        match result {
            Ok(loaded) => loaded.output.is_failure(),
            Err(never) => match *never {},
        }
    }

    fn timeout_answer(&self) -> Option<TimeoutAnswer<O, Infallible>> {
        self.on_timeout.map(TimeoutAnswer::Output)
    }
}
