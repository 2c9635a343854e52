//! Server URLs, parsed in one place on the `url` crate.
//!
//! Resolution checks every URL-valued key with [`ServerUrl::parse`] (errors name the config path
//! and show the URL redacted), and the stores and the bus read hosts, ports, credentials, the
//! database and extra cluster nodes from the same parsed form instead of splitting strings again.

use std::borrow::Cow;

use url::Url;

use super::resolve::config_error;
use super::secret::shown_in_error;
use crate::error::Result;

/// A parsed server URL: `scheme://[user[:password]@]host[:port][/path][?query]`.
#[derive(Debug, Clone)]
pub(crate) struct ServerUrl {
    url: Url,
}

impl ServerUrl {
    /// Parses `s`, whose scheme must be one of `schemes` (any case); `expected` says which in
    /// messages. The error names `path` and shows the URL redacted.
    pub(crate) fn parse(s: &str, path: &str, schemes: &[&str], expected: &str) -> Result<Self> {
        let malformed = |why: String| {
            config_error(
                path,
                format!("malformed URL {:?}: {why}", shown_in_error(s)),
            )
        };
        // The url crate trims and drops some of these silently; a URL that holds them is a typo.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed(
                "holds whitespace or control characters".to_owned(),
            ));
        }
        // Without `://` the url crate reads `localhost:6379` as scheme `localhost`.
        match s.split_once("://") {
            Some((scheme, _)) if schemes.iter().any(|ok| scheme.eq_ignore_ascii_case(ok)) => {}
            _ => return Err(malformed(format!("expected {expected}"))),
        }
        let url = Url::parse(s).map_err(|e| {
            malformed(match e {
                url::ParseError::EmptyHost => "missing host".to_owned(),
                url::ParseError::InvalidPort => format!("invalid port {:?}", port_text(s)),
                url::ParseError::InvalidIpv6Address => "invalid IPv6 host".to_owned(),
                other => other.to_string(),
            })
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(malformed("missing host".to_owned()));
        }
        Ok(ServerUrl { url })
    }

    /// The scheme, lower-cased.
    pub(crate) fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// `rediss://` or `rediss-cluster://`.
    #[cfg_attr(
        not(any(feature = "redis", test)),
        expect(dead_code, reason = "only the Redis client reads it")
    )]
    pub(crate) fn is_tls(&self) -> bool {
        self.scheme().starts_with("rediss")
    }

    /// The host as written, with brackets around an IPv6 address (`[::1]`).
    pub(crate) fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The port, or `default` when the URL has none.
    pub(crate) fn port_or(&self, default: u16) -> u16 {
        self.url.port_or_known_default().unwrap_or(default)
    }

    /// `host:port`, with `default` as the port when the URL has none.
    #[cfg_attr(
        not(any(feature = "memcached", test)),
        expect(dead_code, reason = "only memcached addresses servers by host:port")
    )]
    pub(crate) fn host_port(&self, default: u16) -> String {
        format!("{}:{}", self.host(), self.port_or(default))
    }

    /// The user name, percent-decoded; `None` when empty.
    #[cfg_attr(
        not(any(feature = "redis", test)),
        expect(dead_code, reason = "only the Redis client authenticates")
    )]
    pub(crate) fn username(&self) -> Option<String> {
        decoded(self.url.username())
    }

    /// The password, percent-decoded; `None` when empty.
    #[cfg_attr(
        not(any(feature = "redis", test)),
        expect(dead_code, reason = "only the Redis client authenticates")
    )]
    pub(crate) fn password(&self) -> Option<String> {
        decoded(self.url.password().unwrap_or_default())
    }

    /// The Redis database of the path (`/2`); `None` for no path. Anything else in the path is
    /// an error, described for a message.
    #[cfg_attr(
        not(any(feature = "redis", test)),
        expect(dead_code, reason = "only the Redis client selects a database")
    )]
    pub(crate) fn database(&self) -> std::result::Result<Option<u8>, String> {
        let path = self.url.path().trim_start_matches('/');
        if path.is_empty() {
            return Ok(None);
        }
        path.parse::<u8>()
            .map(Some)
            .map_err(|_| format!("the path {path:?} is not a database number (0 to 255)"))
    }

    /// The extra seed nodes of a cluster URL: its `node=host:port` query parameters.
    #[cfg_attr(
        not(any(feature = "redis", test)),
        expect(dead_code, reason = "only the Redis cluster client reads seed nodes")
    )]
    pub(crate) fn nodes(&self) -> std::result::Result<Vec<(String, u16)>, String> {
        self.url
            .query_pairs()
            .filter(|(name, _)| name == "node")
            .map(|(_, node)| {
                let bad = || format!("node {node:?} is not host:port");
                let (host, port) = node.rsplit_once(':').ok_or_else(bad)?;
                let port = port.parse::<u16>().map_err(|_| bad())?;
                if host.is_empty() {
                    return Err(bad());
                }
                Ok((host.to_owned(), port))
            })
            .collect()
    }
}

fn decoded(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    let text: Cow<'_, str> = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
    Some(text.into_owned())
}

/// The text after the host's `:` in `scheme://[userinfo@]host:port/…`, for the message about an
/// invalid port (the url crate only says that the port is invalid).
fn port_text(s: &str) -> &str {
    let rest = s.split_once("://").map_or(s, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match host_port.rfind(']') {
        Some(close) => &host_port[close + 1..],
        None => host_port,
    };
    after_host.rsplit_once(':').map_or("", |(_, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS: &[&str] = &["redis", "rediss"];

    fn parse(s: &str) -> ServerUrl {
        ServerUrl::parse(s, "p", REDIS, "redis://").unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn reads_every_part() {
        let u = parse("rediss://us%40er:p%40ss@h:6380/1");
        assert!(u.is_tls());
        assert_eq!(u.host_port(6379), "h:6380");
        assert_eq!(u.username().as_deref(), Some("us@er"));
        assert_eq!(u.password().as_deref(), Some("p@ss"));
        assert_eq!(u.database(), Ok(Some(1)));
        let u = parse("redis://:pw@[::1]");
        assert_eq!(u.host_port(11211), "[::1]:11211");
        assert_eq!(u.username(), None);
        assert_eq!(u.database(), Ok(None));
        // A password holding `@` keeps everything up to the last one.
        assert_eq!(parse("redis://u:p@w@h:3?x=1").host_port(1), "h:3");
        assert!(parse("redis://h/a").database().is_err());
    }

    #[test]
    fn cluster_nodes_come_from_the_query() {
        let u = ServerUrl::parse(
            "redis-cluster://a:1?node=b:2&node=c:3",
            "p",
            &["redis-cluster"],
            "redis-cluster://",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u.nodes(),
            Ok(vec![("b".to_owned(), 2), ("c".to_owned(), 3)])
        );
        assert!(parse("redis://a:1?node=b").nodes().is_err());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |s: &str| {
            ServerUrl::parse(s, "p", REDIS, "redis://")
                .err()
                .map(|e| e.message().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(err("h:1"), r#"p: malformed URL "h:1": expected redis://"#);
        assert_eq!(
            err("redis://"),
            r#"p: malformed URL "redis://": missing host"#
        );
        assert_eq!(
            err("redis://:1"),
            r#"p: malformed URL "redis://:1": missing host"#
        );
        assert_eq!(
            err("redis://u:pw@h:x"),
            r#"p: malformed URL "redis://***@h:x": invalid port "x""#
        );
        assert_eq!(
            err("redis://[::1]:x"),
            r#"p: malformed URL "redis://[::1]:x": invalid port "x""#
        );
        assert!(err("redis://h 1").contains("whitespace"));
        assert!(err("redis://[::1").contains("IPv6"));
    }
}
