//! Configuration: the `[cache]` table of the seed, from TOML, JSON, YAML and the environment.
//!
//! Every loader reads its input into a `serde_json::Value`, deserializes that into private *raw*
//! structs (every key optional, `deny_unknown_fields`) while tracking the path of each value, and then
//! *resolves* the raw form: defaults are applied and each backend's keys are checked. The result is the
//! public [`Config`], whose fields hold plain resolved values ([`Duration`]s, enums, `Option`s for the
//! layers that are off).
//!
//! Every error has the kind [`ErrorKind::Config`] and a message that starts with the config path of
//! the offending value, for example `cache.layers.l2.url: malformed URL "localhost:6379": expected
//! redis:// or rediss://`. Credentials never appear in messages or in `Debug` output: they are held
//! in [`Secret`]s.
//!
//! ```toml
//! [cache]
//! default_ttl = 300                  # seconds; integer or float, > 0
//! key_prefix = "vorte:"
//! serialization = "msgpack"          # or "json"
//! compression = "lz4"                # or { algorithm = "lz4", threshold = 1024 }; default "none"
//! max_value_bytes = 16777216
//!
//! [cache.layers.l1]
//! max_size = 1000
//! ttl = 60
//!
//! [cache.layers.l2]
//! backend = "redis"
//! url = "redis://localhost:6379/0"
//! timeout_ms = 250
//! pool_size = 2                      # redis / redis-cluster: clients in the pool
//!
//! [cache.bus]                        # optional: a Redis for invalidation traffic
//! url = "redis://localhost:6380"     # or redis-cluster://host:7000 for a Redis Cluster
//! event_shards = 3                   # streams carrying events; default 1, or 3 on a cluster
//! retention = 100000                 # messages each bus stream keeps
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// The prefix of environment variables read by [`Config::with_env_overrides`].
const ENV_PREFIX: &str = "VORTE__";
/// The default of [`CacheConfig::default_ttl`]: 300 s.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The default of [`CacheConfig::key_prefix`].
const DEFAULT_KEY_PREFIX: &str = "vorte:";
/// The longest accepted [`CacheConfig::key_prefix`], in bytes.
const MAX_KEY_PREFIX_LEN: usize = 64;
/// The default of [`CacheConfig::max_value_bytes`]: 16 MiB.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// The default of [`L1Config::max_size`].
const DEFAULT_L1_MAX_SIZE: u64 = 10_000;
/// The default compression threshold, in bytes.
const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;
/// The default timeout of Redis, Memcached and Redis Cluster layers.
const NETWORK_TIMEOUT: Duration = Duration::from_millis(250);
/// The default timeout of object-store layers (`s3`, `file`, `gcs`, `azure`, `http`).
const OBJECT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// The default of [`BusConfig::retention`]: messages kept per bus stream.
pub(crate) const DEFAULT_BUS_RETENTION: u64 = 100_000;
/// The default [`LayerConfig::pool_size`].
const DEFAULT_POOL_SIZE: usize = 2;
/// The largest accepted [`LayerConfig::pool_size`].
const MAX_POOL_SIZE: usize = 64;
/// The largest accepted [`BusConfig::retention`]: a billion messages of a hundred bytes is already
/// about 100 GB per stream, far past any useful catch-up window.
const MAX_BUS_RETENTION: u64 = 1_000_000_000;
/// The largest accepted [`BusConfig::event_shards`]: every shard costs each process one blocked
/// reader client (on a cluster, one connection per primary).
const MAX_EVENT_SHARDS: usize = 64;
/// The longest accepted duration, in milliseconds (about 31,700 years): keeps every duration
/// representable in milliseconds as an `i64`, as Redis needs.
const MAX_DURATION_MS: u64 = 1_000_000_000_000_000;

// ---------------------------------------------------------------------------------------------
// Public, resolved types
// ---------------------------------------------------------------------------------------------

/// The whole configuration: the `[cache]` table.
///
/// Build it with one of the loaders ([`from_toml_str`](Config::from_toml_str),
/// [`from_toml_file`](Config::from_toml_file), [`from_json`](Config::from_json),
/// [`from_yaml_str`](Config::from_yaml_str), …), optionally followed by
/// [`with_env_overrides`](Config::with_env_overrides). [`Config::default()`] is the embedded default:
/// L1 only, nothing has to run.
///
/// `Config` also implements [`Deserialize`], so it can be embedded in an application's own config
/// file; the loaders are preferred because their errors name the full path of the bad value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The `[cache]` table. A missing table means every default.
    pub cache: CacheConfig,
}

/// The `[cache]` table, with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `default_ttl`: the TTL of an entry written without one. Seconds in the config, integer or
    /// float, with millisecond resolution; must be > 0. Default 300 s.
    pub default_ttl: Duration,
    /// `key_prefix`: the start of every physical key in every layer. `flush`, `keys` and `stats`
    /// only see keys under it. Non-empty, at most 64 bytes, no whitespace or control characters.
    /// Default `"vorte:"`.
    pub key_prefix: String,
    /// `serialization`: how values are encoded. Default [`Serialization::Msgpack`].
    pub serialization: Serialization,
    /// `compression`: `"none"` (default), `"lz4"`, or `{ algorithm = "lz4", threshold = 1024 }`.
    pub compression: Compression,
    /// `max_value_bytes`: the largest encoded value any layer accepts, unless a layer sets its own
    /// limit. Default 16 MiB; must be > 0.
    pub max_value_bytes: usize,
    /// `[cache.layers]`: the four layers.
    pub layers: LayersConfig,
    /// `[cache.bus]`: a dedicated Redis for cross-process invalidation and `emit`. `None` means the
    /// bus travels on the Redis of L2 or L3, if there is one.
    pub bus: Option<BusConfig>,
}

/// How values are encoded before they reach a layer (`serialization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serialization {
    /// MessagePack through rmp-serde (`"msgpack"`): compact and fast. The default.
    #[default]
    Msgpack,
    /// JSON (`"json"`): readable with `redis-cli`, larger.
    Json,
}

/// Whether encoded values are compressed (`compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (`"none"`). The default.
    #[default]
    None,
    /// zstd (`"zstd"`): smaller than LZ4 and slower; meant for L4, where bytes cost money.
    Zstd {
        /// Values of at most this many bytes (serialized) are stored uncompressed. Default 1024.
        threshold: usize,
    },
    /// LZ4 (`"lz4"`), for values longer than `threshold` bytes once serialized.
    Lz4 {
        /// Values of at most this many bytes (serialized) are stored uncompressed. Default 1024.
        threshold: usize,
    },
}

/// `[cache.layers]`: L1 is always described; L2–L4 are `None` when off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayersConfig {
    /// `[cache.layers.l1]`: the in-process layer. A missing table means enabled, `max_size` 10,000
    /// and `ttl` = `default_ttl`.
    pub l1: L1Config,
    /// `[cache.layers.l2]`: `redis` or `memcached`. `None` when the table is missing or has
    /// `enabled = false`.
    pub l2: Option<LayerConfig>,
    /// `[cache.layers.l3]`: `redis-cluster` or `redis`. `None` when missing or disabled.
    pub l3: Option<LayerConfig>,
    /// `[cache.layers.l4]`: `s3`, `file`, `gcs`, `azure` or `http`. `None` when missing or disabled.
    pub l4: Option<LayerConfig>,
}

/// `[cache.layers.l1]`: the in-process layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L1Config {
    /// `enabled`: default `true`.
    pub enabled: bool,
    /// `max_size`: the most entries L1 holds. Default 10,000; must be > 0.
    pub max_size: u64,
    /// `max_bytes`: an optional bound on the bytes L1 holds, as a weight on top of `max_size`.
    pub max_bytes: Option<u64>,
    /// `ttl`: the cap on an entry's life in L1 (seconds in the config). The loaders fill in
    /// `default_ttl` when it is not set; `None` (only in a hand-built or separately deserialized
    /// `L1Config`) means the same: capped at `default_ttl`.
    pub ttl: Option<Duration>,
    /// `max_value_bytes`: the largest encoded value L1 keeps; `None` uses
    /// [`CacheConfig::max_value_bytes`].
    pub max_value_bytes: Option<usize>,
}

/// `[cache.layers.l2]`, `l3` or `l4`: a remote layer that is enabled.
///
/// Which keys a layer takes depends on its [`backend`](LayerConfig::backend); a key the backend
/// does not use is a configuration error, so the fields that do not apply are `None`, empty or
/// `false`.
///
/// | backend | required | optional |
/// |---|---|---|
/// | `redis` | `url` | `tls_ca_file` |
/// | `memcached` | `url` or `urls` | |
/// | `redis-cluster` | `urls` (seed nodes) or `url` | `tls_ca_file` |
/// | `s3` | `bucket` | `region`, `endpoint`, `allow_http`, `access_key_id` + `secret_access_key`, `prefix` |
/// | `gcs` | `bucket` | `prefix` |
/// | `azure` | `bucket` (the container) | `endpoint`, `prefix` |
/// | `file` | `path` | `prefix` |
/// | `http` | `url` | `allow_http`, `prefix` |
///
/// Every backend also takes `enabled`, `backend`, `ttl`, `timeout_ms`, `max_value_bytes`,
/// `compression`, `write_policy` and `write_behind_queue`; the object stores also take
/// `sweep_interval` and `sweep_batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConfig {
    /// `backend`: which server or store this layer talks to.
    pub backend: Backend,
    /// `ttl`: the cap on an entry's life in this layer (seconds in the config). `None`: entries live
    /// as long as their own TTL.
    pub ttl: Option<Duration>,
    /// `timeout_ms` (integer milliseconds in the config): how long one call to this layer may take
    /// before it is skipped. Default 250 ms for `redis`, `memcached` and `redis-cluster`, 5 s for the
    /// object stores.
    pub timeout: Duration,
    /// `max_value_bytes`: the largest encoded value this layer keeps; `None` uses
    /// [`CacheConfig::max_value_bytes`].
    pub max_value_bytes: Option<usize>,
    /// `url`: the server (`redis://`, `rediss://`, `memcached://`, or `http(s)://` for `http`).
    /// For `redis-cluster` and `memcached`, a single `url` is allowed in place of `urls`.
    pub url: Option<Secret>,
    /// `urls`: Redis Cluster seed nodes, or several Memcached servers. Empty when not set.
    pub urls: Vec<Secret>,
    /// `bucket`: the bucket (`s3`, `gcs`) or container (`azure`).
    pub bucket: Option<String>,
    /// `path`: the directory of a `file` layer.
    pub path: Option<PathBuf>,
    /// `region`: the S3 region.
    pub region: Option<String>,
    /// `endpoint`: an `http(s)://` endpoint for an S3-compatible server or an Azure emulator.
    pub endpoint: Option<String>,
    /// `allow_http`: allow plain `http://` to the `endpoint` (`s3`) or `url` (`http`). Default
    /// `false`; an `http://` endpoint or URL without it is a configuration error.
    pub allow_http: bool,
    /// `access_key_id`: S3 credentials; with `secret_access_key`. Without them the usual `AWS_*`
    /// environment variables apply.
    pub access_key_id: Option<Secret>,
    /// `secret_access_key`: S3 credentials; with `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// `prefix`: an object-name prefix inside the bucket, directory or URL (object stores only).
    pub prefix: Option<String>,
    /// `tls_ca_file`: a PEM file of the certificate authorities to trust for `rediss://`
    /// (`redis`, `redis-cluster`); without it, the system's roots. Needs the `tls` cargo feature.
    pub tls_ca_file: Option<PathBuf>,
    /// `compression`: this layer's own compression, as `[cache] compression` (`"zstd"` suits
    /// L4); `None` uses the cache's.
    pub compression: Option<Compression>,
    /// `write_policy`: `"through"` (default: a write returns once this layer has it) or
    /// `"behind"` (queued and written in the background; see `write_behind_queue`).
    pub write_policy: WritePolicy,
    /// `write_behind_queue`: how many writes may wait for this layer under `"behind"`; a write
    /// that finds the queue full is dropped for this layer and counted
    /// ([`LayerStats::write_behind_dropped`](crate::LayerStats::write_behind_dropped)). Default
    /// 10,000.
    pub write_behind_queue: usize,
    /// `sweep_interval` (seconds; object stores only): how often a background sweeper deletes
    /// expired objects under the prefix. `None` (the default): no sweeper; expired objects are
    /// removed when read, and an S3 lifecycle rule can back that up (`docs/l4.md`).
    pub sweep_interval: Option<Duration>,
    /// `sweep_batch`: the most objects one sweep pass reads, so a pass stays bounded. Default
    /// 1,000.
    pub sweep_batch: usize,
    /// `pool_size` (`redis`, `redis-cluster`): how many fred clients the layer's pool holds,
    /// 1 to 64; default 2. Each is one connection (one per primary on a cluster) with its own
    /// task, and concurrent reads are coalesced into `MGET`s anyway, so more is rarely faster on
    /// a small machine (see `docs/performance.md`, P4).
    pub pool_size: usize,
}

/// When a write reaches a layer (`write_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WritePolicy {
    /// The write returns once the layer has the value. The default.
    #[default]
    Through,
    /// The write is queued and reaches the layer in the background.
    Behind,
}

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

/// `[cache.bus]`: a dedicated Redis for invalidation messages and `emit`.
///
/// When the bus rides on the Redis of L2 or L3 instead (no `[cache.bus]` table), `event_shards`
/// and `retention` take their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// `url`: a `redis://` or `rediss://` URL for a single Redis, or `redis-cluster://` or
    /// `rediss-cluster://` for a Redis Cluster (one seed node is enough; more may be given as
    /// `?node=host:port` parameters).
    pub url: Secret,
    /// `event_shards`: how many streams carry `emit`'s events, 1 to 64; each event name always
    /// travels on the same one. `None` (the default) means 1 on a single Redis and 3 on a cluster;
    /// set it to the number of primaries of a larger cluster to spread events over all of them.
    /// Every process sharing the bus must use the same number.
    pub event_shards: Option<usize>,
    /// `retention`: how many messages each bus stream keeps at least (`XADD MAXLEN ~`), 1 to
    /// 1,000,000,000; default 100,000. A process that comes back from a disconnection to find
    /// messages it had not read trimmed away drops its L1.
    pub retention: u64,
}

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

// ---------------------------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------------------------

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
    fn redacted(&self) -> String {
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

// ---------------------------------------------------------------------------------------------
// Defaults and small public helpers
// ---------------------------------------------------------------------------------------------

impl Default for CacheConfig {
    /// The embedded default: L1 only (10,000 entries, capped at `default_ttl`), 300 s TTL,
    /// `"vorte:"`, MessagePack, no compression.
    fn default() -> Self {
        CacheConfig {
            default_ttl: DEFAULT_TTL,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            serialization: Serialization::default(),
            compression: Compression::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            layers: LayersConfig {
                l1: L1Config {
                    ttl: Some(DEFAULT_TTL),
                    ..L1Config::default()
                },
                l2: None,
                l3: None,
                l4: None,
            },
            bus: None,
        }
    }
}

impl Default for LayersConfig {
    /// L1 only, with [`L1Config::default()`].
    fn default() -> Self {
        LayersConfig {
            l1: L1Config::default(),
            l2: None,
            l3: None,
            l4: None,
        }
    }
}

impl Default for L1Config {
    /// Enabled, 10,000 entries, no byte bound, `ttl` `None` (capped at `default_ttl`).
    fn default() -> Self {
        L1Config {
            enabled: true,
            max_size: DEFAULT_L1_MAX_SIZE,
            max_bytes: None,
            ttl: None,
            max_value_bytes: None,
        }
    }
}

impl From<CacheConfig> for Config {
    fn from(cache: CacheConfig) -> Self {
        Config { cache }
    }
}

impl Backend {
    /// Every backend, in the order of the table in [`LayerConfig`].
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

    fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The backend-specific keys this backend takes (beyond the common ones).
    fn keys(self) -> &'static [&'static str] {
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

impl CacheConfig {
    /// The TTL cap of L1: its `ttl`, or `default_ttl` when that is `None`.
    pub fn l1_ttl(&self) -> Duration {
        self.layers.l1.ttl.unwrap_or(self.default_ttl)
    }
}

// ---------------------------------------------------------------------------------------------
// Loaders
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Parses a TOML document holding a `[cache]` table.
    pub fn from_toml_str(toml: &str) -> Result<Config> {
        let syntax = |e: toml::de::Error| {
            let at = e.span().map_or(String::new(), |span| {
                let before = &toml[..span.start.min(toml.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            });
            Error::new(
                ErrorKind::Config,
                format!("TOML syntax error{at}: {}", e.message().trim_end()),
            )
            .with_source(e)
        };
        let deserializer = toml::Deserializer::parse(toml).map_err(syntax)?;
        let value = match serde_path_to_error::deserialize::<_, StrictValue>(deserializer) {
            Ok(v) => v.0,
            Err(e) if no_path(e.path()) => return Err(syntax(e.into_inner())),
            Err(e) => {
                let path = e.path().to_string();
                return Err(config_error(&path, e.into_inner().message().trim_end()));
            }
        };
        Config::from_json(value)
    }

    /// Reads and parses a TOML file. Errors name the file as well as the config path.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = read_file(path)?;
        Config::from_toml_str(&text).map_err(|e| in_file(e, path))
    }

    /// Takes the seed's dict as written: `{"cache": {"default_ttl": 300, "layers": {…}}}`.
    ///
    /// A `null` document is the default configuration.
    pub fn from_json(value: Value) -> Result<Config> {
        let raw = parse_raw(value).map_err(PathError::into_error)?;
        resolve_config(raw)
    }

    /// Parses a JSON document.
    pub fn from_json_str(json: &str) -> Result<Config> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            Error::new(ErrorKind::Config, format!("JSON syntax error: {e}")).with_source(e)
        })?;
        Config::from_json(value)
    }

    /// Parses a YAML document. An empty document is the default configuration.
    pub fn from_yaml_str(yaml: &str) -> Result<Config> {
        if yaml.trim().is_empty() {
            return Ok(Config::default());
        }
        let deserializer = serde_norway::Deserializer::from_str(yaml);
        let value = match serde_path_to_error::deserialize::<_, StrictValue>(deserializer) {
            Ok(v) => v.0,
            Err(e) if no_path(e.path()) => {
                let e = e.into_inner();
                return Err(
                    Error::new(ErrorKind::Config, format!("YAML syntax error: {e}")).with_source(e),
                );
            }
            Err(e) => {
                // serde_norway's message may already start with the path.
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = inner.to_string();
                let message = message
                    .strip_prefix(&format!("{path}: "))
                    .unwrap_or(&message)
                    .to_owned();
                return Err(config_error(&path, message).with_source(inner));
            }
        };
        Config::from_json(value)
    }

    /// Reads and parses a YAML file. Errors name the file as well as the config path.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = read_file(path)?;
        Config::from_yaml_str(&text).map_err(|e| in_file(e, path))
    }

    /// Applies the `VORTE__…` variables of the process environment; see
    /// [`with_env_overrides_from`](Config::with_env_overrides_from).
    pub fn with_env_overrides(self) -> Result<Config> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let value = value.into_string().map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    format!("environment variable {name} is not valid UTF-8"),
                )
            })?;
            vars.push((name.to_owned(), value));
        }
        self.with_env_overrides_from(vars)
    }

    /// Applies overrides given as `(name, value)` pairs, as they would come from the environment.
    ///
    /// Only names that start with `VORTE__` are used. The rest of the name is the config path, with
    /// `__` between segments, lower-cased: `VORTE__CACHE__LAYERS__L2__URL=redis://h:6379` sets
    /// `cache.layers.l2.url`. Missing tables are created, so a whole layer can come from the
    /// environment.
    ///
    /// The value is read as JSON when it parses (`300`, `1.5`, `true`, `["redis://a", "redis://b"]`,
    /// `null` to unset a key) and as a plain string otherwise; a JSON scalar given for a string key
    /// (`VORTE__CACHE__KEY_PREFIX=123`) is taken as that string.
    ///
    /// Overrides apply to the resolved configuration: a layer that `self` has disabled (or never
    /// had) must get all its keys, `backend` included, from the overrides.
    pub fn with_env_overrides_from(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut overrides: Vec<EnvOverride> = Vec::new();
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if segments.iter().any(String::is_empty) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "environment variable {name}: empty path segment (use `__` between keys)"
                    ),
                ));
            }
            overrides.push(EnvOverride {
                path: segments.join("."),
                segments,
                name,
                raw,
                as_string: false,
            });
        }
        if overrides.is_empty() {
            return Ok(self);
        }
        // Parents before children, so `VORTE__CACHE__LAYERS__L2` then `…__L2__URL` compose.
        overrides.sort_by(|a, b| a.segments.cmp(&b.segments));

        let base = config_to_value(&self);
        // The first error seen at a path that was then retried as a string.
        let mut first_error: Option<PathError> = None;
        loop {
            let mut value = base.clone();
            for o in &overrides {
                o.apply(&mut value)?;
            }
            match parse_raw(value) {
                Ok(raw) => {
                    return resolve_config(raw).map_err(|e| blame_env(e, &overrides));
                }
                Err(err) => {
                    // A JSON scalar given for a string key: retry with the raw string.
                    if let Some(o) = overrides
                        .iter_mut()
                        .find(|o| o.path == err.path && !o.as_string && o.parsed_is_not_string())
                    {
                        o.as_string = true;
                        first_error = Some(err);
                        continue;
                    }
                    // The string reading failed as well: report the JSON reading's error.
                    let err = match first_error {
                        Some(first) if first.path == err.path => first,
                        _ => err,
                    };
                    return Err(blame_env(err.into_error(), &overrides));
                }
            }
        }
    }
}

/// One `VORTE__…` variable.
struct EnvOverride {
    name: String,
    segments: Vec<String>,
    path: String,
    raw: String,
    /// Set when the JSON reading of `raw` was refused by the key's type.
    as_string: bool,
}

impl EnvOverride {
    fn value(&self) -> Value {
        if self.as_string {
            return Value::String(self.raw.clone());
        }
        serde_json::from_str(&self.raw).unwrap_or_else(|_| Value::String(self.raw.clone()))
    }

    fn parsed_is_not_string(&self) -> bool {
        !self.value().is_string()
    }

    fn apply(&self, root: &mut Value) -> Result<()> {
        let mut node = root;
        let (last, parents) = self.segments.split_last().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("environment variable {}: empty path", self.name),
            )
        })?;
        for (i, segment) in parents.iter().enumerate() {
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                let at = self.segments[..i].join(".");
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{at}: not a table, so environment variable {} cannot set a key inside it",
                        self.name
                    ),
                ));
            };
            node = map
                .entry(segment.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
        match node {
            Value::Object(map) => {
                map.insert(last.clone(), self.value());
                Ok(())
            }
            _ => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: not a table, so environment variable {} cannot set a key inside it",
                    parents.join("."),
                    self.name
                ),
            )),
        }
    }
}

/// Adds "(set by VORTE__…)" to an error whose path an override wrote.
fn blame_env(err: Error, overrides: &[EnvOverride]) -> Error {
    let message = err.message();
    let culprit = overrides.iter().rev().find(|o| {
        message
            .strip_prefix(o.path.as_str())
            .is_some_and(|rest| rest.starts_with([':', '.', '[']))
    });
    match culprit {
        Some(o) => Error::new(
            ErrorKind::Config,
            format!("{message} (set by environment variable {})", o.name),
        ),
        None => err,
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read config file {}: {e}", path.display()),
        )
        .with_source(e)
    })
}

fn in_file(err: Error, path: &Path) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{} (in {})", err.message(), path.display()),
    )
}

// ---------------------------------------------------------------------------------------------
// Raw forms: what the file says, every key optional
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table with a `cache` table")]
struct RawConfig {
    cache: Option<RawCacheConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of cache settings")]
struct RawCacheConfig {
    default_ttl: Option<Seconds>,
    key_prefix: Option<String>,
    serialization: Option<Serialization>,
    compression: Option<RawCompression>,
    max_value_bytes: Option<Positive<usize>>,
    layers: Option<RawLayers>,
    bus: Option<RawBus>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of layers l1 to l4")]
struct RawLayers {
    l1: Option<RawL1>,
    l2: Option<RawLayer>,
    l3: Option<RawLayer>,
    l4: Option<RawLayer>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of L1 settings")]
struct RawL1 {
    enabled: Option<bool>,
    max_size: Option<Positive<u64>>,
    max_bytes: Option<Positive<u64>>,
    ttl: Option<Seconds>,
    max_value_bytes: Option<Positive<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of layer settings")]
struct RawLayer {
    enabled: Option<bool>,
    backend: Option<String>,
    ttl: Option<Seconds>,
    timeout_ms: Option<Positive<u64>>,
    max_value_bytes: Option<Positive<usize>>,
    url: Option<Secret>,
    urls: Option<Vec<Secret>>,
    bucket: Option<String>,
    path: Option<PathBuf>,
    region: Option<String>,
    endpoint: Option<String>,
    allow_http: Option<bool>,
    access_key_id: Option<Secret>,
    secret_access_key: Option<Secret>,
    prefix: Option<String>,
    tls_ca_file: Option<PathBuf>,
    compression: Option<RawCompression>,
    write_policy: Option<String>,
    write_behind_queue: Option<Positive<usize>>,
    sweep_interval: Option<Seconds>,
    sweep_batch: Option<Positive<usize>>,
    pool_size: Option<Positive<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with a `url`")]
struct RawBus {
    url: Secret,
    event_shards: Option<u64>,
    retention: Option<u64>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with `algorithm` and `threshold`"
)]
struct RawCompressionTable {
    algorithm: String,
    threshold: Option<usize>,
}

/// `compression = "lz4"` or `compression = { algorithm = "lz4", threshold = 1024 }`.
enum RawCompression {
    Name(String),
    Table(RawCompressionTable),
}

impl<'de> Deserialize<'de> for RawCompression {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCompression;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#""none", "lz4", "zstd", or a table { algorithm = "lz4", threshold = 1024 }"#,
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(RawCompression::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                RawCompressionTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawCompression::Table)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Whether a path names no config key (a syntax error at the top, or at a place the parser could
/// not name).
fn no_path(path: &serde_path_to_error::Path) -> bool {
    path.iter()
        .all(|s| matches!(s, serde_path_to_error::Segment::Unknown))
}

/// A document read from TOML or YAML into a `serde_json::Value`, refusing what JSON cannot hold
/// (NaN and infinite floats, non-string keys, YAML tags) instead of turning it into `null`.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a configuration value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<StrictValue, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| StrictValue(Value::Number(n)))
                    .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_some<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> std::result::Result<StrictValue, D::Error> {
                StrictValue::deserialize(deserializer)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<StrictValue, A::Error> {
                let mut items = Vec::new();
                while let Some(StrictValue(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StrictValue(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<StrictValue, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let StrictValue(value) = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(StrictValue(Value::Object(out)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A duration in seconds: integer or float, > 0, rounded to the millisecond.
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Seconds, E> {
                match v.checked_mul(1000) {
                    Some(0) => Err(E::custom("must be greater than 0 seconds")),
                    Some(ms) if ms <= MAX_DURATION_MS => Ok(Seconds(Duration::from_millis(ms))),
                    _ => Err(E::custom(format!("{v} seconds is too long"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Seconds, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "must be greater than 0 seconds, found {v}"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Seconds, E> {
                if v.is_nan() || v <= 0.0 {
                    return Err(E::custom(format!(
                        "must be greater than 0 seconds, found {v}"
                    )));
                }
                let ms = (v * 1000.0).round();
                if ms < 1.0 {
                    return Err(E::custom(format!(
                        "{v} seconds is below the 1 ms resolution"
                    )));
                }
                if !ms.is_finite() || ms > MAX_DURATION_MS as f64 {
                    return Err(E::custom(format!("{v} seconds is too long")));
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Seconds(Duration::from_millis(ms as u64)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// An integer that must be greater than zero.
struct Positive<T>(T);

impl<'de, T> Deserialize<'de> for Positive<T>
where
    T: Deserialize<'de> + Default + PartialEq,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let v = T::deserialize(deserializer)?;
        if v == T::default() {
            return Err(de::Error::custom("must be greater than 0"));
        }
        Ok(Positive(v))
    }
}

/// A deserialization error and the path of the value that caused it.
struct PathError {
    path: String,
    message: String,
}

impl PathError {
    fn into_error(self) -> Error {
        let message = if self.path.is_empty() || self.path == "." {
            format!("configuration: {}", self.message)
        } else {
            format!("{}: {}", self.path, self.message)
        };
        Error::new(ErrorKind::Config, message)
    }
}

fn parse_raw(value: Value) -> std::result::Result<RawConfig, PathError> {
    if value.is_null() {
        return Ok(RawConfig::default());
    }
    serde_path_to_error::deserialize(value).map_err(|e| PathError {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Resolution: defaults and per-backend checks
// ---------------------------------------------------------------------------------------------

fn config_error(path: &str, message: impl fmt::Display) -> Error {
    if path.is_empty() {
        Error::new(ErrorKind::Config, message.to_string())
    } else {
        Error::new(ErrorKind::Config, format!("{path}: {message}"))
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

fn quoted_list(backends: &[Backend]) -> String {
    let names: Vec<String> = backends.iter().map(|b| format!("{:?}", b.name())).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn resolve_config(raw: RawConfig) -> Result<Config> {
    let cache = resolve_cache(raw.cache.unwrap_or_default(), "cache")?;
    Ok(Config { cache })
}

fn resolve_cache(raw: RawCacheConfig, path: &str) -> Result<CacheConfig> {
    let default_ttl = raw.default_ttl.map_or(DEFAULT_TTL, |s| s.0);
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
    check_key_prefix(&key_prefix, &join(path, "key_prefix"))?;
    let compression = match raw.compression {
        None => Compression::None,
        Some(c) => resolve_compression(c, &join(path, "compression"))?,
    };
    let layers = resolve_layers(
        raw.layers.unwrap_or_default(),
        Some(default_ttl),
        &join(path, "layers"),
    )?;
    let bus = match raw.bus {
        None => None,
        Some(bus) => Some(resolve_bus(bus, &join(path, "bus"))?),
    };
    Ok(CacheConfig {
        default_ttl,
        key_prefix,
        serialization: raw.serialization.unwrap_or_default(),
        compression,
        max_value_bytes: raw.max_value_bytes.map_or(DEFAULT_MAX_VALUE_BYTES, |v| v.0),
        layers,
        bus,
    })
}

fn check_key_prefix(prefix: &str, path: &str) -> Result<()> {
    if prefix.is_empty() {
        return Err(config_error(path, "must not be empty"));
    }
    if prefix.len() > MAX_KEY_PREFIX_LEN {
        return Err(config_error(
            path,
            format!(
                "{} bytes is too long (at most {MAX_KEY_PREFIX_LEN})",
                prefix.len()
            ),
        ));
    }
    if let Some(c) = prefix.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(config_error(
            path,
            format!("{prefix:?} holds {c:?}; whitespace and control characters are not allowed"),
        ));
    }
    Ok(())
}

fn resolve_compression(raw: RawCompression, path: &str) -> Result<Compression> {
    let (name, name_path, threshold) = match raw {
        RawCompression::Name(name) => (name, path.to_owned(), None),
        RawCompression::Table(t) => (t.algorithm, join(path, "algorithm"), t.threshold),
    };
    match name.as_str() {
        "none" => match threshold {
            Some(_) => Err(config_error(
                &join(path, "threshold"),
                r#"not used with algorithm "none""#,
            )),
            None => Ok(Compression::None),
        },
        "lz4" => Ok(Compression::Lz4 {
            threshold: threshold.unwrap_or(DEFAULT_COMPRESSION_THRESHOLD),
        }),
        "zstd" => Ok(Compression::Zstd {
            threshold: threshold.unwrap_or(DEFAULT_COMPRESSION_THRESHOLD),
        }),
        other => Err(config_error(
            &name_path,
            format!(r#"unknown compression {other:?}; expected "none", "lz4" or "zstd""#),
        )),
    }
}

fn resolve_bus(raw: RawBus, path: &str) -> Result<BusConfig> {
    check_url(
        &raw.url,
        &join(path, "url"),
        &["redis", "rediss", "redis-cluster", "rediss-cluster"],
        "redis://, rediss://, redis-cluster:// or rediss-cluster://",
    )?;
    let event_shards = match raw.event_shards {
        None => None,
        Some(n) => match usize::try_from(n) {
            Ok(n) if (1..=MAX_EVENT_SHARDS).contains(&n) => Some(n),
            _ => {
                return Err(config_error(
                    &join(path, "event_shards"),
                    format!("must be between 1 and {MAX_EVENT_SHARDS}, found {n}"),
                ));
            }
        },
    };
    let retention = match raw.retention {
        None => DEFAULT_BUS_RETENTION,
        Some(n) if (1..=MAX_BUS_RETENTION).contains(&n) => n,
        Some(n) => {
            return Err(config_error(
                &join(path, "retention"),
                format!("must be between 1 and {MAX_BUS_RETENTION} messages, found {n}"),
            ));
        }
    };
    Ok(BusConfig {
        url: raw.url,
        event_shards,
        retention,
    })
}

fn resolve_layers(
    raw: RawLayers,
    default_ttl: Option<Duration>,
    path: &str,
) -> Result<LayersConfig> {
    let l1 = resolve_l1(raw.l1.unwrap_or_default(), default_ttl);
    let l2 = resolve_layer(
        raw.l2,
        &join(path, "l2"),
        &[Backend::Redis, Backend::Memcached],
    )?;
    let l3 = resolve_layer(
        raw.l3,
        &join(path, "l3"),
        &[Backend::RedisCluster, Backend::Redis],
    )?;
    let l4 = resolve_layer(
        raw.l4,
        &join(path, "l4"),
        &[
            Backend::S3,
            Backend::File,
            Backend::Gcs,
            Backend::Azure,
            Backend::Http,
        ],
    )?;
    Ok(LayersConfig { l1, l2, l3, l4 })
}

fn resolve_l1(raw: RawL1, default_ttl: Option<Duration>) -> L1Config {
    L1Config {
        enabled: raw.enabled.unwrap_or(true),
        max_size: raw.max_size.map_or(DEFAULT_L1_MAX_SIZE, |v| v.0),
        max_bytes: raw.max_bytes.map(|v| v.0),
        ttl: raw.ttl.map(|s| s.0).or(default_ttl),
        max_value_bytes: raw.max_value_bytes.map(|v| v.0),
    }
}

/// Resolves `l2`–`l4`. A disabled layer is `None` and only its key names and types are checked.
fn resolve_layer(
    raw: Option<RawLayer>,
    path: &str,
    allowed: &[Backend],
) -> Result<Option<LayerConfig>> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let layer_name = path.rsplit('.').next().unwrap_or(path);
    let layer_label = if layer_name.is_empty() {
        "this layer"
    } else {
        layer_name
    };
    let backend_path = join(path, "backend");
    let Some(name) = raw.backend.as_deref() else {
        return Err(config_error(
            &backend_path,
            format!("missing; {layer_label} takes {}", quoted_list(allowed)),
        ));
    };
    let backend = match Backend::from_name(name) {
        Some(b) if allowed.contains(&b) => b,
        Some(_) => {
            return Err(config_error(
                &backend_path,
                format!(
                    "backend {name:?} is not available on {layer_label}; it takes {}",
                    quoted_list(allowed)
                ),
            ));
        }
        None => {
            return Err(config_error(
                &backend_path,
                format!(
                    "unknown backend {name:?}; {layer_label} takes {}",
                    quoted_list(allowed)
                ),
            ));
        }
    };

    // Keys the backend does not take.
    let present: [(&str, bool); 14] = [
        ("tls_ca_file", raw.tls_ca_file.is_some()),
        ("pool_size", raw.pool_size.is_some()),
        ("sweep_interval", raw.sweep_interval.is_some()),
        ("sweep_batch", raw.sweep_batch.is_some()),
        ("url", raw.url.is_some()),
        ("urls", raw.urls.is_some()),
        ("bucket", raw.bucket.is_some()),
        ("path", raw.path.is_some()),
        ("region", raw.region.is_some()),
        ("endpoint", raw.endpoint.is_some()),
        ("allow_http", raw.allow_http.is_some()),
        ("access_key_id", raw.access_key_id.is_some()),
        ("secret_access_key", raw.secret_access_key.is_some()),
        ("prefix", raw.prefix.is_some()),
    ];
    let takes = backend.keys();
    if let Some((key, _)) = present.iter().find(|(k, p)| *p && !takes.contains(k)) {
        let takes_list: Vec<String> = takes.iter().map(|k| format!("`{k}`")).collect();
        return Err(config_error(
            &join(path, key),
            format!(
                "backend {:?} does not take this key (it takes {})",
                backend.name(),
                takes_list.join(", ")
            ),
        ));
    }

    let allow_http = raw.allow_http.unwrap_or(false);
    let (schemes, expected) = backend.url_schemes();
    let urls = raw.urls.unwrap_or_default();
    match backend {
        Backend::Redis | Backend::Http => {
            let url = raw.url.as_ref().ok_or_else(|| {
                config_error(
                    &join(path, "url"),
                    format!("missing; backend {:?} needs a URL", backend.name()),
                )
            })?;
            check_url(url, &join(path, "url"), schemes, expected)?;
            if backend == Backend::Http && !allow_http && has_scheme(url.expose(), "http") {
                return Err(config_error(
                    &join(path, "url"),
                    format!(
                        "{:?} is plain http://; set `allow_http = true` to allow it",
                        url.redacted()
                    ),
                ));
            }
        }
        Backend::Memcached | Backend::RedisCluster => match (&raw.url, urls.is_empty()) {
            (Some(_), false) => {
                return Err(config_error(
                    &join(path, "urls"),
                    "set either `url` or `urls`, not both",
                ));
            }
            (None, true) => {
                let msg = if raw_urls_given(&present) {
                    "must list at least one URL".to_owned()
                } else {
                    format!(
                        "missing; backend {:?} needs `urls` (or a single `url`)",
                        backend.name()
                    )
                };
                return Err(config_error(&join(path, "urls"), msg));
            }
            (Some(url), true) => check_url(url, &join(path, "url"), schemes, expected)?,
            (None, false) => {
                for (i, url) in urls.iter().enumerate() {
                    check_url(url, &format!("{path}.urls[{i}]"), schemes, expected)?;
                }
            }
        },
        Backend::S3 | Backend::Gcs | Backend::Azure => {
            match raw.bucket.as_deref() {
                None => {
                    return Err(config_error(
                        &join(path, "bucket"),
                        format!("missing; backend {:?} needs a bucket", backend.name()),
                    ));
                }
                Some(b) if b.trim().is_empty() => {
                    return Err(config_error(&join(path, "bucket"), "must not be empty"));
                }
                Some(_) => {}
            }
            if let Some(endpoint) = &raw.endpoint {
                let endpoint_path = join(path, "endpoint");
                check_url(
                    &Secret::new(endpoint.clone()),
                    &endpoint_path,
                    &["http", "https"],
                    "http:// or https://",
                )?;
                if !allow_http && has_scheme(endpoint, "http") {
                    return Err(config_error(
                        &endpoint_path,
                        format!(
                            "{:?} is plain http://; set `allow_http = true` to allow it",
                            shown_in_error(endpoint)
                        ),
                    ));
                }
            }
            if let Some(region) = &raw.region
                && region.trim().is_empty()
            {
                return Err(config_error(&join(path, "region"), "must not be empty"));
            }
            match (&raw.access_key_id, &raw.secret_access_key) {
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
                _ => {}
            }
        }
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
            Some(_) => {}
        },
    }

    Ok(Some(LayerConfig {
        backend,
        ttl: raw.ttl.map(|s| s.0),
        timeout: raw
            .timeout_ms
            .map_or(backend.default_timeout(), |ms| Duration::from_millis(ms.0)),
        max_value_bytes: raw.max_value_bytes.map(|v| v.0),
        url: raw.url,
        urls,
        bucket: raw.bucket,
        path: raw.path,
        region: raw.region,
        endpoint: raw.endpoint,
        allow_http,
        access_key_id: raw.access_key_id,
        secret_access_key: raw.secret_access_key,
        prefix: raw.prefix,
        tls_ca_file: raw.tls_ca_file,
        compression: raw
            .compression
            .map(|c| resolve_compression(c, &join(path, "compression")))
            .transpose()?,
        write_policy: match raw.write_policy.as_deref() {
            None | Some("through") => WritePolicy::Through,
            Some("behind") => WritePolicy::Behind,
            Some(other) => {
                return Err(config_error(
                    &join(path, "write_policy"),
                    format!(r#"unknown write policy {other:?}; expected "through" or "behind""#),
                ));
            }
        },
        write_behind_queue: raw.write_behind_queue.map_or(10_000, |q| q.0),
        sweep_interval: raw.sweep_interval.map(|s| s.0),
        sweep_batch: raw.sweep_batch.map_or(1_000, |b| b.0),
        pool_size: match raw.pool_size {
            Some(Positive(n)) if n > MAX_POOL_SIZE => {
                return Err(config_error(
                    &join(path, "pool_size"),
                    format!("must be between 1 and {MAX_POOL_SIZE}, found {n}"),
                ));
            }
            Some(Positive(n)) => n,
            None => DEFAULT_POOL_SIZE,
        },
    }))
}

fn raw_urls_given(present: &[(&str, bool)]) -> bool {
    present.iter().any(|(k, p)| *k == "urls" && *p)
}

/// How a URL-valued key is shown in an error message: like [`redact`], except that a value
/// without `://` (a malformed URL such as `localhost:6379`) is shown, minus anything up to its last
/// `@`, so the user can see what is wrong with it.
fn shown_in_error(s: &str) -> String {
    if s.contains("://") {
        redact(s)
    } else if let Some(at) = s.rfind('@') {
        format!("***@{}", &s[at + 1..])
    } else {
        s.to_owned()
    }
}

fn has_scheme(url: &str, scheme: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme))
}

/// Checks a URL by hand: a scheme from `schemes`, `://`, a non-empty host, and a numeric port if
/// there is one. The message shows the URL redacted.
fn check_url(url: &Secret, path: &str, schemes: &[&str], expected: &str) -> Result<()> {
    let s = url.expose();
    let malformed = |why: String| {
        config_error(
            path,
            format!("malformed URL {:?}: {why}", shown_in_error(s)),
        )
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed(
            "holds whitespace or control characters".to_owned(),
        ));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(malformed(format!("expected {expected}")));
    };
    if !schemes.iter().any(|ok| scheme.eq_ignore_ascii_case(ok)) {
        return Err(malformed(format!("expected {expected}")));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_port = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, after)) => match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => {
                        return Err(malformed("unexpected text after the IPv6 host".to_owned()));
                    }
                },
            },
            None => return Err(malformed("unclosed `[` in the host".to_owned())),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(malformed("missing host".to_owned()));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(malformed(format!("invalid port {port:?}")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Deserialize for the public types (for embedding in an application's own config)
// ---------------------------------------------------------------------------------------------

fn custom<E: de::Error>(err: Error) -> E {
    E::custom(err.message())
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        resolve_config(RawConfig::deserialize(deserializer)?).map_err(custom)
    }
}

impl<'de> Deserialize<'de> for CacheConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        resolve_cache(RawCacheConfig::deserialize(deserializer)?, "cache").map_err(custom)
    }
}

impl<'de> Deserialize<'de> for LayersConfig {
    /// L1's `ttl` stays `None` when unset (capped at `default_ttl`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        resolve_layers(RawLayers::deserialize(deserializer)?, None, "cache.layers").map_err(custom)
    }
}

impl<'de> Deserialize<'de> for L1Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(resolve_l1(RawL1::deserialize(deserializer)?, None))
    }
}

impl LayerConfig {
    /// The server URLs to connect to, credentials included: `url` first, then `urls`.
    #[cfg_attr(
        not(any(feature = "redis", feature = "memcached")),
        expect(dead_code, reason = "only the network stores connect to URLs")
    )]
    pub(crate) fn server_urls(&self) -> Vec<&str> {
        self.url
            .iter()
            .chain(&self.urls)
            .map(Secret::expose)
            .collect()
    }
}

impl<'de> Deserialize<'de> for LayerConfig {
    /// Any backend is accepted; `enabled = false` is an error, since a `LayerConfig` is an enabled
    /// layer (deserialize an `Option<LayerConfig>` and leave the table out instead).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = RawLayer::deserialize(deserializer)?;
        match resolve_layer(Some(raw), "", &Backend::ALL).map_err(custom)? {
            Some(layer) => Ok(layer),
            None => Err(de::Error::custom(
                "enabled: a LayerConfig is always enabled; leave the table out instead",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for BusConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        resolve_bus(RawBus::deserialize(deserializer)?, "cache.bus").map_err(custom)
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        resolve_compression(
            RawCompression::deserialize(deserializer)?,
            "cache.compression",
        )
        .map_err(custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Back to the raw form, for environment overrides
// ---------------------------------------------------------------------------------------------

fn seconds_value(d: Duration) -> Value {
    let ms = millis_ceil(d);
    if ms.is_multiple_of(1000) {
        Value::from(ms / 1000)
    } else {
        #[allow(clippy::cast_precision_loss)]
        Value::from(ms as f64 / 1000.0)
    }
}

fn millis_ceil(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn config_to_value(config: &Config) -> Value {
    let c = &config.cache;
    let mut cache = Map::new();
    cache.insert("default_ttl".into(), seconds_value(c.default_ttl));
    cache.insert("key_prefix".into(), Value::from(c.key_prefix.clone()));
    cache.insert(
        "serialization".into(),
        Value::from(match c.serialization {
            Serialization::Msgpack => "msgpack",
            Serialization::Json => "json",
        }),
    );
    cache.insert("compression".into(), compression_value(c.compression));
    cache.insert("max_value_bytes".into(), Value::from(c.max_value_bytes));

    let mut layers = Map::new();
    let l1 = &c.layers.l1;
    let mut l1v = Map::new();
    l1v.insert("enabled".into(), Value::from(l1.enabled));
    l1v.insert("max_size".into(), Value::from(l1.max_size));
    if let Some(b) = l1.max_bytes {
        l1v.insert("max_bytes".into(), Value::from(b));
    }
    if let Some(ttl) = l1.ttl {
        l1v.insert("ttl".into(), seconds_value(ttl));
    }
    if let Some(b) = l1.max_value_bytes {
        l1v.insert("max_value_bytes".into(), Value::from(b));
    }
    layers.insert("l1".into(), Value::Object(l1v));
    for (name, layer) in [
        ("l2", &c.layers.l2),
        ("l3", &c.layers.l3),
        ("l4", &c.layers.l4),
    ] {
        if let Some(layer) = layer {
            layers.insert(name.into(), layer_to_value(layer));
        }
    }
    cache.insert("layers".into(), Value::Object(layers));
    if let Some(bus) = &c.bus {
        let mut b = Map::new();
        b.insert("url".into(), Value::from(bus.url.expose()));
        if let Some(n) = bus.event_shards {
            b.insert("event_shards".into(), Value::from(n));
        }
        b.insert("retention".into(), Value::from(bus.retention));
        cache.insert("bus".into(), Value::Object(b));
    }
    serde_json::json!({ "cache": Value::Object(cache) })
}

fn compression_value(c: Compression) -> Value {
    match c {
        Compression::None => Value::from("none"),
        Compression::Lz4 { threshold } => {
            serde_json::json!({ "algorithm": "lz4", "threshold": threshold })
        }
        Compression::Zstd { threshold } => {
            serde_json::json!({ "algorithm": "zstd", "threshold": threshold })
        }
    }
}

fn layer_to_value(l: &LayerConfig) -> Value {
    let mut m = Map::new();
    if let Some(c) = l.compression {
        m.insert("compression".into(), compression_value(c));
    }
    if l.write_policy == WritePolicy::Behind {
        m.insert("write_policy".into(), Value::from("behind"));
        m.insert(
            "write_behind_queue".into(),
            Value::from(l.write_behind_queue),
        );
    }
    if l.pool_size != DEFAULT_POOL_SIZE {
        m.insert("pool_size".into(), Value::from(l.pool_size));
    }
    if let Some(every) = l.sweep_interval {
        m.insert("sweep_interval".into(), seconds_value(every));
        m.insert("sweep_batch".into(), Value::from(l.sweep_batch));
    }
    m.insert("backend".into(), Value::from(l.backend.name()));
    if let Some(ttl) = l.ttl {
        m.insert("ttl".into(), seconds_value(ttl));
    }
    m.insert("timeout_ms".into(), Value::from(millis_ceil(l.timeout)));
    if let Some(b) = l.max_value_bytes {
        m.insert("max_value_bytes".into(), Value::from(b));
    }
    if let Some(url) = &l.url {
        m.insert("url".into(), Value::from(url.expose()));
    }
    if !l.urls.is_empty() {
        m.insert(
            "urls".into(),
            Value::Array(l.urls.iter().map(|u| Value::from(u.expose())).collect()),
        );
    }
    let strings = [
        ("bucket", &l.bucket),
        ("region", &l.region),
        ("endpoint", &l.endpoint),
        ("prefix", &l.prefix),
    ];
    for (key, v) in strings {
        if let Some(v) = v {
            m.insert(key.into(), Value::from(v.clone()));
        }
    }
    if let Some(p) = &l.path {
        m.insert("path".into(), Value::from(p.to_string_lossy().into_owned()));
    }
    if let Some(p) = &l.tls_ca_file {
        m.insert(
            "tls_ca_file".into(),
            Value::from(p.to_string_lossy().into_owned()),
        );
    }
    if l.allow_http {
        m.insert("allow_http".into(), Value::from(true));
    }
    if let Some(k) = &l.access_key_id {
        m.insert("access_key_id".into(), Value::from(k.expose()));
    }
    if let Some(k) = &l.secret_access_key {
        m.insert("secret_access_key".into(), Value::from(k.expose()));
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn err(toml: &str) -> Error {
        match Config::from_toml_str(toml) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    fn assert_err(toml: &str, starts_with: &str) {
        let e = err(toml);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.message().starts_with(starts_with),
            "message {:?} does not start with {starts_with:?}",
            e.message()
        );
    }

    const SEED_TOML: &str = r#"
[cache]
default_ttl = 300
key_prefix = "vorte:"
serialization = "msgpack"
[cache.layers.l1]
enabled = true
max_size = 1000
ttl = 60
[cache.layers.l2]
enabled = true
backend = "redis"
url = "redis://localhost:6379/0"
ttl = 300
[cache.layers.l3]
enabled = true
backend = "redis-cluster"
urls = ["redis://node1:6379", "redis://node2:6379", "redis://node3:6379"]
ttl = 3600
[cache.layers.l4]
enabled = false
backend = "s3"
bucket = "my-cache-bucket"
ttl = 86400
"#;

    fn seed_json() -> Value {
        json!({
            "cache": {
                "default_ttl": 300,
                "layers": {
                    "l1": { "enabled": true, "max_size": 1000, "ttl": 60 },
                    "l2": { "enabled": true, "backend": "redis", "url": "redis://localhost:6379/0", "ttl": 300 },
                    "l3": {
                        "enabled": true,
                        "backend": "redis-cluster",
                        "urls": ["redis://node1:6379", "redis://node2:6379", "redis://node3:6379"],
                        "ttl": 3600
                    },
                    "l4": { "enabled": false, "backend": "s3", "bucket": "my-cache-bucket", "ttl": 86400 }
                },
                "key_prefix": "vorte:",
                "serialization": "msgpack"
            }
        })
    }

    #[test]
    fn seed_toml_resolves() {
        let c = Config::from_toml_str(SEED_TOML).unwrap().cache;
        assert_eq!(c.default_ttl, Duration::from_secs(300));
        assert_eq!(c.key_prefix, "vorte:");
        assert_eq!(c.serialization, Serialization::Msgpack);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.max_value_bytes, 16 * 1024 * 1024);
        assert!(c.layers.l1.enabled);
        assert_eq!(c.layers.l1.max_size, 1000);
        assert_eq!(c.layers.l1.ttl, Some(Duration::from_secs(60)));
        let l2 = c.layers.l2.as_ref().unwrap();
        assert_eq!(l2.backend, Backend::Redis);
        assert_eq!(
            l2.url.as_ref().unwrap().expose(),
            "redis://localhost:6379/0"
        );
        assert_eq!(l2.ttl, Some(Duration::from_secs(300)));
        assert_eq!(l2.timeout, Duration::from_millis(250));
        let l3 = c.layers.l3.as_ref().unwrap();
        assert_eq!(l3.backend, Backend::RedisCluster);
        assert_eq!(l3.urls.len(), 3);
        assert!(l3.url.is_none());
        assert!(c.layers.l4.is_none());
        assert!(c.bus.is_none());
    }

    #[test]
    fn seed_json_equals_seed_toml() {
        let from_json = Config::from_json(seed_json()).unwrap();
        let from_toml = Config::from_toml_str(SEED_TOML).unwrap();
        assert_eq!(from_json, from_toml);
        let from_str = Config::from_json_str(&seed_json().to_string()).unwrap();
        assert_eq!(from_str, from_toml);
    }

    #[test]
    fn yaml_equals_toml() {
        let yaml = r#"
cache:
  default_ttl: 300
  key_prefix: "vorte:"
  serialization: msgpack
  layers:
    l1: { enabled: true, max_size: 1000, ttl: 60 }
    l2: { enabled: true, backend: redis, url: "redis://localhost:6379/0", ttl: 300 }
    l3:
      enabled: true
      backend: redis-cluster
      urls: ["redis://node1:6379", "redis://node2:6379", "redis://node3:6379"]
      ttl: 3600
    l4: { enabled: false, backend: s3, bucket: my-cache-bucket, ttl: 86400 }
"#;
        assert_eq!(
            Config::from_yaml_str(yaml).unwrap(),
            Config::from_toml_str(SEED_TOML).unwrap()
        );
    }

    #[test]
    fn empty_documents_are_the_default() {
        let default = Config::default();
        assert_eq!(Config::from_toml_str("").unwrap(), default);
        assert_eq!(Config::from_toml_str("[cache]").unwrap(), default);
        assert_eq!(Config::from_json(Value::Null).unwrap(), default);
        assert_eq!(Config::from_json(json!({})).unwrap(), default);
        assert_eq!(Config::from_yaml_str("").unwrap(), default);
        assert_eq!(Config::from_yaml_str("cache: {}").unwrap(), default);
        assert_eq!(CacheConfig::default(), default.cache);
    }

    #[test]
    fn defaults() {
        let c = CacheConfig::default();
        assert_eq!(c.default_ttl, Duration::from_secs(300));
        assert_eq!(c.key_prefix, "vorte:");
        assert!(c.layers.l1.enabled);
        assert_eq!(c.layers.l1.max_size, 10_000);
        assert_eq!(c.layers.l1.ttl, Some(Duration::from_secs(300)));
        assert_eq!(c.l1_ttl(), Duration::from_secs(300));
        assert!(c.layers.l2.is_none() && c.layers.l3.is_none() && c.layers.l4.is_none());
    }

    #[test]
    fn l1_ttl_defaults_to_default_ttl() {
        let c = Config::from_toml_str("[cache]\ndefault_ttl = 42")
            .unwrap()
            .cache;
        assert_eq!(c.layers.l1.ttl, Some(Duration::from_secs(42)));
        let c = Config::from_toml_str("[cache]\ndefault_ttl = 42\n[cache.layers.l1]\nmax_size = 5")
            .unwrap()
            .cache;
        assert_eq!(c.layers.l1.ttl, Some(Duration::from_secs(42)));
        assert_eq!(c.layers.l1.max_size, 5);
    }

    #[test]
    fn l1_can_be_disabled() {
        let c = Config::from_toml_str("[cache.layers.l1]\nenabled = false")
            .unwrap()
            .cache;
        assert!(!c.layers.l1.enabled);
    }

    #[test]
    fn layer_without_enabled_is_enabled() {
        let c = Config::from_toml_str(
            "[cache.layers.l2]\nbackend = \"memcached\"\nurl = \"memcached://127.0.0.1:11211\"",
        )
        .unwrap()
        .cache;
        let l2 = c.layers.l2.unwrap();
        assert_eq!(l2.backend, Backend::Memcached);
    }

    #[test]
    fn disabled_layer_is_none_even_when_incomplete() {
        let c = Config::from_toml_str("[cache.layers.l4]\nenabled = false\nbackend = \"s3\"")
            .unwrap()
            .cache;
        assert!(c.layers.l4.is_none());
        // Key names are still checked.
        assert_err(
            "[cache.layers.l4]\nenabled = false\nbukket = \"x\"",
            "cache.layers.l4.bukket: unknown field `bukket`",
        );
    }

    #[test]
    fn durations_accept_integers_and_floats() {
        let c = Config::from_toml_str("[cache]\ndefault_ttl = 1.5\n[cache.layers.l1]\nttl = 0.25")
            .unwrap()
            .cache;
        assert_eq!(c.default_ttl, Duration::from_millis(1500));
        assert_eq!(c.layers.l1.ttl, Some(Duration::from_millis(250)));
        let c = Config::from_toml_str("[cache]\ndefault_ttl = 0.0016")
            .unwrap()
            .cache;
        assert_eq!(c.default_ttl, Duration::from_millis(2));
    }

    #[test]
    fn durations_reject_bad_values() {
        assert_err(
            "[cache]\ndefault_ttl = 0",
            "cache.default_ttl: must be greater than 0",
        );
        assert_err(
            "[cache]\ndefault_ttl = -5",
            "cache.default_ttl: must be greater than 0",
        );
        assert_err(
            "[cache]\ndefault_ttl = 0.0",
            "cache.default_ttl: must be greater than 0",
        );
        assert_err(
            "[cache]\ndefault_ttl = nan",
            "cache.default_ttl: NaN is not a finite number",
        );
        assert_err(
            "[cache]\ndefault_ttl = inf",
            "cache.default_ttl: inf is not a finite number",
        );
        let e = Config::from_yaml_str("cache:\n  default_ttl: .nan").unwrap_err();
        assert!(
            e.message()
                .starts_with("cache.default_ttl: NaN is not a finite number at line 2"),
            "{}",
            e.message()
        );
        assert_err(
            "[cache]\ndefault_ttl = 0.0001",
            "cache.default_ttl: 0.0001 seconds is below",
        );
        assert_err(
            "[cache]\ndefault_ttl = \"300\"",
            "cache.default_ttl: invalid type: string \"300\", expected a positive number of seconds",
        );
        assert_err(
            "[cache.layers.l1]\nttl = -1",
            "cache.layers.l1.ttl: must be greater than 0",
        );
        assert_err(
            "[cache]\ndefault_ttl = 18446744073709551615",
            "cache.default_ttl: 18446744073709551615 seconds is too long",
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("[cache.layers.l1]\nmax_sise = 10");
        assert!(
            e.message()
                .starts_with("cache.layers.l1.max_sise: unknown field `max_sise`, expected one of"),
            "{}",
            e.message()
        );
        assert_err("[cache]\nttl = 1", "cache.ttl: unknown field `ttl`");
        assert_err(
            "[cache.layers.l5]\nbackend = \"redis\"",
            "cache.layers.l5: unknown field `l5`",
        );
        assert_err("[\"cachе\"]", "cachе: unknown field");
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"\nuser = \"x\"",
            "cache.layers.l2.user: unknown field `user`",
        );
        assert_err(
            "[cache.bus]\nurl = \"redis://h\"\nx = 1",
            "cache.bus.x: unknown field `x`",
        );
    }

    #[test]
    fn wrong_types_are_named() {
        assert_err(
            "[cache]\nkey_prefix = 5",
            "cache.key_prefix: invalid type: integer `5`",
        );
        assert_err(
            "[cache]\nlayers = 5",
            "cache.layers: invalid type: integer `5`, expected a table",
        );
        assert_err(
            "[cache.layers.l1]\nmax_size = 0",
            "cache.layers.l1.max_size: must be greater than 0",
        );
        assert_err(
            "[cache.layers.l1]\nmax_size = -1",
            "cache.layers.l1.max_size: invalid value",
        );
        assert_err(
            "[cache.layers.l1]\nenabled = \"yes\"",
            "cache.layers.l1.enabled: invalid type",
        );
        assert_err(
            "[cache]\nmax_value_bytes = 0",
            "cache.max_value_bytes: must be greater than 0",
        );
        let e = Config::from_json(json!("x")).unwrap_err();
        assert!(
            e.message()
                .starts_with("configuration: invalid type: string \"x\", expected a table"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn serialization_values() {
        let c = Config::from_toml_str("[cache]\nserialization = \"json\"")
            .unwrap()
            .cache;
        assert_eq!(c.serialization, Serialization::Json);
        assert_err(
            "[cache]\nserialization = \"yaml\"",
            "cache.serialization: unknown variant `yaml`, expected `msgpack` or `json`",
        );
    }

    #[test]
    fn compression_forms() {
        let c = |s: &str| Config::from_toml_str(s).unwrap().cache.compression;
        assert_eq!(c("[cache]\ncompression = \"none\""), Compression::None);
        assert_eq!(
            c("[cache]\ncompression = \"lz4\""),
            Compression::Lz4 { threshold: 1024 }
        );
        assert_eq!(
            c("[cache]\ncompression = { algorithm = \"lz4\", threshold = 64 }"),
            Compression::Lz4 { threshold: 64 }
        );
        assert_eq!(
            c("[cache.compression]\nalgorithm = \"lz4\""),
            Compression::Lz4 { threshold: 1024 }
        );
        assert_eq!(
            Config::from_toml_str("[cache]\ncompression = \"zstd\"")
                .expect("zstd")
                .cache
                .compression,
            Compression::Zstd { threshold: 1024 }
        );
        assert_err(
            "[cache]\ncompression = \"brotli\"",
            "cache.compression: unknown compression \"brotli\"",
        );
        assert_err(
            "[cache]\ncompression = { algorithm = \"gzip\" }",
            "cache.compression.algorithm: unknown compression \"gzip\"",
        );
        assert_err(
            "[cache]\ncompression = { algorithm = \"lz4\", level = 3 }",
            "cache.compression.level: unknown field `level`",
        );
        assert_err(
            "[cache]\ncompression = { algorithm = \"none\", threshold = 3 }",
            "cache.compression.threshold: not used",
        );
        assert_err(
            "[cache]\ncompression = { threshold = 3 }",
            "cache.compression: missing field `algorithm`",
        );
        assert_err(
            "[cache]\ncompression = 4",
            "cache.compression: invalid type: integer `4`",
        );
    }

    #[test]
    fn key_prefix_rules() {
        assert_err(
            "[cache]\nkey_prefix = \"\"",
            "cache.key_prefix: must not be empty",
        );
        assert_err(
            "[cache]\nkey_prefix = \"a b\"",
            "cache.key_prefix: \"a b\" holds ' '",
        );
        assert_err("[cache]\nkey_prefix = \"a\\u0001\"", "cache.key_prefix:");
        let long = "x".repeat(65);
        assert_err(
            &format!("[cache]\nkey_prefix = \"{long}\""),
            "cache.key_prefix: 65 bytes is too long",
        );
        let ok = "x".repeat(64);
        let c = Config::from_toml_str(&format!("[cache]\nkey_prefix = \"{ok}\"")).unwrap();
        assert_eq!(c.cache.key_prefix, ok);
    }

    #[test]
    fn backends_per_layer() {
        assert_err(
            "[cache.layers.l2]\nbackend = \"s3\"\nbucket = \"b\"",
            "cache.layers.l2.backend: backend \"s3\" is not available on l2; it takes \"redis\" or \"memcached\"",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"mongo\"",
            "cache.layers.l2.backend: unknown backend \"mongo\"; l2 takes \"redis\" or \"memcached\"",
        );
        assert_err(
            "[cache.layers.l3]\nbackend = \"memcached\"",
            "cache.layers.l3.backend: backend \"memcached\" is not available on l3; it takes \"redis-cluster\" or \"redis\"",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"redis\"",
            "cache.layers.l4.backend: backend \"redis\" is not available on l4; it takes \"s3\", \"file\", \"gcs\", \"azure\" or \"http\"",
        );
        assert_err(
            "[cache.layers.l2]\nurl = \"redis://h\"",
            "cache.layers.l2.backend: missing; l2 takes \"redis\" or \"memcached\"",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = 5",
            "cache.layers.l2.backend: invalid type",
        );
        let c = Config::from_toml_str(
            "[cache.layers.l3]\nbackend = \"redis\"\nurl = \"rediss://h:7000\"",
        )
        .unwrap();
        assert_eq!(c.cache.layers.l3.unwrap().backend, Backend::Redis);
    }

    #[test]
    fn required_keys() {
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"",
            "cache.layers.l2.url: missing",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"memcached\"",
            "cache.layers.l2.urls: missing",
        );
        assert_err(
            "[cache.layers.l3]\nbackend = \"redis-cluster\"",
            "cache.layers.l3.urls: missing",
        );
        assert_err(
            "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = []",
            "cache.layers.l3.urls: must list at least one URL",
        );
        assert_err(
            "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurl = \"redis://a\"\nurls = [\"redis://b\"]",
            "cache.layers.l3.urls: set either `url` or `urls`, not both",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"s3\"",
            "cache.layers.l4.bucket: missing",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"gcs\"",
            "cache.layers.l4.bucket: missing",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"azure\"",
            "cache.layers.l4.bucket: missing",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"\"",
            "cache.layers.l4.bucket: must not be empty",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"file\"",
            "cache.layers.l4.path: missing",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"file\"\npath = \"\"",
            "cache.layers.l4.path: must not be empty",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"http\"",
            "cache.layers.l4.url: missing",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"AKIA\"",
            "cache.layers.l4.secret_access_key: missing",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"s\"",
            "cache.layers.l4.access_key_id: missing",
        );
    }

    #[test]
    fn keys_the_backend_does_not_take() {
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"\nbucket = \"b\"",
            "cache.layers.l2.bucket: backend \"redis\" does not take this key (it takes `url`, `tls_ca_file`, `pool_size`)",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurls = [\"redis://h\"]",
            "cache.layers.l2.urls: backend \"redis\" does not take this key",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"b\"\npath = \"/tmp\"",
            "cache.layers.l4.path: backend \"s3\" does not take this key",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"file\"\nbucket = \"b\"",
            "cache.layers.l4.bucket: backend \"file\" does not take this key (it takes `path`, `prefix`, `sweep_interval`, `sweep_batch`)",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"file\"\npath = \"/tmp\"\nallow_http = true",
            "cache.layers.l4.allow_http: backend \"file\" does not take this key",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"gcs\"\nbucket = \"b\"\nregion = \"eu\"",
            "cache.layers.l4.region: backend \"gcs\" does not take this key",
        );
    }

    #[test]
    fn urls_are_checked() {
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"localhost:6379\"",
            "cache.layers.l2.url: malformed URL \"localhost:6379\": expected redis:// or rediss://",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"http://localhost:6379\"",
            "cache.layers.l2.url: malformed URL \"http://localhost:6379\": expected redis:// or rediss://",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://\"",
            "cache.layers.l2.url: malformed URL \"redis://\": missing host",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h:port\"",
            "cache.layers.l2.url: malformed URL \"redis://h:port\": invalid port \"port\"",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h:99999\"",
            "cache.layers.l2.url: malformed URL",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"memcached\"\nurl = \"redis://h:11211\"",
            "cache.layers.l2.url: malformed URL \"redis://h:11211\": expected memcached://",
        );
        assert_err(
            "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = [\"redis://a:1\", \"b:2\"]",
            "cache.layers.l3.urls[1]: malformed URL \"b:2\"",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"http\"\nurl = \"ftp://h\"",
            "cache.layers.l4.url: malformed URL \"ftp://h\": expected http:// or https://",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"http\"\nurl = \"http://h\"",
            "cache.layers.l4.url: \"http://h\" is plain http://; set `allow_http = true`",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:5055\"",
            "cache.layers.l4.endpoint: \"http://127.0.0.1:5055\" is plain http://",
        );
        assert_err(
            "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"127.0.0.1:5055\"",
            "cache.layers.l4.endpoint: malformed URL",
        );
        assert_err(
            "[cache.bus]\nurl = \"memcached://h\"",
            "cache.bus.url: malformed URL",
        );
        assert_err("[cache.bus]", "cache.bus: missing field `url`");
        // Accepted forms.
        for url in [
            "redis://h",
            "REDIS://h:6379/0",
            "rediss://user:p%40ss@h:6380/1",
            "redis://:pw@[::1]:6379",
            "redis://[::1]",
            "redis://h/0?protocol=resp3",
        ] {
            let toml = format!("[cache.layers.l2]\nbackend = \"redis\"\nurl = \"{url}\"");
            Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn url_errors_never_show_the_password() {
        let e = err("[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://u:hunter2@h:bad\"");
        assert!(!e.message().contains("hunter2"), "{}", e.message());
        assert!(e.message().contains("redis://***@h:bad"), "{}", e.message());
        let e = err("[cache.layers.l2]\nbackend = \"redis\"\nurl = \"tcp://u:hunter2@h\"");
        assert!(!e.message().contains("hunter2"), "{}", e.message());
    }

    #[test]
    fn s3_layer_with_everything() {
        let c = Config::from_toml_str(
            r#"
[cache.layers.l4]
enabled = true
backend = "s3"
bucket = "my-cache-bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:5055"
allow_http = true
access_key_id = "AKIAEXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG"
prefix = "app/"
timeout_ms = 1500
max_value_bytes = 1000
"#,
        )
        .unwrap()
        .cache;
        let l4 = c.layers.l4.as_ref().unwrap();
        assert_eq!(l4.backend, Backend::S3);
        assert_eq!(l4.bucket.as_deref(), Some("my-cache-bucket"));
        assert_eq!(l4.region.as_deref(), Some("us-east-1"));
        assert_eq!(l4.endpoint.as_deref(), Some("http://127.0.0.1:5055"));
        assert!(l4.allow_http);
        assert_eq!(l4.access_key_id.as_ref().unwrap().expose(), "AKIAEXAMPLE");
        assert_eq!(l4.timeout, Duration::from_millis(1500));
        assert_eq!(l4.max_value_bytes, Some(1000));
        assert_eq!(l4.prefix.as_deref(), Some("app/"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("AKIAEXAMPLE"), "{debug}");
        assert!(!debug.contains("wJalrXUtnFEMI"), "{debug}");
    }

    #[test]
    fn default_timeouts() {
        let c = Config::from_toml_str(
            "[cache.layers.l2]\nbackend = \"memcached\"\nurls = [\"memcached://a:1\", \"memcached://b:2\"]\n\
             [cache.layers.l4]\nbackend = \"file\"\npath = \"/tmp/x\"",
        )
        .unwrap()
        .cache;
        assert_eq!(
            c.layers.l2.as_ref().unwrap().timeout,
            Duration::from_millis(250)
        );
        assert_eq!(c.layers.l2.as_ref().unwrap().urls.len(), 2);
        let l4 = c.layers.l4.unwrap();
        assert_eq!(l4.timeout, Duration::from_secs(5));
        assert_eq!(l4.path.as_deref(), Some(Path::new("/tmp/x")));
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"\ntimeout_ms = 0",
            "cache.layers.l2.timeout_ms: must be greater than 0",
        );
        assert_err(
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"\ntimeout_ms = 0.5",
            "cache.layers.l2.timeout_ms: invalid type: floating point",
        );
    }

    #[test]
    fn bus() {
        let c = Config::from_toml_str("[cache.bus]\nurl = \"redis://:pw@bus:6379\"")
            .unwrap()
            .cache;
        let bus = c.bus.as_ref().unwrap();
        assert_eq!(bus.url.expose(), "redis://:pw@bus:6379");
        assert_eq!(bus.event_shards, None, "decided when the bus connects");
        assert_eq!(bus.retention, 100_000);
        assert!(!format!("{c:?}").contains("pw@"));

        let c = Config::from_toml_str(
            "[cache.bus]\nurl = \"redis-cluster://n1:7000?node=n2:7001\"\nevent_shards = 64\n\
             retention = 1000",
        )
        .unwrap()
        .cache;
        let bus = c.bus.as_ref().unwrap();
        assert_eq!(bus.event_shards, Some(64));
        assert_eq!(bus.retention, 1000);
        for url in [
            "rediss-cluster://n1:7000",
            "REDIS-CLUSTER://n1",
            "rediss://h",
        ] {
            let toml = format!("[cache.bus]\nurl = {url:?}\nevent_shards = 1\nretention = 1");
            let bus = Config::from_toml_str(&toml).unwrap().cache.bus.unwrap();
            assert_eq!((bus.event_shards, bus.retention), (Some(1), 1), "{url}");
        }
        // The same keys from JSON and from the environment.
        let json = Config::from_json(json!({ "cache": { "bus": {
            "url": "redis://b", "event_shards": 4, "retention": 500
        } } }))
        .unwrap();
        assert_eq!(json.cache.bus.as_ref().unwrap().event_shards, Some(4));
        let vars = [
            ("VORTE__CACHE__BUS__URL", "redis-cluster://c:7000"),
            ("VORTE__CACHE__BUS__EVENT_SHARDS", "8"),
            ("VORTE__CACHE__BUS__RETENTION", "2000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let env = Config::default().with_env_overrides_from(vars).unwrap();
        let bus = env.cache.bus.unwrap();
        assert_eq!(bus.url.expose(), "redis-cluster://c:7000");
        assert_eq!((bus.event_shards, bus.retention), (Some(8), 2000));
    }

    #[test]
    fn pool_size_is_a_redis_key_with_bounds() {
        let l2 = |extra: &str| {
            format!("[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"\n{extra}")
        };
        let config = Config::from_toml_str(&l2("")).unwrap();
        assert_eq!(config.cache.layers.l2.as_ref().unwrap().pool_size, 2);
        let config = Config::from_toml_str(&l2("pool_size = 1")).unwrap();
        assert_eq!(config.cache.layers.l2.as_ref().unwrap().pool_size, 1);
        let l3 =
            "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurl = \"redis://h\"\npool_size = 64";
        let config = Config::from_toml_str(l3).unwrap();
        assert_eq!(config.cache.layers.l3.as_ref().unwrap().pool_size, 64);
        assert_err(
            &l2("pool_size = 65"),
            "cache.layers.l2.pool_size: must be between 1 and 64, found 65",
        );
        assert_err(&l2("pool_size = 0"), "cache.layers.l2.pool_size:");
        assert_err(
            "[cache.layers.l2]\nbackend = \"memcached\"\nurl = \"memcached://h:11211\"\npool_size = 2",
            "cache.layers.l2.pool_size: backend \"memcached\" does not take this key",
        );
        let e = Config::from_toml_str(&l2(""))
            .unwrap()
            .with_env_overrides_from([(
                "VORTE__CACHE__LAYERS__L2__POOL_SIZE".to_owned(),
                "4".to_owned(),
            )])
            .unwrap();
        assert_eq!(e.cache.layers.l2.as_ref().unwrap().pool_size, 4);
    }

    #[test]
    fn bus_errors_name_the_key() {
        let url = "[cache.bus]\nurl = \"redis://h\"\n";
        for (extra, message) in [
            (
                "event_shards = 0",
                "cache.bus.event_shards: must be between 1 and 64, found 0",
            ),
            (
                "event_shards = 65",
                "cache.bus.event_shards: must be between 1 and 64, found 65",
            ),
            ("event_shards = -1", "cache.bus.event_shards: invalid value"),
            ("event_shards = 1.5", "cache.bus.event_shards: invalid type"),
            (
                "event_shards = \"4\"",
                "cache.bus.event_shards: invalid type",
            ),
            (
                "retention = 0",
                "cache.bus.retention: must be between 1 and 1000000000 messages, found 0",
            ),
            (
                "retention = 1000000001",
                "cache.bus.retention: must be between 1 and 1000000000 messages",
            ),
            ("retention = -5", "cache.bus.retention: invalid value"),
            ("retention = true", "cache.bus.retention: invalid type"),
        ] {
            assert_err(&format!("{url}{extra}"), message);
        }
        assert_err(
            "[cache.bus]\nurl = \"cluster://h\"",
            "cache.bus.url: malformed URL \"cluster://h\": expected redis://, rediss://, \
             redis-cluster:// or rediss-cluster://",
        );
        // The path is named when the value comes from the environment too.
        let e = Config::from_toml_str(url)
            .unwrap()
            .with_env_overrides_from([(
                "VORTE__CACHE__BUS__EVENT_SHARDS".to_owned(),
                "100".to_owned(),
            )])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.message()
                .starts_with("cache.bus.event_shards: must be between 1 and 64"),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("VORTE__CACHE__BUS__EVENT_SHARDS"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn secret_redaction() {
        let cases = [
            ("redis://user:pass@host:6379/0", "redis://***@host:6379/0"),
            ("redis://:pass@host", "redis://***@host"),
            ("rediss://host:6380", "rediss://host:6380"),
            ("redis://u:p@ss/w?rd@host/0", "redis://***@host/0"),
            (
                "redis://host/0?password=x&db=1",
                "redis://host/0?password=***&db=1",
            ),
            (
                "https://h/x?X-Amz-Signature=abc#f",
                "https://h/x?X-Amz-Signature=***#f",
            ),
            ("AKIAEXAMPLE", "***"),
            ("", "***"),
        ];
        for (input, shown) in cases {
            let s = Secret::new(input);
            assert_eq!(s.to_string(), shown, "{input}");
            assert_eq!(format!("{s:?}"), format!("{shown:?}"), "{input}");
            assert_eq!(s.expose(), input);
        }
    }

    #[test]
    fn debug_of_config_never_shows_passwords() {
        let c = Config::from_toml_str(
            r#"
[cache.layers.l2]
backend = "redis"
url = "redis://alice:s3cr3t-pw@h:6379/0"
[cache.layers.l3]
backend = "redis-cluster"
urls = ["rediss://bob:s3cr3t-pw@n1:6379", "redis://:s3cr3t-pw@n2:6379"]
[cache.bus]
url = "redis://carol:s3cr3t-pw@bus:6379"
"#,
        )
        .unwrap();
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(!debug.contains("alice") && !debug.contains("bob") && !debug.contains("carol"));
        assert!(debug.contains("redis://***@h:6379/0"), "{debug}");
    }

    #[test]
    fn env_overrides() {
        let base = Config::from_toml_str(SEED_TOML).unwrap();
        let vars = [
            ("VORTE__CACHE__LAYERS__L2__URL", "redis://other:6379/1"),
            ("VORTE__CACHE__DEFAULT_TTL", "10"),
            ("VORTE__CACHE__KEY_PREFIX", "123"),
            ("VORTE__CACHE__LAYERS__L1__TTL", "0.5"),
            ("VORTE__CACHE__LAYERS__L1__ENABLED", "false"),
            (
                "VORTE__CACHE__LAYERS__L3__URLS",
                r#"["redis://x:1","redis://y:2"]"#,
            ),
            ("VORTE__CACHE__SERIALIZATION", "json"),
            ("PATH", "/usr/bin"),
            ("VORTE_REDIS_URL", "redis://ignored"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = base.with_env_overrides_from(vars).unwrap().cache;
        assert_eq!(
            c.layers.l2.as_ref().unwrap().url.as_ref().unwrap().expose(),
            "redis://other:6379/1"
        );
        assert_eq!(c.default_ttl, Duration::from_secs(10));
        assert_eq!(c.key_prefix, "123");
        assert_eq!(c.layers.l1.ttl, Some(Duration::from_millis(500)));
        assert!(!c.layers.l1.enabled);
        assert_eq!(c.layers.l3.as_ref().unwrap().urls.len(), 2);
        assert_eq!(c.serialization, Serialization::Json);
        // Untouched values stay.
        assert_eq!(c.layers.l1.max_size, 1000);
        assert_eq!(
            c.layers.l2.as_ref().unwrap().ttl,
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn env_overrides_can_add_a_layer_and_remove_one() {
        let vars = [
            ("VORTE__CACHE__LAYERS__L4__BACKEND", "file"),
            ("VORTE__CACHE__LAYERS__L4__PATH", "/var/cache/app"),
            ("VORTE__CACHE__LAYERS__L2", "null"),
            (
                "VORTE__CACHE__COMPRESSION",
                r#"{"algorithm":"lz4","threshold":10}"#,
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::from_toml_str(SEED_TOML)
            .unwrap()
            .with_env_overrides_from(vars)
            .unwrap()
            .cache;
        assert!(c.layers.l2.is_none());
        assert_eq!(c.layers.l4.unwrap().backend, Backend::File);
        assert_eq!(c.compression, Compression::Lz4 { threshold: 10 });
        // A parent set to null, then a child: the child creates the table again.
        let vars = [
            ("VORTE__CACHE__LAYERS__L2", "null"),
            ("VORTE__CACHE__LAYERS__L2__BACKEND", "redis"),
            ("VORTE__CACHE__LAYERS__L2__URL", "redis://n:1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::default()
            .with_env_overrides_from(vars)
            .unwrap()
            .cache;
        assert_eq!(c.layers.l2.unwrap().url.unwrap().expose(), "redis://n:1");
    }

    #[test]
    fn env_override_errors_name_the_path_and_the_variable() {
        let e = Config::default()
            .with_env_overrides_from([(
                "VORTE__CACHE__LAYERS__L1__MAX_SISE".to_owned(),
                "5".to_owned(),
            )])
            .unwrap_err();
        assert!(
            e.message()
                .starts_with("cache.layers.l1.max_sise: unknown field `max_sise`"),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("VORTE__CACHE__LAYERS__L1__MAX_SISE"),
            "{}",
            e.message()
        );

        let e = Config::default()
            .with_env_overrides_from([("VORTE__CACHE__DEFAULT_TTL".to_owned(), "-3".to_owned())])
            .unwrap_err();
        assert!(
            e.message()
                .starts_with("cache.default_ttl: must be greater than 0"),
            "{}",
            e.message()
        );

        let e = Config::default()
            .with_env_overrides_from([("VORTE__CACHE__DEFAULT_TTL".to_owned(), "soon".to_owned())])
            .unwrap_err();
        assert!(
            e.message()
                .starts_with("cache.default_ttl: invalid type: string \"soon\""),
            "{}",
            e.message()
        );

        let e = Config::default()
            .with_env_overrides_from([
                (
                    "VORTE__CACHE__LAYERS__L2__BACKEND".to_owned(),
                    "redis".to_owned(),
                ),
                (
                    "VORTE__CACHE__LAYERS__L2__URL".to_owned(),
                    "nope".to_owned(),
                ),
            ])
            .unwrap_err();
        assert!(
            e.message()
                .starts_with("cache.layers.l2.url: malformed URL \"nope\""),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("VORTE__CACHE__LAYERS__L2__URL"),
            "{}",
            e.message()
        );

        let e = Config::default()
            .with_env_overrides_from([("VORTE__CACHE__KEY_PREFIX__X".to_owned(), "1".to_owned())])
            .unwrap_err();
        assert!(
            e.message().starts_with("cache.key_prefix: not a table"),
            "{}",
            e.message()
        );

        let e = Config::default()
            .with_env_overrides_from([("VORTE__CACHE____X".to_owned(), "1".to_owned())])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn env_overrides_round_trip_every_field() {
        let toml = r#"
[cache]
default_ttl = 1.234
key_prefix = "app:"
serialization = "json"
compression = { algorithm = "lz4", threshold = 7 }
max_value_bytes = 99
[cache.layers.l1]
max_size = 3
max_bytes = 4000
ttl = 2
max_value_bytes = 5
[cache.layers.l2]
backend = "memcached"
urls = ["memcached://a:1", "memcached://b:2"]
timeout_ms = 17
[cache.layers.l3]
backend = "redis"
url = "rediss://u:p@h:1/2"
ttl = 0.5
max_value_bytes = 6
pool_size = 3
[cache.layers.l4]
backend = "s3"
bucket = "b"
region = "r"
endpoint = "http://e:1"
allow_http = true
access_key_id = "k"
secret_access_key = "s"
prefix = "p/"
[cache.bus]
url = "redis://bus"
event_shards = 5
retention = 777
"#;
        let c = Config::from_toml_str(toml).unwrap();
        let again = c
            .clone()
            .with_env_overrides_from([(
                "VORTE__CACHE__MAX_VALUE_BYTES".to_owned(),
                "99".to_owned(),
            )])
            .unwrap();
        assert_eq!(c, again);
        let file = Config::from_toml_str(
            "[cache.layers.l4]\nbackend = \"file\"\npath = \"/p\"\n[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"",
        )
        .unwrap();
        let again = file
            .clone()
            .with_env_overrides_from([("VORTE__CACHE__DEFAULT_TTL".to_owned(), "300".to_owned())])
            .unwrap();
        assert_eq!(file, again);
    }

    #[test]
    fn files() {
        let dir = std::env::temp_dir().join(format!("vorte-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = dir.join("vorte.toml");
        std::fs::write(&toml, SEED_TOML).unwrap();
        assert_eq!(
            Config::from_toml_file(&toml).unwrap(),
            Config::from_toml_str(SEED_TOML).unwrap()
        );
        let yaml = dir.join("vorte.yaml");
        std::fs::write(&yaml, "cache:\n  default_ttl: 5\n").unwrap();
        assert_eq!(
            Config::from_yaml_file(&yaml).unwrap().cache.default_ttl,
            Duration::from_secs(5)
        );
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[cache]\nttl = 1\n").unwrap();
        let e = Config::from_toml_file(&bad).unwrap_err();
        assert!(
            e.message().starts_with("cache.ttl: unknown field"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("bad.toml"), "{}", e.message());
        let e = Config::from_toml_file(dir.join("missing.toml")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(std::error::Error::source(&e).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syntax_errors() {
        let e = Config::from_toml_str("[cache").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.message().starts_with("TOML syntax error"),
            "{}",
            e.message()
        );
        let e = Config::from_json_str("{").unwrap_err();
        assert!(
            e.message().starts_with("JSON syntax error"),
            "{}",
            e.message()
        );
        let e = Config::from_yaml_str("cache: [").unwrap_err();
        assert!(
            e.message()
                .starts_with("cache: did not find expected node content"),
            "{}",
            e.message()
        );
        let e = Config::from_yaml_str("cache: {\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = Config::from_yaml_str(": : :").unwrap_err();
        assert!(
            e.message().starts_with("YAML syntax error"),
            "{}",
            e.message()
        );
        let e = Config::from_toml_str("[cache]\ndefault_ttl = = 3").unwrap_err();
        assert!(
            e.message()
                .starts_with("TOML syntax error at line 2, column"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn public_types_deserialize_directly() {
        let c: Config = serde_json::from_value(seed_json()).unwrap();
        assert_eq!(c, Config::from_json(seed_json()).unwrap());
        let c: CacheConfig = toml::from_str("default_ttl = 3").unwrap();
        assert_eq!(c.default_ttl, Duration::from_secs(3));
        let l: LayerConfig =
            serde_json::from_value(json!({"backend": "file", "path": "/x"})).unwrap();
        assert_eq!(l.backend, Backend::File);
        let e = serde_json::from_value::<LayerConfig>(json!({"backend": "file"})).unwrap_err();
        assert!(e.to_string().starts_with("path: missing"), "{e}");
        let l1: L1Config = serde_json::from_value(json!({"max_size": 7})).unwrap();
        assert_eq!(l1.ttl, None);
        let comp: Compression = serde_json::from_value(json!("lz4")).unwrap();
        assert_eq!(comp, Compression::Lz4 { threshold: 1024 });
        let b: Backend = serde_json::from_value(json!("redis-cluster")).unwrap();
        assert_eq!(b, Backend::RedisCluster);
        let e = serde_json::from_value::<Config>(json!({"cache": {"nope": 1}})).unwrap_err();
        assert!(e.to_string().contains("unknown field `nope`"), "{e}");
    }

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(Backend::from_name(b.name()), Some(b));
            assert_eq!(b.to_string(), b.name());
        }
    }
}
