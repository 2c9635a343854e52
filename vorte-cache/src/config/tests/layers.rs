//! Backends per layer, their required and refused keys, URLs, timeouts, pools and the bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

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
    assert_eq!(bus.handler_timeout, Duration::from_secs(30));
    assert!(!format!("{c:?}").contains("pw@"));

    let c = Config::from_toml_str(
        "[cache.bus]\nurl = \"redis-cluster://n1:7000?node=n2:7001\"\nevent_shards = 64\n\
         retention = 1000\nhandler_timeout_ms = 250",
    )
    .unwrap()
    .cache;
    let bus = c.bus.as_ref().unwrap();
    assert_eq!(bus.event_shards, Some(64));
    assert_eq!(bus.retention, 1000);
    assert_eq!(bus.handler_timeout, Duration::from_millis(250));
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
        ("VORTE__CACHE__BUS__HANDLER_TIMEOUT_MS", "900"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let env = Config::default().with_env_overrides_from(vars).unwrap();
    let bus = env.cache.bus.unwrap();
    assert_eq!(bus.url.expose(), "redis-cluster://c:7000");
    assert_eq!((bus.event_shards, bus.retention), (Some(8), 2000));
    assert_eq!(bus.handler_timeout, Duration::from_millis(900));
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

/// `breaker_threshold` and `breaker_cooldown` on every remote layer, with the defaults
/// (`docs/guarantees.md#f2-circuit-breaker`).
#[test]
fn breakers_per_layer() {
    let c = Config::from_toml_str(
        "[cache.layers.l2]\nbackend = \"memcached\"\nurl = \"memcached://h\"\n\
         breaker_threshold = 2\nbreaker_cooldown = 0.2\n\
         [cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = [\"redis://h:7000\"]\n\
         breaker_cooldown = 3\n\
         [cache.layers.l4]\nbackend = \"file\"\npath = \"/p\"\n",
    )
    .unwrap()
    .cache;
    let l2 = c.layers.l2.unwrap().breaker;
    assert_eq!((l2.threshold, l2.cooldown), (2, Duration::from_millis(200)));
    let l3 = c.layers.l3.unwrap().breaker;
    assert_eq!((l3.threshold, l3.cooldown), (5, Duration::from_secs(3)));
    let l4 = c.layers.l4.unwrap().breaker;
    assert_eq!(l4, BreakerConfig::default());
    assert_eq!(
        (l4.threshold, l4.cooldown),
        (5, Duration::from_millis(500)),
        "the defaults"
    );

    let redis = "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://h\"\n";
    for (extra, message) in [
        (
            "breaker_threshold = 0",
            "cache.layers.l2.breaker_threshold: must be greater than 0",
        ),
        (
            "breaker_threshold = -1",
            "cache.layers.l2.breaker_threshold: invalid value",
        ),
        (
            "breaker_threshold = \"many\"",
            "cache.layers.l2.breaker_threshold: invalid type",
        ),
        (
            "breaker_cooldown = 0",
            "cache.layers.l2.breaker_cooldown: must be greater than 0 seconds",
        ),
        (
            "breaker_cooldown = -0.5",
            "cache.layers.l2.breaker_cooldown: must be greater than 0 seconds",
        ),
        (
            "breaker_cooldown = 0.0001",
            "cache.layers.l2.breaker_cooldown: 0.0001 seconds is below the 1 ms resolution",
        ),
    ] {
        assert_err(&format!("{redis}{extra}"), message);
    }

    // From the environment: set like any key, checked with the path and the variable named.
    let base = Config::from_toml_str(redis).unwrap();
    let c = base
        .clone()
        .with_env_overrides_from([(
            "VORTE__CACHE__LAYERS__L2__BREAKER_THRESHOLD".to_owned(),
            "9".to_owned(),
        )])
        .unwrap();
    assert_eq!(c.cache.layers.l2.unwrap().breaker.threshold, 9);
    let e = base
        .with_env_overrides_from([(
            "VORTE__CACHE__LAYERS__L2__BREAKER_COOLDOWN".to_owned(),
            "0".to_owned(),
        )])
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("cache.layers.l2.breaker_cooldown: must be greater than 0 seconds"),
        "{}",
        e.message()
    );
    assert!(
        e.message()
            .contains("VORTE__CACHE__LAYERS__L2__BREAKER_COOLDOWN"),
        "{}",
        e.message()
    );
}
