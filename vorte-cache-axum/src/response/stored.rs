//! The stored form of a response, and how a response (stored or just produced) is answered:
//! `ETag`, `304 Not Modified`, `Age` and `x-cache` (`docs/web.md#rc10-etag-and-304`).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::X_CACHE;

/// What the cache holds under a response key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// A response.
    Response(StoredResponse),
    /// Under a base key: the responses vary on these request headers (lower case); each
    /// variant is under its own key (`docs/web.md#rc3-vary`).
    Vary(Vec<String>),
}

/// A response as stored: status, end-to-end headers (no hop-by-hop field, no `Set-Cookie`),
/// the whole body, and when it was stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    /// Seconds since the Unix epoch, for `Age`.
    stored_at: u64,
}

/// Hop-by-hop fields (RFC 9110 §7.6.1), never stored.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The fields a `304` keeps of the `200` it stands for (RFC 9110 §15.4.5).
const KEPT_BY_304: [HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Adds a strong `ETag` computed from `body` when a `2xx` response has none
/// (`docs/web.md#rc10-etag-and-304`).
pub(crate) fn ensure_etag(status: StatusCode, headers: &mut HeaderMap, body: &[u8]) {
    if !status.is_success() || headers.contains_key(header::ETAG) {
        return;
    }
    let tag = format!("\"x3-{:032x}\"", xxh3_128(body));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
}

impl StoredResponse {
    /// The stored form of a response whose headers already carry its `ETag`.
    pub(crate) fn new(status: StatusCode, headers: &HeaderMap, body: Bytes) -> StoredResponse {
        let named_by_connection: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        let headers = headers
            .iter()
            .filter(|(name, _)| {
                let name = name.as_str();
                name != header::SET_COOKIE.as_str()
                    && name != X_CACHE.as_str()
                    && !HOP_BY_HOP.contains(&name)
                    && !named_by_connection.iter().any(|n| n == name)
            })
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect();
        StoredResponse {
            status: status.as_u16(),
            headers,
            body,
            stored_at: now_secs(),
        }
    }

    /// The stored response as an answer to a request with `method` and `request_headers`.
    pub(crate) fn answer(&self, method: &Method, request_headers: &HeaderMap) -> Response<Body> {
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 2);
        for (name, value) in &self.headers {
            // Stored by this module from a valid field: these cannot fail, but a value read
            // back from a shared layer is skipped rather than trusted.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(name, value);
            }
        }
        let age = now_secs().saturating_sub(self.stored_at);
        headers.insert(header::AGE, HeaderValue::from(age));
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        answer(
            status,
            headers,
            self.body.clone(),
            method,
            request_headers,
            CacheStatus::Hit,
        )
    }
}

/// The value of the `x-cache` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// Served from the cache (or from another request's single flight).
    Hit,
    /// Answered by the inner service.
    Miss,
}

impl CacheStatus {
    pub(crate) fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        })
    }
}

/// Whether `If-None-Match` in `request_headers` matches `etag` (weak comparison, RFC 9110
/// §13.1.2; `*` matches any).
fn none_match(request_headers: &HeaderMap, etag: &[u8]) -> bool {
    let opaque = |tag: &[u8]| -> Vec<u8> { tag.strip_prefix(b"W/").unwrap_or(tag).to_vec() };
    let ours = opaque(etag);
    request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|tag| tag.trim_ascii())
        .any(|tag| tag == b"*" || opaque(tag) == ours)
}

/// A whole response as answered: a `304` when the request's `If-None-Match` matches the
/// `ETag` of a `200`, else the response (without body to a `HEAD`); with `x-cache`.
pub(crate) fn answer(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    method: &Method,
    request_headers: &HeaderMap,
    cache_status: CacheStatus,
) -> Response<Body> {
    headers.insert(X_CACHE.clone(), cache_status.header_value());
    let not_modified = status == StatusCode::OK
        && headers
            .get(header::ETAG)
            .is_some_and(|etag| none_match(request_headers, etag.as_bytes()));
    if not_modified {
        let mut kept = HeaderMap::new();
        for name in KEPT_BY_304.iter().chain([&X_CACHE, &header::AGE]) {
            for value in headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = kept;
        return response;
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_star_matches() {
        let mut request = HeaderMap::new();
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(none_match(&request, b"\"b\""));
        assert!(none_match(&request, b"W/\"a\""));
        assert!(!none_match(&request, b"\"c\""));
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&request, b"\"c\""));
    }

    #[test]
    fn hop_by_hop_and_set_cookie_are_not_stored() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::SET_COOKIE, HeaderValue::from_static("s=1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let stored = StoredResponse::new(StatusCode::OK, &headers, Bytes::from_static(b"x"));
        let names: Vec<&str> = stored.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type"]);
    }
}
