//! Configuration: the `[cache]` table of the seed, from TOML, JSON, YAML and the environment.
//!
//! Every loader (`load.rs`) reads its input into a `serde_json::Value`, deserializes that into
//! private *raw* structs (`raw.rs`: every key optional, `deny_unknown_fields`) while tracking the
//! path of each value, and then *resolves* the raw form (`resolve.rs`): defaults are applied and
//! each backend's keys are checked. The result is the public [`Config`], whose fields hold plain
//! resolved values ([`Duration`]s, enums, `Option`s for the layers that are off), and whose
//! remote layers hold a typed [`BackendConfig`] with only their backend's keys (`backend.rs`).
//! Environment overrides are in `env.rs`, URL parsing in `url.rs`, credentials in `secret.rs`.
//!
//! Every error has the kind [`ErrorKind::Config`](crate::ErrorKind::Config) and a message that
//! starts with the config path of the offending value, for example `cache.layers.l2.url: malformed
//! URL "localhost:6379": expected redis:// or rediss://`. Credentials never appear in messages or
//! in `Debug` output: they are held in [`Secret`]s.
//!
//! ```toml
//! [cache]
//! default_ttl = 300                  # seconds; integer or float, > 0
//! key_prefix = "vorte:"
//! serialization = "msgpack"          # or "json"
//! compression = "lz4"                # or { algorithm = "lz4", threshold = 1024 }; default "none"
//! max_value_bytes = 16777216
//! load_wait_timeout = 30             # seconds a caller waits on another's load of the same key
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
//! breaker_threshold = 5              # consecutive failures that open a circuit breaker
//! breaker_cooldown = 0.5             # seconds an open circuit waits before a probe (±20 %)
//!
//! [cache.bus]                        # optional: a Redis for invalidation traffic
//! url = "redis://localhost:6380"     # or redis-cluster://host:7000 for a Redis Cluster
//! event_shards = 3                   # streams carrying events; default 1, or 3 on a cluster
//! retention = 100000                 # messages each bus stream keeps
//! handler_timeout_ms = 30000         # an #[on_event] handler run for another process, at most
//!
//! [cache.loads]                      # optional: resilience and freshness, all off by default
//! fail_safe_max = 3600               # seconds an entry is kept past its TTL, for a failing loader
//! fail_safe_throttle = 30            # seconds a stale value stands in before the loader is tried again
//! soft_timeout = 0.1                 # seconds before a slow load answers with the stale value
//! hard_timeout = 2                   # seconds before a slow load answers with the stale value or an error
//! eager_refresh = 0.8                # fraction of the TTL after which a hit refreshes in the background
//! xfetch_beta = 1.0                  # probabilistic early expiration (XFetch)
//! ttl_jitter = 0.1                   # each TTL times a random factor in 1 ± 0.1
//! distributed_lock = true            # one process at a time loads a key (needs a bus)
//! distributed_lock_wait = 10         # seconds a process waits for another's load
//!
//! [cache.observe]                    # optional
//! record_keys = "hash"               # keys in spans and activity: "none" (default), "hash", "plain"
//! recent_activity = 100              # latest invalidations and events kept for Cache::recent_activity
//! ```

use std::time::Duration;

mod backend;
mod env;
mod load;
mod loads;
mod observe;
mod raw;
mod resolve;
mod secret;
#[cfg(test)]
mod tests;
pub(crate) mod url;

pub use self::backend::{
    AzureConfig, Backend, BackendConfig, FileConfig, GcsConfig, HttpConfig, MemcachedConfig,
    RedisClusterConfig, RedisConfig, S3Config, S3Credentials,
};
pub use self::loads::LoadsConfig;
pub use self::observe::{KeyRecording, ObserveConfig};
pub use self::secret::Secret;
pub use crate::codec::{Compression, Serialization};

/// The default of [`CacheConfig::default_ttl`]: 300 s.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The default of [`CacheConfig::key_prefix`].
const DEFAULT_KEY_PREFIX: &str = "vorte:";
/// The default of [`CacheConfig::load_wait_timeout`]: 30 s.
const DEFAULT_LOAD_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of [`CacheConfig::max_value_bytes`]: 16 MiB.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// The default of [`L1Config::max_size`].
const DEFAULT_L1_MAX_SIZE: u64 = 10_000;
/// The default of [`BusConfig::retention`]: messages kept per bus stream.
pub(crate) const DEFAULT_BUS_RETENTION: u64 = 100_000;
/// The default of [`BreakerConfig::threshold`].
const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// The default of [`BreakerConfig::cooldown`]: 500 ms.
const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_millis(500);
/// The default of [`BusConfig::handler_timeout`]: 30 s.
pub(crate) const DEFAULT_BUS_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole configuration: the `[cache]` table.
///
/// Build it with one of the loaders ([`from_toml_str`](Config::from_toml_str),
/// [`from_toml_file`](Config::from_toml_file), [`from_json`](Config::from_json),
/// [`from_yaml_str`](Config::from_yaml_str), …), optionally followed by
/// [`with_env_overrides`](Config::with_env_overrides). [`Config::default()`] is the embedded default:
/// L1 only, nothing has to run.
///
/// `Config` also implements [`Deserialize`](serde::Deserialize), so it can be embedded in an
/// application's own config file; the loaders are preferred because their errors name the full
/// path of the bad value.
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
    /// It ends with its only `:`, which is added when missing (`"app"` resolves to `"app:"`; `"app:v2:"`
    /// is refused, `"app-v2:"` is not), so that no cache's names start with another's prefix.
    /// Default `"vorte:"`.
    pub key_prefix: String,
    /// `serialization`: how values are encoded. Default [`Serialization::Msgpack`].
    pub serialization: Serialization,
    /// `compression`: `"none"` (default), `"lz4"`, or `{ algorithm = "lz4", threshold = 1024 }`.
    pub compression: Compression,
    /// `max_value_bytes`: the largest encoded value any layer accepts, unless a layer sets its own
    /// limit. Default 16 MiB; must be > 0.
    pub max_value_bytes: usize,
    /// `load_wait_timeout`: how long a caller that missed waits for another caller's load of the
    /// same key (single flight) before it stops waiting and loads the value itself, so that a
    /// hung loader does not block every caller of its key. Each such give-up is counted
    /// ([`CacheStats::load_wait_timeouts`](crate::CacheStats::load_wait_timeouts)) and logged.
    /// Seconds in the config, integer or float, with millisecond resolution; must be > 0.
    /// Default 30 s.
    pub load_wait_timeout: Duration,
    /// `[cache.layers]`: the four layers.
    pub layers: LayersConfig,
    /// `[cache.bus]`: a dedicated Redis for cross-process invalidation and `emit`. `None` means the
    /// bus travels on the Redis of L2 or L3, if there is one.
    pub bus: Option<BusConfig>,
    /// `[cache.loads]`: fail-safe, loader timeouts, early refresh, TTL jitter and the distributed
    /// lock (`docs/resilience.md`).
    pub loads: LoadsConfig,
    /// `[cache.observe]`: what spans and the recent activity may show of keys
    /// (`docs/observability.md`).
    pub observe: ObserveConfig,
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
/// The keys every backend takes are fields here; the keys of one backend are in its variant of
/// [`backend`](LayerConfig::backend). A key the backend does not take is a configuration error.
///
/// | backend | required | optional |
/// |---|---|---|
/// | `redis` | `url` | `tls_ca_file`, `pool_size` |
/// | `memcached` | `url` or `urls` | |
/// | `redis-cluster` | `urls` (seed nodes) or `url` | `tls_ca_file`, `pool_size` |
/// | `s3` | `bucket` | `region`, `endpoint`, `allow_http`, `access_key_id` + `secret_access_key`, `prefix` |
/// | `gcs` | `bucket` | `prefix` |
/// | `azure` | `bucket` (the container) | `endpoint`, `prefix` |
/// | `file` | `path` | `prefix` |
/// | `http` | `url` | `allow_http`, `prefix` |
///
/// Every backend also takes `enabled`, `backend`, `ttl`, `timeout_ms`, `max_value_bytes`,
/// `compression`, `write_policy`, `write_behind_queue`, `breaker_threshold` and
/// `breaker_cooldown`; the object stores also take
/// `sweep_interval` and `sweep_batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConfig {
    /// `backend` and the keys only that backend takes.
    pub backend: BackendConfig,
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
    /// `compression`: this layer's own compression, as `[cache] compression` (`"zstd"` suits
    /// L4); `None` uses the cache's.
    pub compression: Option<Compression>,
    /// `write_policy` (and `write_behind_queue`): when a write reaches this layer.
    pub write: WritePolicy,
    /// `sweep_interval` and `sweep_batch` (object stores only): the background sweeper of
    /// expired objects. `None` (the default): no sweeper; expired objects are removed when read,
    /// and an S3 lifecycle rule can back that up (`docs/l4.md`).
    pub sweep: Option<Sweep>,
    /// `breaker_threshold` and `breaker_cooldown`: this layer's circuit breakers.
    pub breaker: BreakerConfig,
}

/// A layer's circuit breakers (`docs/guarantees.md#f2-circuit-breaker`): one per server where the
/// backend reaches several (each memcached server, each Redis Cluster node), else one per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BreakerConfig {
    /// `breaker_threshold`: consecutive failures (errors of reads and writes, not of listings and
    /// not size refusals) that open a circuit; its calls then fail at once. A timeout opens it at
    /// once, whatever the threshold. Default 5; must be > 0.
    pub threshold: u32,
    /// `breaker_cooldown` (seconds, integer or float): how long an open circuit refuses calls
    /// before it lets one through as a probe. Each opening draws its own cool-down within ±20 %
    /// of this, so that processes do not probe a recovering server all at once. Default 0.5 s;
    /// must be > 0.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    /// 5 failures, 0.5 s.
    fn default() -> Self {
        BreakerConfig {
            threshold: DEFAULT_BREAKER_THRESHOLD,
            cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
    }
}

impl LayerConfig {
    /// Which backend this layer talks to.
    pub const fn kind(&self) -> Backend {
        self.backend.kind()
    }
}

/// When a write reaches a layer (`write_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WritePolicy {
    /// `"through"`: the write returns once the layer has the value. The default.
    #[default]
    Through,
    /// `"behind"`: the write is queued and reaches the layer in the background.
    Behind {
        /// `write_behind_queue`: how many writes may wait for this layer; a write that finds the
        /// queue full is dropped for this layer and counted
        /// ([`LayerStats::write_behind_dropped`](crate::LayerStats::write_behind_dropped)).
        /// Default 10,000.
        queue: usize,
    },
}

/// The background sweeper of an object-store layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sweep {
    /// `sweep_interval` (seconds): how often a pass deletes expired objects under the prefix.
    pub every: Duration,
    /// `sweep_batch`: the most objects one pass reads, so a pass stays bounded. Default 1,000.
    pub batch: usize,
}

/// `[cache.bus]`: a dedicated Redis for invalidation messages and `emit`.
///
/// When the bus rides on the Redis of L2 or L3 instead (no `[cache.bus]` table), `event_shards`,
/// `retention` and `handler_timeout_ms` take their defaults.
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
    /// `handler_timeout_ms`: how long one `#[on_event]` handler may run for an event read from
    /// the bus; past it the handler is abandoned (dropped), logged and counted, and the stream's
    /// next events run. Default 30,000 (30 s).
    pub handler_timeout: Duration,
}

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
            load_wait_timeout: DEFAULT_LOAD_WAIT_TIMEOUT,
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
            loads: LoadsConfig::default(),
            observe: ObserveConfig::default(),
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

impl CacheConfig {
    /// The TTL cap of L1: its `ttl`, or `default_ttl` when that is `None`.
    pub fn l1_ttl(&self) -> Duration {
        self.layers.l1.ttl.unwrap_or(self.default_ttl)
    }
}
