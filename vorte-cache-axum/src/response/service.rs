//! [`ResponseCache`]: the service of [`ResponseCacheLayer`](super::ResponseCacheLayer), which
//! looks a request up, joins or leads its key's flight, and stores what may be kept.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::OriginalUri;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use tower_service::Service;
use vorte_cache::{Cache, ErrorKind};

use super::body::{self, BoxError, Collected};
use super::flight::{self, Flights, Leader, Outcome, Role};
use super::policy::{self, RequestPlan};
use super::stored::{self, CacheStatus, Entry, StoredResponse};
use super::{Rules, X_CACHE, key, tags};

/// How many times a request looks its key up again after a flight that stored elsewhere (its
/// `Vary` changed) before it goes to the inner service uncached.
const MAX_ROUNDS: usize = 3;

/// The service made by [`ResponseCacheLayer`](super::ResponseCacheLayer) around `S`.
#[derive(Clone, Debug)]
pub struct ResponseCache<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What every request of a layer shares.
#[derive(Debug)]
struct Shared {
    cache: Cache,
    rules: Arc<Rules>,
    flights: Arc<Flights>,
}

impl<S> ResponseCache<S> {
    pub(super) fn new(
        inner: S,
        cache: Cache,
        rules: Arc<Rules>,
        flights: Arc<Flights>,
    ) -> ResponseCache<S> {
        ResponseCache {
            inner,
            shared: Arc::new(Shared {
                cache,
                rules,
                flights,
            }),
        }
    }
}

type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service polled ready answers this request; a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(self.shared.clone().serve(inner, request))
    }
}

/// What a lookup found.
enum Looked {
    Response(Arc<StoredResponse>),
    Vary(Vec<String>),
    Miss,
    /// The cache failed: the request goes to the inner service, uncached.
    Failed,
}

/// One request on its way through the layer: what is kept of it once its parts have gone to
/// the inner service.
struct Call<S, ReqBody> {
    inner: S,
    request: Request<ReqBody>,
    method: Method,
    headers: HeaderMap,
    base: String,
    tags: Vec<String>,
}

/// The inner service's response as answered uncached, with `x-cache: miss`.
fn passed_on<B>(response: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(X_CACHE, CacheStatus::Miss.header_value());
    Response::from_parts(parts, Body::new(body))
}

/// Ends a flight, if this request leads one.
fn finish(leader: Option<Leader>, outcome: Outcome) {
    if let Some(leader) = leader {
        leader.finish(outcome);
    }
}

impl Shared {
    async fn serve<S, ReqBody, ResBody>(
        self: Arc<Self>,
        mut inner: S,
        request: Request<ReqBody>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let (mut parts, request_body) = request.into_parts();
        let plan = policy::request_plan(&self.rules, &parts.method, &parts.headers);
        if plan == RequestPlan::Bypass {
            let request = Request::from_parts(parts, request_body);
            return inner.call(request).await.map(passed_on);
        }
        let Some(tags) =
            tags::resolve(&self.rules.tags, self.rules.tags_with.as_ref(), &mut parts).await
        else {
            let request = Request::from_parts(parts, request_body);
            return inner.call(request).await.map(passed_on);
        };
        // Under `Router::nest` the URI has lost the nest's prefix; the key keeps it.
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |original| original.0.clone());
        let base = key::base_key(&parts.method, &uri, &parts.headers, &self.rules.key_headers);
        let call = Call {
            inner,
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            request: Request::from_parts(parts, request_body),
            base,
            tags,
        };
        if plan == RequestPlan::Refresh {
            let key = call.base.clone();
            return self.produce(call, &key, None).await;
        }
        let mut key = call.base.clone();
        for _ in 0..MAX_ROUNDS {
            match self.lookup(&key).await {
                Looked::Response(stored) => return Ok(stored.answer(&call.method, &call.headers)),
                Looked::Vary(names) if key == call.base => {
                    key = key::variant_key(&call.base, &names, &call.headers);
                    continue;
                }
                Looked::Vary(_) | Looked::Miss => {}
                Looked::Failed => return self.pass(call).await,
            }
            match self.flights.join(&key) {
                Role::Leader(leader) => {
                    // Another flight may have stored the key between the lookup and now.
                    match self.lookup(&key).await {
                        Looked::Response(stored) => {
                            leader.finish(Outcome::Hit(stored.clone()));
                            return Ok(stored.answer(&call.method, &call.headers));
                        }
                        Looked::Failed => {
                            leader.finish(Outcome::Pass);
                            return self.pass(call).await;
                        }
                        Looked::Vary(_) | Looked::Miss => {}
                    }
                    return self.produce(call, &key, Some(leader)).await;
                }
                Role::Waiter(slot) => match flight::wait(slot).await {
                    Outcome::Hit(stored) => return Ok(stored.answer(&call.method, &call.headers)),
                    Outcome::Pass => return self.pass(call).await,
                    Outcome::Retry => key = call.base.clone(),
                },
            }
        }
        self.pass(call).await
    }

    /// Reads `key`. A value of another type (another version's format) is a miss, overwritten
    /// by the next store; any other failure is logged and the request goes on uncached.
    async fn lookup(&self, key: &str) -> Looked {
        match self.cache.get::<Arc<Entry>>(key).await {
            Ok(Some(entry)) => match &*entry {
                Entry::Response(stored) => Looked::Response(Arc::new(stored.clone())),
                Entry::Vary(names) => Looked::Vary(names.clone()),
            },
            Ok(None) => Looked::Miss,
            Err(e) if e.kind() == ErrorKind::TypeMismatch => Looked::Miss,
            Err(e) => {
                tracing::warn!(key, error = %e, "response cache lookup failed; the inner service answers");
                Looked::Failed
            }
        }
    }

    /// Stores `entry` under `key`; a failure is logged, never the request's.
    async fn store(
        &self,
        key: &str,
        entry: Entry,
        ttl: Option<std::time::Duration>,
        tags: &[String],
    ) {
        let entry = Arc::new(entry);
        let mut set = self.cache.set(key, &entry).tags(tags.iter().cloned());
        if let Some(ttl) = ttl {
            set = set.ttl(ttl);
        }
        if let Err(e) = set.await {
            tracing::warn!(key, error = %e, "response cache store failed; the response is served uncached");
        }
    }

    /// The inner service answers, uncached.
    async fn pass<S, ReqBody, ResBody>(
        &self,
        mut call: Call<S, ReqBody>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        call.inner.call(call.request).await.map(passed_on)
    }

    /// The inner service answers; what may be kept is stored, and the flight's waiters are
    /// told (`docs/web.md#rc11-single-flight`). `key` is the key looked up: the base key or a
    /// variant of it.
    async fn produce<S, ReqBody, ResBody>(
        &self,
        mut call: Call<S, ReqBody>,
        key: &str,
        leader: Option<Leader>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        // An error of the inner service drops the leader: its waiters go round again.
        let response = call.inner.call(call.request).await?;
        let (parts, response_body) = response.into_parts();
        let Some(storable) = policy::storable(&self.rules, &parts) else {
            finish(leader, Outcome::Pass);
            return Ok(passed_on(Response::from_parts(parts, response_body)));
        };
        let whole = match body::collect_limited(response_body, self.rules.max_body_bytes).await {
            Collected::Whole(whole) => whole,
            Collected::Partial(partial) => {
                finish(leader, Outcome::Pass);
                return Ok(passed_on(Response::from_parts(parts, partial)));
            }
        };
        let mut headers = parts.headers;
        // A HEAD answer may come without its body: its ETag is the origin's or none.
        if call.method == Method::GET || !whole.is_empty() {
            stored::ensure_etag(parts.status, &mut headers, &whole);
        }
        if call.method == Method::HEAD && !headers.contains_key(header::CONTENT_LENGTH) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(whole.len()));
        }
        let stored = Arc::new(StoredResponse::new(parts.status, &headers, whole.clone()));
        // The Vary headers already in the key need no variant of their own.
        let varying: Vec<String> = storable
            .vary
            .into_iter()
            .filter(|name| !self.rules.key_headers.iter().any(|h| h.as_str() == name))
            .collect();
        let target = if varying.is_empty() {
            call.base.clone()
        } else {
            key::variant_key(&call.base, &varying, &call.headers)
        };
        // The variant before the marker that leads to it: a reader who sees the marker finds it.
        self.store(
            &target,
            Entry::Response((*stored).clone()),
            storable.ttl,
            &call.tags,
        )
        .await;
        if !varying.is_empty() {
            self.store(&call.base, Entry::Vary(varying), storable.ttl, &call.tags)
                .await;
        }
        finish(
            leader,
            if target == key {
                Outcome::Hit(stored)
            } else {
                Outcome::Retry
            },
        );
        // This caller gets its response as produced: with its Set-Cookie, if it had one.
        Ok(stored::answer(
            parts.status,
            headers,
            whole,
            &call.method,
            &call.headers,
            CacheStatus::Miss,
        ))
    }
}
