//! The operate commands (`keys`, `get`, `ttl`, `del`, `invalidate-tag`, `flush`, `emit`) on the
//! five stacks of `on_cli_stacks!`, against real servers: the test writes through a cache of its
//! own, runs the binary, and checks the outcome through the library (`docs/cli.md`).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use support::{Setup, eventually, first_layer};
use vorte_cache::{Cache, Vorte};
use vorte_cache_tests::Stack;

on_cli_stacks!(
    get_prints_the_entry_with_its_layer_ttl_and_tags,
    get_shows_an_invalidated_tag_as_invalid,
    get_and_ttl_of_a_missing_key_exit_1,
    ttl_prints_the_time_left,
    get_and_ttl_show_a_stale_entry,
    keys_lists_matching_keys_up_to_the_limit,
    del_removes_keys_from_every_layer,
    invalidate_tag_invalidates_the_tagged_entries,
    flush_refuses_without_yes_off_a_terminal_and_empties_with_it,
    emit_reaches_the_handlers_of_another_process,
);

/// Whether the stack has an invalidation bus (a Redis somewhere), so that another process's L1
/// hears of the binary's changes.
fn has_bus(stack: Stack) -> bool {
    stack.has_redis()
}

/// With a bus, the writer's L1 copy of `key` goes once the binary's change reaches it (without
/// one, it stays up to its L1 ttl: `docs/cli.md#del`).
async fn the_writer_hears_of_it(stack: Stack, writer: &Cache, key: &str, change: &str) {
    if has_bus(stack) {
        assert!(
            eventually(Duration::from_secs(5), || async {
                writer.get::<i32>(key).await.unwrap().is_none()
            })
            .await,
            "the writer's L1 heard of {change} over the bus"
        );
    }
}

async fn get_prints_the_entry_with_its_layer_ttl_and_tags(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    let value = json!({"id": 1, "name": "Ada", "langs": ["en", "fr"], "score": 9.5});
    writer
        .set("user:1", &value)
        .ttl(Duration::from_secs(120))
        .tags(["users", "team:7"])
        .await
        .unwrap();

    let run = setup.run(&["--json", "get", "user:1"]).await;
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["key"], "user:1");
    assert_eq!(doc["layer"], first_layer(stack));
    assert_eq!(doc["value"], value);
    assert_eq!(doc["serialization"], "msgpack");
    assert_eq!(doc["readable"], true);
    assert_eq!(doc["state"], "fresh");
    assert_eq!(
        doc["tags"],
        json!([{"name": "users", "valid": true}, {"name": "team:7", "valid": true}])
    );
    let fresh = doc["fresh_for_ms"].as_u64().unwrap();
    assert!((100_000..=120_000).contains(&fresh), "{doc}");
    assert_eq!(doc["expires_in_ms"], doc["fresh_for_ms"]);
    assert!(doc["size"].as_u64().unwrap() > 0);

    let text = setup.run(&["get", "user:1"]).await;
    text.expect_code(0);
    assert!(
        text.stdout.contains("users (valid), team:7 (valid)"),
        "{text:?}"
    );
    assert!(text.stdout.contains("\"name\": \"Ada\""), "{text:?}");
    assert!(
        text.stdout
            .contains(&format!("layer       {}", first_layer(stack))),
        "{text:?}"
    );
    // A read-only command: the entry is unchanged for the application.
    assert_eq!(
        writer.get::<serde_json::Value>("user:1").await.unwrap(),
        Some(value)
    );
}

async fn get_shows_an_invalidated_tag_as_invalid(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    writer
        .set("order:3", &json!({"total": 12}))
        .tags(["orders", "customer:4"])
        .await
        .unwrap();
    writer.invalidate_tag("orders").await.unwrap();

    let run = setup.run(&["--json", "get", "order:3"]).await;
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["readable"], false, "{doc}");
    assert_eq!(doc["state"], "invalidated");
    assert_eq!(
        doc["tags"],
        json!([{"name": "orders", "valid": false}, {"name": "customer:4", "valid": true}])
    );
    let text = setup.run(&["get", "order:3"]).await;
    assert!(text.stdout.contains("orders (invalidated)"), "{text:?}");
}

async fn get_and_ttl_of_a_missing_key_exit_1(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    writer.set("present", &1).await.unwrap();
    for command in ["get", "ttl"] {
        let run = setup.run(&[command, "absent"]).await;
        run.expect_code(1);
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(run.stderr.contains("key \"absent\" not found"), "{run:?}");
        let run = setup.run(&["--json", command, "absent"]).await;
        run.expect_code(1);
        let error: serde_json::Value = serde_json::from_str(run.stderr.trim()).unwrap();
        assert_eq!(error["error"]["exit"], 1);
        assert_eq!(error["error"]["kind"], "not_found");
    }
    setup.run(&["get", "present"]).await.expect_code(0);
}

async fn ttl_prints_the_time_left(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    writer
        .set("session", &"x")
        .ttl(Duration::from_secs(60))
        .await
        .unwrap();
    let run = setup.run(&["--json", "ttl", "session"]).await;
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["layer"], first_layer(stack));
    let fresh = doc["fresh_for_ms"].as_u64().unwrap();
    assert!((40_000..=60_000).contains(&fresh), "{doc}");
    assert_eq!(doc["stale_window_ms"], 0);
    assert!(doc.get("value").is_none(), "ttl prints no value: {doc}");
    let text = setup.run(&["ttl", "session"]).await;
    text.expect_code(0);
    assert!(text.stdout.starts_with("fresh for "), "{text:?}");
}

async fn get_and_ttl_show_a_stale_entry(stack: Stack) {
    let setup = Setup::new(stack, "[cache.loads]\nfail_safe_max = 60");
    let writer = setup.cache().await;
    writer
        .set("quote", &"old")
        .ttl(Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let run = setup.run(&["--json", "get", "quote"]).await;
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["state"], "stale", "{doc}");
    assert_eq!(doc["readable"], false);
    assert_eq!(doc["fresh_for_ms"], serde_json::Value::Null);
    assert_eq!(doc["stale_window_ms"], 60_000);
    assert_eq!(doc["value"], "old");
    let text = setup.run(&["ttl", "quote"]).await;
    text.expect_code(0);
    assert!(
        text.stdout.starts_with("stale (past its TTL), gone in "),
        "{text:?}"
    );
}

async fn keys_lists_matching_keys_up_to_the_limit(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    for key in ["user:1", "user:2", "user:3", "order:1"] {
        writer.set(key, &key).await.unwrap();
    }
    let run = setup.run(&["--json", "keys", "user:*"]).await;
    let doc = run.json();
    if stack == Stack::L1Memcached {
        // Memcached cannot list its keys, and the command says so rather than pretend.
        run.expect_code(1);
        assert_eq!(doc["keys"], json!([]));
        let unlisted = doc["unlisted_layers"][0].as_str().unwrap();
        assert!(
            unlisted.starts_with("l2 (memcached at memcached://"),
            "{doc}"
        );
        let text = setup.run(&["keys", "user:*"]).await;
        assert!(text.stderr.contains("cannot list its keys"), "{text:?}");
        return;
    }
    run.expect_code(0);
    assert_eq!(doc["keys"], json!(["user:1", "user:2", "user:3"]));
    assert_eq!(doc["total"], 3);
    assert_eq!(doc["truncated"], false);

    let run = setup
        .run(&["--json", "keys", "user:*", "--limit", "2"])
        .await;
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["keys"], json!(["user:1", "user:2"]));
    assert_eq!(
        (doc["total"].as_u64(), doc["truncated"].as_bool()),
        (Some(3), Some(true))
    );

    let text = setup.run(&["keys", "*"]).await;
    text.expect_code(0);
    assert_eq!(text.stdout, "order:1\nuser:1\nuser:2\nuser:3\n");

    setup.run(&["keys", "nothing:*"]).await.expect_code(1);
    // The listing agrees with the library's.
    assert_eq!(writer.keys("user:*").await.unwrap().len(), 3);
}

async fn del_removes_keys_from_every_layer(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    writer.set("a", &1).await.unwrap();
    writer.set("b", &2).await.unwrap();
    // The writer's L1 holds both: only the bus can tell it of the binary's delete.
    assert_eq!(writer.get::<i32>("a").await.unwrap(), Some(1));

    let run = setup.run(&["--json", "del", "a", "missing"]).await;
    run.expect_code(0);
    assert_eq!(
        run.json(),
        json!({"deleted": 1, "keys": [{"key": "a", "existed": true}, {"key": "missing", "existed": false}]})
    );
    // Another process, started now, finds it nowhere; the untouched key stays.
    let fresh = setup.cache().await;
    assert_eq!(fresh.get::<i32>("a").await.unwrap(), None);
    assert_eq!(fresh.get::<i32>("b").await.unwrap(), Some(2));
    the_writer_hears_of_it(stack, &writer, "a", "the delete").await;
    let run = setup.run(&["del", "missing", "also-missing"]).await;
    run.expect_code(1);
    assert!(run.stdout.contains("not found\tmissing"), "{run:?}");
}

async fn invalidate_tag_invalidates_the_tagged_entries(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    writer.set("p:1", &1).tags(["products"]).await.unwrap();
    writer
        .set("p:2", &2)
        .tags(["products", "sale"])
        .await
        .unwrap();
    writer.set("c:1", &3).tags(["customers"]).await.unwrap();
    assert_eq!(writer.get::<i32>("p:1").await.unwrap(), Some(1));

    let run = setup
        .run(&["--json", "invalidate-tag", "products", "nobody-uses-this"])
        .await;
    run.expect_code(0);
    assert_eq!(
        run.json(),
        json!({"invalidated": ["products", "nobody-uses-this"]})
    );

    let fresh = setup.cache().await;
    assert_eq!(fresh.get::<i32>("p:1").await.unwrap(), None);
    assert_eq!(fresh.get::<i32>("p:2").await.unwrap(), None);
    assert_eq!(fresh.get::<i32>("c:1").await.unwrap(), Some(3));
    the_writer_hears_of_it(stack, &writer, "p:1", "the tag").await;
}

async fn flush_refuses_without_yes_off_a_terminal_and_empties_with_it(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    writer.set("k1", &1).await.unwrap();
    writer.set("k2", &2).await.unwrap();

    // stdin is not a terminal here: without --yes nothing is removed.
    let run = setup.run(&["flush"]).await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("refusing to flush without --yes"),
        "{run:?}"
    );
    assert_eq!(setup.cache().await.get::<i32>("k1").await.unwrap(), Some(1));

    let run = setup.run(&["--json", "flush", "--yes"]).await;
    run.expect_code(0);
    assert_eq!(run.json()["flushed"], true);
    let fresh = setup.cache().await;
    assert_eq!(fresh.get::<i32>("k1").await.unwrap(), None);
    assert_eq!(fresh.get::<i32>("k2").await.unwrap(), None);
    the_writer_hears_of_it(stack, &writer, "k2", "the flush").await;
}

/// The payloads `recorded` received, in the order they came.
static RECEIVED: Mutex<Vec<serde_json::Value>> = Mutex::new(Vec::new());

/// Runs in this test process for events the binary emits.
#[vorte_cache::on_event("cli.test.emitted")]
async fn recorded(id: u64, note: String) {
    RECEIVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(json!({"id": id, "note": note}));
}

/// One application at a time in this process: `Vorte::build` installs the global one.
static ONE_APP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn emit_reaches_the_handlers_of_another_process(stack: Stack) {
    let setup = Setup::new(stack, "");
    // A bad payload is a usage error, whatever the stack.
    let run = setup
        .run(&["emit", "cli.test.emitted", "{\"id\": 1,"])
        .await;
    run.expect_code(2);
    assert!(run.stderr.contains("not valid JSON"), "{run:?}");
    if !has_bus(stack) {
        let run = setup.run(&["emit", "cli.test.emitted", "{}"]).await;
        run.expect_code(3);
        assert!(run.stderr.contains("no bus"), "{run:?}");
        return;
    }
    let _one = ONE_APP.lock().await;
    let config = vorte_cache::Config::from_toml_str(&setup.toml).unwrap();
    let _app: Vorte = Vorte::builder()
        .auto_load(true)
        .config(config)
        .build()
        .await
        .unwrap();
    let id = u64::from(std::process::id()) * 10 + stack as u64;
    let payload = json!({"id": id, "note": format!("{stack:?}")}).to_string();
    let run = setup
        .run(&["--json", "emit", "cli.test.emitted", &payload])
        .await;
    run.expect_code(0);
    assert_eq!(run.json()["published"], true);
    let want = json!({"id": id, "note": format!("{stack:?}")});
    assert!(
        eventually(Duration::from_secs(10), || async {
            RECEIVED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&want)
        })
        .await,
        "the handler of this process ran for the binary's event"
    );
    drop(Cache::global());
}

/// On a terminal, `flush` asks; only `y` or `yes` flushes. The terminal is a pseudo-terminal of
/// util-linux's `script`, which forwards the answer written to its stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_on_a_terminal_asks_and_flushes_only_on_yes() {
    let setup = Setup::new(Stack::L1Redis, "");
    let writer = setup.cache().await;
    writer.set("kept", &1).await.unwrap();
    let on_terminal = |answer: &'static str| {
        let command = format!("{} --config {} flush", support::binary(), setup.config());
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut child = std::process::Command::new("script")
                .args(["-qec", &command, "/dev/null"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("util-linux `script` runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(answer.as_bytes())
                .unwrap();
            support::Run::from(child.wait_with_output().unwrap())
        })
    };
    let declined = on_terminal("n\n").await.unwrap();
    declined.expect_code(2);
    assert!(declined.stdout.contains("[y/N]"), "{declined:?}");
    assert!(
        declined.stdout.contains("flush not confirmed"),
        "{declined:?}"
    );
    assert_eq!(
        setup.cache().await.get::<i32>("kept").await.unwrap(),
        Some(1)
    );

    let accepted = on_terminal("yes\n").await.unwrap();
    accepted.expect_code(0);
    assert!(
        accepted.stdout.contains("flushed every entry"),
        "{accepted:?}"
    );
    assert_eq!(setup.cache().await.get::<i32>("kept").await.unwrap(), None);
}
