//! A live dashboard page for one cache (feature `dashboard`; `docs/web.md#the-dashboard`).
//!
//! Mount [`routes`] at a path of your choosing; the page loads its stylesheet, script and
//! event stream from paths relative to that mount point:
//!
//! ```
//! use axum::Router;
//! use vorte_cache::Cache;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
//! let cache = Cache::from_config(&Default::default()).await?;
//! // The page at GET /ops/cache, its live figures at GET /ops/cache/events.
//! let app: Router = Router::new().nest("/ops/cache", vorte_cache_axum::dashboard::routes(cache));
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! The page is self-contained (no external network, no build step): HTML, CSS and vanilla
//! JavaScript embedded in the binary. The figures come from one server-side task per
//! [`routes`] call, shared by every open page, that reads the counters every second and asks the
//! stores what they hold every 5 seconds; it runs only while a page is open.

mod hub;
mod snapshot;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{NestedPath, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use vorte_cache::Cache;

use hub::Hub;

const PAGE: &str = include_str!("assets/index.html");
const STYLE: &str = include_str!("assets/dashboard.css");
const SCRIPT: &str = include_str!("assets/dashboard.js");

/// The dashboard: `GET /` (the page), `GET /dashboard.css`, `GET /dashboard.js`, and
/// `GET /events`, a `text/event-stream` of one JSON snapshot per second. `S` is whatever state
/// the router it joins holds; the routes need none of it.
///
/// The page has no access control of its own: it shows key names only as
/// `[cache.observe] record_keys` allows, but mount it behind the application's authentication
/// like any operations page.
pub fn routes<S>(cache: Cache) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let hub = Hub::new(cache);
    Router::new()
        .route("/", get(page))
        .route(
            "/dashboard.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route(
            "/dashboard.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/events",
            get(move || {
                let hub = hub.clone();
                async move { events(&hub) }
            }),
        )
}

/// The page, with a `<base>` at the path it is mounted at, so that its relative links work
/// whether it is reached as `/ops/cache` or `/ops/cache/`.
async fn page(request: Request) -> Html<String> {
    let mount = request
        .extensions()
        .get::<NestedPath>()
        .map(|p| p.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let base = format!("{}/", escape_attribute(&mount));
    Html(PAGE.replace("{{base}}", &base))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

fn events(hub: &Arc<Hub>) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let receiver = hub.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            // An error means the hub is gone: the stream ends and the page reconnects.
            receiver.changed().await.ok()?;
            let latest = receiver.borrow_and_update().clone();
            if let Some(json) = latest {
                return Some((
                    Ok(Event::default().event("snapshot").data(&*json)),
                    receiver,
                ));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `s` fit for a double-quoted HTML attribute.
fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_attribute;

    #[test]
    fn a_mount_path_cannot_break_out_of_the_base_attribute() {
        assert_eq!(escape_attribute("/ops/cache"), "/ops/cache");
        assert_eq!(
            escape_attribute("/a\"><script>"),
            "/a&quot;&gt;&lt;script&gt;"
        );
    }
}
