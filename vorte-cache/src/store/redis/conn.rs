//! Where a Redis client connects: the parsed URLs of a layer or of the bus, and the fred
//! configuration built from them (credentials, database, cluster seed nodes, TLS).

use fred::prelude::{Config as FredConfig, ReconnectPolicy, ServerConfig};

use crate::config::Secret;
use crate::config::url::ServerUrl;
use crate::error::{Error, ErrorKind, Result};

/// Where a Redis client connects, parsed once by [`ServerUrl`]: the first URL gives the
/// credentials, the database and TLS; a cluster also has more seed nodes.
pub(crate) struct RedisTarget {
    first: ServerUrl,
    more: Vec<(String, u16)>,
    clustered: bool,
}

/// The URL schemes of a Redis layer.
const LAYER_SCHEMES: &[&str] = &["redis", "rediss"];

impl RedisTarget {
    /// A single Redis server (`path` names the key in errors).
    pub(crate) fn server(url: &Secret, path: &str) -> Result<Self> {
        Ok(RedisTarget {
            first: ServerUrl::parse(url.expose(), path, LAYER_SCHEMES, "redis:// or rediss://")?,
            more: Vec::new(),
            clustered: false,
        })
    }

    /// A Redis Cluster through its seed nodes (`path` names the key in errors).
    pub(crate) fn cluster(urls: &[Secret], path: &str) -> Result<Self> {
        let mut parsed = urls.iter().map(|url| {
            ServerUrl::parse(url.expose(), path, LAYER_SCHEMES, "redis:// or rediss://")
        });
        let first = parsed
            .next()
            .ok_or_else(|| Error::new(ErrorKind::Config, format!("{path}: no URL")))??;
        let more = parsed
            .map(|url| url.map(|u| (u.host().to_owned(), u.port_or(DEFAULT_PORT))))
            .collect::<Result<_>>()?;
        Ok(RedisTarget {
            first,
            more,
            clustered: true,
        })
    }

    /// `[cache.bus] url`: `redis(s)://` for a single server, `redis(s)-cluster://a?node=b` for a
    /// cluster.
    pub(crate) fn bus(url: &Secret, path: &str) -> Result<Self> {
        let first = ServerUrl::parse(
            url.expose(),
            path,
            &["redis", "rediss", "redis-cluster", "rediss-cluster"],
            "redis://, rediss://, redis-cluster:// or rediss-cluster://",
        )?;
        let clustered = first.scheme().ends_with("-cluster");
        let more = first
            .nodes()
            .map_err(|why| Error::new(ErrorKind::Config, format!("{path}: {why}")))?;
        Ok(RedisTarget {
            first,
            more,
            clustered,
        })
    }

    /// Whether this is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        self.clustered
    }
}

/// Redis's port when a URL has none.
const DEFAULT_PORT: u16 = 6379;

/// How a lost connection is made again: at once, then after 50, 100 and 200 ms, then every
/// 250 ms for as long as it takes. The short ceiling finds a restarted server within 250 ms; with
/// a ceiling of 2 s, a cache (and its bus, which uses this too) stayed on a dead connection up to
/// 2 s after the server was back (`docs/resilience.md#l2-redis-killed`). An attempt on a server
/// that is down costs one refused connection.
pub(crate) fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 50, 250, 2)
}

/// The fred configuration of `target`; `path` names the config key in errors.
///
/// A `rediss://` URL turns TLS on, trusting the CAs of `tls_ca_file` when given (else the
/// system's roots); it needs the `tls` cargo feature.
pub(crate) fn fred_config(
    target: &RedisTarget,
    tls_ca_file: Option<&std::path::Path>,
    path: &str,
) -> Result<FredConfig> {
    let first = &target.first;
    let tls = first.is_tls();
    if tls && !cfg!(feature = "tls") {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{path}: rediss:// needs vorte-cache's `tls` cargo feature"),
        ));
    }
    let main = (first.host().to_owned(), first.port_or(DEFAULT_PORT));
    let (server, database) = if target.clustered {
        // A cluster has no databases; the path is ignored, as fred does.
        let hosts = std::iter::once(main).chain(target.more.iter().cloned());
        (ServerConfig::new_clustered(hosts.collect()), None)
    } else {
        let database = first.database().map_err(|why| {
            Error::new(
                ErrorKind::Config,
                format!("{path}: not a usable Redis URL: {why}"),
            )
        })?;
        (ServerConfig::new_centralized(main.0, main.1), database)
    };
    // The TLS connector is set below rather than by fred, which would let rustls guess a crypto
    // provider (it panics when two are compiled in).
    let config = FredConfig {
        server,
        username: first.username(),
        password: first.password(),
        database,
        ..FredConfig::default()
    };
    #[cfg(feature = "tls")]
    let config = if tls {
        FredConfig {
            tls: Some(tls::connector(tls_ca_file, path)?.into()),
            ..config
        }
    } else {
        config
    };
    #[cfg(not(feature = "tls"))]
    let _ = tls_ca_file;
    Ok(config)
}

#[cfg(feature = "tls")]
mod tls {
    use fred::rustls::pki_types::CertificateDer;
    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::{ClientConfig, RootCertStore};
    use fred::types::config::TlsConnector;

    use crate::error::{Error, ErrorKind, Result};

    /// A rustls connector trusting `ca_file`'s certificates, or the system's roots.
    ///
    /// The crypto provider is named (ring) rather than left to rustls: when another dependency
    /// (object_store's S3 client) compiles aws-lc-rs into the same rustls, rustls cannot pick a
    /// process default and its `builder()` panics.
    pub(super) fn connector(ca_file: Option<&std::path::Path>, path: &str) -> Result<TlsConnector> {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(ca_file) => {
                let file_error = |e: &dyn std::fmt::Display| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{path}: tls_ca_file {}: {e}", ca_file.display()),
                    )
                };
                for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| file_error(&e))? {
                    let cert = cert.map_err(|e| file_error(&e))?;
                    roots.add(cert).map_err(|e| file_error(&e))?;
                }
                if roots.is_empty() {
                    return Err(file_error(&"no certificate in the file"));
                }
            }
            None => {
                let native = fred::rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // A system root rustls cannot parse is skipped, as browsers do.
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = std::sync::Arc::new(fred::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(ErrorKind::Config, format!("{path}: TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_become_seed_nodes() {
        let urls = [
            Secret::new("redis://u:pw@127.0.0.1:7000"),
            Secret::new("redis://127.0.0.1:7001"),
        ];
        let target = RedisTarget::cluster(&urls, "cache.layers.l3.urls").expect("urls");
        let cfg = fred_config(&target, None, "cache.layers.l3.urls").expect("config");
        assert_eq!(cfg.username.as_deref(), Some("u"));
        let fred::prelude::ServerConfig::Clustered { hosts, .. } = &cfg.server else {
            panic!("clustered config expected");
        };
        assert_eq!(hosts.len(), 2);
    }
}
