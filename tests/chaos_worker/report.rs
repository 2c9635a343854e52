//! The worker's report: the layer counters sampled during the run, then, after the run, the
//! check of every read against the database, the check of every key (`--verify`), and the
//! figures by bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use vorte_cache::Cache;
use vorte_cache_tests::chaos_kit::report::quantile;
use vorte_cache_tests::chaos_kit::stale::{Read, judge};
use vorte_cache_tests::chaos_kit::{
    Bucket, LayerSample, Report, Sample, StaleRead, Verify, parse_value,
};

use crate::mixed::TaskLog;
use crate::state::State;

/// How long after its own run a worker waits before it reads the other workers' write records:
/// they were told to go at the same moment, so by then they are done.
const GRACE: Duration = Duration::from_millis(1000);

/// How many examples of errors a report carries.
const EXAMPLES: usize = 5;

/// How many stale reads a report describes.
const STALE_KEPT: usize = 2_000;

/// The cache's layer counters, taken now (`stats` reads counters only).
fn sample_now(state: &State, cache: &Cache) -> Sample {
    let stats = cache.stats();
    Sample {
        at_ms: state.now() / 1000,
        layers: stats
            .layers
            .iter()
            .map(|l| LayerSample {
                layer: format!("{:?}", l.layer),
                hits: l.hits,
                errors: l.errors,
                write_behind_dropped: l.write_behind_dropped,
                recovery_pending: l.recovery_pending,
                breaker_openings: l.circuits.iter().map(|c| c.opened).sum(),
                breakers_open: l
                    .circuits
                    .iter()
                    .filter(|c| c.state != vorte_cache::CircuitState::Closed)
                    .count() as u64,
            })
            .collect(),
    }
}

/// Samples the layer counters every `--sample-ms` until `deadline_us` (not at all when it is 0).
pub(crate) async fn sample(state: &'static State, cache: Cache, deadline_us: u64) -> Vec<Sample> {
    let mut samples = Vec::new();
    let every = state.args.sample_every;
    if every.is_zero() {
        return samples;
    }
    while state.now() < deadline_us {
        tokio::time::sleep(every).await;
        samples.push(sample_now(state, &cache));
    }
    samples
}

/// Reads every key once, after the run: the reads to check, and how many failed.
async fn verify_reads(state: &State, cache: &Cache) -> (Vec<Read>, u64) {
    let mut reads = Vec::new();
    let mut errors = 0;
    for i in 0..state.args.keys() {
        let key = state.args.key(i);
        let start_us = state.now();
        match cache.get::<String>(&key).await {
            Ok(Some(value)) => match parse_value(&value) {
                Some((k, version)) if k == key => reads.push(Read {
                    key: i,
                    version,
                    start_us,
                }),
                _ => errors += 1,
            },
            Ok(None) => {}
            Err(_) => errors += 1,
        }
    }
    (reads, errors)
}

/// Judges `reads` against the database; the stale ones.
async fn stale_reads(state: &State, reads: &[Read]) -> Vec<StaleRead> {
    let keys: BTreeSet<usize> = reads.iter().map(|r| r.key).collect();
    let mut truth = state.truth().await;
    let mut records = BTreeMap::new();
    for &i in &keys {
        let key = state.args.key(i);
        let recs = truth
            .records(&key)
            .await
            .unwrap_or_else(|e| panic!("read the write records of {key}: {e}"));
        records.insert(i, recs);
    }
    state.give_back(truth).await;
    let bound_us = state.args.bound.as_micros() as u64;
    reads
        .iter()
        .filter_map(|read| {
            let stale = judge(read, &state.args.process, &records[&read.key], bound_us)?;
            let described = format!(
                "{} at +{} ms returned version {}, replaced by version {} ({:?} by {}) {} µs beyond \
                 the bound",
                state.args.key(read.key),
                read.start_us.saturating_sub(state.start_us) / 1000,
                read.version,
                stale.by_version,
                stale.by_kind,
                stale.by_process,
                stale.late_us
            );
            Some(StaleRead {
                at_ms: read.start_us / 1000,
                late_us: stale.late_us,
                write_end_ms: stale.by_end_us / 1000,
                text: described,
            })
        })
        .collect()
}

/// The report of the run.
pub(crate) async fn build(
    state: &State,
    cache: &Cache,
    logs: Vec<TaskLog>,
    mut samples: Vec<Sample>,
    distinct_values: u64,
) -> Report {
    tokio::time::sleep(GRACE).await;
    let reads: Vec<Read> = logs.iter().flat_map(|l| l.reads.iter().cloned()).collect();
    let verify = if state.args.verify {
        let (verify_reads, read_errors) = verify_reads(state, cache).await;
        let mismatches = stale_reads(state, &verify_reads).await.len() as u64;
        Some(Verify {
            keys: state.args.keys() as u64,
            read_errors,
            mismatches,
        })
    } else {
        None
    };
    let mut stale = stale_reads(state, &reads).await;
    stale.extend(logs.iter().flat_map(|l| {
        l.foreign.iter().map(|f| StaleRead {
            text: f.clone(),
            ..StaleRead::default()
        })
    }));
    samples.push(sample_now(state, cache));
    let bucket_us = state.args.bucket.as_micros() as u64;
    let mut buckets: Vec<Bucket> = (0..state.loads.len())
        .map(|i| Bucket {
            start_ms: (state.start_us + i as u64 * bucket_us) / 1000,
            misses: state.loads[i].load(Ordering::Relaxed),
            ..Bucket::default()
        })
        .collect();
    let slow_us = state.args.slow.as_micros() as u64;
    let mut errors = BTreeMap::new();
    let mut errors_by_call = BTreeMap::new();
    let mut error_examples = Vec::new();
    let mut latencies = Vec::new();
    for call in logs.iter().flat_map(|l| &l.calls) {
        latencies.push(call.latency_us);
        if let Some(b) = state
            .bucket_of(call.start_us)
            .and_then(|i| buckets.get_mut(i))
        {
            b.calls += 1;
            b.reads += u64::from(call.read);
            b.misses += u64::from(call.get_miss);
            b.errors += u64::from(call.error.is_some());
            b.max_us = b.max_us.max(call.latency_us);
            b.slow += u64::from(call.latency_us > slow_us);
        }
        if let Some((kind, message)) = &call.error {
            *errors.entry(kind.clone()).or_insert(0) += 1;
            *errors_by_call.entry(call.call.to_owned()).or_insert(0) += 1;
            if error_examples.len() < EXAMPLES {
                error_examples.push(message.clone());
            }
        }
    }
    latencies.sort_unstable();
    let mut by_latency: Vec<_> = logs.iter().flat_map(|l| &l.calls).collect();
    by_latency.sort_unstable_by_key(|c| std::cmp::Reverse(c.latency_us));
    let slowest = by_latency
        .iter()
        .take(EXAMPLES)
        .map(|c| {
            format!(
                "{} at +{} ms took {} µs{}",
                c.call,
                c.start_us.saturating_sub(state.start_us) / 1000,
                c.latency_us,
                c.error
                    .as_ref()
                    .map_or(String::new(), |(_, m)| format!(" ({m})"))
            )
        })
        .collect();
    Report {
        process: state.args.process.clone(),
        calls: latencies.len() as u64,
        errors,
        error_examples,
        reads_checked: reads.len() as u64,
        stale: stale.len() as u64,
        stale_reads: stale.into_iter().take(STALE_KEPT).collect(),
        errors_by_call,
        loader_calls: state.loader_calls.load(Ordering::Relaxed),
        loader_failures: state.loader_failures.load(Ordering::Relaxed),
        p50_us: quantile(&latencies, 0.5),
        p99_us: quantile(&latencies, 0.99),
        max_us: latencies.last().copied().unwrap_or(0),
        slowest,
        buckets,
        bucket_ms: state.args.bucket.as_millis() as u64,
        slow_ms: state.args.slow.as_millis() as u64,
        samples,
        skew_ms: state.skew_us / 1000,
        verify,
        distinct_values,
    }
}
