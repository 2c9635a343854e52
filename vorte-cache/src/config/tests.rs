//! Resolution unit tests: defaults, every key's rules and the messages that name its path. The
//! seed example in every format, redaction in `Debug` and the public loaders end to end are in
//! `tests/config.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};

use super::backend::Backend;
use super::*;
use crate::error::{Error, ErrorKind};

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
    let c =
        Config::from_toml_str("[cache.layers.l3]\nbackend = \"redis\"\nurl = \"rediss://h:7000\"")
            .unwrap();
    assert_eq!(c.cache.layers.l3.unwrap().kind(), Backend::Redis);
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
    assert_eq!(l4.kind(), Backend::S3);
    let BackendConfig::S3(s3) = &l4.backend else {
        panic!("an s3 layer: {l4:?}");
    };
    assert_eq!(s3.bucket, "my-cache-bucket");
    assert_eq!(s3.region.as_deref(), Some("us-east-1"));
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:5055"));
    assert!(s3.allow_http);
    let keys = s3.credentials.as_ref().unwrap();
    assert_eq!(keys.access_key_id.expose(), "AKIAEXAMPLE");
    assert_eq!(keys.secret_access_key.expose(), "wJalrXUtnFEMI/K7MDENG");
    assert_eq!(l4.timeout, Duration::from_millis(1500));
    assert_eq!(l4.max_value_bytes, Some(1000));
    assert_eq!(l4.backend.prefix(), Some("app/"));
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
    assert!(
        matches!(&c.layers.l2.as_ref().unwrap().backend, BackendConfig::Memcached(m) if m.urls.len() == 2)
    );
    let l4 = c.layers.l4.unwrap();
    assert_eq!(l4.timeout, Duration::from_secs(5));
    assert_eq!(
        l4.backend,
        BackendConfig::File(FileConfig {
            path: "/tmp/x".into(),
            prefix: None
        })
    );
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
    assert_eq!(config.cache.layers.l2.as_ref().map(pool_size).unwrap(), 2);
    let config = Config::from_toml_str(&l2("pool_size = 1")).unwrap();
    assert_eq!(config.cache.layers.l2.as_ref().map(pool_size).unwrap(), 1);
    let l3 = "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurl = \"redis://h\"\npool_size = 64";
    let config = Config::from_toml_str(l3).unwrap();
    assert_eq!(config.cache.layers.l3.as_ref().map(pool_size).unwrap(), 64);
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
    assert_eq!(e.cache.layers.l2.as_ref().map(pool_size).unwrap(), 4);
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
    let base = "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h:6379\"";
    let c = Config::from_toml_str(base)
        .unwrap()
        .with_env_overrides_from(vars)
        .unwrap()
        .cache;
    assert!(c.layers.l2.is_none());
    assert_eq!(c.layers.l4.unwrap().kind(), Backend::File);
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
    let BackendConfig::Redis(redis) = c.layers.l2.unwrap().backend else {
        panic!("a redis layer");
    };
    assert_eq!(redis.url.expose(), "redis://n:1");
}

#[test]
fn env_override_errors_name_the_path_and_the_variable() {
    // An unknown key through the environment: tests/config.rs `environment_overrides`.
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
        .with_env_overrides_from([("VORTE__CACHE__MAX_VALUE_BYTES".to_owned(), "99".to_owned())])
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
    let doc = json!({"cache": {"default_ttl": 3, "layers": {"l2": {"backend": "redis", "url": "redis://h"}}}});
    let c: Config = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(c, Config::from_json(doc).unwrap());
    let c: CacheConfig = toml::from_str("default_ttl = 3").unwrap();
    assert_eq!(c.default_ttl, Duration::from_secs(3));
    let l: LayerConfig = serde_json::from_value(json!({"backend": "file", "path": "/x"})).unwrap();
    assert_eq!(l.kind(), Backend::File);
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

#[test]
fn zstd_without_the_feature_is_a_config_error_naming_the_path() {
    use super::raw::{RawCompression, RawCompressionTable};
    use super::resolve::compression_in_build;
    let name = || RawCompression::Name("zstd".to_owned());
    let table = || {
        RawCompression::Table(RawCompressionTable {
            algorithm: "zstd".to_owned(),
            threshold: Some(10),
        })
    };
    let e = compression_in_build(name(), "cache.compression", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message()
            .starts_with(r#"cache.compression: "zstd" is not built into this build"#),
        "{}",
        e.message()
    );
    assert!(
        e.message().contains("`object-store` cargo feature"),
        "{}",
        e.message()
    );
    let e = compression_in_build(table(), "cache.layers.l4.compression", false).unwrap_err();
    assert!(
        e.message()
            .starts_with("cache.layers.l4.compression.algorithm: \"zstd\" is not built"),
        "{}",
        e.message()
    );
    // lz4 is always built; zstd is when the build has it.
    let lz4 = RawCompression::Name("lz4".to_owned());
    assert!(compression_in_build(lz4, "cache.compression", false).is_ok());
    assert_eq!(
        compression_in_build(table(), "cache.compression", true).unwrap(),
        Compression::Zstd { threshold: 10 }
    );
}

/// The same through the loaders, in a build without zstd (`--no-default-features`).
#[cfg(not(feature = "object-store"))]
#[test]
fn zstd_in_a_build_without_it_is_refused_at_load() {
    assert_err(
        "[cache]\ncompression = \"zstd\"",
        "cache.compression: \"zstd\" is not built into this build",
    );
    assert_err(
        "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"\ncompression = { algorithm = \"zstd\" }",
        "cache.layers.l2.compression.algorithm: \"zstd\" is not built",
    );
}

#[test]
fn a_memcached_layer_needs_an_ascii_key_prefix() {
    let l2 = "[cache.layers.l2]\nbackend = \"memcached\"\nurl = \"memcached://h:11211\"";
    assert_err(
        &format!("[cache]\nkey_prefix = \"café:\"\n{l2}"),
        "cache.key_prefix: memcached needs a prefix of at most 190 printable ASCII bytes",
    );
    // Other backends take it.
    Config::from_toml_str(
        "[cache]\nkey_prefix = \"café:\"\n[cache.layers.l4]\nbackend = \"file\"\npath = \"/x\"",
    )
    .unwrap();
    Config::from_toml_str(&format!("[cache]\nkey_prefix = \"ok:\"\n{l2}")).unwrap();
}

#[test]
fn typed_backend_configs_hold_only_their_keys() {
    let c = Config::from_toml_str(
        "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"rediss://h:1/2\"\ntls_ca_file = \"/ca.pem\"\n\
         write_policy = \"behind\"\nwrite_behind_queue = 5\n\
         [cache.layers.l3]\nbackend = \"redis-cluster\"\nurl = \"redis://a:1\"\n\
         [cache.layers.l4]\nbackend = \"azure\"\nbucket = \"c\"\nsweep_interval = 2\n",
    )
    .unwrap()
    .cache;
    let l2 = c.layers.l2.unwrap();
    assert_eq!(
        l2.backend,
        BackendConfig::Redis(RedisConfig {
            url: Secret::new("rediss://h:1/2"),
            tls_ca_file: Some("/ca.pem".into()),
            pool_size: 2,
        })
    );
    assert_eq!(l2.write, WritePolicy::Behind { queue: 5 });
    assert_eq!(l2.sweep, None);
    let l3 = c.layers.l3.unwrap();
    assert_eq!(
        l3.backend,
        BackendConfig::RedisCluster(RedisClusterConfig {
            urls: vec![Secret::new("redis://a:1")],
            tls_ca_file: None,
            pool_size: 2,
        })
    );
    assert_eq!(l3.write, WritePolicy::Through);
    let l4 = c.layers.l4.unwrap();
    assert_eq!(
        l4.backend,
        BackendConfig::Azure(AzureConfig {
            container: "c".into(),
            endpoint: None,
            prefix: None,
        })
    );
    assert_eq!(
        l4.sweep,
        Some(Sweep {
            every: Duration::from_secs(2),
            batch: 1_000
        })
    );
}
