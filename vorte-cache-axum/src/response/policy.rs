//! Which requests the response cache looks up and which responses it keeps
//! (`docs/web.md#rc1-what-is-cached`).

use std::time::Duration;

use http::header::{self, HeaderMap};
use http::response::Parts as ResponseParts;
use http::{Method, StatusCode};

use super::Rules;

/// What the layer does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestPlan {
    /// Answered by the inner service, nothing looked up or stored.
    Bypass,
    /// Looked up; on a miss, produced once and stored.
    Lookup,
    /// `Cache-Control: no-cache` from the client: produced again and stored, not looked up
    /// (`docs/web.md#rc9-request-no-cache`).
    Refresh,
}

/// How a response may be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Storable {
    /// The entry's TTL; `None` is the cache's `default_ttl`.
    pub(crate) ttl: Option<Duration>,
    /// The lower-case header names of the response's `Vary`, sorted, without duplicates.
    pub(crate) vary: Vec<String>,
}

/// The directives of the `Cache-Control` fields of `headers`, names lower-cased.
fn cache_control(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| {
            let directive = directive.trim();
            if directive.is_empty() {
                return None;
            }
            Some(match directive.split_once('=') {
                Some((name, value)) => (
                    name.trim().to_ascii_lowercase(),
                    Some(value.trim().trim_matches('"').to_owned()),
                ),
                None => (directive.to_ascii_lowercase(), None),
            })
        })
        .collect()
}

fn has_directive(directives: &[(String, Option<String>)], name: &str) -> bool {
    directives.iter().any(|(n, _)| n == name)
}

fn seconds(directives: &[(String, Option<String>)], name: &str) -> Option<u64> {
    directives
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref()?.parse().ok())
}

/// Whether the request carries credentials: an `Authorization` header, or one of the route's
/// session cookies (`docs/web.md#rc7-authenticated-requests`).
pub(crate) fn is_authenticated(rules: &Rules, headers: &HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return true;
    }
    if rules.auth_cookies.is_empty() {
        return false;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.trim()))
        .any(|name| rules.auth_cookies.iter().any(|c| c == name))
}

/// What the layer does with a request of `method` with `headers`.
pub(crate) fn request_plan(rules: &Rules, method: &Method, headers: &HeaderMap) -> RequestPlan {
    // The request body is not part of the key: only safe methods can share an answer.
    if method != Method::GET && method != Method::HEAD {
        return RequestPlan::Bypass;
    }
    if !rules.cache_authenticated && is_authenticated(rules, headers) {
        return RequestPlan::Bypass;
    }
    let directives = cache_control(headers);
    if has_directive(&directives, "no-store") {
        return RequestPlan::Bypass;
    }
    let pragma_no_cache = directives.is_empty()
        && headers
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
    if rules.request_no_cache && (has_directive(&directives, "no-cache") || pragma_no_cache) {
        return RequestPlan::Refresh;
    }
    RequestPlan::Lookup
}

/// Whether a response may be kept, and how (`docs/web.md#rc1-what-is-cached`); `None` when it may
/// not.
pub(crate) fn storable(rules: &Rules, response: &ResponseParts) -> Option<Storable> {
    if !rules.statuses.contains(&response.status) {
        return None;
    }
    let headers = &response.headers;
    let directives = cache_control(headers);
    if ["no-store", "private", "no-cache"]
        .iter()
        .any(|d| has_directive(&directives, d))
    {
        return None;
    }
    if headers.contains_key(header::SET_COOKIE) && !rules.cache_set_cookie {
        return None;
    }
    let mut vary: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    if vary.iter().any(|name| name == "*") {
        return None;
    }
    vary.sort();
    vary.dedup();
    // A shared cache takes `s-maxage` over `max-age`.
    let max_age = seconds(&directives, "s-maxage").or_else(|| seconds(&directives, "max-age"));
    if max_age == Some(0) {
        return None;
    }
    let ttl = match (rules.ttl, max_age.map(Duration::from_secs)) {
        (Some(route), Some(origin)) => Some(route.min(origin)),
        (route, origin) => route.or(origin),
    };
    Some(Storable { ttl, vary })
}

/// The statuses kept by default (`docs/web.md#rc5-statuses`): those RFC 9110 §15.1 lets a cache
/// keep without explicit freshness, less `206` (ranges), `405`, `414` and `501`.
pub(crate) const DEFAULT_STATUSES: [StatusCode; 8] = [
    StatusCode::OK,
    StatusCode::NON_AUTHORITATIVE_INFORMATION,
    StatusCode::NO_CONTENT,
    StatusCode::MULTIPLE_CHOICES,
    StatusCode::MOVED_PERMANENTLY,
    StatusCode::PERMANENT_REDIRECT,
    StatusCode::NOT_FOUND,
    StatusCode::GONE,
];
