//! The file grammar: what a configuration document may say, every key optional.
//!
//! Each loader reads its input into a `serde_json::Value` and deserializes it into [`RawConfig`]
//! (`deny_unknown_fields` everywhere) while tracking the path of each value. The same structs
//! serialize back to a `Value` (see `env.rs`), so the key names live here only.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::secret::Secret;
use crate::codec::Serialization;
use crate::error::{Error, ErrorKind};

/// The longest accepted duration, in milliseconds (about 31,700 years): keeps every duration
/// representable in milliseconds as an `i64`, as Redis needs.
const MAX_DURATION_MS: u64 = 1_000_000_000_000_000;

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table with a `cache` table")]
pub(super) struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cache: Option<RawCacheConfig>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of cache settings")]
pub(super) struct RawCacheConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) default_ttl: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) serialization: Option<Serialization>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) compression: Option<RawCompression>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_value_bytes: Option<Positive<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) load_wait_timeout: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) layers: Option<RawLayers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bus: Option<RawBus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) loads: Option<super::loads::RawLoads>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) observe: Option<super::observe::RawObserve>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of layers l1 to l4")]
pub(super) struct RawLayers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) l1: Option<RawL1>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) l2: Option<RawLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) l3: Option<RawLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) l4: Option<RawLayer>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of L1 settings")]
pub(super) struct RawL1 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_size: Option<Positive<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_bytes: Option<Positive<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ttl: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_value_bytes: Option<Positive<usize>>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table of layer settings")]
pub(super) struct RawLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ttl: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) timeout_ms: Option<Positive<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_value_bytes: Option<Positive<usize>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "exposed")]
    pub(super) url: Option<Secret>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "all_exposed"
    )]
    pub(super) urls: Option<Vec<Secret>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) allow_http: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "exposed")]
    pub(super) access_key_id: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "exposed")]
    pub(super) secret_access_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tls_ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) compression: Option<RawCompression>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) write_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) write_behind_queue: Option<Positive<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sweep_interval: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sweep_batch: Option<Positive<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pool_size: Option<Positive<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) breaker_threshold: Option<Positive<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) breaker_cooldown: Option<Seconds>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a table with a `url`")]
pub(super) struct RawBus {
    #[serde(serialize_with = "exposed_one")]
    pub(super) url: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) event_shards: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) retention: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) handler_timeout_ms: Option<Positive<u64>>,
}

#[derive(Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with `algorithm` and `threshold`"
)]
pub(super) struct RawCompressionTable {
    pub(super) algorithm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) threshold: Option<usize>,
}

/// `compression = "lz4"` or `compression = { algorithm = "lz4", threshold = 1024 }`.
pub(super) enum RawCompression {
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
pub(super) fn no_path(path: &serde_path_to_error::Path) -> bool {
    path.iter()
        .all(|s| matches!(s, serde_path_to_error::Segment::Unknown))
}

/// A document read from TOML or YAML into a `serde_json::Value`, refusing what JSON cannot hold
/// (NaN and infinite floats, non-string keys, YAML tags) instead of turning it into `null`.
pub(super) struct StrictValue(pub(super) Value);

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
pub(super) struct Seconds(pub(super) Duration);

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
pub(super) struct Positive<T>(pub(super) T);

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
pub(super) struct PathError {
    pub(super) path: String,
    pub(super) message: String,
}

impl PathError {
    pub(super) fn into_error(self) -> Error {
        let message = if self.path.is_empty() || self.path == "." {
            format!("configuration: {}", self.message)
        } else {
            format!("{}: {}", self.path, self.message)
        };
        Error::new(ErrorKind::Config, message)
    }
}

pub(super) fn parse_raw(value: Value) -> std::result::Result<RawConfig, PathError> {
    if value.is_null() {
        return Ok(RawConfig::default());
    }
    serde_path_to_error::deserialize(value).map_err(|e| PathError {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

// Writing the grammar back (for environment overrides, which re-resolve the whole document).

/// A credential written back into the document that is re-resolved: only ever serialized into a
/// private `Value`, never shown.
fn exposed<S: Serializer>(secret: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_str(secret.expose()),
        None => s.serialize_none(),
    }
}

fn exposed_one<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

fn all_exposed<S: Serializer>(secrets: &Option<Vec<Secret>>, s: S) -> Result<S::Ok, S::Error> {
    let exposed: Option<Vec<&str>> = secrets
        .as_ref()
        .map(|v| v.iter().map(Secret::expose).collect());
    exposed.serialize(s)
}

impl Serialize for Seconds {
    /// Whole seconds as an integer, anything else as a float, rounded up to the millisecond.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ms = millis_ceil(self.0);
        if ms.is_multiple_of(1000) {
            s.serialize_u64(ms / 1000)
        } else {
            #[allow(clippy::cast_precision_loss)]
            s.serialize_f64(ms as f64 / 1000.0)
        }
    }
}

/// `d` in whole milliseconds, rounded up.
pub(super) fn millis_ceil(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl<T: Serialize> Serialize for Positive<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Serialize for RawCompression {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawCompression::Name(name) => s.serialize_str(name),
            RawCompression::Table(table) => table.serialize(s),
        }
    }
}

/// The document (or table) `raw` describes, as a `Value`.
pub(super) fn to_value<T: Serialize>(raw: &T) -> Value {
    // Only strings, numbers, booleans and maps with string keys: serializing cannot fail.
    serde_json::to_value(raw).unwrap_or_else(|_| Value::Object(Map::new()))
}
