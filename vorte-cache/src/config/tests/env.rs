//! Environment overrides, secret redaction, syntax errors and the typed forms of the config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

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
load_wait_timeout = 2.5
[cache.layers.l1]
max_size = 3
max_bytes = 4000
ttl = 2
max_value_bytes = 5
[cache.layers.l2]
backend = "memcached"
urls = ["memcached://a:1", "memcached://b:2"]
timeout_ms = 17
breaker_threshold = 2
breaker_cooldown = 0.25
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
handler_timeout_ms = 1500
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
