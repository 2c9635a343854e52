//! The backends of a remote layer: which keys each takes ([`Backend::keys`], the one table of
//! them), and each backend's typed configuration ([`BackendConfig`]), resolved from the file's
//! flat layer table and written back to it for environment overrides.
//!
//! Adding a backend key touches this file (the table, the backend's struct, its `resolve` and
//! `to_raw`), the grammar in `raw.rs` and the backend's store.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::raw::{Positive, RawLayer};
use super::resolve::{config_error, join, quoted_list};
use super::secret::{Secret, shown_in_error};
use super::url::ServerUrl;
use crate::error::Result;

/// The default timeout of Redis, Memcached and Redis Cluster layers.
const NETWORK_TIMEOUT: Duration = Duration::from_millis(250);
/// The default timeout of object-store layers (`s3`, `file`, `gcs`, `azure`, `http`).
const OBJECT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// The default [`RedisConfig::pool_size`].
const DEFAULT_POOL_SIZE: usize = 2;
/// The largest accepted [`RedisConfig::pool_size`].
const MAX_POOL_SIZE: usize = 64;
/// The longest `key_prefix` a memcached layer accepts: it leaves room, within memcached's
/// 250-byte keys, for the namespace generation and a hashed name.
const MEMCACHED_MAX_PREFIX_LEN: usize = 190;

/// The `backend` of a remote layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `"redis"`: a single Redis server (L2 or L3).
    Redis,
    /// `"memcached"`: one or more Memcached servers (L2).
    Memcached,
    /// `"redis-cluster"`: a Redis Cluster reached through its seed nodes (L3).
    RedisCluster,
    /// `"s3"`: S3 or an S3-compatible server (L4).
    S3,
    /// `"file"`: a local directory (L4).
    File,
    /// `"gcs"`: Google Cloud Storage (L4).
    Gcs,
    /// `"azure"`: Azure Blob Storage (L4).
    Azure,
    /// `"http"`: a WebDAV-style HTTP server (L4).
    Http,
}

impl Backend {
    /// Every backend, in the order of the table in [`LayerConfig`](super::LayerConfig).
    pub const ALL: [Backend; 8] = [
        Backend::Redis,
        Backend::Memcached,
        Backend::RedisCluster,
        Backend::S3,
        Backend::File,
        Backend::Gcs,
        Backend::Azure,
        Backend::Http,
    ];

    /// The name used in configuration: `"redis"`, `"redis-cluster"`, `"s3"`, …
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Memcached => "memcached",
            Backend::RedisCluster => "redis-cluster",
            Backend::S3 => "s3",
            Backend::File => "file",
            Backend::Gcs => "gcs",
            Backend::Azure => "azure",
            Backend::Http => "http",
        }
    }

    /// `true` for the backends served through object_store (`s3`, `file`, `gcs`, `azure`, `http`).
    pub const fn is_object_store(self) -> bool {
        matches!(
            self,
            Backend::S3 | Backend::File | Backend::Gcs | Backend::Azure | Backend::Http
        )
    }

    /// The timeout used when `timeout_ms` is not set.
    pub const fn default_timeout(self) -> Duration {
        if self.is_object_store() {
            OBJECT_STORE_TIMEOUT
        } else {
            NETWORK_TIMEOUT
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The backend-specific keys this backend takes (beyond the common ones): the one table of
    /// them. A key of the layer table that some backend takes and this one does not is an error.
    pub(super) fn keys(self) -> &'static [&'static str] {
        match self {
            Backend::Redis => &["url", "tls_ca_file", "pool_size"],
            Backend::Memcached => &["url", "urls"],
            Backend::RedisCluster => &["url", "urls", "tls_ca_file", "pool_size"],
            Backend::S3 => &[
                "sweep_interval",
                "sweep_batch",
                "bucket",
                "region",
                "endpoint",
                "allow_http",
                "access_key_id",
                "secret_access_key",
                "prefix",
            ],
            Backend::Gcs => &["bucket", "prefix", "sweep_interval", "sweep_batch"],
            Backend::Azure => &[
                "bucket",
                "endpoint",
                "prefix",
                "sweep_interval",
                "sweep_batch",
            ],
            Backend::File => &["path", "prefix", "sweep_interval", "sweep_batch"],
            Backend::Http => &[
                "url",
                "allow_http",
                "prefix",
                "sweep_interval",
                "sweep_batch",
            ],
        }
    }

    /// The URL schemes accepted in `url`/`urls`, and how to say so.
    fn url_schemes(self) -> (&'static [&'static str], &'static str) {
        match self {
            Backend::Memcached => (&["memcached"], "memcached://"),
            Backend::Http => (&["http", "https"], "http:// or https://"),
            _ => (&["redis", "rediss"], "redis:// or rediss://"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Backend::from_name(&name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown backend {name:?}; expected one of {}",
                quoted_list(&Backend::ALL)
            ))
        })
    }
}

/// A remote layer's backend with the keys that only it takes.
///
/// The keys every backend takes (`ttl`, `timeout_ms`, …) are in
/// [`LayerConfig`](super::LayerConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// `backend = "redis"`.
    Redis(RedisConfig),
    /// `backend = "redis-cluster"`.
    RedisCluster(RedisClusterConfig),
    /// `backend = "memcached"`.
    Memcached(MemcachedConfig),
    /// `backend = "s3"`.
    S3(S3Config),
    /// `backend = "file"`.
    File(FileConfig),
    /// `backend = "gcs"`.
    Gcs(GcsConfig),
    /// `backend = "azure"`.
    Azure(AzureConfig),
    /// `backend = "http"`.
    Http(HttpConfig),
}

/// `backend = "redis"`: a single Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `url`: `redis://` or `rediss://` (TLS, with the `tls` cargo feature), with credentials and
    /// the database in the path when needed.
    pub url: Secret,
    /// `tls_ca_file`: a PEM file of the certificate authorities to trust for `rediss://`; without
    /// it, the system's roots. Needs the `tls` cargo feature.
    pub tls_ca_file: Option<PathBuf>,
    /// `pool_size`: how many fred clients the layer's pool holds, 1 to 64; default 2. Each is one
    /// connection with its own task, and concurrent reads are coalesced into `MGET`s anyway, so
    /// more is rarely faster on a small machine (see `docs/performance.md`, P4).
    pub pool_size: usize,
}

/// `backend = "redis-cluster"`: a Redis Cluster reached through its seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisClusterConfig {
    /// `urls` (or a single `url`): the seed nodes, `redis://` or `rediss://`; at least one. The
    /// credentials of the first are used for every node.
    pub urls: Vec<Secret>,
    /// `tls_ca_file`: as [`RedisConfig::tls_ca_file`].
    pub tls_ca_file: Option<PathBuf>,
    /// `pool_size`: as [`RedisConfig::pool_size`]; each client holds one connection per primary.
    pub pool_size: usize,
}

/// `backend = "memcached"`: one or more Memcached servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedConfig {
    /// `urls` (or a single `url`): `memcached://host[:port]` (port 11211 by default); at least
    /// one.
    pub urls: Vec<Secret>,
}

/// `backend = "s3"`: S3 or an S3-compatible server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `bucket`: non-empty.
    pub bucket: String,
    /// `region`: the S3 region; without it, `AWS_REGION`.
    pub region: Option<String>,
    /// `endpoint`: an `http(s)://` endpoint for an S3-compatible server.
    pub endpoint: Option<String>,
    /// `allow_http`: allow a plain `http://` endpoint. Default `false`.
    pub allow_http: bool,
    /// `access_key_id` + `secret_access_key`; without them the usual `AWS_*` environment
    /// variables apply.
    pub credentials: Option<S3Credentials>,
    /// `prefix`: an object-name prefix inside the bucket.
    pub prefix: Option<String>,
}

/// `access_key_id` and `secret_access_key` of an S3 layer: always both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `access_key_id`.
    pub access_key_id: Secret,
    /// `secret_access_key`.
    pub secret_access_key: Secret,
}

/// `backend = "file"`: a local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `path`: the directory, created when missing; non-empty.
    pub path: PathBuf,
    /// `prefix`: an object-name prefix inside the directory.
    pub prefix: Option<String>,
}

/// `backend = "gcs"`: Google Cloud Storage (credentials from the `GOOGLE_*` environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsConfig {
    /// `bucket`: non-empty.
    pub bucket: String,
    /// `prefix`: an object-name prefix inside the bucket.
    pub prefix: Option<String>,
}

/// `backend = "azure"`: Azure Blob Storage (credentials from the `AZURE_*` environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConfig {
    /// `bucket`: the container; non-empty.
    pub container: String,
    /// `endpoint`: an `https://` endpoint, for an emulator.
    pub endpoint: Option<String>,
    /// `prefix`: an object-name prefix inside the container.
    pub prefix: Option<String>,
}

/// `backend = "http"`: a WebDAV-style HTTP origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `url`: `https://` (or `http://` with `allow_http`).
    pub url: Secret,
    /// `allow_http`: allow a plain `http://` URL. Default `false`.
    pub allow_http: bool,
    /// `prefix`: an object-name prefix under the URL.
    pub prefix: Option<String>,
}

impl BackendConfig {
    /// Which backend this is.
    pub const fn kind(&self) -> Backend {
        match self {
            BackendConfig::Redis(_) => Backend::Redis,
            BackendConfig::RedisCluster(_) => Backend::RedisCluster,
            BackendConfig::Memcached(_) => Backend::Memcached,
            BackendConfig::S3(_) => Backend::S3,
            BackendConfig::File(_) => Backend::File,
            BackendConfig::Gcs(_) => Backend::Gcs,
            BackendConfig::Azure(_) => Backend::Azure,
            BackendConfig::Http(_) => Backend::Http,
        }
    }

    /// The object-name prefix of an object store; `None` for the others.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            BackendConfig::S3(c) => c.prefix.as_deref(),
            BackendConfig::File(c) => c.prefix.as_deref(),
            BackendConfig::Gcs(c) => c.prefix.as_deref(),
            BackendConfig::Azure(c) => c.prefix.as_deref(),
            BackendConfig::Http(c) => c.prefix.as_deref(),
            BackendConfig::Redis(_)
            | BackendConfig::RedisCluster(_)
            | BackendConfig::Memcached(_) => None,
        }
    }

    /// Resolves the backend keys of the layer table at `path`, after [`Backend::keys`] has
    /// refused the keys `backend` does not take.
    pub(super) fn resolve(backend: Backend, raw: &RawLayer, path: &str) -> Result<BackendConfig> {
        let allow_http = raw.allow_http.unwrap_or(false);
        let prefix = raw.prefix.clone();
        Ok(match backend {
            Backend::Redis => BackendConfig::Redis(RedisConfig {
                url: single_url(backend, raw, path)?.0,
                tls_ca_file: raw.tls_ca_file.clone(),
                pool_size: pool_size(raw, path)?,
            }),
            Backend::RedisCluster => BackendConfig::RedisCluster(RedisClusterConfig {
                urls: server_urls(backend, raw, path)?,
                tls_ca_file: raw.tls_ca_file.clone(),
                pool_size: pool_size(raw, path)?,
            }),
            Backend::Memcached => BackendConfig::Memcached(MemcachedConfig {
                urls: server_urls(backend, raw, path)?,
            }),
            Backend::Http => {
                let (url, parsed) = single_url(backend, raw, path)?;
                if !allow_http && parsed.scheme() == "http" {
                    return Err(config_error(
                        &join(path, "url"),
                        format!(
                            "{:?} is plain http://; set `allow_http = true` to allow it",
                            url.redacted()
                        ),
                    ));
                }
                BackendConfig::Http(HttpConfig {
                    url,
                    allow_http,
                    prefix,
                })
            }
            Backend::S3 => {
                let bucket = bucket(backend, raw, path)?;
                let endpoint = endpoint(raw, allow_http, path)?;
                if let Some(region) = &raw.region
                    && region.trim().is_empty()
                {
                    return Err(config_error(&join(path, "region"), "must not be empty"));
                }
                let credentials = match (&raw.access_key_id, &raw.secret_access_key) {
                    (Some(id), Some(secret)) => Some(S3Credentials {
                        access_key_id: id.clone(),
                        secret_access_key: secret.clone(),
                    }),
                    (Some(_), None) => {
                        return Err(config_error(
                            &join(path, "secret_access_key"),
                            "missing; `access_key_id` needs `secret_access_key`",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(config_error(
                            &join(path, "access_key_id"),
                            "missing; `secret_access_key` needs `access_key_id`",
                        ));
                    }
                    (None, None) => None,
                };
                BackendConfig::S3(S3Config {
                    bucket,
                    region: raw.region.clone(),
                    endpoint,
                    allow_http,
                    credentials,
                    prefix,
                })
            }
            Backend::Gcs => BackendConfig::Gcs(GcsConfig {
                bucket: bucket(backend, raw, path)?,
                prefix,
            }),
            Backend::Azure => BackendConfig::Azure(AzureConfig {
                container: bucket(backend, raw, path)?,
                endpoint: endpoint(raw, allow_http, path)?,
                prefix,
            }),
            Backend::File => match &raw.path {
                None => {
                    return Err(config_error(
                        &join(path, "path"),
                        r#"missing; backend "file" needs a directory"#,
                    ));
                }
                Some(p) if p.as_os_str().is_empty() => {
                    return Err(config_error(&join(path, "path"), "must not be empty"));
                }
                Some(dir) => BackendConfig::File(FileConfig {
                    path: dir.clone(),
                    prefix,
                }),
            },
        })
    }

    /// The rules this backend adds to `[cache] key_prefix`, checked once the layers are
    /// resolved. Memcached keys are printable ASCII without spaces, at most 250 bytes.
    pub(super) fn check_key_prefix(&self, key_prefix: &str, path: &str) -> Result<()> {
        if let BackendConfig::Memcached(_) = self
            && (key_prefix.len() > MEMCACHED_MAX_PREFIX_LEN
                || !key_prefix.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        {
            return Err(config_error(
                path,
                format!(
                    "memcached needs a prefix of at most {MEMCACHED_MAX_PREFIX_LEN} printable \
                     ASCII bytes without spaces"
                ),
            ));
        }
        Ok(())
    }

    /// Writes the backend keys back into a layer table (for environment overrides, which
    /// re-resolve the whole configuration).
    pub(super) fn to_raw(&self, raw: &mut RawLayer) {
        raw.backend = Some(self.kind().name().to_owned());
        let servers = |raw: &mut RawLayer, urls: &[Secret]| match urls {
            [one] => raw.url = Some(one.clone()),
            many => raw.urls = Some(many.to_vec()),
        };
        let pool = |n: usize| (n != DEFAULT_POOL_SIZE).then_some(Positive(n));
        match self {
            BackendConfig::Redis(c) => {
                raw.url = Some(c.url.clone());
                raw.tls_ca_file.clone_from(&c.tls_ca_file);
                raw.pool_size = pool(c.pool_size);
            }
            BackendConfig::RedisCluster(c) => {
                servers(raw, &c.urls);
                raw.tls_ca_file.clone_from(&c.tls_ca_file);
                raw.pool_size = pool(c.pool_size);
            }
            BackendConfig::Memcached(c) => servers(raw, &c.urls),
            BackendConfig::S3(c) => {
                raw.bucket = Some(c.bucket.clone());
                raw.region.clone_from(&c.region);
                raw.endpoint.clone_from(&c.endpoint);
                raw.allow_http = c.allow_http.then_some(true);
                if let Some(k) = &c.credentials {
                    raw.access_key_id = Some(k.access_key_id.clone());
                    raw.secret_access_key = Some(k.secret_access_key.clone());
                }
            }
            BackendConfig::File(c) => raw.path = Some(c.path.clone()),
            BackendConfig::Gcs(c) => raw.bucket = Some(c.bucket.clone()),
            BackendConfig::Azure(c) => {
                raw.bucket = Some(c.container.clone());
                raw.endpoint.clone_from(&c.endpoint);
            }
            BackendConfig::Http(c) => {
                raw.url = Some(c.url.clone());
                raw.allow_http = c.allow_http.then_some(true);
            }
        }
        raw.prefix = self.prefix().map(str::to_owned);
    }
}

/// `url` of a backend that takes exactly one.
fn single_url(backend: Backend, raw: &RawLayer, path: &str) -> Result<(Secret, ServerUrl)> {
    let url = raw.url.as_ref().ok_or_else(|| {
        config_error(
            &join(path, "url"),
            format!("missing; backend {:?} needs a URL", backend.name()),
        )
    })?;
    let (schemes, expected) = backend.url_schemes();
    let parsed = ServerUrl::parse(url.expose(), &join(path, "url"), schemes, expected)?;
    Ok((url.clone(), parsed))
}

/// `urls`, or a single `url`, of a backend that takes several servers.
fn server_urls(backend: Backend, raw: &RawLayer, path: &str) -> Result<Vec<Secret>> {
    let (schemes, expected) = backend.url_schemes();
    let urls = raw.urls.clone().unwrap_or_default();
    match (&raw.url, urls.is_empty()) {
        (Some(_), false) => Err(config_error(
            &join(path, "urls"),
            "set either `url` or `urls`, not both",
        )),
        (None, true) => {
            let msg = if raw.urls.is_some() {
                "must list at least one URL".to_owned()
            } else {
                format!(
                    "missing; backend {:?} needs `urls` (or a single `url`)",
                    backend.name()
                )
            };
            Err(config_error(&join(path, "urls"), msg))
        }
        (Some(url), true) => {
            ServerUrl::parse(url.expose(), &join(path, "url"), schemes, expected)?;
            Ok(vec![url.clone()])
        }
        (None, false) => {
            for (i, url) in urls.iter().enumerate() {
                ServerUrl::parse(
                    url.expose(),
                    &format!("{path}.urls[{i}]"),
                    schemes,
                    expected,
                )?;
            }
            Ok(urls)
        }
    }
}

fn pool_size(raw: &RawLayer, path: &str) -> Result<usize> {
    match raw.pool_size {
        Some(Positive(n)) if n > MAX_POOL_SIZE => Err(config_error(
            &join(path, "pool_size"),
            format!("must be between 1 and {MAX_POOL_SIZE}, found {n}"),
        )),
        Some(Positive(n)) => Ok(n),
        None => Ok(DEFAULT_POOL_SIZE),
    }
}

/// `bucket` (the container on Azure): required, non-empty.
fn bucket(backend: Backend, raw: &RawLayer, path: &str) -> Result<String> {
    match raw.bucket.as_deref() {
        None => Err(config_error(
            &join(path, "bucket"),
            format!("missing; backend {:?} needs a bucket", backend.name()),
        )),
        Some(b) if b.trim().is_empty() => {
            Err(config_error(&join(path, "bucket"), "must not be empty"))
        }
        Some(b) => Ok(b.to_owned()),
    }
}

/// `endpoint`: an `http(s)://` URL; plain `http://` only with `allow_http`.
fn endpoint(raw: &RawLayer, allow_http: bool, path: &str) -> Result<Option<String>> {
    let Some(endpoint) = &raw.endpoint else {
        return Ok(None);
    };
    let endpoint_path = join(path, "endpoint");
    let parsed = ServerUrl::parse(
        endpoint,
        &endpoint_path,
        &["http", "https"],
        "http:// or https://",
    )?;
    if !allow_http && parsed.scheme() == "http" {
        return Err(config_error(
            &endpoint_path,
            format!(
                "{:?} is plain http://; set `allow_http = true` to allow it",
                shown_in_error(endpoint)
            ),
        ));
    }
    Ok(Some(endpoint.clone()))
}
