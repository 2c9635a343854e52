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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use support::Service;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use vorte_cache_tests::servers::free_port;

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

/// chromedriver on a free loopback port, killed when dropped (`kill_on_drop`).
struct Driver {
    _child: Child,
    url: String,
}

async fn start_chromedriver() -> Driver {
    let path = tool(CHROMEDRIVER);
    let port = free_port();
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
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create the artifacts directory");
    dir
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
  at_ms: v('updated-at'), status: v('status'), hit_rate: v('hit-rate'),
  total_hits: v('total-hits'), misses: v('misses'), loads: v('loads'),
  invalidations_sent: v('invalidations-sent'),
  l1_hits: v('l1-hits'), l4_hits: v('l4-hits'), l1_misses: v('l1-misses'), l4_misses: v('l4-misses'),
  l1_keys: v('l1-keys'), total_keys: v('total-keys'),
  scanned_at: document.querySelector('[data-testid="total-keys"]').getAttribute('data-scanned-at'),
  text_total_hits: document.querySelector('[data-testid="total-hits"]').textContent,
  text_hit_rate: document.querySelector('[data-testid="hit-rate"]').textContent,
};
"#;

async fn figures(client: &Client) -> Value {
    client
        .execute(READ_FIGURES, vec![])
        .await
        .expect("read the page")
}

/// A count on the page (the page keeps the exact value in `data-value`).
fn num(figures: &Value, name: &str) -> u64 {
    figures[name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a count on the page: {figures}"))
}

/// A count on the page, 0 while it has none yet.
fn num_or_zero(figures: &Value, name: &str) -> u64 {
    figures[name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
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
    let driver = start_chromedriver().await;
    let service = Arc::new(Service::start().await);

    let client = browser(&driver).await;
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
    let first = wait_for(&client, "the first snapshot", |f| {
        f["snapshots"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(first["status"], "ok", "{first}");

    // Load while the page is open: its figures move.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(service.clone(), stop.clone()));
    let moving = wait_for(&client, "the figures to move", |f| {
        let n = |k: &str| num_or_zero(f, k);
        n("l1_hits") > 0 && n("misses") > 0 && n("loads") > 0 && n("invalidations_sent") > 0
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

    // Stop the load (every request has been answered when the loader returns), let the page
    // refresh past the stop, and compare with the service's own stats route.
    stop.store(true, Ordering::SeqCst);
    let requests = loader.await.expect("the load ran");
    let stopped_at = now_ms();
    let settled = wait_for(&client, "a snapshot a second past the stop", |f| {
        f["at_ms"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|at| at > stopped_at + 1000)
    })
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
    let again = wait_for(&client, "the next snapshot", |f| {
        f["at_ms"].as_str() != settled["at_ms"].as_str()
    })
    .await;
    assert_page_shows(&again, &service.stats().await);

    // The usage scan (every 5 s) fills in the keys; its reads count as neither hits nor misses,
    // so the figures still equal the stats route's.
    let scanned = wait_for(&client, "a usage scan after the load stopped", |f| {
        f["scanned_at"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|at| at > stopped_at)
    })
    .await;
    let stats = service.stats().await;
    assert_page_shows(&scanned, &stats);
    assert!(
        num(&scanned, "l1_keys") > 0 && num(&scanned, "total_keys") > 0,
        "the scan found the entries the load left: {scanned}"
    );

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
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts_dir().join("service-dashboard.png");
    std::fs::write(&path, &png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
    assert!(png.len() > 10_000, "{} is a real page", path.display());

    client.close().await.expect("close the browser");
}
