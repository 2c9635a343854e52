//! `Cache::inspect` on each of the eight stacks (`on_every_stack!`): a second cache on the same
//! servers stands in for another process, as `vorte-cache get` is (`docs/cli.md#get`).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::time::Duration;

use serde_json::json;
use vorte_cache::config::Serialization;
use vorte_cache::{Cache, Layer};
use vorte_cache_tests::{Env, Stack, on_every_stack};

on_every_stack!(
    inspect_reads_a_lower_layer_without_filling_l1,
    inspect_reports_an_invalidated_tag_as_invalid,
    inspect_of_a_missing_key_finds_nothing,
    inspect_decodes_json_serialization,
    inspect_shows_a_stale_entry_with_its_fail_safe_window,
);

/// The writer, and the cache that inspects: another one on the same servers, or the writer
/// itself on L1 alone (nothing is shared there).
async fn writer_and_reader(env: &Env, cache_toml: &str) -> (Cache, Cache) {
    let writer = env.cache(cache_toml).await;
    let reader = if env.stack == Stack::L1 {
        writer.clone()
    } else {
        env.cache(cache_toml).await
    };
    (writer, reader)
}

fn l1_entries(cache: &Cache) -> u64 {
    cache
        .stats()
        .layer(Layer::L1)
        .and_then(|l| l.entries)
        .unwrap()
}

async fn inspect_reads_a_lower_layer_without_filling_l1(stack: Stack) {
    let env = Env::new(stack);
    let (writer, reader) = writer_and_reader(&env, "").await;
    let value = json!({"id": 7, "name": "Ada", "roles": ["admin"]});
    writer
        .set("user:7", &value)
        .ttl(Duration::from_secs(120))
        .tags(["users"])
        .await
        .unwrap();
    let l1_before = l1_entries(&reader);

    let found = reader.inspect("user:7").await.unwrap();
    assert!(found.failed.is_empty(), "{:?}", found.failed);
    let entry = found.entry.expect("the key is held");
    assert_eq!(entry.layer, stack.first_shared_layer());
    assert_eq!(entry.value.as_ref().unwrap(), &value);
    assert_eq!(entry.serialization, Serialization::Msgpack);
    let fresh = entry.fresh_for.expect("fresh");
    assert!(
        fresh > Duration::from_secs(100) && fresh <= Duration::from_secs(120),
        "{fresh:?}"
    );
    assert_eq!(entry.expires_in, fresh, "no fail-safe: no stale window");
    assert_eq!(entry.stale_window, Duration::ZERO);
    assert_eq!(entry.tags.len(), 1);
    assert_eq!(
        (entry.tags[0].name.as_str(), entry.tags[0].valid),
        ("users", Some(true))
    );
    assert_eq!(entry.flushed, Some(false));
    assert!(entry.readable());
    assert!(entry.size > 0);

    // Nothing was copied into the reader's L1: a second inspection reads the same layer.
    assert_eq!(l1_entries(&reader), l1_before);
    let again = reader.inspect("user:7").await.unwrap().entry.unwrap();
    assert_eq!(again.layer, stack.first_shared_layer());
    // Whereas a get does fill it (so the check above could fail).
    let got: Option<serde_json::Value> = reader.get("user:7").await.unwrap();
    assert_eq!(got.as_ref(), Some(&value));
    let after_get = reader.inspect("user:7").await.unwrap().entry.unwrap();
    assert_eq!(after_get.layer, Layer::L1);
}

async fn inspect_reports_an_invalidated_tag_as_invalid(stack: Stack) {
    let env = Env::new(stack);
    let (writer, reader) = writer_and_reader(&env, "").await;
    writer
        .set("order:1", &json!({"total": 42}))
        .tags(["orders", "customer:9"])
        .await
        .unwrap();
    writer.invalidate_tag("orders").await.unwrap();

    let found = reader.inspect("order:1").await.unwrap();
    assert!(found.failed.is_empty(), "{:?}", found.failed);
    let entry = found
        .entry
        .expect("an invalidated entry is still kept until a read drops it");
    assert_eq!(entry.layer, stack.first_shared_layer());
    let valid: Vec<(&str, Option<bool>)> = entry
        .tags
        .iter()
        .map(|t| (t.name.as_str(), t.valid))
        .collect();
    assert_eq!(valid, [("orders", Some(false)), ("customer:9", Some(true))]);
    assert!(!entry.readable());
    // A read agrees: the entry is gone for it.
    assert_eq!(
        reader.get::<serde_json::Value>("order:1").await.unwrap(),
        None
    );
}

async fn inspect_of_a_missing_key_finds_nothing(stack: Stack) {
    let env = Env::new(stack);
    let (writer, reader) = writer_and_reader(&env, "").await;
    writer.set("present", &1u8).await.unwrap();
    writer.delete("gone").await.unwrap();
    let found = reader.inspect("gone").await.unwrap();
    assert!(found.entry.is_none());
    assert!(found.failed.is_empty(), "{:?}", found.failed);
    let found = reader.inspect("absent").await.unwrap();
    assert!(found.entry.is_none());
    assert_eq!(
        reader.inspect("").await.unwrap_err().kind(),
        vorte_cache::ErrorKind::InvalidKey
    );
}

async fn inspect_decodes_json_serialization(stack: Stack) {
    let env = Env::new(stack);
    let (writer, reader) = writer_and_reader(&env, "serialization = \"json\"").await;
    writer.set("n", &[1.5f64, -2.0]).await.unwrap();
    let entry = reader.inspect("n").await.unwrap().entry.unwrap();
    assert_eq!(entry.serialization, Serialization::Json);
    assert_eq!(entry.value.unwrap(), json!([1.5, -2.0]));
}

async fn inspect_shows_a_stale_entry_with_its_fail_safe_window(stack: Stack) {
    let env = Env::new(stack);
    let (writer, reader) = writer_and_reader(&env, "[cache.loads]\nfail_safe_max = 60").await;
    writer
        .set("rate", &3)
        .ttl(Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let entry = reader
        .inspect("rate")
        .await
        .unwrap()
        .entry
        .expect("kept while stale");
    assert_eq!(entry.layer, stack.first_shared_layer());
    assert_eq!(entry.fresh_for, None, "past its TTL");
    assert_eq!(entry.stale_window, Duration::from_secs(60));
    assert!(
        entry.expires_in > Duration::from_secs(50) && entry.expires_in < Duration::from_secs(60),
        "{:?}",
        entry.expires_in
    );
    assert!(!entry.readable());
    assert_eq!(entry.value.unwrap(), json!(3));
    // A read agrees: a stale entry is no answer.
    assert_eq!(reader.get::<i32>("rate").await.unwrap(), None);
}
