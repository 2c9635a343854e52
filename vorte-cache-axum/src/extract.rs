//! The cache in handlers: [`CacheHandle`], an extractor that takes the [`Cache`] out of the
//! application state through [`FromRef`], and [`AppCache`], the state's slot for it.
//!
//! `State<Cache>` works as it does for any `Clone` state; [`CacheHandle`] is for states that may
//! hold no cache (the cache turned off, or not built because its configuration failed): it
//! answers `500 Internal Server Error` with a message instead of reaching the handler. There is
//! no fallback to [`Cache::global`]: a handler that silently used another cache than the
//! application's would hide the mistake (`docs/web.md#the-cache-in-handlers`).

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use vorte_cache::Cache;

/// The cache slot of an application state: a [`Cache`], or none.
///
/// Put it in the state (or the state *is* a [`Cache`]: `AppCache` is [`FromRef<Cache>`]) and
/// take the cache in a handler with [`CacheHandle`].
#[derive(Clone, Debug, Default)]
pub struct AppCache(Option<Cache>);

impl AppCache {
    /// A slot holding `cache`.
    pub fn new(cache: Cache) -> AppCache {
        AppCache(Some(cache))
    }

    /// An empty slot: every [`CacheHandle`] extraction answers 500.
    pub fn none() -> AppCache {
        AppCache(None)
    }

    /// The cache, if the slot holds one.
    pub fn get(&self) -> Option<&Cache> {
        self.0.as_ref()
    }
}

impl From<Cache> for AppCache {
    fn from(cache: Cache) -> AppCache {
        AppCache::new(cache)
    }
}

impl From<Option<Cache>> for AppCache {
    fn from(cache: Option<Cache>) -> AppCache {
        AppCache(cache)
    }
}

/// A state that is the cache itself also serves [`CacheHandle`].
impl FromRef<Cache> for AppCache {
    fn from_ref(cache: &Cache) -> AppCache {
        AppCache::new(cache.clone())
    }
}

/// The application's [`Cache`], taken from the state's [`AppCache`].
///
/// ```
/// use axum::extract::FromRef;
/// use axum::routing::get;
/// use axum::Router;
/// use vorte_cache::Cache;
/// use vorte_cache_axum::{AppCache, CacheHandle};
///
/// #[derive(Clone)]
/// struct AppState {
///     cache: AppCache,
///     greeting: &'static str,
/// }
///
/// impl FromRef<AppState> for AppCache {
///     fn from_ref(state: &AppState) -> AppCache {
///         state.cache.clone()
///     }
/// }
///
/// async fn visits(CacheHandle(cache): CacheHandle) -> String {
///     match cache.increment("visits", 1).await {
///         Ok(n) => format!("visit {n}"),
///         Err(e) => format!("no count: {e}"),
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
/// let cache = Cache::from_config(&Default::default()).await?;
/// let state = AppState { cache: AppCache::new(cache), greeting: "hello" };
/// let app: Router = Router::new().route("/visits", get(visits)).with_state(state);
/// # let _ = app; Ok(()) }
/// ```
///
/// Without a cache in the slot ([`AppCache::none`]) the extraction fails with [`MissingCache`]:
/// `500 Internal Server Error` and a message naming the cause.
#[derive(Clone, Debug)]
pub struct CacheHandle(pub Cache);

impl<S> FromRequestParts<S> for CacheHandle
where
    S: Send + Sync,
    AppCache: FromRef<S>,
{
    type Rejection = MissingCache;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match AppCache::from_ref(state).0 {
            Some(cache) => Ok(CacheHandle(cache)),
            None => Err(MissingCache),
        }
    }
}

/// The rejection of [`CacheHandle`] when the state's [`AppCache`] is empty: a `500` whose body
/// says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingCache;

impl MissingCache {
    /// The body of the `500` answer.
    pub const MESSAGE: &'static str = "vorte-cache: the application state holds no cache \
        (its AppCache is empty); build one with Cache::from_config and put it in the state";
}

impl std::fmt::Display for MissingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for MissingCache {}

impl IntoResponse for MissingCache {
    fn into_response(self) -> Response {
        tracing::error!("{}", Self::MESSAGE);
        (StatusCode::INTERNAL_SERVER_ERROR, Self::MESSAGE).into_response()
    }
}
