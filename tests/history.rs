//! The history check against real servers (`docs/history.md`): three worker processes
//! (`tests/history_worker.rs`) run random `get`, `get_or_set`, `set`, `delete`, `invalidate_tag`
//! and `flush` calls on one stack, with a slow, versioned loader over a database of their own, and
//! record every call and every invalidation their caches applied from the bus; the checker
//! (`vorte_cache_tests::history_check`) then finds every read that returned a version replaced
//! before it began: in another process, before that process applied the replacing call's notice
//! (`docs/guarantees.md#g2-invalidation`, `docs/guarantees.md#g3-no-resurrection`,
//! `docs/history.md#the-bound`).
//!
//! A bounded run per stack is a test here; `scripts/history-long` runs `long_run` until a given
//! number of delete-during-load trials have been checked.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vorte_cache_tests::history_check::{Call, Report, check, excerpt, read_history, shape_of};
use vorte_cache_tests::servers::RedisServer;
use vorte_cache_tests::{Env, Stack};

/// On a stack with a bus, how long after a call returned a read in another process that never
/// applied the call's notice is held to it: the delay target of
/// `docs/consistency.md#measured-delay-g2` (p99 ≤ 5 ms on loopback). A process that applied the
/// notice is held to the call from then on, however long the bus took
/// (`docs/history.md#the-bound`).
const BUS_BOUND: Duration = Duration::from_millis(5);

/// The L1 `ttl` of the stack without a bus, which is then its cross-process bound
/// (`docs/guarantees.md#g2-invalidation`: another process's L1 copy stays up to its L1 `ttl`).
const NO_BUS_L1_TTL: Duration = Duration::from_millis(250);

/// One stack's run at a time: worker processes of two runs would compete for the cores and
/// stretch the bus's delay.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The shape of one run.
#[derive(Debug, Clone, Copy)]
struct Shape {
    processes: usize,
    ops: u64,
    tasks: u32,
    keys: usize,
    tags: usize,
}

/// The bounded run of the tests: 3 processes of 300 calls each.
const BOUNDED: Shape = Shape {
    processes: 3,
    ops: 300,
    tasks: 2,
    keys: 4,
    tags: 2,
};

/// How far behind an invalidation another process's reads may be on `stack`, when that process
/// never applied its notice.
fn bound_of(stack: Stack) -> Duration {
    if stack.has_redis() {
        BUS_BOUND
    } else {
        NO_BUS_L1_TTL
    }
}

/// A worker process, killed on drop.
struct Worker {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(args: &[String]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vorte-history-worker"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("worker starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Worker { child, stdout }
    }

    /// Waits until its cache is built (a worker that cannot build one exits, which ends the
    /// line).
    fn ready(&mut self) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("stdout");
        assert_eq!(line.trim(), "ready", "the worker did not start");
    }

    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go")
            .and_then(|()| stdin.flush())
            .expect("go");
    }

    /// Waits until it has written its history and exited.
    fn finish(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "the worker failed: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the worker ran past {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run on `stack`: a fresh key prefix and database, `shape.processes` workers started
/// together; returns the merged history and its check.
fn run_once(stack: Stack, db: &RedisServer, shape: Shape, seed: u64) -> (Vec<Call>, Report) {
    let env = Env::new(stack);
    let l1 = if stack.has_redis() {
        String::new()
    } else {
        format!("ttl = {}", NO_BUS_L1_TTL.as_secs_f64())
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cache.toml");
    std::fs::write(&config, env.toml("", &l1)).expect("write config");
    let outs: Vec<_> = (0..shape.processes)
        .map(|p| dir.path().join(format!("p{p}.jsonl")))
        .collect();
    let mut workers: Vec<Worker> = outs
        .iter()
        .enumerate()
        .map(|(p, out)| {
            let args = [
                config.display().to_string(),
                "--db".into(),
                db.port().to_string(),
                "--db-prefix".into(),
                env.prefix().to_owned(),
                "--process".into(),
                format!("p{p}"),
                "--seed".into(),
                (seed * 1000 + p as u64).to_string(),
                "--ops".into(),
                shape.ops.to_string(),
                "--tasks".into(),
                shape.tasks.to_string(),
                "--keys".into(),
                shape.keys.to_string(),
                "--tags".into(),
                shape.tags.to_string(),
                "--out".into(),
                out.display().to_string(),
            ];
            Worker::start(&args)
        })
        .collect();
    workers.iter_mut().for_each(Worker::ready);
    workers.iter_mut().for_each(Worker::go);
    for w in &mut workers {
        w.finish(Duration::from_secs(600));
    }
    let calls = read_history(&outs).expect("histories");
    let report = check(&calls, bound_of(stack));
    (calls, report)
}

/// The report's counts on one line.
fn summary(stack: Stack, report: &Report) -> String {
    format!(
        "{stack:?}: {} reads ({} misses besides), {} loads, {} sets, {} invalidations, {} \
         delete-during-load trials checked; {} errors; {} violations (other processes: from \
         applying the notice, else a bound of {:?}); largest notice delay after a call \
         returned: {}; never applied: {}",
        report.reads,
        report.misses,
        report.loads,
        report.sets,
        report.invalidations,
        report.trials,
        report.errors,
        report.violations.len(),
        bound_of(stack),
        report.largest_notice_delay_us.map_or_else(
            || "no bus".to_owned(),
            |us| format!("{:.3} ms", us as f64 / 1000.0)
        ),
        report.unapplied_notices
    )
}

/// The first `n` violations of a run, as excerpts.
fn excerpts(calls: &[Call], report: &Report, n: usize) -> String {
    report
        .violations
        .iter()
        .take(n)
        .map(|v| excerpt(calls, v, 16))
        .collect::<Vec<_>>()
        .join("\n")
}

fn bounded_run(stack: Stack) {
    let _one = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let db = RedisServer::start();
    let (calls, report) = run_once(stack, &db, BOUNDED, 1);
    println!("{}", summary(stack, &report));
    assert!(
        report.reads > 0 && report.loads > 0 && report.invalidations > 0,
        "the run checked nothing: {report:?}"
    );
    assert_eq!(
        report.violations.len(),
        0,
        "stale reads on {stack:?}:\n{}",
        excerpts(&calls, &report, 3)
    );
    let errors: Vec<&Call> = calls.iter().filter(|c| c.error.is_some()).collect();
    assert!(errors.is_empty(), "calls failed: {errors:?}");
}

#[test]
fn no_stale_reads_on_l1_redis() {
    bounded_run(Stack::L1Redis);
}

#[test]
fn no_stale_reads_on_l1_memcached_with_a_bus() {
    bounded_run(Stack::L1Memcached);
}

#[test]
fn no_stale_reads_on_l1_redis_cluster() {
    bounded_run(Stack::L1Cluster);
}

#[test]
fn no_stale_reads_on_l1_file_without_a_bus() {
    bounded_run(Stack::L1File);
}

/// A parameter of the long run from the environment (`scripts/history-long` sets them).
fn param<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} does not parse")),
        Err(_) => default,
    }
}

fn stack_named(name: &str) -> Stack {
    match name {
        "redis" => Stack::L1Redis,
        "memcached" => Stack::L1Memcached,
        "cluster" => Stack::L1Cluster,
        "file" => Stack::L1File,
        other => panic!("unknown stack {other:?}: redis, memcached, cluster or file"),
    }
}

/// What the long run found on one stack.
struct Totals {
    stack: Stack,
    report: Report,
    /// How many violations of each shape (`shape_of`), and an excerpt of the first.
    shapes: BTreeMap<String, (usize, String)>,
}

/// The documented long run (`docs/history.md`): rounds over the stacks until `HISTORY_TRIALS`
/// delete-during-load trials have been checked in all; prints each stack's totals and an excerpt
/// of the first violation of each shape, and fails if there was any.
#[test]
#[ignore = "long: run by scripts/history-long"]
fn long_run() {
    let _one = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let target: usize = param("HISTORY_TRIALS", 10_000);
    let stacks: Vec<Stack> = param("HISTORY_STACKS", "redis,memcached,cluster,file".to_owned())
        .split(',')
        .map(|s| stack_named(s.trim()))
        .collect();
    let shape = Shape {
        processes: param("HISTORY_PROCESSES", 3),
        ops: param("HISTORY_OPS", 600),
        tasks: param("HISTORY_TASKS", 2),
        keys: param("HISTORY_KEYS", 4),
        tags: param("HISTORY_TAGS", 2),
    };
    let seed: u64 = param("HISTORY_SEED", 1);
    println!("long run: {target} trials over {stacks:?}, {shape:?}, seed {seed}");
    let db = RedisServer::start();
    let mut totals: Vec<Totals> = stacks
        .iter()
        .map(|&stack| Totals {
            stack,
            report: Report::default(),
            shapes: BTreeMap::new(),
        })
        .collect();
    let mut round = 0;
    while totals.iter().map(|t| t.report.trials).sum::<usize>() < target {
        for Totals {
            stack,
            report: total,
            shapes,
        } in &mut totals
        {
            let (calls, report) = run_once(*stack, &db, shape, seed + round);
            println!("round {round} {}", summary(*stack, &report));
            for failed in calls.iter().filter(|c| c.error.is_some()).take(3) {
                println!("  failed call: {failed:?}");
            }
            for v in &report.violations {
                let (n, _) = shapes
                    .entry(shape_of(&calls, v))
                    .or_insert_with(|| (0, excerpt(&calls, v, 16)));
                *n += 1;
            }
            total.reads += report.reads;
            total.misses += report.misses;
            total.loads += report.loads;
            total.sets += report.sets;
            total.invalidations += report.invalidations;
            total.trials += report.trials;
            total.errors += report.errors;
            total.unapplied_notices += report.unapplied_notices;
            total.largest_notice_delay_us = total
                .largest_notice_delay_us
                .max(report.largest_notice_delay_us);
            total.violations.extend(report.violations);
        }
        round += 1;
    }
    println!("\nlong run, {round} rounds:");
    for t in &totals {
        println!("{}", summary(t.stack, &t.report));
        for (shape, (n, _)) in &t.shapes {
            println!("  {n:>5} x {shape}");
        }
    }
    for t in &totals {
        for (shape, (_, first)) in &t.shapes {
            println!("\nthe first on {:?} of: {shape}\n{first}", t.stack);
        }
    }
    let violations: usize = totals.iter().map(|t| t.report.violations.len()).sum();
    assert_eq!(violations, 0, "stale reads found (see above)");
}
