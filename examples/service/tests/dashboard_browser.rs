//! The example service's live dashboard (`/ops/cache/dashboard/`) in a real headless Chromium,
//! driven through chromedriver (WebDriver): the service runs as an OS process (L1 + L4 `file`,
//! its own data directory and SQLite file), real HTTP load goes through its routes (cached
//! reads, misses, loads, cache-aside, writes that invalidate), the page's figures move under it,
//! and once the load stops the page shows exactly what the service's `GET /ops/cache/stats`
//! answers. A screenshot goes to `target/test-artifacts/service-dashboard.png`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them the test fails, saying so.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::Service;
use vorte_cache_tests::browser::{
    Chromedriver, Figures, full_page_screenshot, now_ms, num, num_or_zero, time_ms,
};

/// The figures the page shows besides `snapshots` and `at_ms`, which `Figures` always reads (all
/// in one script, so they come from one snapshot).
const FIGURES: &str = r#"
  status: v('status'), hit_rate: v('hit-rate'),
  total_hits: v('total-hits'), misses: v('misses'), loads: v('loads'),
  invalidations_sent: v('invalidations-sent'),
  l1_hits: v('l1-hits'), l4_hits: v('l4-hits'), l1_misses: v('l1-misses'), l4_misses: v('l4-misses'),
  l1_keys: v('l1-keys'), total_keys: v('total-keys'),
  scanned_at: a('total-keys', 'data-scanned-at'),
  text_total_hits: t('total-hits'),
  text_hit_rate: t('hit-rate'),
"#;

/// Requests against the service until `stop`, each answered before the next starts: user reads
/// over 60 seeded ids (a load on the first read of each, L1 hits after) and over ids that do not
/// exist (never cached: a miss and a load each time), product reads (cache-aside: a miss and a
/// set, hits after), and a user and a product update per round (the event's handler deletes the
/// user's key and tag; the product's category tag is invalidated). Returns the requests made.
async fn load(service: Arc<Service>, stop: Arc<AtomicBool>) -> u64 {
    let mut requests = 0u64;
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        for id in 1..=60 {
            let user = service.get(&format!("/users/{id}")).await;
            assert_eq!(user["id"], id, "{user}");
        }
        for i in 0..3 {
            let path = format!("/users/{}", 1_000_000 + round * 3 + i);
            assert_eq!(service.status("GET", &path, None).await, 404, "{path}");
        }
        for id in 1..=20 {
            let product = service.get(&format!("/products/{id}")).await;
            assert_eq!(product["id"], id, "{product}");
        }
        let user = 1 + round % 60;
        let renamed = service
            .put(
                &format!("/users/{user}"),
                &json!({ "name": format!("Load {round}") }),
            )
            .await;
        assert_eq!(renamed["name"], format!("Load {round}"));
        let product = 1 + round % 20;
        let repriced = service
            .put(
                &format!("/products/{product}"),
                &json!({ "price_cents": 100 + round }),
            )
            .await;
        assert_eq!(repriced["price_cents"], 100 + round);
        requests += 60 + 3 + 20 + 2;
        round += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    requests
}

/// A count of the stats JSON.
fn count(stats: &Value, pointer: &str) -> u64 {
    stats
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a count: {stats}"))
}

/// The layer `name` (`"l1"`, `"l4"`) in the stats JSON.
fn layer<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == name))
        .unwrap_or_else(|| panic!("no layer {name}: {stats}"))
}

/// Every figure the page shows equals the same figure of `GET /ops/cache/stats`.
fn assert_page_shows(page: &Value, stats: &Value) {
    let hits = ["/l1_hits", "/l2_hits", "/l3_hits", "/l4_hits"]
        .iter()
        .map(|p| count(stats, p))
        .sum::<u64>();
    let l1 = layer(stats, "l1");
    let l4 = layer(stats, "l4");
    let pairs = [
        ("total_hits", hits),
        ("misses", count(stats, "/misses")),
        ("loads", count(stats, "/loads/runs")),
        ("invalidations_sent", count(stats, "/invalidations")),
        ("l1_hits", count(stats, "/l1_hits")),
        ("l1_hits", count(l1, "/hits")),
        ("l1_misses", count(l1, "/misses")),
        ("l4_hits", count(stats, "/l4_hits")),
        ("l4_misses", count(l4, "/misses")),
    ];
    for (name, expected) in pairs {
        assert_eq!(
            num(page, name),
            expected,
            "{name} on the page vs GET /ops/cache/stats: page {page}, stats {stats}"
        );
    }
    let shown: f64 = page["hit_rate"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the hit rate is not a number on the page: {page}"));
    let served = stats["hit_rate"].as_f64().expect("hit_rate");
    assert_eq!(
        shown, served,
        "the hit rate on the page vs GET /ops/cache/stats: page {page}, stats {stats}"
    );
    let expected_rate = hits as f64 / (hits + count(stats, "/misses")) as f64;
    assert_eq!(
        served, expected_rate,
        "hit_rate is hits over reads: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_services_dashboard_shows_its_cache_in_a_real_browser() {
    // Dropped in reverse order: the browser session is closed explicitly, then chromedriver and
    // the service are killed by their guards.
    let driver = Chromedriver::start().await;
    let service = Arc::new(Service::start().await);

    let client = driver.session().await;
    let page = Figures::new(&client, FIGURES);
    client
        .goto(&service.url("/ops/cache/dashboard/"))
        .await
        .expect("open the page");
    // The service redirects the address with the slash to the page's mount point.
    let landed = client.current_url().await.expect("current url");
    assert_eq!(landed.path(), "/ops/cache/dashboard", "{landed}");
    assert_eq!(
        client.title().await.expect("title"),
        "vorte-cache dashboard"
    );
    let first = page.first_snapshot().await;
    assert_eq!(first["status"], "ok", "{first}");

    // Load while the page is open: its figures move.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(service.clone(), stop.clone()));
    let moving = page
        .wait_for("the figures to move", |f| {
            let n = |k: &str| num_or_zero(f, k);
            n("l1_hits") > 0 && n("misses") > 0 && n("loads") > 0 && n("invalidations_sent") > 0
        })
        .await;
    let later = page.snapshot_after("a later snapshot", &moving).await;
    assert!(
        num(&later, "total_hits") > num(&moving, "total_hits"),
        "the hits grew from one snapshot to the next under load: {moving} then {later}"
    );

    // Stop the load (every request has been answered when the loader returns), let the page
    // refresh past the stop, and compare with the service's own stats route.
    stop.store(true, Ordering::SeqCst);
    let requests = loader.await.expect("the load ran");
    let stopped_at = now_ms();
    let settled = page
        .snapshot_taken_after("a snapshot a second past the stop", stopped_at + 1000)
        .await;
    let stats = service.stats().await;
    println!("{requests} requests; page: {settled}");
    println!("GET /ops/cache/stats: {stats}");
    assert_page_shows(&settled, &stats);
    assert!(
        count(&stats, "/l1_hits") > 0
            && count(&stats, "/misses") > 0
            && count(&stats, "/loads/runs") > 0
            && count(&stats, "/invalidations") > 0,
        "the load made hits, misses, loads and invalidations: {stats}"
    );
    for text in ["text_total_hits", "text_hit_rate"] {
        let shown = settled[text].as_str().unwrap();
        assert!(
            !shown.is_empty() && shown != "–",
            "{text} is shown as text: {shown:?}"
        );
    }

    // A later snapshot still shows the same figures: nothing touched the cache after the stop.
    let again = page.snapshot_after("the next snapshot", &settled).await;
    assert_page_shows(&again, &service.stats().await);

    // The usage scan (every 5 s) fills in the keys; its reads count as neither hits nor misses,
    // so the figures still equal the stats route's.
    let scanned = page
        .wait_for("a usage scan after the load stopped", |f| {
            time_ms(f, "scanned_at").is_some_and(|at| at > stopped_at)
        })
        .await;
    let stats = service.stats().await;
    assert_page_shows(&scanned, &stats);
    assert!(
        num(&scanned, "l1_keys") > 0 && num(&scanned, "total_keys") > 0,
        "the scan found the entries the load left: {scanned}"
    );

    // The whole page, for a reviewer.
    let path = full_page_screenshot(&client, "service-dashboard.png").await;
    let png_len = std::fs::metadata(&path).expect("the screenshot").len();
    assert!(png_len > 10_000, "{} is a real page", path.display());

    client.close().await.expect("close the browser");
}
