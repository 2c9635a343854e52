//! The rows of the distributed lock of `get_or_set` and of fail-safe
//! (`tests/chaos_worker/one_key.rs`).

use std::time::Duration;

use vorte_cache_tests::chaos_kit::truth::Truth;
use vorte_cache_tests::servers::RedisServer;

use crate::setup::{
    Plan, config, exclusive, l2_redis, long, now_ms, report_row, run, sleep_until_ms,
};

/// "2 processes × 5,000 tasks miss one key with the distributed lock on": the loader runs once
/// in total.
#[test]
fn two_processes_missing_one_key_with_the_distributed_lock_load_it_once() {
    let _one = exclusive();
    let redis = RedisServer::start();
    let toml = config(60, "", &l2_redis(redis.port()));
    let args = [
        "--mode",
        "stampede",
        "--stampede-tasks",
        "5000",
        "--loader-ms",
        "50",
        "--distributed-lock",
        "1",
    ];
    let (run, ()) = run(
        &toml,
        &Plan::two(&args, Duration::from_secs(5)),
        || {},
        |_, _| {},
    );
    run.print("distributed lock");
    run.assert_no_errors();
    let loads: u64 = run.reports.iter().map(|r| r.loader_calls).sum();
    assert_eq!(loads, 1, "the loader ran {loads} times over both processes");
    report_row(
        "2 processes x 5,000 tasks, one key, distributed lock",
        &run,
        Duration::ZERO,
        &format!("loader calls in total: {loads}"),
    );
}

/// "The loader fails for 30 s on a hot key with fail-safe on": 0 errors surfaced; the stale value
/// served; the loader called at most once per throttle period.
#[test]
fn a_failing_loader_with_fail_safe_serves_the_stale_value_and_is_throttled() {
    let _one = exclusive();
    let redis = RedisServer::start();
    let toml = config(1, "", &l2_redis(redis.port()));
    let failing = Duration::from_secs(if long() { 30 } else { 10 });
    let duration = failing + Duration::from_secs(5);
    let hot = 5u64;
    let throttle = Duration::from_secs(1);
    let args = [
        "--mode",
        "fail-safe",
        "--rate",
        "200",
        "--hot",
        "5",
        "--throttle-ms",
        "1000",
    ];
    let (run, ()) = run(
        &toml,
        &Plan::two(&args, duration),
        || {},
        |db, go| {
            let switch = |on: bool| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("runtime: {e}"))
                    .block_on(async {
                        let mut truth = Truth::connect(db.port(), "")
                            .await
                            .unwrap_or_else(|e| panic!("the database: {e}"));
                        truth.set_failing(on).await
                    })
                    .unwrap_or_else(|e| panic!("switch the loader's failure: {e}"));
            };
            sleep_until_ms(go + 3_000);
            switch(true);
            sleep_until_ms(now_ms() + failing.as_millis() as u64);
            switch(false);
        },
    );
    run.print("fail-safe");
    run.assert_no_errors();
    let per_key = failing.as_millis() as u64 / throttle.as_millis() as u64 + 1;
    for r in &run.reports {
        assert!(
            r.loader_failures <= hot * per_key,
            "{}: the failing loader ran {} times, over {per_key} per key",
            r.process,
            r.loader_failures
        );
    }
    report_row(
        "the loader fails on hot keys, fail-safe on",
        &run,
        duration,
        "loader failures within one per key and throttle period",
    );
}
