//! Spans (feature `tracing`, `docs/observability.md#spans`): one per public call with the layer
//! that answered and whether a load ran, a child per store call with the OpenTelemetry database
//! attributes, one per bus message applied; keys only as `[cache.observe] record_keys` allows.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use vorte_cache_tests::{Env, Stack};

/// A span as the test saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: u64,
    parent: Option<u64>,
    name: &'static str,
    fields: BTreeMap<String, String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

impl Spans {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent().map(|p| p.id().into_u64()));
        self.0.lock().unwrap().push(Seen {
            id: id.into_u64(),
            parent,
            name: attrs.metadata().name(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some(seen) = spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

/// Records the spans of this thread (the tests run on a current-thread runtime, so the bus's
/// receivers, spawned on it, are recorded too).
fn record() -> (Spans, tracing::subscriber::DefaultGuard) {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    (spans, tracing::subscriber::set_default(subscriber))
}

fn calls<'a>(spans: &'a [Seen], op: &str) -> Vec<&'a Seen> {
    spans
        .iter()
        .filter(|s| s.name == "vorte.call" && s.field("vorte.operation") == Some(op))
        .collect()
}

#[tokio::test]
async fn a_read_names_the_layer_that_answered_and_its_store_calls_are_children() {
    let env = Env::new(Stack::L1Redis);
    let writer = env.cache("").await;
    let reader = env.cache("").await;
    writer.set("user:1", &"Ada").await.unwrap();
    // The writer's notice of its set would drop the reader's L1 copy if it arrived after the
    // reader's first read: let it arrive first, so the second read is an L1 hit.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while reader.stats().invalidations_received == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(reader.stats().invalidations_received, 1);
    let (spans, _guard) = record();

    assert_eq!(
        reader.get::<String>("user:1").await.unwrap().as_deref(),
        Some("Ada")
    );
    assert_eq!(
        reader.get::<String>("user:1").await.unwrap().as_deref(),
        Some("Ada")
    );
    assert_eq!(reader.get::<String>("user:2").await.unwrap(), None);

    let seen = spans.take();
    let gets = calls(&seen, "get");
    let layers: Vec<_> = gets.iter().map(|s| s.field("vorte.layer")).collect();
    assert_eq!(layers, [Some("l2"), Some("l1"), Some("miss")], "{gets:#?}");
    for get in &gets {
        assert_eq!(
            get.field("vorte.key"),
            None,
            "keys are not recorded by default"
        );
        assert_eq!(get.field("otel.name"), Some("get"));
        assert!(get.field("vorte.duration_ms").is_some(), "{get:?}");
    }
    // The L2 read is a child of the first get, with the conventions' database attributes.
    let store = seen
        .iter()
        .find(|s| s.name == "vorte.store" && s.parent == Some(gets[0].id))
        .expect("a store span under the first get");
    assert_eq!(store.field("db.system.name"), Some("redis"));
    assert_eq!(store.field("db.operation.name"), Some("GET"));
    assert_eq!(store.field("otel.kind"), Some("client"));
    assert_eq!(store.field("vorte.layer"), Some("l2"));
    // The L1 hit asked no store.
    assert!(!seen.iter().any(|s| s.parent == Some(gets[1].id)));
}

#[tokio::test]
async fn a_span_says_whether_a_load_ran_and_an_error_sets_its_status() {
    let env = Env::new(Stack::L1Redis);
    let cache = env.cache("").await;
    let (spans, _guard) = record();
    for _ in 0..2 {
        let v: u32 = cache
            .get_or_set("answer", || async { Ok::<_, std::io::Error>(42) })
            .await
            .unwrap();
        assert_eq!(v, 42);
    }
    assert!(cache.get::<u32>("").await.is_err());

    let seen = spans.take();
    let loads = calls(&seen, "get_or_set");
    assert_eq!(loads.len(), 2);
    assert_eq!(loads[0].field("vorte.loaded"), Some("true"));
    assert_eq!(loads[0].field("vorte.layer"), Some("miss"));
    assert_eq!(loads[1].field("vorte.loaded"), None, "{:?}", loads[1]);
    assert_eq!(loads[1].field("vorte.layer"), Some("l1"));
    let failed = calls(&seen, "get");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].field("otel.status_code"), Some("ERROR"));
    assert_eq!(failed[0].field("error.type"), Some("InvalidKey"));
}

#[tokio::test]
async fn keys_are_recorded_only_as_configured() {
    let env = Env::new(Stack::L1);
    let hashed = env.cache("[cache.observe]\nrecord_keys = \"hash\"").await;
    let plain = env.cache("[cache.observe]\nrecord_keys = \"plain\"").await;
    let (spans, _guard) = record();
    hashed.set("user:7", &1u8).await.unwrap();
    plain.set("user:7", &1u8).await.unwrap();
    let seen = spans.take();
    let sets = calls(&seen, "set");
    assert_eq!(sets.len(), 2);
    let hash = sets[0].field("vorte.key").expect("a hashed key");
    assert_eq!(hash.len(), 16);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()) && hash != "user:7");
    assert_eq!(sets[1].field("vorte.key"), Some("user:7"));
}

#[tokio::test]
async fn invalidations_have_spans_and_a_bus_message_applied_has_one_with_its_lag() {
    let env = Env::new(Stack::L1Redis);
    let a = env.cache("").await;
    let b = env.cache("").await;
    a.set("k", &1u8).await.unwrap();
    assert_eq!(b.get::<u8>("k").await.unwrap(), Some(1));
    let (spans, _guard) = record();
    a.delete("k").await.unwrap();
    a.invalidate_tag("t").await.unwrap();
    a.flush().await.unwrap();
    // B applies the three notices on this thread.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let applied = loop {
        let applied: Vec<Seen> = spans
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == "vorte.bus.apply")
            .cloned()
            .collect();
        if applied.len() >= 3 || tokio::time::Instant::now() > deadline {
            break applied;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let seen = spans.take();
    for op in ["delete", "invalidate_tag", "flush"] {
        assert_eq!(calls(&seen, op).len(), 1, "{op}");
    }
    let notices: Vec<_> = applied.iter().map(|s| s.field("vorte.notice")).collect();
    assert_eq!(
        notices,
        [Some("keys"), Some("tag"), Some("flush")],
        "{applied:#?}"
    );
    for s in &applied {
        let lag: f64 = s.field("vorte.lag_ms").expect("a lag").parse().unwrap();
        assert!((0.0..5000.0).contains(&lag), "{lag}");
    }
    assert_eq!(b.get::<u8>("k").await.unwrap(), None);
}

#[vorte_cache::cached(ttl = 60, key = "thing:{id}")]
async fn get_thing(id: u32) -> Result<u32, std::io::Error> {
    Ok(id * 2)
}

#[tokio::test]
async fn a_cached_function_has_a_span_named_after_it() {
    let (spans, _guard) = record();
    assert_eq!(get_thing(21).await.unwrap(), 42);
    assert_eq!(get_thing(21).await.unwrap(), 42);
    let seen = spans.take();
    let cached = calls(&seen, "cached");
    assert_eq!(cached.len(), 2, "{seen:#?}");
    for span in &cached {
        let function = span.field("vorte.function").expect("the function");
        assert!(function.ends_with("get_thing"), "{function}");
        assert_eq!(span.field("otel.name"), Some(function));
    }
    assert_eq!(cached[0].field("vorte.loaded"), Some("true"));
    assert_eq!(cached[1].field("vorte.layer"), Some("l1"));
}

#[tokio::test]
async fn an_s3_call_follows_the_aws_sdk_conventions() {
    let env = Env::new(Stack::L1S3);
    let cache = env.cache("").await;
    let (spans, _guard) = record();
    cache.set("k", &1u8).await.unwrap();
    let seen = spans.take();
    let set = calls(&seen, "set")[0].id;
    let puts: Vec<_> = seen
        .iter()
        .filter(|s| s.name == "vorte.store" && s.parent == Some(set))
        .collect();
    assert!(!puts.is_empty(), "{seen:#?}");
    for put in puts {
        assert_eq!(put.field("rpc.system"), Some("aws-api"));
        assert_eq!(put.field("rpc.service"), Some("S3"));
        assert_eq!(put.field("vorte.backend"), Some("s3"));
        assert_eq!(put.field("db.system.name"), None);
        let method = put.field("rpc.method").expect("a method");
        assert_eq!(
            put.field("otel.name"),
            Some(format!("S3.{method}").as_str())
        );
    }
}
