//! [`ResponseCacheLayer`]: a tower layer that caches whole HTTP responses in a
//! [`vorte_cache::Cache`]. The rules (what is cached, the key, `ETag` and `304`, single flight)
//! are in `docs/web.md#response-cache`.

mod body;
mod flight;
mod key;
mod policy;
mod service;
mod stored;
mod tags;

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, StatusCode};
use tower_layer::Layer;
use vorte_cache::Cache;

pub use service::ResponseCache;

/// The response header that says whether the cache answered: `hit` or `miss`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// A route's caching rules.
#[derive(Clone)]
pub(crate) struct Rules {
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<tags::TagTemplate>,
    pub(crate) tags_with: Option<tags::TagFn>,
    pub(crate) key_headers: Vec<HeaderName>,
    pub(crate) statuses: Vec<StatusCode>,
    pub(crate) max_body_bytes: usize,
    pub(crate) auth_cookies: Vec<String>,
    pub(crate) cache_authenticated: bool,
    pub(crate) cache_set_cookie: bool,
    pub(crate) request_no_cache: bool,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("ttl", &self.ttl)
            .field("tags", &self.tags)
            .field("tags_with", &self.tags_with.as_ref().map(|_| "closure"))
            .field("key_headers", &self.key_headers)
            .field("statuses", &self.statuses)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("auth_cookies", &self.auth_cookies)
            .field("cache_authenticated", &self.cache_authenticated)
            .field("cache_set_cookie", &self.cache_set_cookie)
            .field("request_no_cache", &self.request_no_cache)
            .finish()
    }
}

/// The default body limit: 1 MiB.
const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// A layer that caches whole responses of the routes it wraps in a [`Cache`].
///
/// Only `GET` and `HEAD` are cached, never a request with credentials (unless
/// [`cache_authenticated`](Self::cache_authenticated)), only the statuses of
/// [`statuses`](Self::statuses) and bodies up to [`max_body_bytes`](Self::max_body_bytes);
/// `Cache-Control` and `Vary` of the response are honoured; concurrent misses of one key run the
/// inner service once; a hit answers `If-None-Match` with `304`; every answer carries
/// [`X_CACHE`]. A failing cache never fails a request: the inner service answers. The full rules
/// are in `docs/web.md#response-cache`.
///
/// ```
/// use std::time::Duration;
/// use axum::routing::get;
/// use axum::Router;
/// use http::header::ACCEPT_LANGUAGE;
/// use vorte_cache::Cache;
/// use vorte_cache_axum::ResponseCacheLayer;
///
/// async fn product() -> &'static str { "a laptop" }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
/// let cache = Cache::from_config(&Default::default()).await?;
/// let app: Router = Router::new().route(
///     "/products/{id}",
///     get(product).layer(
///         ResponseCacheLayer::new(cache.clone())
///             .ttl(Duration::from_secs(60))
///             .tag("products")
///             .tag("product:{id}")          // from the path parameter `id`
///             .key_header(ACCEPT_LANGUAGE),
///     ),
/// );
/// // Later, when product 7 changes:
/// cache.invalidate_tag("product:7").await?;
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ResponseCacheLayer {
    cache: Cache,
    rules: Arc<Rules>,
    flights: Arc<flight::Flights>,
}

impl ResponseCacheLayer {
    /// A layer over `cache` with the default rules: the cache's `default_ttl`, no tags, no key
    /// headers, the statuses of `docs/web.md#rc5-statuses`, a 1 MiB body limit.
    pub fn new(cache: Cache) -> ResponseCacheLayer {
        ResponseCacheLayer {
            cache,
            rules: Arc::new(Rules {
                ttl: None,
                tags: Vec::new(),
                tags_with: None,
                key_headers: Vec::new(),
                statuses: policy::DEFAULT_STATUSES.to_vec(),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                auth_cookies: Vec::new(),
                cache_authenticated: false,
                cache_set_cookie: false,
                request_no_cache: true,
            }),
            flights: Arc::default(),
        }
    }

    fn rules(&mut self) -> &mut Rules {
        Arc::make_mut(&mut self.rules)
    }

    /// The entries' time to live; without it, the cache's `default_ttl`. A response's
    /// `Cache-Control: s-maxage` or `max-age` lowers it, or sets it when this is not set
    /// (`docs/web.md#rc4-ttl`).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.rules().ttl = Some(ttl);
        self
    }

    /// Adds a tag to every entry of the route, for [`Cache::invalidate_tag`]. `{name}` in it is
    /// the path parameter `name`, else the query parameter `name`; a request that has neither
    /// is answered but not cached (`docs/web.md#rc12-tags`).
    pub fn tag(mut self, template: impl AsRef<str>) -> Self {
        self.rules()
            .tags
            .push(tags::TagTemplate::parse(template.as_ref()));
        self
    }

    /// Adds the tags `tags` computes from each request (with those of [`tag`](Self::tag)).
    pub fn tags_with<F>(mut self, tags: F) -> Self
    where
        F: Fn(&Parts) -> Vec<String> + Send + Sync + 'static,
    {
        self.rules().tags_with = Some(Arc::new(tags));
        self
    }

    /// Makes the request header `name` part of the key: requests that differ in it get
    /// different entries (`docs/web.md#rc2-the-key`).
    pub fn key_header(mut self, name: HeaderName) -> Self {
        self.rules().key_headers.push(name);
        self
    }

    /// The statuses whose responses are kept, replacing the default list
    /// (`docs/web.md#rc5-statuses`).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.rules().statuses = statuses.into_iter().collect();
        self
    }

    /// The largest body kept, in bytes (default 1 MiB); a larger one is passed on as it comes,
    /// uncached (`docs/web.md#rc6-body-limit`).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.rules().max_body_bytes = limit;
        self
    }

    /// Adds a cookie whose presence makes a request authenticated, like an `Authorization`
    /// header (`docs/web.md#rc7-authenticated-requests`). None by default.
    pub fn auth_cookie(mut self, name: impl Into<String>) -> Self {
        self.rules().auth_cookies.push(name.into());
        self
    }

    /// Caches the answers to authenticated requests too: the route declares its responses the
    /// same for every user. To keep one entry per user instead, also add
    /// [`key_header`](Self::key_header)`(AUTHORIZATION)` (`docs/web.md#rc7-authenticated-requests`).
    pub fn cache_authenticated(mut self, on: bool) -> Self {
        self.rules().cache_authenticated = on;
        self
    }

    /// Caches responses that carry `Set-Cookie`; the stored copy has no `Set-Cookie`, so only
    /// the request that produced it receives the cookie (`docs/web.md#rc8-set-cookie`).
    pub fn cache_set_cookie(mut self, on: bool) -> Self {
        self.rules().cache_set_cookie = on;
        self
    }

    /// Whether a request's `Cache-Control: no-cache` (or `Pragma: no-cache`) makes the inner
    /// service answer and the cache store that answer (default `true`). `false` serves such a
    /// request from the cache like any other (`docs/web.md#rc9-request-no-cache`).
    pub fn honor_request_no_cache(mut self, on: bool) -> Self {
        self.rules().request_no_cache = on;
        self
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> ResponseCache<S> {
        ResponseCache::new(
            inner,
            self.cache.clone(),
            self.rules.clone(),
            self.flights.clone(),
        )
    }
}
