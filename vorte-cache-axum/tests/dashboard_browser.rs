//! The dashboard in a real headless Chromium, driven through chromedriver (WebDriver): the page
//! mounted under a path loads, follows load put through a real cache (L1, an in-memory L2 and an
//! L4 directory), and once the load stops shows exactly the figures of `Cache::stats()`. The
//! layout stacks to one column on a narrow screen, and the chart has an accessible name.
//! Screenshots go to `target/test-artifacts/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them the test fails, saying so.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use vorte_cache::testing::TestStore;
use vorte_cache::{Cache, CacheStats, Config, Layer};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The binary at `default`, or found on the `PATH` under its file name; a clear failure if none.
fn tool(default: &str) -> PathBuf {
    let name = Path::new(default).file_name().unwrap();
    if Path::new(default).is_file() {
        return PathBuf::from(default);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: this test drives a real headless Chromium through \
                 chromedriver. Install them with `apt-get install -y chromium chromium-driver` \
                 (.ci/run does).",
                name.to_string_lossy()
            )
        })
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    _child: Child,
    url: String,
}

async fn start_chromedriver() -> Driver {
    let path = tool(CHROMEDRIVER);
    let port = free_port().await;
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", path.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on port {port} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver) -> Client {
    let chromium = tool(CHROMIUM);
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.to_string_lossy(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                     "--disable-dev-shm-usage"],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// Where screenshots go: `$CARGO_TARGET_DIR/test-artifacts`, or the workspace's `target/`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create the artifacts directory");
    dir
}

async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts_dir().join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
    path
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The figures the page shows, read in one script so they come from one snapshot.
const READ_FIGURES: &str = r#"
const v = (id) => {
  const el = document.querySelector('[data-testid="' + id + '"]');
  return el ? el.getAttribute('data-value') : null;
};
return {
  snapshots: Number(document.body.getAttribute('data-snapshots') || 0),
  at_ms: v('updated-at'), status: v('status'),
  total_hits: v('total-hits'), misses: v('misses'), loads: v('loads'),
  invalidations_sent: v('invalidations-sent'),
  l1_hits: v('l1-hits'), l2_hits: v('l2-hits'), l4_hits: v('l4-hits'),
  l1_misses: v('l1-misses'), l2_misses: v('l2-misses'), l4_misses: v('l4-misses'),
  l1_keys: v('l1-keys'), total_keys: v('total-keys'),
  scanned_at: document.querySelector('[data-testid="total-keys"]').getAttribute('data-scanned-at'),
  text_total_hits: document.querySelector('[data-testid="total-hits"]').textContent,
};
"#;

async fn figures(client: &Client) -> Value {
    client
        .execute(READ_FIGURES, vec![])
        .await
        .expect("read the page")
}

/// A figure as a number (the page keeps the exact value in `data-value`).
fn num(figures: &Value, name: &str) -> u64 {
    figures[name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a number on the page: {figures}"))
}

async fn wait_for<F: Fn(&Value) -> bool>(client: &Client, what: &str, ready: F) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let f = figures(client).await;
        if ready(&f) {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {f}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    let driver = start_chromedriver().await;

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

    let client = browser(&driver).await;
    client
        .goto(&format!("http://{addr}/ops/cache"))
        .await
        .expect("open the page");
    assert_eq!(
        client.title().await.expect("title"),
        "vorte-cache dashboard"
    );
    let first = wait_for(&client, "the first snapshot", |f| {
        f["snapshots"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(first["status"], "ok", "{first}");

    // Load while the page is open: its figures move.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(cache.clone(), stop.clone()));
    let moving = wait_for(&client, "the figures to move", |f| {
        let n = |k: &str| {
            f[k].as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        n("total_hits") > 0 && n("l2_hits") > 0 && n("l4_hits") > 0 && n("loads") > 0
    })
    .await;
    let later = wait_for(&client, "a later snapshot", |f| {
        f["at_ms"].as_str() != moving["at_ms"].as_str()
    })
    .await;
    assert!(
        num(&later, "total_hits") > num(&moving, "total_hits"),
        "the hits grew from one snapshot to the next under load: {moving} then {later}"
    );

    // Stop the load, let two refreshes pass, and compare exactly.
    stop.store(true, Ordering::SeqCst);
    loader.await.expect("the load ran");
    let stopped_at = now_ms();
    let settled = wait_for(&client, "two snapshots after the load stopped", |f| {
        f["at_ms"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|at| at > stopped_at + 1000)
    })
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
    let with_keys = wait_for(&client, "a usage scan after the load stopped", |f| {
        f["scanned_at"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|at| at > stopped_at)
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
    let height: Value = client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .expect("height");
    client
        .set_window_size(1280, height.as_u64().unwrap_or(900) as u32 + 140)
        .await
        .expect("resize");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let full_png = screenshot(&client, "dashboard-wide-full.png").await;

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
