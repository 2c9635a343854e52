//! One process of the chaos suite (`tests/chaos.rs`, `docs/resilience.md`): it builds the
//! application from the TOML file named by its first argument, prints `ready`, waits for `go` on
//! stdin, runs its load for `--duration-ms` while the test injects faults into the servers, then
//! checks its reads against the database and writes one JSON report
//! (`vorte_cache_tests::chaos_kit::Report`) to `--out`.
//!
//! ```text
//! chaos_worker CONFIG.toml --process NAME --out FILE --db PORT --db-prefix P
//!     [--mode mixed|stampede|fail-safe] [--duration-ms 20000] [--rate 400] [--tasks 4]
//!     [--hot 20] [--cold 100] [--hot-share 90] [--loader-ms 5] [--bound-ms 5]
//!     [--bucket-ms 250] [--slow-ms 100] [--sample-ms 0] [--seed 1] [--verify 0|1]
//!     [--stampede-tasks 10000] [--distributed-lock 0|1] [--fail-safe-ms N] [--throttle-ms N]
//! ```
//!
//! The database is the `redis-server` on 127.0.0.1:PORT (`chaos_kit::truth`); no fault touches
//! it. The worker's clock is corrected to the database's (`TIME`), so a worker run under
//! `faketime` still records comparable times.

mod args;
mod mixed;
mod one_key;
mod report;
mod state;

use std::io::Write as _;
use std::process::ExitCode;

use vorte_cache::{Cache, Config, Vorte};

use crate::args::{Args, Mode};
use crate::state::State;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("chaos_worker: {why}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_toml_file(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chaos_worker: config: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = Vorte::builder().config(config).build().await {
        eprintln!("chaos_worker: build: {e}");
        return ExitCode::from(1);
    }
    let cache = Cache::global();
    println!("ready");
    let _ = std::io::stdout().flush();
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    if !matches!(&go, Ok(Ok(line)) if line.trim() == "go") {
        eprintln!("chaos_worker: expected `go` on stdin");
        return ExitCode::from(2);
    }
    // The test keeps stdin open until it has our report: its end means the test is gone (it
    // failed, and killed the `faketime` wrapper rather than us), so stop rather than run on.
    std::thread::spawn(|| {
        let mut rest = String::new();
        while std::io::stdin().read_line(&mut rest).is_ok_and(|n| n > 0) {}
        std::process::exit(3);
    });
    let state: &'static State = State::install(args).await;
    let deadline_us = state.start_us + state.args.duration.as_micros() as u64;
    let sampler = tokio::spawn(report::sample(state, cache.clone(), deadline_us));
    let (logs, distinct_values) = match state.args.mode {
        Mode::Mixed => {
            let tasks: Vec<_> = (0..state.args.tasks)
                .map(|t| {
                    let cache = cache.clone();
                    tokio::spawn(
                        async move { mixed::run_task(state, &cache, t, deadline_us).await },
                    )
                })
                .collect();
            let mut logs = Vec::new();
            for task in tasks {
                match task.await {
                    Ok(log) => logs.push(log),
                    Err(e) => panic!("a load task failed: {e}"),
                }
            }
            (logs, 0)
        }
        Mode::Stampede => {
            let (log, values) = one_key::stampede(state, &cache).await;
            (vec![log], values)
        }
        Mode::FailSafe => (
            vec![one_key::fail_safe(state, &cache, deadline_us).await],
            0,
        ),
    };
    let samples = sampler.await.unwrap_or_default();
    let report = report::build(state, &cache, logs, samples, distinct_values).await;
    let line = match serde_json::to_string(&report) {
        Ok(line) => line,
        Err(e) => {
            eprintln!("chaos_worker: report: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::fs::write(&state.args.out, line + "\n") {
        eprintln!("chaos_worker: write {}: {e}", state.args.out);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
