//! The chaos suite (issue 10, "The chaos suite"; `docs/resilience.md`): faults injected into real
//! servers while two `chaos_worker` processes (`tests/chaos_worker/`) run a steady mixed load of
//! `#[cached]` calls, `get_or_set`, `get`, `set`, `delete` and `invalidate_tag` against one cache
//! configuration. Each test is one row of the table and asserts its "must hold" line from
//! the workers' reports: errors surfaced to callers, stale reads beyond the bound (checked against
//! a database no fault touches), loader calls, latency, hit rate over time.
//!
//! The tests take turns (`setup::exclusive`). `CHAOS_LONG=1` runs the long form, each fault
//! longer and more often (`scripts/chaos-long`, which also collects the `CHAOS-ROW|` lines every
//! test prints into the report table).

#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/other.rs"]
mod other;
#[path = "chaos/redis.rs"]
mod redis;
#[path = "chaos/resilience_rows.rs"]
mod resilience_rows;
#[path = "chaos/setup.rs"]
mod setup;
