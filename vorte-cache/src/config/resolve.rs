//! Resolution: from the raw grammar to the public types, applying defaults and checking every
//! key. Every error has the kind [`ErrorKind::Config`] and starts with the path of the offending
//! value.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::backend::{Backend, BackendConfig};
use super::raw::{
    RawBus, RawCacheConfig, RawCompression, RawConfig, RawL1, RawLayer, RawLayers, to_value,
};
use super::url::ServerUrl;
use super::{
    BreakerConfig, BusConfig, CacheConfig, Config, DEFAULT_BUS_HANDLER_TIMEOUT,
    DEFAULT_BUS_RETENTION, DEFAULT_KEY_PREFIX, DEFAULT_L1_MAX_SIZE, DEFAULT_LOAD_WAIT_TIMEOUT,
    DEFAULT_MAX_VALUE_BYTES, DEFAULT_TTL, L1Config, LayerConfig, LayersConfig, Sweep, WritePolicy,
};
use crate::codec::Compression;
use crate::error::{Error, ErrorKind, Result};

/// The longest accepted [`CacheConfig::key_prefix`], in bytes, as written.
const MAX_KEY_PREFIX_LEN: usize = 64;
/// What ends every key prefix, and appears nowhere else in it.
const KEY_PREFIX_END: char = ':';
/// The default compression threshold, in bytes.
const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;
/// The default of [`WritePolicy::Behind`]'s `queue`.
const DEFAULT_WRITE_BEHIND_QUEUE: usize = 10_000;
/// The default of [`Sweep::batch`].
const DEFAULT_SWEEP_BATCH: usize = 1_000;
/// The largest accepted [`BusConfig::retention`]: a billion messages of a hundred bytes is already
/// about 100 GB per stream, far past any useful catch-up window.
const MAX_BUS_RETENTION: u64 = 1_000_000_000;
/// The largest accepted [`BusConfig::event_shards`]: every shard costs each process one blocked
/// reader client (on a cluster, one connection per primary).
const MAX_EVENT_SHARDS: usize = 64;
/// Whether this build has zstd (it comes with the `object-store` feature).
const ZSTD_BUILT: bool = cfg!(feature = "object-store");

/// A configuration error at `path` (none: the whole document).
pub(crate) fn config_error(path: &str, message: impl fmt::Display) -> Error {
    if path.is_empty() {
        Error::new(ErrorKind::Config, message.to_string())
    } else {
        Error::new(ErrorKind::Config, format!("{path}: {message}"))
    }
}

/// `base.key`, or `key` at the top.
pub(super) fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

/// `"a", "b" or "c"`.
pub(super) fn quoted_list(backends: &[Backend]) -> String {
    let names: Vec<String> = backends.iter().map(|b| format!("{:?}", b.name())).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

pub(super) fn resolve_config(raw: RawConfig) -> Result<Config> {
    let cache = resolve_cache(raw.cache.unwrap_or_default(), "cache")?;
    Ok(Config { cache })
}

fn resolve_cache(raw: RawCacheConfig, path: &str) -> Result<CacheConfig> {
    let default_ttl = raw.default_ttl.map_or(DEFAULT_TTL, |s| s.0);
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
    let key_prefix_path = join(path, "key_prefix");
    check_key_prefix(&key_prefix, &key_prefix_path)?;
    let key_prefix = ended_key_prefix(key_prefix);
    let compression = match raw.compression {
        None => Compression::None,
        Some(c) => resolve_compression(c, &join(path, "compression"))?,
    };
    let layers = resolve_layers(
        raw.layers.unwrap_or_default(),
        Some(default_ttl),
        &join(path, "layers"),
    )?;
    for layer in [&layers.l2, &layers.l3, &layers.l4].into_iter().flatten() {
        layer
            .backend
            .check_key_prefix(&key_prefix, &key_prefix_path)?;
    }
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
        load_wait_timeout: raw
            .load_wait_timeout
            .map_or(DEFAULT_LOAD_WAIT_TIMEOUT, |s| s.0),
        layers,
        bus,
        loads: super::loads::resolve_loads(raw.loads.unwrap_or_default(), &join(path, "loads"))?,
        observe: super::observe::resolve_observe(
            raw.observe.unwrap_or_default(),
            &join(path, "observe"),
        )?,
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
    if prefix
        .strip_suffix(KEY_PREFIX_END)
        .unwrap_or(prefix)
        .contains(KEY_PREFIX_END)
    {
        return Err(config_error(
            path,
            format!(
                "{prefix:?} holds {KEY_PREFIX_END:?} before its end; {KEY_PREFIX_END:?} may only \
                 end a prefix, so that no prefix is the start of another's names (write \
                 \"app-v2:\" rather than \"app:v2:\")"
            ),
        ));
    }
    Ok(())
}

/// `prefix`, ended by [`KEY_PREFIX_END`] if it was not: the names a cache builds are its prefix,
/// its only `:`, then the rest, so no cache's names start with another's prefix
/// (`docs/guarantees.md#g6-prefix-isolation`). Without the end, `a` named an entry `ae:k`,
/// which the cache under `ae:` flushed and listed as its own.
fn ended_key_prefix(mut prefix: String) -> String {
    if !prefix.ends_with(KEY_PREFIX_END) {
        prefix.push(KEY_PREFIX_END);
    }
    prefix
}

fn resolve_compression(raw: RawCompression, path: &str) -> Result<Compression> {
    compression_in_build(raw, path, ZSTD_BUILT)
}

/// [`resolve_compression`] for a build that has zstd or not: `"zstd"` without it is an error,
/// never a silent plain write (nor a read that takes other builds' zstd entries for corrupt).
pub(super) fn compression_in_build(
    raw: RawCompression,
    path: &str,
    zstd_built: bool,
) -> Result<Compression> {
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
        "zstd" if !zstd_built => Err(config_error(
            &name_path,
            "\"zstd\" is not built into this build of vorte-cache; enable its `object-store` \
             cargo feature (any of `file`, `s3`, `gcs`, `azure`, `http` does), or use \"lz4\"",
        )),
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
    ServerUrl::parse(
        raw.url.expose(),
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
        handler_timeout: raw
            .handler_timeout_ms
            .map_or(DEFAULT_BUS_HANDLER_TIMEOUT, |ms| {
                Duration::from_millis(ms.0)
            }),
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
    refuse_other_backends_keys(&raw, backend, path)?;
    let backend_config = BackendConfig::resolve(backend, &raw, path)?;
    let breaker = resolve_breaker(&raw);

    let write = match raw.write_policy.as_deref() {
        None | Some("through") => WritePolicy::Through,
        Some("behind") => WritePolicy::Behind {
            queue: raw
                .write_behind_queue
                .map_or(DEFAULT_WRITE_BEHIND_QUEUE, |q| q.0),
        },
        Some(other) => {
            return Err(config_error(
                &join(path, "write_policy"),
                format!(r#"unknown write policy {other:?}; expected "through" or "behind""#),
            ));
        }
    };
    Ok(Some(LayerConfig {
        backend: backend_config,
        ttl: raw.ttl.map(|s| s.0),
        timeout: raw
            .timeout_ms
            .map_or(backend.default_timeout(), |ms| Duration::from_millis(ms.0)),
        max_value_bytes: raw.max_value_bytes.map(|v| v.0),
        compression: raw
            .compression
            .map(|c| resolve_compression(c, &join(path, "compression")))
            .transpose()?,
        write,
        sweep: raw.sweep_interval.map(|every| Sweep {
            every: every.0,
            batch: raw.sweep_batch.map_or(DEFAULT_SWEEP_BATCH, |b| b.0),
        }),
        breaker,
    }))
}

/// `breaker_threshold` and `breaker_cooldown`, with the defaults of [`BreakerConfig`]. Their
/// bounds (> 0) are checked by the grammar, with the path of the value.
fn resolve_breaker(raw: &RawLayer) -> BreakerConfig {
    let default = BreakerConfig::default();
    BreakerConfig {
        threshold: raw
            .breaker_threshold
            .as_ref()
            .map_or(default.threshold, |t| t.0),
        cooldown: raw
            .breaker_cooldown
            .as_ref()
            .map_or(default.cooldown, |s| s.0),
    }
}

/// Refuses a key that some backend takes and `backend` does not ([`Backend::keys`]), naming
/// what `backend` takes.
fn refuse_other_backends_keys(raw: &RawLayer, backend: Backend, path: &str) -> Result<()> {
    let serde_json::Value::Object(given) = to_value(raw) else {
        return Ok(());
    };
    let takes = backend.keys();
    let foreign = Backend::ALL
        .iter()
        .flat_map(|b| b.keys())
        .find(|key| given.contains_key(**key) && !takes.contains(key));
    match foreign {
        None => Ok(()),
        Some(key) => {
            let takes_list: Vec<String> = takes.iter().map(|k| format!("`{k}`")).collect();
            Err(config_error(
                &join(path, key),
                format!(
                    "backend {:?} does not take this key (it takes {})",
                    backend.name(),
                    takes_list.join(", ")
                ),
            ))
        }
    }
}

// Deserialize for the public types (for embedding in an application's own config).

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
