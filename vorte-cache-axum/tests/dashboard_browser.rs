//! The dashboard in a real headless Chromium, driven through chromedriver (WebDriver): the page
//! mounted under a path loads, follows load put through a real cache (L1, an in-memory L2 and an
//! L4 directory), and once the load stops shows exactly the figures of `Cache::stats()`. The
//! layout stacks to one column on a narrow screen, and the chart has an accessible name.
//! Screenshots go to `target/test-artifacts/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them the test fails, saying so.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use vorte_cache::testing::TestStore;
use vorte_cache::{Cache, CacheStats, Config, Layer};
use vorte_cache_tests::browser::{
    Chromedriver, Figures, full_page_screenshot, now_ms, num, num_or_zero, screenshot, time_ms,
};

/// The figures the page shows besides `snapshots` and `at_ms`, which `Figures` always reads (all
/// in one script, so they come from one snapshot).
const FIGURES: &str = r#"
  status: v('status'),
  total_hits: v('total-hits'), misses: v('misses'), loads: v('loads'),
  invalidations_sent: v('invalidations-sent'),
  l1_hits: v('l1-hits'), l2_hits: v('l2-hits'), l4_hits: v('l4-hits'),
  l1_misses: v('l1-misses'), l2_misses: v('l2-misses'), l4_misses: v('l4-misses'),
  l1_keys: v('l1-keys'), total_keys: v('total-keys'),
  scanned_at: a('total-keys', 'data-scanned-at'),
  text_total_hits: t('total-hits'),
"#;

/// Reads (mostly L1 hits; L1 holds 64 entries, so others come from L2, and keys written to L4
/// only come from there), misses, loads and invalidations, until `stop`.
async fn load(cache: Cache, stop: Arc<AtomicBool>) {
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        for i in 0..150u64 {
            let v: u64 = cache
                .get_or_set(&format!("item:{i}"), || async move {
                    Ok::<_, std::io::Error>(i)
                })
                .tags([format!("group:{}", i % 5)])
                .await
                .expect("get_or_set");
            assert_eq!(v, i);
        }
        for i in 0..5 {
            let absent: Option<u64> = cache
                .get(&format!("absent:{round}:{i}"))
                .await
                .expect("get");
            assert_eq!(absent, None);
        }
        for i in 0..3u64 {
            let key = format!("cold:{round}:{i}");
            cache
                .set(&key, &i)
                .layer(Layer::L4)
                .await
                .expect("set in L4");
            assert_eq!(cache.get::<u64>(&key).await.expect("get"), Some(i));
        }
        cache
            .delete(&format!("item:{}", round % 150))
            .await
            .expect("delete");
        if round.is_multiple_of(10) {
            cache
                .invalidate_tag(&format!("group:{}", (round / 10) % 5))
                .await
                .expect("invalidate_tag");
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_page_shows(page: &Value, stats: &CacheStats) {
    let layer = |l: Layer| stats.layer(l).expect("layer enabled");
    let hits = stats.l1_hits + stats.l2_hits + stats.l3_hits + stats.l4_hits;
    let pairs = [
        ("total_hits", hits),
        ("misses", stats.misses),
        ("loads", stats.loads.runs),
        ("invalidations_sent", stats.invalidations),
        ("l1_hits", stats.l1_hits),
        ("l2_hits", stats.l2_hits),
        ("l4_hits", stats.l4_hits),
        ("l1_misses", layer(Layer::L1).misses),
        ("l2_misses", layer(Layer::L2).misses),
        ("l4_misses", layer(Layer::L4).misses),
    ];
    for (name, expected) in pairs {
        assert_eq!(
            num(page, name),
            expected,
            "{name} on the page vs Cache::stats(): {page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_follows_the_cache_in_a_real_browser() {
    let driver = Chromedriver::start().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[cache]\nkey_prefix = \"dash:\"\n\
         [cache.layers.l1]\nmax_size = 64\n\
         [cache.layers.l4]\nbackend = \"file\"\npath = {:?}\n\
         [cache.observe]\nrecord_keys = \"plain\"\n",
        dir.path().display().to_string()
    );
    let config = Config::from_toml_str(&toml).expect("config").cache;
    let cache = Cache::builder(&config)
        .store(Layer::L2, Arc::new(TestStore::new()))
        .build()
        .await
        .expect("cache");

    let app = Router::new().nest(
        "/ops/cache",
        vorte_cache_axum::dashboard::routes(cache.clone()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let client = driver.session().await;
    let page = Figures::new(&client, FIGURES);
    client
        .goto(&format!("http://{addr}/ops/cache"))
        .await
        .expect("open the page");
    assert_eq!(
        client.title().await.expect("title"),
        "vorte-cache dashboard"
    );
    let first = page.first_snapshot().await;
    assert_eq!(first["status"], "ok", "{first}");

    // Load while the page is open: its figures move.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(cache.clone(), stop.clone()));
    let moving = page
        .wait_for("the figures to move", |f| {
            let n = |k: &str| num_or_zero(f, k);
            n("total_hits") > 0 && n("l2_hits") > 0 && n("l4_hits") > 0 && n("loads") > 0
        })
        .await;
    let later = page.snapshot_after("a later snapshot", &moving).await;
    assert!(
        num(&later, "total_hits") > num(&moving, "total_hits"),
        "the hits grew from one snapshot to the next under load: {moving} then {later}"
    );

    // Stop the load, let two refreshes pass, and compare exactly.
    stop.store(true, Ordering::SeqCst);
    loader.await.expect("the load ran");
    let stopped_at = now_ms();
    let settled = page
        .snapshot_taken_after("two snapshots after the load stopped", stopped_at + 1000)
        .await;
    let stats = cache.stats();
    assert_page_shows(&settled, &stats);
    assert!(stats.l2_hits > 0 && stats.l4_hits > 0, "{stats:?}");
    let shown = settled["text_total_hits"].as_str().unwrap();
    assert!(
        !shown.is_empty() && shown != "–",
        "the total is shown as text: {shown:?}"
    );

    // The usage scan (every 5 s) fills in the keys.
    let with_keys = page
        .wait_for("a usage scan after the load stopped", |f| {
            time_ms(f, "scanned_at").is_some_and(|at| at > stopped_at)
        })
        .await;
    // The scan reads every key it finds, which counts in the layers' misses: the page has to show
    // them too.
    assert_page_shows(&with_keys, &cache.stats());
    assert_eq!(
        num(&with_keys, "l1_keys"),
        cache
            .usage()
            .await
            .expect("usage")
            .layer(Layer::L1)
            .unwrap()
            .keys,
        "L1's keys as the last scan saw them (nothing changed since)"
    );

    // The recent activity lists what was invalidated, newest first, with key names.
    let activity: Value = client
        .execute(
            r#"return Array.from(document.querySelectorAll('[data-testid="activity"] tbody tr'))
                 .map(r => Array.from(r.cells).map(c => c.textContent));"#,
            vec![],
        )
        .await
        .expect("activity");
    let rows = activity.as_array().expect("rows");
    assert!(!rows.is_empty() && rows.len() <= 20, "{activity}");
    assert!(
        rows.iter()
            .any(|r| r[1] == "tag" && r[2].as_str().unwrap().starts_with("group:")),
        "a tag invalidation with its name: {activity}"
    );
    assert!(
        rows.iter().any(|r| r[1] == "keys" && r[3] == "sent"),
        "a key invalidation sent: {activity}"
    );

    // The chart: an SVG image with an accessible name, one line per layer and the overall one.
    let chart: Value = client
        .execute(
            r#"const svg = document.querySelector('[data-testid="hit-rate-chart"]');
               const name = (svg.getAttribute('aria-labelledby') || '').split(' ')
                 .map(id => document.getElementById(id)).filter(Boolean)
                 .map(e => e.textContent).join(' ');
               return { role: svg.getAttribute('role'), name, lines: svg.querySelectorAll('path.series').length };"#,
            vec![],
        )
        .await
        .expect("chart");
    assert_eq!(chart["role"], "img", "{chart}");
    assert!(
        chart["name"]
            .as_str()
            .unwrap()
            .contains("Hit rate per layer"),
        "{chart}"
    );
    assert_eq!(chart["lines"], 4, "L1, L2, L4 and overall: {chart}");

    // Wide: the three layer cards side by side.
    const CARD_COLUMNS: &str = r#"
        const cards = Array.from(document.querySelectorAll('#layers .card'));
        const lefts = new Set(cards.map(c => Math.round(c.getBoundingClientRect().left)));
        return { cards: cards.length, columns: lefts.size, width: window.innerWidth,
                 overflow: document.documentElement.scrollWidth > window.innerWidth,
                 widest: Array.from(document.querySelectorAll('body *'))
                   .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                   .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + (e.dataset.testid || '')) };"#;
    let wide = client.execute(CARD_COLUMNS, vec![]).await.expect("layout");
    assert_eq!(wide["cards"], 3, "{wide}");
    assert_eq!(
        wide["columns"], 3,
        "three cards in a row at 1280 px: {wide}"
    );
    assert_eq!(wide["overflow"], false, "{wide}");
    let wide_png = screenshot(&client, "dashboard-wide.png").await;

    // The whole page, for a reviewer.
    let full_png = full_page_screenshot(&client, "dashboard-wide-full.png").await;

    // Narrow: one column, nothing wider than the screen.
    client.set_window_size(400, 900).await.expect("resize");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let narrow = client.execute(CARD_COLUMNS, vec![]).await.expect("layout");
    assert!(
        narrow["width"].as_u64().is_some_and(|w| w <= 600),
        "a narrow window: {narrow}"
    );
    assert_eq!(narrow["columns"], 1, "the cards stack: {narrow}");
    assert_eq!(
        narrow["overflow"], false,
        "no horizontal scrolling: {narrow}"
    );
    let narrow_png = screenshot(&client, "dashboard-narrow.png").await;

    client.close().await.expect("close the browser");
    for png in [wide_png, full_png, narrow_png] {
        assert!(
            std::fs::metadata(&png).expect("artifact").len() > 10_000,
            "{}",
            png.display()
        );
    }
}
