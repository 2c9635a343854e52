//! P3, P4 and P9: the L2 (Redis) layer, against raw clients on the same server in the same run.
//!
//! - `p3_l2_hit/*`: `cache.get::<User>` with L1 disabled, so every read is an L2 hit (fred `GET`,
//!   envelope decode, tag check, msgpack decode), against a raw fred `GET` plus
//!   `rmp_serde::from_slice` of the same msgpack bytes (target ≤ 1.10×). The loop runs inside one
//!   future on a current-thread runtime, which also runs fred's connection tasks. After the group,
//!   interleaved rounds of single timed calls give p50 and p99 per call (printed to stderr).
//! - `p4_l2_throughput_64_tasks/*`: 64 tokio tasks on a 2-worker runtime, each reading its own key
//!   in a loop; throughput in elements (reads) per second. Peers: raw fred (`Pool`s of 1, 2 and 4,
//!   tuned as vorte's: RESP3, reconnect policy, timeouts) and redis-rs `MultiplexedConnection`, all
//!   doing `GET` + msgpack decode (target ≥ 0.9× the best peer). vorte's reads coalesce into
//!   `MGET`s under this load (`store/read_batch.rs`); the peers send one `GET` per read.
//! - `p9_invalidate_tag/*`: `cache.invalidate_tag("bulk")` with 1,000 and with 1,000,000 entries
//!   written through `cache.set(..).tags(["bulk"])` (target: t(1M) / t(1k) ≤ 1.5). Peer: the
//!   set-of-keys approach (one Redis set per tag; invalidation = `SMEMBERS` + `UNLINK` in one Lua
//!   script, refilled before each call, untimed) at 1,000 and 100,000 keys. After the 1 M run the
//!   bench prints how many commands over 1 ms Redis logged (`SLOWLOG`) during vorte's calls.
//!
//! The bench starts its own `redis-server` on a free loopback port per group (never 6379) and
//! kills it at the end. Run: `cargo bench -p vorte-cache --bench l2 --features redis`.
//!
//! Results: `docs/performance.md`.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop"
)]

use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use fred::prelude::{ClientLike, Config as FredConfig, KeysInterface, Pool, ReconnectPolicy};
use fred::types::Builder;
use tokio::runtime::Runtime;
use vorte_cache::{Cache, Config};

mod common;

use common::{ChildServer, User, compared, free_port, per_call, time_calls, user};

// ----- the server ------------------------------------------------------------------------------

/// `redis-server` on a free loopback port, no persistence; killed and reaped on drop.
struct RedisServer {
    _child: ChildServer,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut child = ChildServer::spawn(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "apt-get install redis-server",
        );
        child.wait_until("redis-server PING", Duration::from_secs(10), || pings(port));
        RedisServer {
            _child: child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A blocking redis-rs connection, for setup and inspection outside the timed code.
    fn admin(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("admin connection")
    }
}

fn pings(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

// ----- clients ---------------------------------------------------------------------------------

/// A cache whose only shared layer is the server's L2; `l1` says whether L1 is on.
async fn l2_cache(server: &RedisServer, name: &str, l1: bool) -> Cache {
    l2_cache_with(server, name, l1, "").await
}

/// As [`l2_cache`], with more keys for `[cache.layers.l2]`.
async fn l2_cache_with(server: &RedisServer, name: &str, l1: bool, l2_extra: &str) -> Cache {
    let toml = format!(
        r#"
[cache]
default_ttl = 3600
key_prefix = "bench-l2-{pid}-{name}:"
[cache.layers.l1]
enabled = {l1}
[cache.layers.l2]
backend = "redis"
url = "{url}"
{l2_extra}
"#,
        pid = std::process::id(),
        url = server.url(),
    );
    let config = Config::from_toml_str(&toml).expect("config");
    Cache::from_config(&config.cache).await.expect("cache")
}

/// A raw fred pool of `size`, tuned as vorte's store is (RESP3, timeouts, a reconnect policy).
async fn fred_pool(server: &RedisServer, size: usize) -> Pool {
    let mut config = FredConfig::from_url(&server.url()).expect("fred config");
    config.version = fred::types::RespVersion::RESP3;
    let pool = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_millis(250))
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
        .build_pool(size)
        .expect("fred pool");
    pool.init().await.expect("fred connect");
    pool
}

async fn redis_rs(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("redis-rs client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis-rs connect")
}

async fn fred_get_decode(pool: &Pool, key: &str) -> User {
    let bytes: Option<Bytes> = pool.get(key).await.expect("fred get");
    rmp_serde::from_slice(&bytes.expect("raw key present")).expect("decode")
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn two_workers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `fut` as a spawned task (never timed from `block_on`, which pays a cross-thread wake).
fn in_task<T: Send + 'static>(rt: &Runtime, fut: impl Future<Output = T> + Send + 'static) -> T {
    rt.block_on(async { tokio::spawn(fut).await.expect("task") })
}

// ----- P3 --------------------------------------------------------------------------------------

fn p3(c: &mut Criterion) {
    let server = RedisServer::start();
    let raw = rmp_serde::to_vec_named(&user(1)).expect("encode");
    redis::cmd("SET")
        .arg("raw:user:1")
        .arg(raw)
        .query::<()>(&mut server.admin())
        .expect("raw set");
    let rt = current_thread();
    let (vorte, pool) = rt.block_on(async {
        let vorte = l2_cache(&server, "p3", false).await;
        vorte.set("user:1", &user(1)).await.expect("set");
        assert_eq!(
            vorte.get::<User>("user:1").await.expect("get"),
            Some(user(1))
        );
        let pool = fred_pool(&server, 2).await;
        assert_eq!(fred_get_decode(&pool, "raw:user:1").await, user(1));
        (vorte, pool)
    });

    let (raw, ours) = (
        || fred_get_decode(&pool, black_box("raw:user:1")),
        || async { vorte.get::<User>(black_box("user:1")).await.expect("get") },
    );
    let mut g = c.benchmark_group("p3_l2_hit");
    g.bench_function("raw_fred_get_decode", |b| {
        b.iter_custom(|n| time_calls(&rt, n, raw))
    });
    g.bench_function("vorte_get_l1_off", |b| {
        b.iter_custom(|n| time_calls(&rt, n, ours))
    });
    g.finish();

    // p50 / p99 of single calls: 5 interleaved rounds of 4,000 calls each.
    let (r, o) = per_call(&rt, 4_000, raw, ours);
    eprintln!("p3 per call: raw fred {}", compared(&r, &o));
    drop((vorte, pool));
    drop(rt);
}

// ----- P4 --------------------------------------------------------------------------------------

const TASKS: usize = 64;

/// Spawns `TASKS` tasks, each running `task(index, per_task)`, about `iters` reads in all; returns
/// the time scaled to exactly `iters` reads.
fn fan_out<F, Fut>(rt: &Runtime, iters: u64, task: F) -> Duration
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let per = iters.div_ceil(TASKS as u64).max(1);
    let total = per * TASKS as u64;
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..TASKS).map(|t| tokio::spawn(task(t, per))).collect();
        for h in handles {
            h.await.expect("task");
        }
        start.elapsed().mul_f64(iters as f64 / total as f64)
    })
}

/// The fred pool sizes P4 tries, so the peer is fred at its best on this machine, not at one guess.
const FRED_POOL_SIZES: [usize; 3] = [1, 2, 4];

fn p4(c: &mut Criterion) {
    let server = RedisServer::start();
    let raw = rmp_serde::to_vec_named(&user(1)).expect("encode");
    let mut admin = server.admin();
    for t in 0..TASKS {
        redis::cmd("SET")
            .arg(format!("raw:user:{t}"))
            .arg(raw.as_slice())
            .query::<()>(&mut admin)
            .expect("raw set");
    }
    let rt = two_workers();
    let (vorte, vorte_pool1, pools, mux) = rt.block_on(async {
        let vorte = l2_cache(&server, "p4", false).await;
        // The same entries, read through a pool of 1 (`pool_size = 1`) instead of the default 2.
        let vorte_pool1 = l2_cache_with(&server, "p4", false, "pool_size = 1").await;
        for t in 0..TASKS {
            vorte
                .set(&format!("user:{t}"), &user(1))
                .await
                .expect("set");
        }
        let mut pools = Vec::new();
        for size in FRED_POOL_SIZES {
            pools.push((size, fred_pool(&server, size).await));
        }
        (vorte, vorte_pool1, pools, redis_rs(&server).await)
    });
    let keys: Arc<[String]> = (0..TASKS).map(|t| format!("user:{t}")).collect();
    let raw_keys: Arc<[String]> = (0..TASKS).map(|t| format!("raw:user:{t}")).collect();

    // Each variant: `n` reads from 64 tasks, timed.
    type Variant<'a> = (String, Box<dyn Fn(u64) -> Duration + 'a>);
    let mut variants: Vec<Variant<'_>> = Vec::new();
    for (size, pool) in &pools {
        let (rt, raw_keys) = (&rt, raw_keys.clone());
        variants.push((
            format!("raw_fred_pool{size}"),
            Box::new(move |n| {
                fan_out(rt, n, |t, per| {
                    let (pool, keys) = (pool.clone(), raw_keys.clone());
                    async move {
                        for _ in 0..per {
                            black_box(fred_get_decode(&pool, &keys[t]).await);
                        }
                    }
                })
            }),
        ));
    }
    variants.push((
        "redis_rs_multiplexed".into(),
        Box::new(|n| {
            fan_out(&rt, n, |t, per| {
                let (mut con, keys) = (mux.clone(), raw_keys.clone());
                async move {
                    for _ in 0..per {
                        let bytes: Option<Vec<u8>> = redis::cmd("GET")
                            .arg(&keys[t])
                            .query_async(&mut con)
                            .await
                            .expect("redis-rs get");
                        let u: User = rmp_serde::from_slice(&bytes.expect("raw key present"))
                            .expect("decode");
                        black_box(u);
                    }
                }
            })
        }),
    ));
    // vorte's variants come last: the ratios below compare them with the peers before them.
    let peers = variants.len();
    for (name, cache) in [
        ("vorte_get_l1_off", &vorte),
        ("vorte_get_l1_off_pool1", &vorte_pool1),
    ] {
        let (rt, keys) = (&rt, keys.clone());
        variants.push((
            name.into(),
            Box::new(move |n| {
                fan_out(rt, n, |t, per| {
                    let (vorte, keys) = (cache.clone(), keys.clone());
                    async move {
                        for _ in 0..per {
                            black_box(vorte.get::<User>(&keys[t]).await.expect("get"));
                        }
                    }
                })
            }),
        ));
    }

    let mut g = c.benchmark_group("p4_l2_throughput_64_tasks");
    g.throughput(Throughput::Elements(1));
    for (name, run) in &variants {
        g.bench_function(name.as_str(), |b| b.iter_custom(run));
    }
    g.finish();

    // Interleaved rounds: this VM's speed drifts by tens of percent between criterion's
    // back-to-back variants, so each round runs every variant once and the ratio is taken within
    // the round; the medians over the rounds are printed.
    const ROUNDS: usize = 9;
    const READS: u64 = 128_000;
    let mut per_second: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); variants.len() - peers];
    for _ in 0..ROUNDS {
        let round: Vec<f64> = variants
            .iter()
            .map(|(_, run)| READS as f64 / run(READS).as_secs_f64())
            .collect();
        let shown: Vec<String> = round.iter().map(|r| format!("{:.0}", r / 1e3)).collect();
        eprintln!("p4 round, k reads/s in variant order: {}", shown.join(" "));
        let (theirs, ours) = round.split_at(peers);
        let best = theirs.iter().copied().fold(0.0, f64::max);
        for (ratio, r) in ratios.iter_mut().zip(ours) {
            ratio.push(r / best);
        }
        for (all, r) in per_second.iter_mut().zip(round) {
            all.push(r);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = per_second.iter_mut().map(median).collect();
    let summary: Vec<String> = variants
        .iter()
        .zip(&medians)
        .map(|((name, _), m)| format!("{name} {:.0} k/s", m / 1e3))
        .collect();
    // Two estimates: the ratio of the medians (the peer with the best median), and the median of
    // the per-round ratios to that round's best peer. The second is the stricter: the best of
    // four noisy peers in a round is biased upwards.
    let best_peer = medians[..peers].iter().copied().fold(0.0, f64::max);
    let ratios: Vec<String> = variants[peers..]
        .iter()
        .zip(&mut ratios)
        .zip(&medians[peers..])
        .map(|(((name, _), r), m)| {
            let (lo, hi) = (
                r.iter().copied().fold(f64::MAX, f64::min),
                r.iter().copied().fold(0.0, f64::max),
            );
            format!(
                "{name}: {:.2}x of the best peer's median; per round median {:.2}x (min {lo:.2}x, \
                 max {hi:.2}x)",
                m / best_peer,
                median(r)
            )
        })
        .collect();
    eprintln!(
        "p4 interleaved, {ROUNDS} rounds of {READS} reads, medians: {}; {}",
        summary.join(", "),
        ratios.join("; ")
    );
    drop(variants);
    drop((vorte, vorte_pool1, pools, mux));
    drop(rt);
}

// ----- P9 --------------------------------------------------------------------------------------

/// Writes `count` entries tagged `bulk` through `cache.set`, from 64 concurrent tasks.
async fn fill_tagged(cache: &Cache, count: u64) -> Duration {
    let start = Instant::now();
    let per = count.div_ceil(TASKS as u64);
    let handles: Vec<_> = (0..TASKS as u64)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for i in (t * per)..((t + 1) * per).min(count) {
                    cache
                        .set(&format!("item:{i}"), &user(i as i64))
                        .tags(["bulk"])
                        .await
                        .expect("set");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("fill task");
    }
    start.elapsed()
}

/// Writes `count` 64-byte keys `<prefix><i>` and adds each to the set `set`, server-side.
const PEER_FILL: &str = r#"
local prefix, set, from, to, payload = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
for i = from, to do
  local k = prefix .. i
  redis.call('SET', k, payload)
  redis.call('SADD', set, k)
end
return to - from + 1
"#;

/// The set-of-keys invalidation: every member of the tag's set, then the set itself.
const PEER_INVALIDATE: &str = r#"
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys, 1000 do
  redis.call('UNLINK', unpack(keys, i, math.min(i + 999, #keys)))
end
redis.call('UNLINK', KEYS[1])
return #keys
"#;

fn peer_fill(admin: &mut redis::Connection, size: u64) {
    let payload = "x".repeat(64);
    let mut from = 1;
    while from <= size {
        let to = (from + 49_999).min(size);
        redis::cmd("EVAL")
            .arg(PEER_FILL)
            .arg(0)
            .arg(format!("peer:{size}:e:"))
            .arg(format!("peer:{size}:t:bulk"))
            .arg(from)
            .arg(to)
            .arg(&payload)
            .query::<i64>(admin)
            .expect("peer fill");
        from = to + 1;
    }
}

fn p9(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = two_workers();
    let mut g = c.benchmark_group("p9_invalidate_tag");
    g.sample_size(10);

    let invalidations = |cache: &Cache, n: u64| {
        let cache = cache.clone();
        in_task(&rt, async move {
            let start = Instant::now();
            for _ in 0..n {
                cache
                    .invalidate_tag(black_box("bulk"))
                    .await
                    .expect("invalidate");
            }
            start.elapsed()
        })
    };

    let mut small = None;
    g.bench_function("vorte/1k", |b| {
        let cache = small.get_or_insert_with(|| {
            rt.block_on(async {
                let cache = l2_cache(&server, "p9-1k", true).await;
                let took = fill_tagged(&cache, 1_000).await;
                eprintln!("p9: 1,000 tagged entries written through cache.set in {took:.2?}");
                cache
            })
        });
        b.iter_custom(|n| invalidations(cache, n))
    });

    for size in [1_000u64, 100_000] {
        let mut admin = server.admin();
        let set = format!("peer:{size}:t:bulk");
        let label = if size == 1_000 { "1k" } else { "100k" };
        if size > 1_000 {
            g.sampling_mode(SamplingMode::Flat);
        }
        g.bench_function(format!("peer_set_of_keys_lua/{label}"), |b| {
            b.iter_custom(|n| {
                let mut took = Duration::ZERO;
                for _ in 0..n {
                    peer_fill(&mut admin, size);
                    let start = Instant::now();
                    let removed: u64 = redis::cmd("EVAL")
                        .arg(PEER_INVALIDATE)
                        .arg(1)
                        .arg(&set)
                        .query(&mut admin)
                        .expect("peer invalidate");
                    took += start.elapsed();
                    assert_eq!(removed, size);
                }
                took
            })
        });
    }
    g.sampling_mode(SamplingMode::Auto);

    let mut large = None;
    let mut admin = server.admin();
    g.bench_function("vorte/1M", |b| {
        let cache = large.get_or_insert_with(|| {
            let cache = rt.block_on(async {
                let cache = l2_cache(&server, "p9-1m", true).await;
                let took = fill_tagged(&cache, 1_000_000).await;
                eprintln!("p9: 1,000,000 tagged entries written through cache.set in {took:.2?}");
                cache
            });
            // From here on, Redis logs every command that takes over 1 ms.
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("slowlog-log-slower-than")
                .arg(1000)
                .query::<()>(&mut admin)
                .expect("slowlog config");
            redis::cmd("SLOWLOG")
                .arg("RESET")
                .query::<()>(&mut admin)
                .expect("slowlog reset");
            cache
        });
        b.iter_custom(|n| invalidations(cache, n))
    });
    g.finish();

    if let Some(cache) = large {
        let slow: u64 = redis::cmd("SLOWLOG")
            .arg("LEN")
            .query(&mut admin)
            .expect("slowlog len");
        eprintln!("p9: commands over 1 ms logged by Redis during vorte/1M: {slow}");
        let dbsize: u64 = redis::cmd("DBSIZE").query(&mut admin).expect("dbsize");
        let gone = rt.block_on(async { cache.get::<User>("item:0").await.expect("get") });
        assert_eq!(gone, None, "an invalidated entry must not be served");
        eprintln!("p9: {dbsize} keys on the server at the end; item:0 is invalidated");
    }
    drop(small);
    drop(rt);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = p3, p4, p9
}
criterion_main!(benches);
