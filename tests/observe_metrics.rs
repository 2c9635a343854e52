//! The metrics (`docs/observability.md#metrics`): both adapters over the one instrumentation
//! point (a Prometheus exporter through the `metrics` facade, an OpenTelemetry meter provider),
//! and what `stats()` carries of it: durations, evictions, invalidations, recent activity.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use vorte_cache::observe::metrics::MetricsExporter;
use vorte_cache::observe::opentelemetry::OtelMetrics;
use vorte_cache::observe::{ActivityKind, Observe};
use vorte_cache::{Cache, Layer};
use vorte_cache_tests::{Env, Stack};

async fn cache_observed(env: &Env, observer: Arc<dyn Observe>) -> Cache {
    Cache::builder(&env.config("", "").cache)
        .observe(observer)
        .build()
        .await
        .unwrap()
}

/// Some reads, writes, a miss and a load: L1 hits, L4 `file` calls, a load's time.
async fn traffic(cache: &Cache) {
    for i in 0..5 {
        cache.set(&format!("k{i}"), &i).await.unwrap();
        assert_eq!(cache.get::<i32>(&format!("k{i}")).await.unwrap(), Some(i));
    }
    assert_eq!(cache.get::<i32>("absent").await.unwrap(), None);
    let v: u32 = cache
        .get_or_set("loaded", || async { Ok::<_, std::io::Error>(7) })
        .await
        .unwrap();
    assert_eq!(v, 7);
}

/// The value of the Prometheus sample `name{labels…}` whose labels include each of `with`.
fn sample(text: &str, name: &str, with: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            (series == name || series.starts_with(&format!("{name}{{")))
                && with.iter().all(|w| series.contains(w))
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_exporter_gets_the_counters_and_durations() {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
    let env = Env::new(Stack::L1File);
    let exporter = MetricsExporter::new()
        .every(Duration::from_millis(20))
        .usage_every(Duration::from_millis(20));
    let cache = cache_observed(&env, Arc::new(exporter)).await;
    traffic(&cache).await;
    let stats = cache.stats();
    // The counters go out on the exporter's next tick, the entries on its next usage scan (its
    // own timer): a render is taken once it carries all of the traffic, since one with every hit
    // may still lack the later miss, load or fill.
    let entries = stats.layer(Layer::L1).unwrap().entries.unwrap() as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = prometheus.render();
        let caught_up = sample(&text, "vorte_cache_hits_total", &["layer=\"l1\""])
            == Some(stats.l1_hits as f64)
            && sample(&text, "vorte_cache_misses_total", &[]) == Some(stats.misses as f64)
            && sample(&text, "vorte_cache_loads_total", &[]) == Some(stats.loads.runs as f64)
            && sample(&text, "vorte_cache_entries", &["layer=\"l1\""]) == Some(entries);
        if caught_up || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats.l1_hits, 5);
    let l1 = ["layer=\"l1\""];
    assert_eq!(
        sample(&text, "vorte_cache_hits_total", &l1),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vorte_cache_misses_total", &[]),
        Some(stats.misses as f64),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vorte_cache_loads_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vorte_cache_entries", &l1),
        Some(stats.layer(Layer::L1).unwrap().entries.unwrap() as f64)
    );
    // Durations, as they were measured: the writes to L4 and the one load.
    let puts = sample(
        &text,
        "vorte_cache_store_call_seconds_count",
        &[
            "layer=\"l4\"",
            "backend=\"file\"",
            "operation=\"put\"",
            "outcome=\"ok\"",
        ],
    );
    assert!(puts.is_some_and(|n| n >= 5.0), "{text}");
    assert_eq!(
        sample(&text, "vorte_cache_load_seconds_count", &["outcome=\"ok\""]),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("# HELP vorte_cache_hits_total"), "{text}");
    // Keys and bytes from the usage scan, asked for with `usage_every`.
    let usage = cache.usage().await.unwrap();
    let l4 = usage.layer(Layer::L4).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = prometheus.render();
        if sample(&text, "vorte_cache_keys", &["layer=\"l4\""]) == Some(l4.keys as f64)
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(l4.keys, 6);
    assert_eq!(
        sample(&text, "vorte_cache_keys", &["layer=\"l4\""]),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vorte_cache_bytes", &["layer=\"l4\""]),
        Some(l4.bytes as f64),
        "{text}"
    );
}

fn sum_u64(metrics: &[ResourceMetrics], name: &str, layer: Option<&str>) -> Option<u64> {
    let mut last = None;
    for rm in metrics {
        for scope in rm.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                    for p in sum.data_points() {
                        let matches = layer.is_none_or(|l| {
                            p.attributes().any(|kv| {
                                kv.key.as_str() == "vorte.layer" && kv.value.as_str() == l
                            })
                        });
                        if matches {
                            last = Some(p.value());
                        }
                    }
                }
            }
        }
    }
    last
}

fn gauge_f64(metrics: &[ResourceMetrics], name: &str, layer: &str) -> Option<f64> {
    let mut last = None;
    for rm in metrics {
        for scope in rm.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::F64(MetricData::Gauge(g)) = m.data() {
                    for p in g.data_points() {
                        if p.attributes().any(|kv| {
                            kv.key.as_str() == "vorte.layer" && kv.value.as_str() == layer
                        }) {
                            last = Some(p.value());
                        }
                    }
                }
            }
        }
    }
    last
}

fn histogram_count(metrics: &[ResourceMetrics], name: &str) -> u64 {
    let mut last = 0;
    for rm in metrics {
        for scope in rm.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                    last = h.data_points().map(|p| p.count()).sum();
                }
            }
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opentelemetry_meter_gets_the_counters_and_durations() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let env = Env::new(Stack::L1File);
    let otel = OtelMetrics::new(provider.meter("test")).usage_every(Duration::from_millis(20));
    let cache = cache_observed(&env, Arc::new(otel)).await;
    traffic(&cache).await;
    // One usage scan after the traffic, for the keys gauge.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = cache.stats();
    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    assert_eq!(
        sum_u64(&metrics, "vorte.cache.hits", Some("l1")),
        Some(stats.l1_hits)
    );
    assert_eq!(
        sum_u64(&metrics, "vorte.cache.misses", None),
        Some(stats.misses)
    );
    assert_eq!(sum_u64(&metrics, "vorte.cache.loads", None), Some(1));
    let l4 = stats.layer(Layer::L4).unwrap().latency.count();
    assert!(l4 >= 6, "{l4}");
    assert_eq!(
        histogram_count(&metrics, "vorte.cache.store_call.duration"),
        l4
    );
    assert_eq!(histogram_count(&metrics, "vorte.cache.load.duration"), 1);
    assert_eq!(gauge_f64(&metrics, "vorte.cache.keys", "l4"), Some(6.0));
}

#[tokio::test]
async fn stats_carry_durations_evictions_and_invalidations() {
    let env = Env::new(Stack::L1File);
    let toml = env
        .toml("", "")
        .replace("max_size = 10000", "max_size = 20");
    let config = vorte_cache::Config::from_toml_str(&toml).unwrap();
    let cache = Cache::from_config(&config.cache).await.unwrap();
    let before = cache.stats();
    assert_eq!(before.layer(Layer::L4).unwrap().latency.count(), 0);
    for i in 0..200 {
        cache.set(&format!("k{i}"), &i).await.unwrap();
    }
    let v: u32 = cache
        .get_or_set("loaded", || async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok::<_, std::io::Error>(7)
        })
        .await
        .unwrap();
    assert_eq!(v, 7);
    cache.delete("k1").await.unwrap();
    cache.invalidate_tag("t").await.unwrap();
    let stats = cache.stats();
    let l1 = stats.layer(Layer::L1).unwrap();
    assert!(l1.evictions >= 150, "{}", l1.evictions);
    assert!(l1.entries.unwrap() <= 40, "{:?}", l1.entries);
    assert_eq!(l1.latency.count(), 0, "L1 reads are not timed");
    let l4 = stats.layer(Layer::L4).unwrap();
    assert!(l4.latency.count() >= 201, "{}", l4.latency.count());
    assert_eq!(stats.loads.time.count(), 1);
    assert!(stats.loads.time.percentile(0.5).unwrap() >= Duration::from_millis(25));
    assert_eq!(stats.invalidations, 2);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["layers"][1]["layer"], "l4");
    assert!(json["loads"]["time"]["p99_ms"].as_f64().unwrap() >= 25.0);
    let activity = cache.recent_activity();
    let kinds: Vec<_> = activity
        .iter()
        .map(|a| (a.kind, a.subject.clone()))
        .collect();
    assert_eq!(
        kinds,
        [(ActivityKind::Keys, None), (ActivityKind::Tag, None)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_counts_what_it_receives_from_the_bus_and_its_lag() {
    let env = Env::new(Stack::L1Redis);
    let a = env.cache("").await;
    let b = env
        .cache("[cache.observe]\nrecord_keys = \"plain\"\nrecent_activity = 2")
        .await;
    for key in ["x", "y", "z"] {
        a.set(key, &1u8).await.unwrap();
        a.delete(key).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // A's three sets announce their keys too: six notices, the last the delete of "z".
    while b.stats().invalidations_received < 6 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = b.stats();
    assert_eq!(stats.invalidations_received, 6);
    assert_eq!(stats.invalidations, 0);
    assert_eq!(stats.bus_lag.count(), 6);
    assert!(stats.bus_lag.percentile(0.5).unwrap() < Duration::from_secs(2));
    let recent = b.recent_activity();
    assert_eq!(recent.len(), 2, "kept to recent_activity");
    let last = recent.last().unwrap();
    assert!(last.received && last.lag.is_some());
    assert_eq!(last.subject.as_deref(), Some("z"));
    assert_eq!(a.stats().invalidations, 3);
}

/// A scan (`usage`, `keys`) reads every key it lists to tell which are live: those reads are not
/// the application's, and must not move the hit and miss counters a dashboard turns into hit
/// rates (found by the dashboard's browser test: each layer's hit rate dipped every 5 s).
#[tokio::test]
async fn scans_do_not_count_as_reads() {
    let env = Env::new(Stack::L1File);
    let writer = env.cache("").await;
    for i in 0..10 {
        writer.set(&format!("k{i}"), &i).await.unwrap();
    }
    // A second cache holds the keys in L4 only, so its scan reads L1 (misses) and L4 (hits).
    let cache = env.cache("").await;
    let before = cache.stats();
    assert_eq!(cache.usage().await.unwrap().total_keys, 10);
    assert_eq!(cache.keys("k*").await.unwrap().len(), 10);
    let after = cache.stats();
    for (b, a) in before.layers.iter().zip(&after.layers) {
        assert_eq!((b.hits, b.misses), (a.hits, a.misses), "{:?}", a.layer);
    }
    assert_eq!(
        (before.misses, before.l4_hits),
        (after.misses, after.l4_hits)
    );
}

/// What `vorte-cache tail` prints comes from here: every received invalidation and event names
/// its subject (every key of a `delete_many`) and the bus id of the cache that sent it, and a
/// cache's own activity carries its own id. (Received activity once named the first key only, and
/// no sender.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_activity_names_its_keys_and_the_sender() {
    let env = Env::new(Stack::L1Redis);
    let sender = env.cache("").await;
    let follower = env.cache("[cache.observe]\nrecord_keys = \"plain\"").await;
    // Events go through the application's cache: a `Vorte` on the same stack.
    let app = vorte_cache::Vorte::builder()
        .config(env.config("", ""))
        .build()
        .await
        .unwrap();
    let sender_id = sender.bus_origin().unwrap();
    let app_id = app.cache().bus_origin().unwrap();
    assert_eq!(sender_id.len(), 16);
    assert_ne!(sender_id, app_id);
    assert_ne!(follower.bus_origin(), Some(sender_id.clone()));

    sender.delete_many(&["x", "y", "z"]).await.unwrap();
    sender.invalidate_tag("team:7").await.unwrap();
    sender.flush().await.unwrap();
    vorte_cache::emit("user.renamed", &serde_json::json!({ "id": 7 }))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while follower.recent_activity().len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seen: Vec<_> = follower
        .recent_activity()
        .into_iter()
        .map(|a| {
            assert!(a.received && a.lag.is_some(), "{a:?}");
            (a.kind, a.subject, a.keys, a.key_count, a.origin)
        })
        .collect();
    // Events travel on their own stream: not ordered with the invalidations.
    seen.sort_by_key(|(kind, ..)| kind.name());
    let from = |id: &str| Some(id.to_owned());
    assert_eq!(
        seen,
        [
            (
                ActivityKind::Event,
                Some("user.renamed".into()),
                vec![],
                0,
                from(&app_id)
            ),
            (ActivityKind::Flush, None, vec![], 0, from(&sender_id)),
            (
                ActivityKind::Keys,
                Some("x".into()),
                vec!["x".into(), "y".into(), "z".into()],
                3,
                from(&sender_id)
            ),
            (
                ActivityKind::Tag,
                Some("team:7".into()),
                vec![],
                0,
                from(&sender_id)
            ),
        ]
    );
    // The sender's own activity carries its own id; keys are not recorded by default.
    let own: Vec<_> = sender
        .recent_activity()
        .into_iter()
        .filter(|a| !a.received)
        .collect();
    assert_eq!(own.len(), 3);
    assert!(own.iter().all(|a| a.origin == from(&sender_id)));
    assert_eq!((own[0].key_count, own[0].keys.len()), (3, 0));
}
