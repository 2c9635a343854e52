//! [`Secret`]: a config string that may hold a credential, and how such strings are redacted.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A string that may hold a credential: a URL with a password, or a key.
///
/// `Debug` and `Display` never show the credential:
/// - a URL (anything with `://`) is shown with its user information replaced by `***`
///   (`redis://***@host:6379/0`) and the values of query parameters such as `password` or `token`
///   replaced by `***`;
/// - anything else is shown as `***`.
///
/// [`expose`](Secret::expose) gives the string itself, for the code that connects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a URL or a key.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The string itself, credentials included. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The string with its credentials replaced by `***`.
    pub(crate) fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Query parameters whose values are redacted (matched as substrings of the lower-cased name).
const SENSITIVE_PARAMS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "sig",
    "credential",
];

/// Redacts a URL's user information and sensitive query values; anything that is not a URL
/// becomes `***`.
///
/// Errs on the side of hiding: everything between `://` and the *last* `@` of the string goes, so a
/// password holding `/`, `?` or `@` cannot leak.
fn redact(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return "***".to_owned();
    };
    let scheme = &s[..scheme_end];
    let rest = &s[scheme_end + 3..];
    let rest = match rest.rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_owned(),
    };
    let rest = match rest.find('?') {
        None => rest,
        Some(q) => {
            let (head, query) = rest.split_at(q);
            let query = &query[1..];
            let (query, fragment) = match query.find('#') {
                Some(h) => query.split_at(h),
                None => (query, ""),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if is_sensitive(name) => format!("{name}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{head}?{}{fragment}", params.join("&"))
        }
    };
    format!("{scheme}://{rest}")
}

fn is_sensitive(param: &str) -> bool {
    let name = param.to_ascii_lowercase();
    SENSITIVE_PARAMS.iter().any(|s| name.contains(s))
}

/// How a URL-valued key is shown in an error message: like [`redact`], except that a value
/// without `://` (a malformed URL such as `localhost:6379`) is shown, minus anything up to its last
/// `@`, so the user can see what is wrong with it.
pub(crate) fn shown_in_error(s: &str) -> String {
    if s.contains("://") {
        redact(s)
    } else if let Some(at) = s.rfind('@') {
        format!("***@{}", &s[at + 1..])
    } else {
        s.to_owned()
    }
}
