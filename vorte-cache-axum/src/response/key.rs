//! The cache key of a request (`docs/web.md#rc2-the-key`): method, path and query in clear, the
//! chosen request headers and the response's `Vary` headers as a digest.

use http::header::{HeaderMap, HeaderName};
use http::{Method, Uri};
use xxhash_rust::xxh3::xxh3_128;

/// Every key of the response cache starts with this.
pub(crate) const KEY_PREFIX: &str = "http:";

/// Keys longer than this are replaced by a digest: well inside `vorte_cache::MAX_KEY_LEN`, with
/// room for the cache's own `key_prefix`.
const LONGEST_CLEAR_KEY: usize = vorte_cache::MAX_KEY_LEN / 2;

/// A 128-bit digest of the values of `names` in `headers`, in the order given. An absent header
/// and an empty one differ; several fields of one name are taken in order.
fn header_digest<'a>(headers: &HeaderMap, names: impl Iterator<Item = &'a str>) -> u128 {
    let mut material = Vec::new();
    for name in names {
        material.extend_from_slice(name.as_bytes());
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            material.push(0);
            continue;
        }
        for value in values {
            material.push(1);
            material.extend_from_slice(value.as_bytes());
        }
        material.push(2);
    }
    xxh3_128(&material)
}

/// Keeps a key within [`LONGEST_CLEAR_KEY`], replacing a longer one by its digest.
fn bounded(key: String) -> String {
    if key.len() <= LONGEST_CLEAR_KEY {
        key
    } else {
        format!("{KEY_PREFIX}digest:{:032x}", xxh3_128(key.as_bytes()))
    }
}

/// The key of a request before any `Vary`: `http:GET:/path?query`, then `#` and a digest of
/// the route's key headers when it has any.
pub(crate) fn base_key(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    key_headers: &[HeaderName],
) -> String {
    let mut key = format!("{KEY_PREFIX}{method}:{}", uri.path());
    if let Some(query) = uri.query() {
        key.push('?');
        key.push_str(query);
    }
    if !key_headers.is_empty() {
        let digest = header_digest(headers, key_headers.iter().map(HeaderName::as_str));
        key.push_str(&format!("#{digest:032x}"));
    }
    bounded(key)
}

/// The key of one variant of `base`: the values of the `Vary` headers `names` in `headers`.
pub(crate) fn variant_key(base: &str, names: &[String], headers: &HeaderMap) -> String {
    let digest = header_digest(headers, names.iter().map(String::as_str));
    bounded(format!("{base}|vary:{digest:032x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_as_the_request_and_headers_change_it() {
        let uri: Uri = "/products/7?page=2".parse().expect("uri");
        let mut headers = HeaderMap::new();
        let plain = base_key(&Method::GET, &uri, &headers, &[]);
        assert_eq!(plain, "http:GET:/products/7?page=2");
        let lang = [http::header::ACCEPT_LANGUAGE];
        let absent = base_key(&Method::GET, &uri, &headers, &lang);
        headers.insert(http::header::ACCEPT_LANGUAGE, "".parse().expect("value"));
        let empty = base_key(&Method::GET, &uri, &headers, &lang);
        headers.insert(http::header::ACCEPT_LANGUAGE, "fr".parse().expect("value"));
        let fr = base_key(&Method::GET, &uri, &headers, &lang);
        assert!(absent.starts_with("http:GET:/products/7?page=2#"));
        assert_ne!(absent, empty);
        assert_ne!(empty, fr);
    }

    #[test]
    fn a_long_key_becomes_a_digest() {
        let uri: Uri = format!("/{}", "a".repeat(2000)).parse().expect("uri");
        let key = base_key(&Method::GET, &uri, &HeaderMap::new(), &[]);
        assert!(key.starts_with("http:digest:") && key.len() < 100, "{key}");
    }
}
