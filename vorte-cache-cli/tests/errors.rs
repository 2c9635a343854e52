//! What scripts rely on beyond a command's answer (`docs/cli.md#exit-codes`): each kind of bad
//! configuration, unreachable servers, usage errors, errors as JSON, and credentials never
//! printed, on real servers.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

mod support;

use std::time::Instant;

use serde_json::json;
use support::{Run, Setup, run, run_env, write};
use vorte_cache::Cache;
use vorte_cache_tests::servers::{RedisServer, free_port};
use vorte_cache_tests::{Stack, unique_prefix};

/// A TOML configuration of L1 + L2 redis at `url` under a prefix of its own.
fn redis_toml(url: &str) -> String {
    format!(
        "[cache]\nkey_prefix = {:?}\n[cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\n",
        unique_prefix()
    )
}

#[track_caller]
fn assert_config_error(run: &Run, needles: &[&str]) {
    run.expect_code(3);
    assert!(run.stdout.is_empty(), "{run:?}");
    for needle in needles {
        assert!(run.stderr.contains(needle), "{needle:?} not in {run:#?}");
    }
}

/// Exit 3 for each way a configuration can be bad, with the file, line and config path the
/// library's error gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_config_exits_3_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml").display().to_string();
    let r = run(&["--config", &missing, "get", "k"]).await;
    assert_config_error(&r, &["cannot read config file", "nope.toml"]);

    let syntax = write(
        &dir,
        "syntax.toml",
        "[cache]\ndefault_ttl = 300\nkey_prefix = [\n",
    );
    let r = run(&["--config", &syntax, "keys", "*"]).await;
    assert_config_error(&r, &["TOML syntax error at line", "syntax.toml"]);

    let unknown = write(
        &dir,
        "unknown.toml",
        "[cache]\n[cache.layers.l2]\nbackend = \"redis\"\nurll = \"redis://127.0.0.1:1\"\n",
    );
    let r = run(&["--config", &unknown, "get", "k"]).await;
    assert_config_error(&r, &["cache.layers.l2", "urll", "unknown.toml"]);

    let bad_url = write(
        &dir,
        "bad_url.toml",
        "[cache]\n[cache.layers.l2]\nbackend = \"redis\"\nurl = \"localhost:6379\"\n",
    );
    let r = run(&["--config", &bad_url, "get", "k"]).await;
    assert_config_error(&r, &["cache.layers.l2.url", "localhost:6379"]);

    let json_file = write(&dir, "bad.json", "{\"cache\": {\"default_ttl\": }");
    let r = run(&["--config", &json_file, "get", "k"]).await;
    assert_config_error(&r, &["JSON syntax error", "line 1", "bad.json"]);

    let yaml_file = write(&dir, "bad.yaml", "cache:\n  default_ttl: -5\n");
    let r = run(&["--config", &yaml_file, "get", "k"]).await;
    assert_config_error(&r, &["cache.default_ttl", "bad.yaml"]);

    let ini = write(&dir, "cache.ini", "[cache]\n");
    let r = run(&["--config", &ini, "get", "k"]).await;
    assert_config_error(&r, &["unknown format", "cache.ini"]);

    let l1_only = write(&dir, "l1.toml", "[cache]\ndefault_ttl = 60\n");
    let r = run(&["--config", &l1_only, "get", "k"]).await;
    assert_config_error(&r, &["no layer below L1"]);

    // An environment override is checked as the same key in a file would be.
    let good = write(&dir, "good.toml", &redis_toml("redis://127.0.0.1:1/0"));
    let r = run_env(
        &["--config", &good, "get", "k"],
        &[("VORTE__CACHE__DEFAULT_TTL", "-1")],
    )
    .await;
    assert_config_error(&r, &["cache.default_ttl"]);

    // The config file may come from the environment instead of --config.
    let r = run_env(&["get", "k"], &[("VORTE_CACHE_CONFIG", &bad_url)]).await;
    assert_config_error(&r, &["cache.layers.l2.url", "bad_url.toml"]);

    // With --json the error is a JSON object on stderr.
    let r = run(&["--json", "--config", &bad_url, "get", "k"]).await;
    r.expect_code(3);
    let error: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(error["error"]["exit"], 3);
    assert_eq!(error["error"]["kind"], "config");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cache.layers.l2.url")
    );
}

/// Environment overrides apply as in the library: a whole layer can come from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_apply_on_top_of_the_file() {
    let setup = Setup::new(Stack::L1Redis, "");
    setup.cache().await.set("from-env", &5).await.unwrap();
    let url = setup.env.redis().url();
    let prefix = setup.env.prefix().to_owned();
    // No file at all: the layer and the prefix come from the environment.
    let r = run_env(
        &["--json", "get", "from-env"],
        &[
            ("VORTE__CACHE__KEY_PREFIX", prefix.as_str()),
            ("VORTE__CACHE__LAYERS__L2__BACKEND", "redis"),
            ("VORTE__CACHE__LAYERS__L2__URL", url.as_str()),
        ],
    )
    .await;
    r.expect_code(0);
    assert_eq!(r.json()["value"], 5);
}

/// A server that does not answer is exit 4, naming the layer and where it was looked for, for
/// each kind of server, quickly: bounded by the library's connection wait and layer timeout, not
/// by retries (the time is printed, not asserted: the machine is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_4_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let layers = [
        (
            "redis",
            format!(
                "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\n"
            ),
            format!("l2 (redis at redis://127.0.0.1:{port}/0)"),
        ),
        (
            "memcached",
            format!(
                "[cache.layers.l2]\nbackend = \"memcached\"\nurl = \"memcached://127.0.0.1:{port}\"\n"
            ),
            format!("l2 (memcached at memcached://127.0.0.1:{port})"),
        ),
        (
            "cluster",
            format!(
                "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = [\"redis://127.0.0.1:{port}\"]\n"
            ),
            format!("l3 (redis-cluster at redis://127.0.0.1:{port})"),
        ),
        (
            "s3",
            format!(
                "[cache.layers.l4]\nbackend = \"s3\"\nbucket = \"b\"\nregion = \"us-east-1\"\n\
                 endpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\n\
                 access_key_id = \"k\"\nsecret_access_key = \"s\"\ntimeout_ms = 1000\n"
            ),
            format!("l4 (s3 bucket b at http://127.0.0.1:{port})"),
        ),
    ];
    for (name, layer, described) in layers {
        let config = write(
            &dir,
            &format!("{name}.toml"),
            &format!("[cache]\nkey_prefix = \"down:\"\n{layer}"),
        );
        for command in [
            &["get", "k"][..],
            &["keys", "k*"],
            &["del", "k"],
            &["ttl", "k"],
        ] {
            let mut args = vec!["--config", config.as_str()];
            args.extend_from_slice(command);
            let began = Instant::now();
            let r = run(&args).await;
            eprintln!(
                "{name} {command:?}: exit {} in {:?}",
                r.code,
                began.elapsed()
            );
            r.expect_code(4);
            assert!(r.stderr.contains(&described), "{described:?} in {r:#?}");
        }
    }
}

/// The bus is a server too: when it does not take a change's message the command says the other
/// processes were not told (exit 4), after the change was made in the layers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bus_exits_4_after_the_change() {
    let setup = Setup::new(Stack::L1File, "");
    let writer = setup.cache().await;
    writer.set("k", &1).await.unwrap();
    let port = free_port();
    let with_bus = format!(
        "{}[cache.bus]\nurl = \"redis://:bus-pass-7@127.0.0.1:{port}\"\n",
        setup.toml
    );
    let config = setup.path("bus.toml");
    std::fs::write(&config, with_bus).unwrap();
    let r = run(&["--config", config.to_str().unwrap(), "del", "k"]).await;
    r.expect_code(4);
    assert!(r.stderr.contains("other processes were not told"), "{r:#?}");
    assert!(
        r.stderr.contains(&format!("redis://***@127.0.0.1:{port}")),
        "{r:#?}"
    );
    assert!(!r.stderr.contains("bus-pass-7") && !r.stdout.contains("bus-pass-7"));
    // The delete itself was made.
    assert_eq!(setup.cache().await.get::<i32>("k").await.unwrap(), None);
}

/// Clap's usage errors and the arguments the commands check themselves exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    let setup = Setup::new(Stack::L1Redis, "");
    for args in [
        &["no-such-command"][..],
        &["get"],
        &["del"],
        &["keys", "a*", "--limit", "many"],
        &["emit", "only-an-event"],
    ] {
        setup.run(args).await.expect_code(2);
    }
    let r = setup.run(&["keys", "[unclosed"]).await;
    r.expect_code(2);
    assert!(r.stderr.contains("invalid glob"), "{r:#?}");
    let r = setup.run(&["get", ""]).await;
    r.expect_code(2);
    assert!(r.stderr.contains("invalid key"), "{r:#?}");
    let r = setup.run(&["emit", "e", "{nope}"]).await;
    r.expect_code(2);
    assert!(r.stderr.contains("not valid JSON"), "{r:#?}");
}

/// A Redis URL with a password: no output of any command, success or failure, text or JSON,
/// shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_config_is_never_printed() {
    const PASSWORD: &str = "Hunter2-Never-Shown";
    let redis = RedisServer::start_with_acl("ops", PASSWORD);
    let url = redis.url();
    assert!(url.contains(PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    let toml = redis_toml(&url);
    let config = write(&dir, "secret.toml", &toml);
    let cache = Cache::from_config(&vorte_cache::Config::from_toml_str(&toml).unwrap().cache)
        .await
        .unwrap();
    cache.set("k", &json!({"a": 1})).tags(["t"]).await.unwrap();

    let down = write(
        &dir,
        "down.toml",
        &redis_toml(&format!(
            "redis://ops:{PASSWORD}@127.0.0.1:{}/0",
            free_port()
        )),
    );
    let invalid = write(
        &dir,
        "invalid.toml",
        &format!("{}pool_size = 0\n", redis_toml(&url)),
    );
    let mut runs = Vec::new();
    for json in [false, true] {
        for command in [
            &["get", "k"][..],
            &["ttl", "k"],
            &["get", "missing"],
            &["keys", "*"],
            &["invalidate-tag", "t"],
            &["emit", "e", "{}"],
            &["del", "k"],
            &["flush"],
            &["flush", "--yes"],
        ] {
            for file in [&config, &down, &invalid] {
                let mut args = vec!["--config", file.as_str()];
                if json {
                    args.push("--json");
                }
                args.extend_from_slice(command);
                runs.push((args.join(" "), run(&args).await));
            }
        }
    }
    let codes: Vec<i32> = runs.iter().map(|(_, r)| r.code).collect();
    // Every outcome was exercised: success, not found, usage, config, unreachable.
    for code in [0, 1, 2, 3, 4] {
        assert!(codes.contains(&code), "no run exited {code}: {runs:#?}");
    }
    for (args, r) in &runs {
        assert!(
            !r.stdout.contains(PASSWORD) && !r.stderr.contains(PASSWORD),
            "`{args}` printed the password: {r:#?}"
        );
    }
    // And the redacted form is what is shown where a server is named.
    assert!(
        runs.iter()
            .any(|(_, r)| r.stderr.contains("redis://***@127.0.0.1:")),
        "{runs:#?}"
    );
    drop(redis);
}
