//! The response cache layer over real HTTP: an axum server on a free loopback port, a client
//! over TCP, a real cache (L1, and L1 + L2 on a real redis-server). The rules are those of
//! `docs/web.md#response-cache`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

mod http_client;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, StatusCode, header};
use axum::routing::get;
use http_client::{Reply, get as http_get, request, serve};
use vorte_cache::{Cache, Config};
use vorte_cache_axum::ResponseCacheLayer;
use vorte_cache_tests::servers::RedisServer;
use vorte_cache_tests::{shared_redis, unique_prefix};

async fn l1_cache() -> Cache {
    Cache::from_config(&Default::default())
        .await
        .expect("cache")
}

/// A counter of inner-handler calls.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A server with one route `/r` whose GET handler is `handler`, under `layer`.
macro_rules! one_route {
    ($layer:expr, $handler:expr) => {
        serve(Router::new().route("/r", get($handler).layer($layer))).await
    };
}

async fn twice(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> (Reply, Reply) {
    let first = http_get(addr, path, headers).await;
    let second = http_get(addr, path, headers).await;
    (first, second)
}

#[tokio::test]
async fn a_second_request_is_a_hit_with_the_same_status_headers_and_body() {
    let calls = Calls::default();
    let c = calls.clone();
    let addr = one_route!(
        ResponseCacheLayer::new(l1_cache().await),
        move || async move {
            let n = c.bump();
            (
                [
                    (header::CONTENT_TYPE, "text/x-test"),
                    (HeaderName::from_static("x-origin"), "yes"),
                ],
                format!("body {n}"),
            )
        }
    );
    let (first, second) = twice(addr, "/r", &[]).await;
    assert_eq!((first.status, first.x_cache()), (200, "miss"));
    assert_eq!((second.status, second.x_cache()), (200, "hit"));
    assert_eq!(first.text(), "body 1");
    assert_eq!(second.text(), "body 1");
    assert_eq!(second.header("content-type"), Some("text/x-test"));
    assert_eq!(second.header("x-origin"), Some("yes"));
    assert!(second.header("age").is_some(), "a hit carries Age");
    assert_eq!(first.header("etag"), second.header("etag"));
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn if_none_match_answers_304_whether_fresh_or_from_the_cache() {
    let cache = l1_cache().await;
    let calls = Calls::default();
    let c = calls.clone();
    let addr = one_route!(ResponseCacheLayer::new(cache.clone()), move || async move {
        c.bump();
        ([(header::CACHE_CONTROL, "max-age=60")], "the same body")
    });
    let plain = http_get(addr, "/r", &[]).await;
    let etag = plain
        .header("etag")
        .expect("a computed strong ETag")
        .to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    // Just produced: the cache is empty, the handler runs, the answer is 304.
    cache.flush().await.expect("flush");
    let fresh = http_get(addr, "/r", &[("If-None-Match", &etag)]).await;
    assert_eq!((fresh.status, fresh.x_cache()), (304, "miss"));
    assert!(fresh.body.is_empty());
    assert_eq!(fresh.header("etag"), Some(etag.as_str()));
    assert_eq!(fresh.header("cache-control"), Some("max-age=60"));
    assert_eq!(calls.get(), 2);

    // From the cache, weak comparison and a list.
    let list = format!("\"other\", W/{etag}");
    let cached = http_get(addr, "/r", &[("If-None-Match", &list)]).await;
    assert_eq!((cached.status, cached.x_cache()), (304, "hit"));
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));

    // Not matching: the whole response.
    let other = http_get(addr, "/r", &[("If-None-Match", "\"nope\"")]).await;
    assert_eq!(
        (other.status, other.text().as_str()),
        (200, "the same body")
    );
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn the_origin_etag_is_kept() {
    let addr = one_route!(ResponseCacheLayer::new(l1_cache().await), || async {
        ([(header::ETAG, "\"v7\"")], "versioned")
    });
    let first = http_get(addr, "/r", &[]).await;
    assert_eq!(first.header("etag"), Some("\"v7\""));
    let conditional = http_get(addr, "/r", &[("If-None-Match", "\"v7\"")]).await;
    assert_eq!((conditional.status, conditional.x_cache()), (304, "hit"));
}

#[tokio::test]
async fn no_store_private_and_no_cache_responses_are_not_cached() {
    for directive in ["no-store", "private", "no-cache", "max-age=0"] {
        let calls = Calls::default();
        let c = calls.clone();
        let addr = one_route!(
            ResponseCacheLayer::new(l1_cache().await),
            move || async move {
                c.bump();
                ([(header::CACHE_CONTROL, directive)], "secret")
            }
        );
        let (first, second) = twice(addr, "/r", &[]).await;
        assert_eq!((first.status, first.text().as_str()), (200, "secret"));
        assert_eq!(second.x_cache(), "miss", "{directive}");
        assert_eq!(calls.get(), 2, "{directive} was cached");
    }
}

#[tokio::test]
async fn authenticated_requests_are_not_cached_unless_the_route_opts_in() {
    let calls = Calls::default();
    let c = calls.clone();
    let layer = ResponseCacheLayer::new(l1_cache().await).auth_cookie("session");
    let addr = one_route!(layer, move || async move { format!("call {}", c.bump()) });
    let (a, b) = twice(addr, "/r", &[("Authorization", "Bearer t")]).await;
    assert_eq!(
        (a.x_cache(), b.x_cache(), b.text().as_str()),
        ("miss", "miss", "call 2")
    );
    let (a, b) = twice(addr, "/r", &[("Cookie", "theme=dark; session=abc")]).await;
    assert_eq!((a.x_cache(), b.x_cache()), ("miss", "miss"));
    assert_eq!(calls.get(), 4);
    // Another cookie is no credential.
    let (a, b) = twice(addr, "/r", &[("Cookie", "theme=dark")]).await;
    assert_eq!((a.x_cache(), b.x_cache()), ("miss", "hit"));
    assert_eq!(calls.get(), 5);

    let calls = Calls::default();
    let c = calls.clone();
    let layer = ResponseCacheLayer::new(l1_cache().await).cache_authenticated(true);
    let addr = one_route!(layer, move || async move { format!("call {}", c.bump()) });
    let (a, b) = twice(addr, "/r", &[("Authorization", "Bearer t")]).await;
    assert_eq!(
        (a.x_cache(), b.x_cache(), b.text().as_str()),
        ("miss", "hit", "call 1")
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn vary_headers_split_the_entry_and_vary_star_is_not_cached() {
    let calls = Calls::default();
    let c = calls.clone();
    let addr = one_route!(
        ResponseCacheLayer::new(l1_cache().await),
        move |headers: axum::http::HeaderMap| async move {
            c.bump();
            let lang = headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            ([(header::VARY, "Accept-Language")], lang)
        }
    );
    let fr = http_get(addr, "/r", &[("Accept-Language", "fr")]).await;
    let en = http_get(addr, "/r", &[("Accept-Language", "en")]).await;
    assert_eq!((fr.x_cache(), fr.text().as_str()), ("miss", "fr"));
    assert_eq!((en.x_cache(), en.text().as_str()), ("miss", "en"));
    let fr = http_get(addr, "/r", &[("Accept-Language", "fr")]).await;
    let en = http_get(addr, "/r", &[("Accept-Language", "en")]).await;
    let none = http_get(addr, "/r", &[]).await;
    assert_eq!((fr.x_cache(), fr.text().as_str()), ("hit", "fr"));
    assert_eq!((en.x_cache(), en.text().as_str()), ("hit", "en"));
    assert_eq!((none.x_cache(), none.text().as_str()), ("miss", "none"));
    assert_eq!(calls.get(), 3);

    let calls = Calls::default();
    let c = calls.clone();
    let addr = one_route!(
        ResponseCacheLayer::new(l1_cache().await),
        move || async move {
            c.bump();
            ([(header::VARY, "*")], "anything")
        }
    );
    let (_, second) = twice(addr, "/r", &[]).await;
    assert_eq!(second.x_cache(), "miss");
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn max_age_caps_the_route_ttl_and_sets_it_when_the_route_has_none() {
    for layer in [
        ResponseCacheLayer::new(l1_cache().await).ttl(Duration::from_secs(600)),
        ResponseCacheLayer::new(l1_cache().await),
    ] {
        let calls = Calls::default();
        let c = calls.clone();
        let addr = one_route!(layer, move || async move {
            c.bump();
            (
                [(header::CACHE_CONTROL, "public, max-age=1")],
                "short-lived",
            )
        });
        let (_, second) = twice(addr, "/r", &[]).await;
        assert_eq!(second.x_cache(), "hit");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = http_get(addr, "/r", &[]).await;
        assert_eq!(later.x_cache(), "miss", "the entry outlived max-age");
        assert_eq!(calls.get(), 2);
    }
    // The route's TTL caps a longer max-age.
    let calls = Calls::default();
    let c = calls.clone();
    let layer = ResponseCacheLayer::new(l1_cache().await).ttl(Duration::from_secs(1));
    let addr = one_route!(layer, move || async move {
        c.bump();
        ([(header::CACHE_CONTROL, "max-age=600")], "capped")
    });
    let (_, second) = twice(addr, "/r", &[]).await;
    assert_eq!(second.x_cache(), "hit");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(http_get(addr, "/r", &[]).await.x_cache(), "miss");
}

#[tokio::test]
async fn the_query_and_the_key_headers_are_part_of_the_key() {
    let calls = Calls::default();
    let c = calls.clone();
    let layer =
        ResponseCacheLayer::new(l1_cache().await).key_header(HeaderName::from_static("x-tenant"));
    let addr = one_route!(layer, move || async move { format!("call {}", c.bump()) });
    assert_eq!(http_get(addr, "/r?page=1", &[]).await.text(), "call 1");
    assert_eq!(http_get(addr, "/r?page=2", &[]).await.text(), "call 2");
    assert_eq!(http_get(addr, "/r?page=1", &[]).await.text(), "call 1");
    let a = http_get(addr, "/r?page=1", &[("X-Tenant", "a")]).await;
    let b = http_get(addr, "/r?page=1", &[("X-Tenant", "b")]).await;
    assert_eq!((a.text().as_str(), b.text().as_str()), ("call 3", "call 4"));
    let a_again = http_get(addr, "/r?page=1", &[("X-Tenant", "a")]).await;
    assert_eq!(
        (a_again.x_cache(), a_again.text().as_str()),
        ("hit", "call 3")
    );
    // A header not in the key changes nothing.
    let other = http_get(addr, "/r?page=1", &[("X-Other", "z")]).await;
    assert_eq!((other.x_cache(), other.text().as_str()), ("hit", "call 1"));
    assert_eq!(calls.get(), 4);
}

#[tokio::test]
async fn head_is_cached_without_a_body_and_post_is_not_cached() {
    let calls = Calls::default();
    let (c, p) = (calls.clone(), calls.clone());
    let app = Router::new().route(
        "/r",
        get(move || async move {
            c.bump();
            "twelve bytes"
        })
        .post(move || async move { format!("post {}", p.bump()) })
        .layer(ResponseCacheLayer::new(l1_cache().await)),
    );
    let addr = serve(app).await;
    let first = request(addr, "HEAD", "/r", &[]).await;
    let second = request(addr, "HEAD", "/r", &[]).await;
    assert_eq!((first.status, first.x_cache()), (200, "miss"));
    assert_eq!((second.status, second.x_cache()), (200, "hit"));
    assert_eq!(second.header("content-length"), Some("12"));
    assert_eq!(calls.get(), 1);
    // GET has its own entry, with the body.
    let got = http_get(addr, "/r", &[]).await;
    assert_eq!(
        (got.x_cache(), got.text().as_str()),
        ("miss", "twelve bytes")
    );
    assert_eq!(
        got.header("etag"),
        second.header("etag"),
        "HEAD and GET share the ETag"
    );

    let first = request(addr, "POST", "/r", &[]).await;
    let second = request(addr, "POST", "/r", &[]).await;
    assert_eq!((first.x_cache(), second.x_cache()), ("miss", "miss"));
    assert_eq!(second.text(), "post 4");
}

#[tokio::test]
async fn a_body_over_the_limit_is_passed_on_whole_and_uncached() {
    let calls = Calls::default();
    let c = calls.clone();
    let layer = ResponseCacheLayer::new(l1_cache().await).max_body_bytes(1000);
    let app = Router::new()
        .route(
            "/big",
            get({
                let c = c.clone();
                move || async move {
                    c.bump();
                    // A streamed body of unknown length, 5 chunks of 1000 bytes.
                    let chunks = (0..5u8).map(|i| Ok::<_, std::io::Error>(vec![b'a' + i; 1000]));
                    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                }
            }),
        )
        .route(
            "/small",
            get(move || async move {
                c.bump();
                "x".repeat(1000)
            }),
        )
        .layer(layer);
    let addr = serve(app).await;
    let (first, second) = twice(addr, "/big", &[]).await;
    assert_eq!(first.body.len(), 5000);
    assert_eq!(&first.body[4000..4010], b"eeeeeeeeee");
    assert_eq!((first.x_cache(), second.x_cache()), ("miss", "miss"));
    assert_eq!(second.body.len(), 5000);
    assert_eq!(calls.get(), 2);
    let (_, small) = twice(addr, "/small", &[]).await;
    assert_eq!((small.x_cache(), small.body.len()), ("hit", 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_misses_run_the_handler_once() {
    let calls = Calls::default();
    let c = calls.clone();
    let addr = one_route!(
        ResponseCacheLayer::new(l1_cache().await),
        move || async move {
            c.bump();
            tokio::time::sleep(Duration::from_millis(300)).await;
            "slow"
        }
    );
    let replies = futures_util::future::join_all((0..20).map(|_| http_get(addr, "/r", &[]))).await;
    assert_eq!(calls.get(), 1);
    assert!(
        replies
            .iter()
            .all(|r| r.status == 200 && r.text() == "slow")
    );
    let misses = replies.iter().filter(|r| r.x_cache() == "miss").count();
    assert_eq!(misses, 1, "only the leader of the flight missed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_an_uncacheable_response_each_get_one() {
    let calls = Calls::default();
    let c = calls.clone();
    let addr = one_route!(
        ResponseCacheLayer::new(l1_cache().await),
        move || async move {
            let n = c.bump();
            tokio::time::sleep(Duration::from_millis(200)).await;
            ([(header::CACHE_CONTROL, "no-store")], format!("call {n}"))
        }
    );
    let replies = futures_util::future::join_all((0..5).map(|_| http_get(addr, "/r", &[]))).await;
    assert_eq!(calls.get(), 5);
    let mut bodies: Vec<String> = replies.iter().map(Reply::text).collect();
    bodies.sort();
    assert_eq!(bodies, ["call 1", "call 2", "call 3", "call 4", "call 5"]);
}

#[tokio::test]
async fn statuses_set_cookie_and_request_no_cache() {
    let cache = l1_cache().await;
    let calls = Calls::default();
    let (a, b, c, d) = (calls.clone(), calls.clone(), calls.clone(), calls.clone());
    let app = Router::new()
        .route(
            "/missing",
            get(move || async move {
                a.bump();
                StatusCode::NOT_FOUND
            }),
        )
        .route(
            "/broken",
            get(move || async move {
                b.bump();
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route(
            "/cookie",
            get(move || async move {
                c.bump();
                ([(header::SET_COOKIE, "s=1")], "with cookie")
            }),
        )
        .route("/n", get(move || async move { format!("n {}", d.bump()) }))
        .layer(ResponseCacheLayer::new(cache.clone()));
    let addr = serve(app).await;
    let (_, missing) = twice(addr, "/missing", &[]).await;
    assert_eq!((missing.status, missing.x_cache()), (404, "hit"));
    let (_, broken) = twice(addr, "/broken", &[]).await;
    assert_eq!((broken.status, broken.x_cache()), (500, "miss"));
    let (first, cookie) = twice(addr, "/cookie", &[]).await;
    assert_eq!(first.header("set-cookie"), Some("s=1"));
    assert_eq!(cookie.x_cache(), "miss");
    assert_eq!(calls.get(), 5);

    // A client's no-cache makes the handler answer, and its answer is stored.
    assert_eq!(http_get(addr, "/n", &[]).await.text(), "n 6");
    let refreshed = http_get(addr, "/n", &[("Cache-Control", "no-cache")]).await;
    assert_eq!(
        (refreshed.x_cache(), refreshed.text().as_str()),
        ("miss", "n 7")
    );
    let after = http_get(addr, "/n", &[]).await;
    assert_eq!((after.x_cache(), after.text().as_str()), ("hit", "n 7"));

    // Opted in: the response is cached without its cookie.
    let addr = one_route!(
        ResponseCacheLayer::new(l1_cache().await).cache_set_cookie(true),
        || async { ([(header::SET_COOKIE, "s=1")], "with cookie") }
    );
    let (first, second) = twice(addr, "/r", &[]).await;
    assert_eq!(first.header("set-cookie"), Some("s=1"));
    assert_eq!(
        (second.x_cache(), second.header("set-cookie")),
        ("hit", None)
    );
}

#[tokio::test]
async fn tags_from_the_path_invalidate_responses() {
    let cache = l1_cache().await;
    let calls = Calls::default();
    let c = calls.clone();
    let layer = ResponseCacheLayer::new(cache.clone())
        .tag("products")
        .tag("product:{id}")
        .tags_with(|parts| vec![format!("path:{}", parts.uri.path())]);
    let app = Router::new().route(
        "/products/{id}",
        get(
            move |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                format!("product {id} v{}", c.bump())
            },
        )
        .layer(layer),
    );
    let addr = serve(app).await;
    http_get(addr, "/products/7", &[]).await;
    http_get(addr, "/products/8", &[]).await;
    assert_eq!(http_get(addr, "/products/7", &[]).await.x_cache(), "hit");
    cache.invalidate_tag("product:7").await.expect("invalidate");
    let seven = http_get(addr, "/products/7", &[]).await;
    assert_eq!(
        (seven.x_cache(), seven.text().as_str()),
        ("miss", "product 7 v3")
    );
    assert_eq!(http_get(addr, "/products/8", &[]).await.x_cache(), "hit");
    // A tag of the closure.
    cache
        .invalidate_tag("path:/products/8")
        .await
        .expect("invalidate");
    assert_eq!(http_get(addr, "/products/8", &[]).await.x_cache(), "miss");
    assert_eq!(http_get(addr, "/products/7", &[]).await.x_cache(), "hit");
    cache.invalidate_tag("products").await.expect("invalidate");
    assert_eq!(http_get(addr, "/products/7", &[]).await.x_cache(), "miss");
    assert_eq!(http_get(addr, "/products/8", &[]).await.x_cache(), "miss");
}

fn redis_config(url: &str, prefix: &str, with_l1: bool) -> vorte_cache::CacheConfig {
    let l1 = if with_l1 {
        "[cache.layers.l1]\nmax_size = 100\n"
    } else {
        ""
    };
    Config::from_toml_str(&format!(
        "[cache]\nkey_prefix = {prefix:?}\n{l1}[cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\ntimeout_ms = 200\n"
    ))
    .expect("config")
    .cache
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cache_on_the_same_redis_serves_the_stored_response() {
    let redis = shared_redis();
    let prefix = unique_prefix();
    let first_calls = Calls::default();
    let second_calls = Calls::default();
    let mut addrs = Vec::new();
    for calls in [first_calls.clone(), second_calls.clone()] {
        // Two handles built apart, as two processes would: they share only the Redis.
        let cache = Cache::from_config(&redis_config(&redis.url(), &prefix, true))
            .await
            .expect("cache");
        let addr = one_route!(
            ResponseCacheLayer::new(cache).ttl(Duration::from_secs(60)),
            move || async move {
                calls.bump();
                (
                    [(header::CONTENT_TYPE, "text/x-shared")],
                    "made by the first",
                )
            }
        );
        addrs.push(addr);
    }
    let made = http_get(addrs[0], "/r", &[]).await;
    assert_eq!(made.x_cache(), "miss");
    let served = http_get(addrs[1], "/r", &[]).await;
    assert_eq!((served.status, served.x_cache()), (200, "hit"));
    assert_eq!(served.text(), "made by the first");
    assert_eq!(served.header("content-type"), Some("text/x-shared"));
    assert_eq!(served.header("etag"), made.header("etag"));
    assert_eq!((first_calls.get(), second_calls.get()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cache_does_not_fail_the_request() {
    let mut redis = RedisServer::start();
    let cache = Cache::from_config(&redis_config(&redis.url(), &unique_prefix(), false))
        .await
        .expect("cache");
    let calls = Calls::default();
    let c = calls.clone();
    let addr = one_route!(ResponseCacheLayer::new(cache), move || async move {
        format!("call {}", c.bump())
    });
    let (_, second) = twice(addr, "/r", &[]).await;
    assert_eq!(second.x_cache(), "hit", "the cache works while Redis runs");
    redis.kill();
    for expected in ["call 2", "call 3"] {
        let reply = http_get(addr, "/r?after-kill", &[]).await;
        assert_eq!((reply.status, reply.x_cache()), (200, "miss"));
        assert_eq!(reply.text(), expected);
    }
}
