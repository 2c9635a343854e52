//! A real headless Chromium for the dashboards' browser tests, driven through chromedriver
//! (WebDriver): chromedriver on a free loopback port ([`Chromedriver`]), a session with headless
//! Chromium ([`Chromedriver::session`]), a page's figures read in one script from its
//! `data-testid` elements ([`Figures`]), and screenshots into `target/test-artifacts/`
//! ([`screenshot`], [`full_page_screenshot`]).
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them a test fails, saying so: never a skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use fantoccini::Client;
use fantoccini::ClientBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::servers::free_port;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long [`Figures::wait_for`] waits for the page before it fails the test.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary at `default`, or found on the `PATH` under its file name; a clear failure if none.
fn tool(default: &str) -> PathBuf {
    let name = Path::new(default)
        .file_name()
        .expect("a tool's default path names a file");
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

/// chromedriver listening on a free loopback port; killed when dropped (`kill_on_drop`).
#[derive(Debug)]
pub struct Chromedriver {
    _child: Child,
    url: String,
}

impl Chromedriver {
    /// Starts chromedriver and waits (at most 20 s) until it accepts connections.
    pub async fn start() -> Chromedriver {
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
        Chromedriver {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A WebDriver session with headless Chromium in a 1280×900 window. Close it with
    /// [`Client::close`] before the driver drops.
    pub async fn session(&self) -> Client {
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
            .connect(&self.url)
            .await
            .expect("a WebDriver session with headless Chromium")
    }
}

/// Where screenshots go: `$CARGO_TARGET_DIR/test-artifacts`, or the workspace's
/// `target/test-artifacts`; created if missing.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create the artifacts directory");
    dir
}

/// A screenshot of the window, checked to be a PNG, written to [`artifacts_dir`]`/name`; its path.
pub async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts_dir().join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
    path
}

/// The whole page, for a reviewer: the window grows to the page's height (1280 px wide), then
/// [`screenshot`].
pub async fn full_page_screenshot(client: &Client, name: &str) -> PathBuf {
    let height: Value = client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .expect("height");
    client
        .set_window_size(1280, height.as_u64().unwrap_or(900) as u32 + 140)
        .await
        .expect("resize");
    // Let the page lay itself out at the new size before the picture.
    tokio::time::sleep(Duration::from_millis(300)).await;
    screenshot(client, name).await
}

/// Milliseconds since the Unix epoch, to compare with the times a page shows.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_millis() as u64
}

/// The start of every [`Figures`] script: `v(id)` is the `data-value` of the element whose
/// `data-testid` is `id` (null while there is none), `t(id)` its text, `a(id, name)` another of
/// its attributes; `t` and `a` fail the script when the element is missing.
const HELPERS: &str = r#"
const el = (id) => document.querySelector('[data-testid="' + id + '"]');
const v = (id) => { const e = el(id); return e ? e.getAttribute('data-value') : null; };
const found = (id) => { const e = el(id); if (!e) { throw new Error('no [data-testid="' + id + '"]'); } return e; };
const t = (id) => found(id).textContent;
const a = (id, name) => found(id).getAttribute(name);
"#;

/// A page's figures, read in one script so that they all come from one snapshot of the page.
///
/// The result is a JSON object with `snapshots` (the body's `data-snapshots`, 0 while absent),
/// `at_ms` (the `data-value` of `data-testid="updated-at"`: when the page's snapshot was taken,
/// ms since the epoch) and the fields the test names.
#[derive(Debug)]
pub struct Figures<'a> {
    client: &'a Client,
    script: String,
}

impl<'a> Figures<'a> {
    /// Reads `fields`, the body of a JavaScript object literal (`name: expr, ...`) whose
    /// expressions may use `v(id)` (the `data-value` of the element whose `data-testid` is `id`,
    /// null while there is none), `t(id)` (its text) and `a(id, attribute)`.
    pub fn new(client: &'a Client, fields: &str) -> Figures<'a> {
        let script = format!(
            "{HELPERS}return {{\n  snapshots: Number(document.body.getAttribute('data-snapshots') || 0),\n  at_ms: v('updated-at'),\n{fields}\n}};"
        );
        Figures { client, script }
    }

    /// The figures now.
    pub async fn read(&self) -> Value {
        self.client
            .execute(&self.script, vec![])
            .await
            .expect("read the page")
    }

    /// The first figures for which `ready` holds, read every 100 ms; fails the test, naming
    /// `what` and the last figures, after 30 s.
    pub async fn wait_for<F: Fn(&Value) -> bool>(&self, what: &str, ready: F) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let f = self.read().await;
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

    /// The figures once the page has shown its first snapshot.
    pub async fn first_snapshot(&self) -> Value {
        self.wait_for("the first snapshot", |f| f["snapshots"].as_u64() >= Some(1))
            .await
    }

    /// The figures of a snapshot other than `earlier`'s (`what` names it in a failure).
    pub async fn snapshot_after(&self, what: &str, earlier: &Value) -> Value {
        self.wait_for(what, |f| f["at_ms"].as_str() != earlier["at_ms"].as_str())
            .await
    }

    /// The figures of a snapshot taken after `ms` (ms since the epoch; `what` names it in a
    /// failure).
    pub async fn snapshot_taken_after(&self, what: &str, ms: u64) -> Value {
        self.wait_for(what, |f| time_ms(f, "at_ms").is_some_and(|at| at > ms))
            .await
    }
}

/// The count `name` of figures read by [`Figures`] (the page keeps the exact value in
/// `data-value`); fails the test if it is not one.
pub fn num(figures: &Value, name: &str) -> u64 {
    figures[name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a count on the page: {figures}"))
}

/// The count `name`, 0 while the page has none yet.
pub fn num_or_zero(figures: &Value, name: &str) -> u64 {
    figures[name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The time `name` (ms since the epoch, as a string) of figures, if the page has one.
pub fn time_ms(figures: &Value, name: &str) -> Option<u64> {
    figures[name].as_str().and_then(|s| s.parse::<u64>().ok())
}
