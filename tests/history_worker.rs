//! One process of the history check (`tests/history.rs`, `docs/history.md`): it builds a cache
//! from the TOML file named by its first argument, prints `ready`, waits for `go` on stdin, runs
//! random calls over a small key space from several tasks, writes every call to a JSON-lines file
//! (`vorte_cache_tests::history_check::Call`), and exits. Its cache's bus id and every
//! invalidation the cache applied from the bus are written there too, so that the checker knows
//! when this process applied each other process's call (`docs/history.md#the-bound`).
//!
//! ```text
//! vorte-history-worker CONFIG.toml --db PORT --db-prefix P --process NAME --seed N
//!     --ops N --tasks N --keys N --tags N --out FILE
//! ```
//!
//! The database is the `redis-server` on 127.0.0.1:PORT: key `k<i>`'s version is the counter
//! `<P>k<i>`. Every write bumps the counters it concerns, then calls the cache; the loader reads
//! the counter and sleeps 0–50 ms. Key `k<i>` carries tag `t<j>` when bit `j` of `i + 1` is set.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test worker fails loudly"
)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use vorte_cache::config::KeyRecording;
use vorte_cache::observe::{Activity, ActivityKind, Observe};
use vorte_cache::{Cache, Config};
use vorte_cache_tests::chaos_kit::Rng;
use vorte_cache_tests::history_check::{Call, Notice, Op, Version, value_of};

/// The longest a loader sleeps after reading the database.
const MAX_LOAD_SLEEP_MS: u64 = 50;

/// The share of each call in the mix, out of their sum.
const MIX: [(Kind, u64); 6] = [
    (Kind::Get, 20),
    (Kind::GetOrSet, 35),
    (Kind::Set, 10),
    (Kind::Delete, 25),
    (Kind::InvalidateTag, 8),
    (Kind::Flush, 2),
];

#[derive(Clone, Copy)]
enum Kind {
    Get,
    GetOrSet,
    Set,
    Delete,
    InvalidateTag,
    Flush,
}

/// The command line.
struct Args {
    config: String,
    db_port: u16,
    db_prefix: String,
    process: String,
    seed: u64,
    ops: u64,
    tasks: u32,
    keys: usize,
    tags: usize,
    out: String,
}

impl Args {
    fn parse() -> Args {
        let mut argv = std::env::args().skip(1);
        let config = argv.next().expect("usage: CONFIG.toml --flag value ...");
        let mut flags = HashMap::new();
        while let Some(flag) = argv.next() {
            let value = argv
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"));
            flags.insert(flag, value);
        }
        let mut take = |name: &str| {
            flags
                .remove(name)
                .unwrap_or_else(|| panic!("missing --{name}"))
        };
        let number = |text: String| text.parse::<u64>().expect("a number");
        let args = Args {
            config,
            db_port: u16::try_from(number(take("--db"))).expect("a port"),
            db_prefix: take("--db-prefix"),
            process: take("--process"),
            seed: number(take("--seed")),
            ops: number(take("--ops")),
            tasks: u32::try_from(number(take("--tasks"))).expect("a task count"),
            keys: usize::try_from(number(take("--keys"))).expect("a key count"),
            tags: usize::try_from(number(take("--tags"))).expect("a tag count"),
            out: take("--out"),
        };
        assert!(flags.is_empty(), "unknown flags {:?}", flags.keys());
        args
    }

    fn key(&self, i: usize) -> String {
        format!("k{i}")
    }

    fn tags_of(&self, i: usize) -> Vec<String> {
        (0..self.tags)
            .filter(|j| (i + 1) >> j & 1 == 1)
            .map(|j| format!("t{j}"))
            .collect()
    }
}

/// One connection to the database.
struct Db {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    prefix: String,
    line: String,
}

impl Db {
    async fn connect(port: u16, prefix: &str) -> Db {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("the database");
        stream.set_nodelay(true).expect("nodelay");
        let (read, writer) = stream.into_split();
        Db {
            reader: BufReader::new(read),
            writer,
            prefix: prefix.to_owned(),
            line: String::new(),
        }
    }

    /// `INCRBY <prefix><key> delta`: the version after it (delta 0 reads it).
    async fn incr_by(&mut self, key: &str, delta: u64) -> Version {
        let key = format!("{}{key}", self.prefix);
        let delta = delta.to_string();
        let mut command = b"*3\r\n$6\r\nINCRBY\r\n".to_vec();
        for arg in [&key, &delta] {
            command.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        self.writer.write_all(&command).await.expect("send");
        self.line.clear();
        self.reader.read_line(&mut self.line).await.expect("reply");
        self.line
            .strip_prefix(':')
            .and_then(|n| n.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("INCRBY replied {:?}", self.line))
    }
}

fn now_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(since.as_micros()).expect("µs fit in u64")
}

/// Records each invalidation the cache applied from the bus, when it was applied (the cache tells
/// its observers once it has applied one: `Observe::activity`).
struct AppliedNotices {
    process: String,
    records: Mutex<Vec<Call>>,
}

impl Observe for AppliedNotices {
    fn activity(&self, activity: &Activity) {
        let at = now_us();
        if !activity.received {
            return;
        }
        let (Some(origin), Some(notice)) = (&activity.origin, notice_of(activity)) else {
            return;
        };
        let record = Call {
            process: self.process.clone(),
            task: 0,
            start_us: at,
            end_us: at,
            op: Op::Applied {
                origin: origin.clone(),
                notice,
            },
            error: None,
        };
        // Runs in the bus receiver: a poisoned lock still holds every record pushed.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }
}

/// An invalidation as the history records it; `None` for an event. Keys and tags are recorded
/// in plain (`record_keys = "plain"`, set in `main`).
fn notice_of(activity: &Activity) -> Option<Notice> {
    match activity.kind {
        ActivityKind::Keys => Some(Notice::Keys {
            keys: activity.keys.clone(),
        }),
        ActivityKind::Tag => Some(Notice::Tag {
            tag: activity.subject.clone().unwrap_or_default(),
        }),
        ActivityKind::Flush => Some(Notice::Flush),
        _ => None,
    }
}

/// One task: `ops` random calls, each recorded.
async fn run_task(args: &Args, cache: &Cache, task: u32, ops: u64) -> Vec<Call> {
    let mut rng = Rng(args.seed ^ (u64::from(task) + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut db = Db::connect(args.db_port, &args.db_prefix).await;
    let mut calls = Vec::new();
    for _ in 0..ops {
        let i = usize::try_from(rng.below(args.keys as u64)).expect("a key index");
        let key = args.key(i);
        let kind = rng.pick(&MIX);
        let start_us = now_us();
        let (op, error) = match kind {
            Kind::Get => {
                let got = cache.get::<String>(&key).await;
                let (value, error) = split(got);
                (
                    Op::Get {
                        key,
                        value: value.flatten(),
                    },
                    error,
                )
            }
            Kind::GetOrSet => {
                let sleep = Duration::from_millis(rng.below(MAX_LOAD_SLEEP_MS + 1));
                let (db, loads, process) = (&mut db, &mut calls, &args.process);
                let loader_key = key.clone();
                let got = cache
                    .get_or_set(&key, move || async move {
                        let start_us = now_us();
                        let version = db.incr_by(&loader_key, 0).await;
                        tokio::time::sleep(sleep).await;
                        let value = value_of(&loader_key, version);
                        loads.push(Call {
                            process: process.clone(),
                            task,
                            start_us,
                            end_us: now_us(),
                            op: Op::Load {
                                key: loader_key,
                                version,
                            },
                            error: None,
                        });
                        Ok::<_, std::io::Error>(value)
                    })
                    .tags(args.tags_of(i))
                    .await;
                let (value, error) = split(got);
                (Op::GetOrSet { key, value }, error)
            }
            Kind::Set => {
                let version = db.incr_by(&key, 1).await;
                let value = value_of(&key, version);
                let done = cache.set(&key, &value).tags(args.tags_of(i)).await;
                (Op::Set { key, version }, split(done).1)
            }
            Kind::Delete => {
                let version = db.incr_by(&key, 1).await;
                let done = cache.delete(&key).await;
                (Op::Delete { key, version }, split(done).1)
            }
            Kind::InvalidateTag => {
                let j = rng.below(args.tags.max(1) as u64);
                let tag = format!("t{j}");
                let mut bumps = BTreeMap::new();
                for i in (0..args.keys).filter(|&i| args.tags_of(i).contains(&tag)) {
                    bumps.insert(args.key(i), db.incr_by(&args.key(i), 1).await);
                }
                let done = cache.invalidate_tag(&tag).await;
                (Op::InvalidateTag { tag, bumps }, split(done).1)
            }
            Kind::Flush => {
                let mut bumps = BTreeMap::new();
                for i in 0..args.keys {
                    bumps.insert(args.key(i), db.incr_by(&args.key(i), 1).await);
                }
                let done = cache.flush().await;
                (Op::Flush { bumps }, split(done).1)
            }
        };
        calls.push(Call {
            process: args.process.clone(),
            task,
            start_us,
            end_us: now_us(),
            op,
            error,
        });
    }
    calls
}

fn split<T>(result: vorte_cache::Result<T>) -> (Option<T>, Option<String>) {
    match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let mut config = Config::from_toml_file(&args.config).expect("config");
    // The notices' keys and tags, as the checker compares them with the calls'.
    config.cache.observe.record_keys = KeyRecording::Plain;
    let applied = Arc::new(AppliedNotices {
        process: args.process.clone(),
        records: Mutex::default(),
    });
    let cache = Cache::builder(&config.cache)
        .observe(applied.clone())
        .build()
        .await
        .expect("build");
    let mut calls = Vec::new();
    if let Some(origin) = cache.bus_origin() {
        let at = now_us();
        calls.push(Call {
            process: args.process.clone(),
            task: 0,
            start_us: at,
            end_us: at,
            op: Op::BusOrigin { origin },
            error: None,
        });
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .expect("stdin task")
    .expect("stdin");
    assert_eq!(go.trim(), "go", "expected go");
    let per_task = args.ops / u64::from(args.tasks);
    let args = Arc::new(args);
    let tasks: Vec<_> = (0..args.tasks)
        .map(|t| {
            let (args, cache) = (args.clone(), cache.clone());
            tokio::spawn(async move { run_task(&args, &cache, t, per_task).await })
        })
        .collect();
    for task in tasks {
        calls.extend(task.await.expect("a task"));
    }
    // What arrives after the last call is too late to matter; the cache stays up until here.
    calls.extend(std::mem::take(
        &mut *applied
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ));
    drop(cache);
    calls.sort_by_key(|c| (c.start_us, c.end_us));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out).expect("out file"));
    for call in &calls {
        serde_json::to_writer(&mut out, call).expect("write");
        out.write_all(b"\n").expect("write");
    }
    out.flush().expect("flush");
}
