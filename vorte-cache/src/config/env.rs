//! `VORTE__…` environment overrides.
//!
//! Overrides apply to a resolved [`Config`]: it is written back into the file grammar
//! ([`to_raw`], then a `serde_json::Value` through the grammar's own `Serialize`), the overrides
//! are set at their paths, and the document is resolved again, so an override is checked exactly
//! as the same key in a file would be.

use serde_json::{Map, Value};

use super::raw::{
    PathError, Positive, RawBus, RawCacheConfig, RawCompression, RawCompressionTable, RawConfig,
    RawL1, RawLayer, RawLayers, Seconds, parse_raw, to_value,
};
use super::resolve::resolve_config;
use super::{Config, LayerConfig, Sweep, WritePolicy};
use crate::codec::Compression;
use crate::error::{Error, ErrorKind, Result};

/// The prefix of environment variables read by [`Config::with_env_overrides`].
const ENV_PREFIX: &str = "VORTE__";

impl Config {
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

        let base = to_value(&to_raw(&self));
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

/// `config` in the file grammar: resolving it again gives `config` back.
fn to_raw(config: &Config) -> RawConfig {
    let c = &config.cache;
    let l1 = &c.layers.l1;
    RawConfig {
        cache: Some(RawCacheConfig {
            default_ttl: Some(Seconds(c.default_ttl)),
            key_prefix: Some(c.key_prefix.clone()),
            serialization: Some(c.serialization),
            compression: Some(compression_to_raw(c.compression)),
            max_value_bytes: Some(Positive(c.max_value_bytes)),
            load_wait_timeout: Some(Seconds(c.load_wait_timeout)),
            layers: Some(RawLayers {
                l1: Some(RawL1 {
                    enabled: Some(l1.enabled),
                    max_size: Some(Positive(l1.max_size)),
                    max_bytes: l1.max_bytes.map(Positive),
                    ttl: l1.ttl.map(Seconds),
                    max_value_bytes: l1.max_value_bytes.map(Positive),
                }),
                l2: c.layers.l2.as_ref().map(layer_to_raw),
                l3: c.layers.l3.as_ref().map(layer_to_raw),
                l4: c.layers.l4.as_ref().map(layer_to_raw),
            }),
            bus: c.bus.as_ref().map(|bus| RawBus {
                url: bus.url.clone(),
                event_shards: bus.event_shards.map(|n| n as u64),
                retention: Some(bus.retention),
                handler_timeout_ms: Some(Positive(super::raw::millis_ceil(bus.handler_timeout))),
            }),
            loads: Some(super::loads::RawLoads::from_resolved(&c.loads)),
            observe: Some(super::observe::RawObserve::from_resolved(&c.observe)),
        }),
    }
}

fn compression_to_raw(c: Compression) -> RawCompression {
    let table = |algorithm: &str, threshold: usize| {
        RawCompression::Table(RawCompressionTable {
            algorithm: algorithm.to_owned(),
            threshold: Some(threshold),
        })
    };
    match c {
        Compression::None => RawCompression::Name("none".to_owned()),
        Compression::Lz4 { threshold } => table("lz4", threshold),
        Compression::Zstd { threshold } => table("zstd", threshold),
    }
}

fn layer_to_raw(l: &LayerConfig) -> RawLayer {
    let mut raw = RawLayer {
        ttl: l.ttl.map(Seconds),
        timeout_ms: Some(Positive(super::raw::millis_ceil(l.timeout))),
        max_value_bytes: l.max_value_bytes.map(Positive),
        compression: l.compression.map(compression_to_raw),
        breaker_threshold: Some(Positive(l.breaker.threshold)),
        breaker_cooldown: Some(Seconds(l.breaker.cooldown)),
        ..RawLayer::default()
    };
    if let WritePolicy::Behind { queue } = l.write {
        raw.write_policy = Some("behind".to_owned());
        raw.write_behind_queue = Some(Positive(queue));
    }
    if let Some(Sweep { every, batch }) = l.sweep {
        raw.sweep_interval = Some(Seconds(every));
        raw.sweep_batch = Some(Positive(batch));
    }
    l.backend.to_raw(&mut raw);
    raw
}
