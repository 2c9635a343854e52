//! Resolution unit tests: defaults, every key's rules and the messages that name its path. The
//! seed example in every format, redaction in `Debug` and the public loaders end to end are in
//! `tests/config.rs`. This file holds the grammar (defaults, durations, unknown keys, types,
//! codecs, the key prefix); `layers.rs` the backends and the bus; `env.rs` overrides, secrets,
//! syntax errors and the typed forms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};

use super::backend::Backend;
use super::*;
use crate::error::{Error, ErrorKind};

mod env;
mod layers;

/// The `pool_size` of a Redis or Redis Cluster layer.
fn pool_size(layer: &LayerConfig) -> usize {
    match &layer.backend {
        BackendConfig::Redis(c) => c.pool_size,
        BackendConfig::RedisCluster(c) => c.pool_size,
        other => panic!("no pool_size on {other:?}"),
    }
}

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
    assert_eq!(c.load_wait_timeout, Duration::from_secs(30));
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
    assert_eq!(l2.kind(), Backend::Memcached);
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
    let c = Config::from_toml_str("[cache]\nload_wait_timeout = 0.5")
        .unwrap()
        .cache;
    assert_eq!(c.load_wait_timeout, Duration::from_millis(500));
    assert_err(
        "[cache]\nload_wait_timeout = 0",
        "cache.load_wait_timeout: must be greater than 0",
    );
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
    // zstd comes with the `object-store` feature (without it, see
    // `zstd_in_a_build_without_it_is_refused_at_load`).
    #[cfg(feature = "object-store")]
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
    assert_eq!(
        c.cache.key_prefix,
        format!("{ok}:"),
        "a prefix gets the ':' that ends it"
    );
}

/// No prefix's names start with another's (`docs/guarantees.md#g6-prefix-isolation`): a prefix
/// ends with its only ':', added when it is missing.
#[test]
fn key_prefixes_end_with_their_only_colon() {
    let prefix = |p: &str| {
        Config::from_toml_str(&format!("[cache]\nkey_prefix = {p:?}"))
            .unwrap()
            .cache
            .key_prefix
    };
    assert_eq!(prefix("a"), "a:");
    assert_eq!(prefix("ab"), "ab:");
    assert_eq!(prefix("ae:"), "ae:");
    assert_eq!(prefix("vorte:"), "vorte:");
    assert_eq!(prefix("app-v2/"), "app-v2/:");
    assert_err(
        "[cache]\nkey_prefix = \"app:v2:\"",
        "cache.key_prefix: \"app:v2:\" holds ':' before its end",
    );
    assert_err("[cache]\nkey_prefix = \"a::\"", "cache.key_prefix:");
    // Resolving again (as environment overrides do) keeps it.
    let c = Config::from_toml_str("[cache]\nkey_prefix = \"a\"")
        .unwrap()
        .with_env_overrides_from([("VORTE__CACHE__DEFAULT_TTL".to_owned(), "9".to_owned())])
        .unwrap();
    assert_eq!(c.cache.key_prefix, "a:");
}
