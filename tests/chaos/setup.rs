//! What every chaos test does: a database of its own, a configuration, worker processes started
//! together, faults injected by the test thread while they run, and their reports.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use vorte_cache_tests::chaos_kit::{Report, StaleRead, WorkerSet, WorkerSpec, now_us};
use vorte_cache_tests::servers::RedisServer;
use vorte_cache_tests::unique_prefix;

/// One chaos test at a time: two runs side by side would compete for the two cores and stretch
/// each other's latencies and timeouts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the suite's lock for one test (a test that failed before does not poison it).
pub(crate) fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How far behind another process's invalidation a read may be, ms (`--bound-ms`): G2's target
/// is a p99 of 5 ms on a quiet machine; here two workers and the servers share two busy cores
/// (with whatever else runs on them), and in a 2-minute run a notice took 27 ms now and then.
pub(crate) const BOUND_MS: &str = "50";

/// How long after the bus's Redis is back (restarted, resumed, or failed over) a receiver may
/// take to reconnect and notice what it missed: a reconnection (every 250 ms at most) after a
/// restart; after a hang, its commands' deadline (2 s, plus the 500 ms of a blocking read).
/// Measured: the last stale read 1.0 s after a restart (3.1 s before reconnections were capped
/// at 250 ms), 1.6 s after a hang.
pub(crate) const RECONNECT_MS: u64 = 4_000;

/// A layer's timeout in these tests (`timeout_ms`).
pub(crate) const LAYER_TIMEOUT: Duration = Duration::from_millis(250);

/// What a call may take beyond the layer timeout and the loader's time: the layer operation
/// after one that timed out (a read's fill, a delete's notice) starts before the call can end,
/// and two workers and the servers share two busy cores.
pub(crate) const SLACK: Duration = Duration::from_millis(50);

/// The loader's time (`--loader-ms`).
pub(crate) const LOADER_TIME: Duration = Duration::from_millis(5);

/// The steady load of most rows: per worker 400 calls/s from 4 tasks, a 5 ms loader, the bound.
pub(crate) const LOAD: &[&str] = &[
    "--rate",
    "400",
    "--tasks",
    "4",
    "--loader-ms",
    "5",
    "--bound-ms",
    BOUND_MS,
];

/// The `[cache]` table (entries live `ttl_s` seconds) and `[cache.layers.l1]` with `l1_extra`,
/// then `layers`.
pub(crate) fn config(ttl_s: u64, l1_extra: &str, layers: &str) -> String {
    format!(
        "[cache]\nkey_prefix = {:?}\ndefault_ttl = {ttl_s}\n\
         [cache.layers.l1]\nmax_size = 10000\n{l1_extra}\n{layers}",
        unique_prefix()
    )
}

/// An L2 `redis` layer on 127.0.0.1:`port` (the bus rides on it).
pub(crate) fn l2_redis(port: u16) -> String {
    format!(
        "[cache.layers.l2]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\n\
         timeout_ms = {}\n",
        LAYER_TIMEOUT.as_millis()
    )
}

/// One run: the workers' reports and when they were told to go (ms since the epoch).
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) go_ms: u64,
    pub(crate) reports: Vec<Report>,
}

impl Run {
    /// Prints every report's summary line (visible with `--nocapture`), and how many stale
    /// reads began in each second of the run.
    pub(crate) fn print(&self, what: &str) {
        println!("{what}:");
        for r in &self.reports {
            println!("  {}", r.summary());
            if !r.stale_reads.is_empty() {
                let mut per_second = std::collections::BTreeMap::new();
                for s in &r.stale_reads {
                    *per_second
                        .entry(s.at_ms.saturating_sub(self.go_ms) / 1000)
                        .or_insert(0) += 1;
                }
                println!("    stale reads by second of the run: {per_second:?}");
            }
            for e in &r.error_examples {
                println!("    error: {e}");
            }
            for c in r.slowest.iter().take(3) {
                println!("    slow: {c}");
            }
            for s in r.stale_reads.iter().take(3) {
                println!("    stale: {}", s.text);
            }
        }
    }

    /// Asserts that no caller got an error.
    pub(crate) fn assert_no_errors(&self) {
        for r in &self.reports {
            assert_eq!(
                r.error_count(),
                0,
                "{}: errors surfaced to callers: {:?}, e.g. {:?}",
                r.process,
                r.errors,
                r.error_examples
            );
        }
    }

    /// Asserts that no read returned a version replaced longer than the bound before it began.
    pub(crate) fn assert_no_stale_reads(&self) {
        for r in &self.reports {
            assert!(r.reads_checked > 0, "{}: no read was checked", r.process);
            assert_eq!(
                r.stale,
                0,
                "{}: stale reads beyond the bound, e.g. {:?}",
                r.process,
                r.stale_reads
                    .iter()
                    .take(5)
                    .map(|s| &s.text)
                    .collect::<Vec<_>>()
            );
        }
    }

    /// The stale reads of every worker that began outside `windows` (ms since the epoch).
    pub(crate) fn stale_outside(&self, windows: &[(u64, u64)]) -> Vec<&StaleRead> {
        self.reports
            .iter()
            .flat_map(|r| &r.stale_reads)
            .filter(|s| {
                !windows
                    .iter()
                    .any(|&(from, to)| s.at_ms >= from && s.at_ms < to)
            })
            .collect()
    }

    /// Asserts that every stale read is explained by a fault: it began during one of `faults`
    /// (from its start to `after_ms` past its end), or it missed a write made during one (a
    /// notice of it arrived late, or the write itself was lost by the failing server); prints
    /// the others. Returns what it found.
    pub(crate) fn assert_stale_explained_by(
        &self,
        faults: &[(u64, u64)],
        after_ms: u64,
    ) -> StaleSummary {
        let windows: Vec<(u64, u64)> = faults.iter().map(|&(f, t)| (f, t + after_ms)).collect();
        let inside = |at: u64| windows.iter().any(|&(from, to)| at >= from && at < to);
        let (late, unexplained): (Vec<&StaleRead>, Vec<&StaleRead>) = self
            .stale_outside(&windows)
            .into_iter()
            .partition(|s| inside(s.write_end_ms));
        for (what, reads) in [
            ("missing a write made during it", &late),
            ("unexplained", &unexplained),
        ] {
            for s in reads.iter().take(10) {
                println!(
                    "    stale after a fault, {what}, +{} ms: {}",
                    s.at_ms.saturating_sub(self.go_ms),
                    s.text
                );
            }
        }
        let summary = StaleSummary {
            all: self.reports.iter().map(|r| r.stale).sum(),
            after_fault: late.len() as u64,
            last_after_fault_ms: self.stale_tail_ms(faults),
        };
        println!("  {summary}");
        for r in &self.reports {
            assert!(r.reads_checked > 0, "{}: no read was checked", r.process);
        }
        assert!(
            unexplained.is_empty(),
            "{} stale reads outside the faults (and {after_ms} ms after each), of writes made \
             outside them",
            unexplained.len()
        );
        summary
    }

    /// Asserts that no stale read began during a fault once `noticed` had passed since it
    /// began: from then on the processes know their bus does not answer and use no L1
    /// (`docs/guarantees.md#g4-gap-detection`).
    pub(crate) fn assert_no_stale_read_during(&self, faults: &[(u64, u64)], noticed: Duration) {
        let noticed = noticed.as_millis() as u64;
        for r in &self.reports {
            let during: Vec<&StaleRead> = r
                .stale_reads
                .iter()
                .filter(|s| {
                    faults
                        .iter()
                        .any(|&(from, to)| s.at_ms >= from + noticed && s.at_ms < to)
                })
                .collect();
            assert!(
                during.is_empty(),
                "{}: {} stale reads during a fault, {noticed} ms or more after it began, e.g. {:?}",
                r.process,
                during.len(),
                during.first().map(|s| &s.text)
            );
        }
    }

    /// How long after the end of its fault the last stale read began, at worst (ms; a stale
    /// read belongs to the last fault that began before it; 0 when each began during its fault).
    pub(crate) fn stale_tail_ms(&self, faults: &[(u64, u64)]) -> u64 {
        self.reports
            .iter()
            .flat_map(|r| r.stale_reads.iter().map(|s| s.at_ms))
            .filter_map(|at| {
                faults
                    .iter()
                    .rev()
                    .find(|&&(from, _)| at >= from)
                    .map(|&(_, to)| at.saturating_sub(to))
            })
            .max()
            .unwrap_or(0)
    }

    /// Asserts that a latency figure (`what`: `max`, `p99`) of every worker is within `limit`.
    pub(crate) fn assert_latency(&self, what: &str, of: fn(&Report) -> u64, limit: Duration) {
        for r in &self.reports {
            assert!(
                of(r) <= limit.as_micros() as u64,
                "{}: {what} {} µs, over {limit:?}; the slowest calls: {:?}",
                r.process,
                of(r),
                r.slowest
            );
        }
    }
}

/// The workers of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan<'a> {
    /// How many worker processes.
    pub(crate) workers: usize,
    /// Their flags (besides the database, the duration and the seed, which the run adds).
    pub(crate) args: &'a [&'a str],
    /// How long they run.
    pub(crate) duration: Duration,
    /// Worker `.0` runs with its clock `.1` seconds ahead (`faketime`).
    pub(crate) clock_ahead: Option<(usize, u32)>,
}

impl<'a> Plan<'a> {
    /// Two workers with `args` for `duration`, clocks true.
    pub(crate) fn two(args: &'a [&'a str], duration: Duration) -> Plan<'a> {
        Plan {
            workers: 2,
            args,
            duration,
            clock_ahead: None,
        }
    }
}

/// Starts a database and the workers of `plan` on `config_toml`, each with its own seed; runs
/// `before_go` once they have built their caches, tells them to go, runs `faults` (given the
/// database and the moment they went, ms since the epoch), and returns the reports.
pub(crate) fn run<T>(
    config_toml: &str,
    plan: &Plan<'_>,
    before_go: impl FnOnce(),
    faults: impl FnOnce(&RedisServer, u64) -> T,
) -> (Run, T) {
    let db = RedisServer::start();
    let prefix = unique_prefix();
    let specs: Vec<WorkerSpec> = (0..plan.workers)
        .map(|i| {
            let mut all: Vec<String> = vec![
                "--db".into(),
                db.port().to_string(),
                "--db-prefix".into(),
                prefix.clone(),
                "--duration-ms".into(),
                plan.duration.as_millis().to_string(),
                "--seed".into(),
                (i as u64 + 1).to_string(),
            ];
            all.extend(plan.args.iter().map(|a| (*a).to_owned()));
            WorkerSpec {
                args: all,
                clock_ahead_s: plan.clock_ahead.filter(|(w, _)| *w == i).map(|(_, s)| s),
            }
        })
        .collect();
    let mut set = WorkerSet::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_chaos_worker")),
        config_toml,
        &specs,
    );
    before_go();
    let go_ms = set.go();
    let outcome = faults(&db, go_ms);
    let reports = set.finish(plan.duration + Duration::from_secs(60));
    (Run { go_ms, reports }, outcome)
}

/// What [`Run::assert_stale_explained_by`] found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StaleSummary {
    /// Stale reads in all.
    pub(crate) all: u64,
    /// Those that began after their fault's window, missing a write made during it.
    pub(crate) after_fault: u64,
    /// How long after the end of its fault the last stale read began, ms.
    pub(crate) last_after_fault_ms: u64,
}

impl std::fmt::Display for StaleSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} stale reads, the last {} ms after its fault ended",
            self.all, self.last_after_fault_ms
        )?;
        if self.after_fault > 0 {
            write!(
                f,
                " ({} of them after the reconnection window, each missing a write made during \
                 the fault)",
                self.after_fault
            )?;
        }
        Ok(())
    }
}

/// Now, ms since the epoch.
pub(crate) fn now_ms() -> u64 {
    now_us() / 1000
}

/// Sleeps until `at_ms` (ms since the epoch) if it is still ahead.
pub(crate) fn sleep_until_ms(at_ms: u64) {
    let now = now_us() / 1000;
    if at_ms > now {
        std::thread::sleep(Duration::from_millis(at_ms - now));
    }
}

/// Polls `done` every 20 ms until it holds (the time it took) or `within` passed (`None`).
pub(crate) fn time_until(within: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Whether the long form runs (`scripts/chaos-long` sets `CHAOS_LONG=1`): each fault longer and
/// more often, as the table of issue 10 says.
pub(crate) fn long() -> bool {
    std::env::var("CHAOS_LONG").is_ok_and(|v| v == "1")
}

/// Prints this run's row of the report table, a line starting `CHAOS-ROW|` that
/// `scripts/chaos-long` collects: fault, processes, duration, calls, errors, stale reads beyond
/// the bound, loader calls, p99, max, and what the fault measured (recovery, failover, ...).
pub(crate) fn report_row(fault: &str, run: &Run, duration: Duration, measured: &str) {
    let sum = |f: fn(&Report) -> u64| run.reports.iter().map(f).sum::<u64>();
    let p99 = run.reports.iter().map(|r| r.p99_us).max().unwrap_or(0);
    let max = run.reports.iter().map(|r| r.max_us).max().unwrap_or(0);
    let errors = sum(Report::error_count);
    println!(
        "CHAOS-ROW|{fault}|{}|{} s|{}|{errors}|{}|{}|{:.1} ms|{:.1} ms|{measured}",
        run.reports.len(),
        duration.as_secs(),
        sum(|r| r.calls),
        sum(|r| r.stale),
        sum(|r| r.loader_calls),
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
    );
}
