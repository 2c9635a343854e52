//! The store contract (`vorte_cache::testing::contract`) on every backend: redis, a 3-master
//! Redis Cluster, memcached, file (a temporary directory), s3 (moto) and the in-memory
//! `TestStore`. Each backend is opened the way the cache opens it (`vorte_cache::store::open`),
//! three times over one server (twice under one key prefix, once under another), and must break
//! no rule beyond those listed as known for it below. A known violation that gets fixed fails the test too, so the list stays
//! true.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::sync::Arc;

use vorte_cache::testing::TestStore;
use vorte_cache::testing::contract::{self, Capabilities, Rule, Stores};
use vorte_cache::{Config, Layer, Store};
use vorte_cache_tests::{
    s3_layer, shared_cluster, shared_memcached, shared_moto, shared_redis, unique_prefix,
};

/// Opens the store of `layer` that the `[cache.layers.*]` table `table` describes, under
/// `key_prefix`.
async fn open(layer: Layer, table: &str, key_prefix: &str) -> Arc<dyn Store> {
    let config = Config::from_toml_str(&format!("[cache]\n{table}")).expect("config parses");
    let layers = config.cache.layers;
    let layer_config = match layer {
        Layer::L2 => layers.l2,
        Layer::L3 => layers.l3,
        Layer::L4 => layers.l4,
        Layer::L1 => None,
    }
    .expect("the table configures the layer");
    vorte_cache::store::open(layer, &layer_config, key_prefix)
        .await
        .expect("the store opens")
}

/// Runs the whole contract on stores of `table` (the store, a twin under the same prefix, a
/// neighbour under another); asserts that exactly the `known` rules are broken.
async fn run(layer: Layer, table: &str, caps: Capabilities, known: &[Rule]) {
    let prefix = unique_prefix();
    let store = open(layer, table, &prefix).await;
    let twin = open(layer, table, &prefix).await;
    let neighbour = open(layer, table, &unique_prefix()).await;
    let stores = Stores {
        store: &*store,
        twin: &*twin,
        neighbour: &*neighbour,
    };
    assert_broken(
        store.backend(),
        contract::check(&stores, &caps).await,
        known,
    );
}

fn assert_broken(backend: &str, outcome: Result<(), contract::Violations>, known: &[Rule]) {
    let broken = outcome
        .as_ref()
        .err()
        .map(|v| v.rules())
        .unwrap_or_default();
    assert_eq!(
        broken,
        known,
        "{backend}: the rules broken are not the known ones.\n{}",
        outcome.err().map(|v| v.to_string()).unwrap_or_default()
    );
}

/// Redis and Redis Cluster keep every rule, leases included. (Their compare-and-set script once took "no entry"
/// as an empty `expected`, so it swapped a missing entry for an expected `b""` and an empty value
/// for an expected absence: `Rule::CompareAndSetEmptyValue` caught it.)
const REDIS_KNOWN: &[Rule] = &[];

/// What the object stores (file, s3) can do: compare-and-set (under a lock on `file`, by
/// conditional puts on S3) and tombstones, but no native expiry (the sweeper removes expired
/// objects and tombstones) and no leases (docs/leases.md#where-the-lease-lives).
fn object_store() -> Capabilities {
    let mut caps = Capabilities::full();
    caps.native_expiry = false;
    caps.leases = false;
    caps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let table = format!(
        "[cache.layers.l2]\nbackend = \"redis\"\nurl = {:?}\ntimeout_ms = 2000\n",
        shared_redis().url()
    );
    run(Layer::L2, &table, Capabilities::full(), REDIS_KNOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    let table = format!(
        "[cache.layers.l3]\nbackend = \"redis-cluster\"\nurls = {:?}\ntimeout_ms = 2000\n",
        shared_cluster().urls()
    );
    run(Layer::L3, &table, Capabilities::full(), REDIS_KNOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached() {
    let table = format!(
        "[cache.layers.l2]\nbackend = \"memcached\"\nurl = {:?}\ntimeout_ms = 2000\n",
        shared_memcached().url()
    );
    // Memcached cannot list keys or report usage, and its clear moves to a new generation
    // instead of removing names (see store/memcached.rs).
    let mut caps = Capabilities::full();
    caps.lists_keys = false;
    caps.reports_usage = false;
    caps.counts_cleared = false;
    run(Layer::L2, &table, caps, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = format!(
        "[cache.layers.l4]\nbackend = \"file\"\npath = {:?}\n",
        dir.path().display().to_string()
    );
    run(Layer::L4, &table, object_store(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3() {
    run(Layer::L4, &s3_layer(shared_moto()), object_store(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_store() {
    let prefix = unique_prefix();
    let store = TestStore::new().neighbour(&prefix);
    let stores = Stores {
        store: &store,
        twin: &store.neighbour(&prefix),
        neighbour: &store.neighbour(&unique_prefix()),
    };
    assert_broken(
        "test",
        contract::check(&stores, &Capabilities::full()).await,
        &[],
    );
}
