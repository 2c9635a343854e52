//! Configuration: the seed's example in every format, the defaults, environment
//! overrides, path-naming errors and redacted credentials, through the public API only.

#![allow(clippy::expect_used)]

use std::time::Duration;

use vorte_cache::ErrorKind;
use vorte_cache::config::{
    Backend, BackendConfig, CacheConfig, Compression, Config, FileConfig, Secret, Serialization,
};

/// The seed's configuration, as TOML.
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

/// The seed's configuration, as the Python dict was written.
fn seed_json() -> serde_json::Value {
    serde_json::json!({
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

const SEED_YAML: &str = r#"
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

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn config_error(result: vorte_cache::Result<Config>) -> vorte_cache::Error {
    let err = result.expect_err("the configuration is rejected");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    err
}

#[test]
fn the_seed_example_loads_the_same_from_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let toml_path = dir.path().join("vorte.toml");
    std::fs::write(&toml_path, SEED_TOML).expect("write");
    let yaml_path = dir.path().join("vorte.yaml");
    std::fs::write(&yaml_path, SEED_YAML).expect("write");

    let from_toml = Config::from_toml_file(&toml_path).expect("TOML file");
    assert_eq!(from_toml, Config::from_toml_str(SEED_TOML).expect("TOML"));
    assert_eq!(
        from_toml,
        Config::from_json(seed_json()).expect("JSON value")
    );
    assert_eq!(
        from_toml,
        Config::from_json_str(&seed_json().to_string()).expect("JSON text")
    );
    assert_eq!(
        from_toml,
        Config::from_yaml_file(&yaml_path).expect("YAML file")
    );
    assert_eq!(from_toml, Config::from_yaml_str(SEED_YAML).expect("YAML"));

    let c = from_toml.cache;
    assert_eq!(c.default_ttl, Duration::from_secs(300));
    assert_eq!(c.key_prefix, "vorte:");
    assert_eq!(c.serialization, Serialization::Msgpack);
    assert_eq!(c.compression, Compression::None);
    assert!(c.layers.l1.enabled);
    assert_eq!(c.layers.l1.max_size, 1000);
    assert_eq!(c.layers.l1.ttl, Some(Duration::from_secs(60)));
    let l2 = c.layers.l2.expect("l2 is on");
    let BackendConfig::Redis(redis) = &l2.backend else {
        panic!("l2 is redis: {l2:?}");
    };
    assert_eq!(redis.url.expose(), "redis://localhost:6379/0");
    assert_eq!(l2.ttl, Some(Duration::from_secs(300)));
    assert_eq!(l2.timeout, Duration::from_millis(250));
    let l3 = c.layers.l3.expect("l3 is on");
    let BackendConfig::RedisCluster(cluster) = &l3.backend else {
        panic!("l3 is a redis cluster: {l3:?}");
    };
    let nodes: Vec<&str> = cluster.urls.iter().map(Secret::expose).collect();
    assert_eq!(
        nodes,
        [
            "redis://node1:6379",
            "redis://node2:6379",
            "redis://node3:6379"
        ]
    );
    assert_eq!(l3.ttl, Some(Duration::from_secs(3600)));
    assert!(c.layers.l4.is_none(), "enabled = false turns l4 off");
}

#[test]
fn no_config_is_l1_only() {
    let default = Config::default();
    assert_eq!(Config::from_toml_str("").expect("empty TOML"), default);
    assert_eq!(CacheConfig::default(), default.cache);
    let c = default.cache;
    assert_eq!(c.default_ttl, Duration::from_secs(300));
    assert_eq!(c.key_prefix, "vorte:");
    assert_eq!(c.serialization, Serialization::Msgpack);
    assert!(c.layers.l1.enabled);
    assert_eq!(c.layers.l1.max_size, 10_000);
    assert_eq!(c.layers.l1.ttl, Some(c.default_ttl));
    assert!(c.layers.l2.is_none() && c.layers.l3.is_none() && c.layers.l4.is_none());
    assert!(c.bus.is_none());
}

#[test]
fn the_spec_backend_examples_load() {
    let memcached = Config::from_toml_str(
        "[cache.layers.l2]\nenabled = true\nbackend = \"memcached\"\nurl = \"memcached://127.0.0.1:11211\"",
    )
    .expect("memcached");
    assert_eq!(
        memcached.cache.layers.l2.map(|l| l.kind()),
        Some(Backend::Memcached)
    );

    let s3 = Config::from_toml_str(
        r#"
[cache.layers.l4]
enabled = true
backend = "s3"
bucket = "my-cache-bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:5055"
allow_http = true
"#,
    )
    .expect("s3");
    let l4 = s3.cache.layers.l4.expect("l4 is on");
    let BackendConfig::S3(s3) = &l4.backend else {
        panic!("l4 is s3: {l4:?}");
    };
    assert_eq!(s3.bucket, "my-cache-bucket");
    assert_eq!(s3.region.as_deref(), Some("us-east-1"));
    assert!(s3.allow_http);
    assert_eq!(l4.timeout, Duration::from_secs(5));

    let file = Config::from_toml_str(
        "[cache.layers.l4]\nenabled = true\nbackend = \"file\"\npath = \"/var/cache/myapp\"",
    )
    .expect("file");
    let l4 = file.cache.layers.l4.expect("l4 is on");
    assert_eq!(
        l4.backend,
        BackendConfig::File(FileConfig {
            path: "/var/cache/myapp".into(),
            prefix: None,
        })
    );

    let bus = Config::from_toml_str("[cache.bus]\nurl = \"redis://127.0.0.1:6380\"").expect("bus");
    assert_eq!(
        bus.cache.bus.map(|b| b.url.expose().to_owned()),
        Some("redis://127.0.0.1:6380".to_owned())
    );
}

#[test]
fn errors_name_the_config_path() {
    let cases = [
        (
            "[cache.layers.l1]\nmax_sise = 10",
            "cache.layers.l1.max_sise: unknown field `max_sise`",
        ),
        (
            "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"localhost:6379\"",
            "cache.layers.l2.url: malformed URL \"localhost:6379\": expected redis:// or rediss://",
        ),
        (
            "[cache.layers.l2]\nbackend = \"redis\"",
            "cache.layers.l2.url: missing",
        ),
        (
            "[cache.layers.l2]\nbackend = \"mongodb\"\nurl = \"mongodb://h\"",
            "cache.layers.l2.backend: unknown backend \"mongodb\"; l2 takes \"redis\" or \"memcached\"",
        ),
        (
            "[cache.layers.l4]\nbackend = \"redis\"\nurl = \"redis://h\"",
            "cache.layers.l4.backend: backend \"redis\" is not available on l4",
        ),
        (
            "[cache.layers.l4]\nbackend = \"file\"\nbucket = \"b\"",
            "cache.layers.l4.bucket: backend \"file\" does not take this key",
        ),
        (
            "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = [\"redis://a:1\", \"b:2\"]",
            "cache.layers.l3.urls[1]: malformed URL",
        ),
        (
            "[cache]\ndefault_ttl = 0",
            "cache.default_ttl: must be greater than 0",
        ),
        (
            "[cache]\ndefault_ttl = -1.5",
            "cache.default_ttl: must be greater than 0",
        ),
        (
            "[cache]\nkey_prefix = \"\"",
            "cache.key_prefix: must not be empty",
        ),
        (
            "[cache]\nserialization = \"pickle\"",
            "cache.serialization: unknown variant `pickle`",
        ),
    ];
    for (toml, expected) in cases {
        let err = config_error(Config::from_toml_str(toml));
        assert!(
            err.message().starts_with(expected),
            "{toml:?}\n  gave {:?}\n  want {expected:?}…",
            err.message()
        );
        assert_eq!(
            err.to_string(),
            format!("invalid configuration: {}", err.message())
        );
    }
}

#[test]
fn json_and_yaml_errors_name_the_path_too() {
    let mut seed = seed_json();
    seed["cache"]["layers"]["l2"]["url"] = "localhost:6379".into();
    let err = config_error(Config::from_json(seed));
    assert!(
        err.message()
            .starts_with("cache.layers.l2.url: malformed URL"),
        "{}",
        err.message()
    );

    let err = config_error(Config::from_yaml_str(
        "cache:\n  layers:\n    l1:\n      max_sise: 3\n",
    ));
    assert!(
        err.message()
            .starts_with("cache.layers.l1.max_sise: unknown field"),
        "{}",
        err.message()
    );
}

#[test]
fn environment_overrides() {
    let base = Config::from_toml_str(SEED_TOML).expect("seed");
    let c = base
        .with_env_overrides_from(env(&[
            (
                "VORTE__CACHE__LAYERS__L2__URL",
                "rediss://cache.internal:6380/2",
            ),
            ("VORTE__CACHE__DEFAULT_TTL", "60"),
            ("VORTE__CACHE__COMPRESSION", "lz4"),
            ("VORTE__CACHE__LAYERS__L4__ENABLED", "false"),
            (
                "VORTE__CACHE__LAYERS__L3__URLS",
                r#"["redis://a:7000","redis://b:7001"]"#,
            ),
            ("HOME", "/root"),
        ]))
        .expect("overrides apply")
        .cache;
    let l2 = c.layers.l2.as_ref().map(|l| &l.backend);
    let Some(BackendConfig::Redis(redis)) = l2 else {
        panic!("l2 is redis: {l2:?}");
    };
    assert_eq!(redis.url.expose(), "rediss://cache.internal:6380/2");
    assert_eq!(c.default_ttl, Duration::from_secs(60));
    assert_eq!(c.compression, Compression::Lz4 { threshold: 1024 });
    let l3 = c.layers.l3.as_ref().map(|l| &l.backend);
    assert!(
        matches!(l3, Some(BackendConfig::RedisCluster(cluster)) if cluster.urls.len() == 2),
        "{l3:?}"
    );
    // What the overrides did not touch stays.
    assert_eq!(c.layers.l1.max_size, 1000);
    assert_eq!(c.key_prefix, "vorte:");

    // A whole layer from the environment.
    let c = Config::default()
        .with_env_overrides_from(env(&[
            ("VORTE__CACHE__LAYERS__L4__BACKEND", "file"),
            ("VORTE__CACHE__LAYERS__L4__PATH", "/tmp/vorte-l4"),
        ]))
        .expect("overrides apply")
        .cache;
    assert_eq!(c.layers.l4.map(|l| l.kind()), Some(Backend::File));

    // Errors name the path and the variable.
    let err = config_error(
        Config::default()
            .with_env_overrides_from(env(&[("VORTE__CACHE__LAYERS__L1__MAX_SISE", "3")])),
    );
    assert!(
        err.message()
            .starts_with("cache.layers.l1.max_sise: unknown field"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("VORTE__CACHE__LAYERS__L1__MAX_SISE"),
        "{}",
        err.message()
    );
}

#[test]
fn credentials_never_show_in_debug_or_errors() {
    let config = Config::from_toml_str(
        r#"
[cache.layers.l2]
backend = "redis"
url = "redis://app:hunter2-pw@10.0.0.5:6379/0"
[cache.layers.l3]
backend = "redis-cluster"
urls = ["rediss://app:hunter2-pw@n1:6379", "rediss://:hunter2-pw@n2:6379"]
[cache.layers.l4]
backend = "s3"
bucket = "b"
access_key_id = "AKIAHUNTER2"
secret_access_key = "hunter2-secret-key"
[cache.bus]
url = "redis://default:hunter2-pw@bus:6379"
"#,
    )
    .expect("loads");
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("AKIA"), "{shown}");
        assert!(shown.contains("redis://***@10.0.0.5:6379/0"), "{shown}");
    }
    let l2 = config.cache.layers.l2.expect("l2");
    let BackendConfig::Redis(redis) = l2.backend else {
        panic!("l2 is redis");
    };
    let url = redis.url;
    assert_eq!(url.to_string(), "redis://***@10.0.0.5:6379/0");
    assert_eq!(url.expose(), "redis://app:hunter2-pw@10.0.0.5:6379/0");

    let err = config_error(Config::from_toml_str(
        "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://app:hunter2-pw@h:notaport\"",
    ));
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[test]
fn config_deserializes_inside_an_application_config() {
    #[derive(serde::Deserialize)]
    struct AppConfig {
        #[allow(dead_code)]
        name: String,
        vorte: Config,
    }
    let app: AppConfig = serde_json::from_value(serde_json::json!({
        "name": "shop",
        "vorte": seed_json(),
    }))
    .expect("deserializes");
    assert_eq!(app.vorte, Config::from_json(seed_json()).expect("seed"));
}
