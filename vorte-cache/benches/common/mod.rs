//! What the benches share: the value they cache, and server child processes.

#![allow(dead_code, reason = "each bench uses a part of this module")]

use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

/// The value every bench caches: a small struct with two strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) email: String,
}

pub(crate) fn user(id: i64) -> User {
    User {
        id,
        name: "Alice Liddell".into(),
        email: "alice@example.com".into(),
    }
}

/// P2 against the `cached` crate: a `u64` argument, the key `user:{id}`, a struct cloned on hit.
#[vorte_cache::cached(ttl = 300, key = "user:{id}")]
pub(crate) async fn cached_user_u64(id: u64) -> User {
    User {
        id: id as i64,
        ..user(42)
    }
}

/// The same function under the `cached` crate's `#[cached]` (its `TtlCache`, a `String` key).
#[cached::macros::cached(ttl = 300, key = "String", convert = r#"{ format!("user:{id}") }"#)]
pub(crate) async fn cached_crate_user(id: u64) -> User {
    User {
        id: id as i64,
        ..user(42)
    }
}

/// A free loopback port, never Redis's default 6379.
pub(crate) fn free_port() -> u16 {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    assert_ne!(port, 6379, "never the default Redis port");
    port
}

/// A server run as a child process; killed and reaped on drop.
pub(crate) struct ChildServer {
    child: Child,
}

impl ChildServer {
    /// Spawns `command`; `install` says how to get the binary when it is missing.
    pub(crate) fn spawn(command: &mut Command, install: &str) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the server ({install}): {e}"));
        ChildServer { child }
    }

    /// Polls `ready` until it holds, for at most `within`; fails if the server exits first.
    pub(crate) fn wait_until(
        &mut self,
        what: &str,
        within: Duration,
        mut ready: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !ready() {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                panic!("{what}: the server exited early with {status}");
            }
            assert!(Instant::now() < deadline, "{what}: not ready in {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The time of `n` sequential calls of `call` inside one future on `rt`, for criterion's
/// `iter_custom`.
pub(crate) fn time_calls<F, Fut>(rt: &Runtime, n: u64, mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..n {
            black_box(call().await);
        }
        start.elapsed()
    })
}

/// p50 and p99 of single calls, in µs.
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

/// Times single calls of `raw` and `ours` in 5 interleaved rounds of `calls` each, so that both
/// see the same drift of the machine; their percentiles, `raw`'s first.
pub(crate) fn per_call<R, RF, O, OF>(
    rt: &Runtime,
    calls: usize,
    mut raw: R,
    mut ours: O,
) -> (Percentiles, Percentiles)
where
    R: FnMut() -> RF,
    RF: Future,
    O: FnMut() -> OF,
    OF: Future,
{
    let (mut raw_ns, mut ours_ns) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..5 {
            for _ in 0..calls {
                let t = Instant::now();
                black_box(raw().await);
                raw_ns.push(t.elapsed().as_nanos());
            }
            for _ in 0..calls {
                let t = Instant::now();
                black_box(ours().await);
                ours_ns.push(t.elapsed().as_nanos());
            }
        }
    });
    (percentiles(&mut raw_ns), percentiles(&mut ours_ns))
}

/// `p50 … µs p99 … µs; vorte p50 … µs p99 … µs; ratio p50 …x p99 …x`, for the raw peer's label to
/// precede.
pub(crate) fn compared(raw: &Percentiles, ours: &Percentiles) -> String {
    format!(
        "p50 {:.1} µs p99 {:.1} µs; vorte p50 {:.1} µs p99 {:.1} µs; ratio p50 {:.2}x p99 {:.2}x",
        raw.p50,
        raw.p99,
        ours.p50,
        ours.p99,
        ours.p50 / raw.p50,
        ours.p99 / raw.p99
    )
}

fn percentiles(ns: &mut [u128]) -> Percentiles {
    ns.sort_unstable();
    let at = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)] as f64 / 1e3;
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// The keys of the first `limit` requests of an ARC trace (`OLTP.lis.zst` by default), one key per
/// page: `page:<block>`. The traces live in the project's `shared/traces/` beside the repository;
/// `VORTE_TRACE` names another file. `None` when the file is not there.
pub(crate) fn trace_keys(limit: usize) -> Option<Vec<String>> {
    let path = std::env::var_os("VORTE_TRACE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/traces/OLTP.lis.zst")
        });
    let compressed = std::fs::read(&path).ok()?;
    let text = zstd::decode_all(compressed.as_slice()).expect("a zstd trace");
    let text = String::from_utf8(text).expect("a text trace");
    let mut keys = Vec::with_capacity(limit);
    // `starting_block number_of_blocks ignored request_number`: one request per block.
    'lines: for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) else {
            continue;
        };
        for block in start..start + count {
            if keys.len() == limit {
                break 'lines;
            }
            keys.push(format!("page:{block}"));
        }
    }
    Some(keys)
}

/// `limit` keys drawn from a Zipf(1.0) distribution over `pages` pages, from a fixed seed: the
/// stand-in when no trace file is there.
pub(crate) fn zipf_keys(limit: usize, pages: u64) -> Vec<String> {
    let mut cdf = Vec::with_capacity(pages as usize);
    let mut sum = 0.0;
    for rank in 1..=pages {
        sum += 1.0 / rank as f64;
        cdf.push(sum);
    }
    // A 64-bit LCG: repeatable, and the same keys in every run and variant.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..limit)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 * sum;
            let rank = cdf.partition_point(|&c| c < u);
            format!("page:{rank}")
        })
        .collect()
}

/// The trace's keys, or a Zipf stand-in (said on stderr) when the trace is missing.
pub(crate) fn replay_keys(limit: usize) -> Vec<String> {
    match trace_keys(limit) {
        Some(keys) => keys,
        None => {
            eprintln!("no trace file; replaying a synthetic Zipf(1.0) stream over 200,000 pages");
            zipf_keys(limit, 200_000)
        }
    }
}
