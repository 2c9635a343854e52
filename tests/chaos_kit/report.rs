//! The one JSON line a `chaos_worker` writes when its run ends, and the figures the tests compute
//! from several of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What one worker process saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// The worker's name (`p0`, `p1`, ...).
    pub process: String,
    /// Calls made (reads, writes, invalidations).
    pub calls: u64,
    /// Errors the cache returned to callers, by `ErrorKind` (`Debug` form).
    pub errors: BTreeMap<String, u64>,
    /// The first few error messages, to say what failed.
    pub error_examples: Vec<String>,
    /// Reads that returned a value (each checked for staleness).
    pub reads_checked: u64,
    /// Reads that returned a version replaced longer than the bound before they began.
    pub stale: u64,
    /// The stale reads (the first 2,000).
    pub stale_reads: Vec<StaleRead>,
    /// Errors by the call that got them (`InvalidateTag`, `Set`, ...).
    pub errors_by_call: BTreeMap<String, u64>,
    /// Runs of this process's loader.
    pub loader_calls: u64,
    /// Runs of the loader that failed on purpose (the fail-safe row).
    pub loader_failures: u64,
    /// Call latency percentiles and maximum, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// The slowest call, µs.
    pub max_us: u64,
    /// The five slowest calls, described.
    pub slowest: Vec<String>,
    /// The run, cut into buckets of `bucket_ms` (for hit rate and recovery over time).
    pub buckets: Vec<Bucket>,
    /// The bucket length, ms.
    pub bucket_ms: u64,
    /// A call slower than this is counted in its bucket's `slow`, ms.
    pub slow_ms: u64,
    /// The cache's layer counters, sampled once per bucket.
    pub samples: Vec<Sample>,
    /// What this process's clock read minus the database's clock, ms (the faketime row).
    pub skew_ms: i64,
    /// The check of every key after the run (`--verify`).
    pub verify: Option<Verify>,
    /// Distinct values the stampede's callers got (the one-key rows).
    pub distinct_values: u64,
}

/// One stale read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StaleRead {
    /// When it began, ms since the epoch (the database's clock).
    pub at_ms: u64,
    /// How long beyond the bound the write that replaced its version had returned, µs.
    pub late_us: u64,
    /// When that write returned, ms since the epoch.
    pub write_end_ms: u64,
    /// The read and that write, described.
    pub text: String,
}

/// One slice of the run, by the time calls began (µs since the epoch, the database's clock).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bucket {
    /// Its start, ms since the epoch.
    pub start_ms: u64,
    /// Calls that began in it.
    pub calls: u64,
    /// Reads (`get`, `get_or_set`, `#[cached]`) that began in it.
    pub reads: u64,
    /// Of those, reads that ran this process's loader or found nothing.
    pub misses: u64,
    /// Calls that began in it and returned an error.
    pub errors: u64,
    /// The slowest call that began in it, µs.
    pub max_us: u64,
    /// Calls that began in it and took longer than the report's `slow_ms`.
    pub slow: u64,
}

impl Bucket {
    /// Hits over reads; `None` without reads.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.reads > 0).then(|| 1.0 - self.misses as f64 / self.reads as f64)
    }
}

/// The cache's per-layer counters at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// When, ms since the epoch (the database's clock).
    pub at_ms: u64,
    /// One per enabled layer, L1 first.
    pub layers: Vec<LayerSample>,
}

/// One layer's counters in a [`Sample`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LayerSample {
    /// `L1` .. `L4`.
    pub layer: String,
    /// Reads it answered.
    pub hits: u64,
    /// Calls to it that failed or timed out and were skipped.
    pub errors: u64,
    /// Writes dropped because its write-behind queue was full.
    pub write_behind_dropped: u64,
    /// Invalidations it still owes.
    pub recovery_pending: u64,
    /// How many times its circuit breakers opened, all of them together.
    #[serde(default)]
    pub breaker_openings: u64,
    /// How many of its circuit breakers are open (or half-open) now.
    #[serde(default)]
    pub breakers_open: u64,
}

/// The check of every key of the workload after the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verify {
    /// Keys read.
    pub keys: u64,
    /// Reads that failed.
    pub read_errors: u64,
    /// Keys whose cached version is not the database's and no concurrent write explains it.
    pub mismatches: u64,
}

impl Report {
    /// Every error surfaced to callers.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Hit rate over the buckets that start in `[from_ms, to_ms)`; `None` without reads.
    pub fn hit_rate_between(&self, from_ms: u64, to_ms: u64) -> Option<f64> {
        hit_rate_of(self.in_range(from_ms, to_ms))
    }

    /// Calls that began in `[from_ms, to_ms)`.
    pub fn calls_between(&self, from_ms: u64, to_ms: u64) -> u64 {
        self.in_range(from_ms, to_ms).map(|b| b.calls).sum()
    }

    /// Calls that began in `[from_ms, to_ms)` and took longer than `slow_ms`.
    pub fn slow_between(&self, from_ms: u64, to_ms: u64) -> u64 {
        self.in_range(from_ms, to_ms).map(|b| b.slow).sum()
    }

    fn in_range(&self, from_ms: u64, to_ms: u64) -> impl Iterator<Item = &Bucket> {
        self.buckets
            .iter()
            .filter(move |b| b.start_ms >= from_ms && b.start_ms < to_ms)
    }

    /// When the hit rate of a bucket first fell under `floor` at or after `from_ms` (the start of
    /// that bucket, ms since the epoch).
    pub fn dip_at(&self, from_ms: u64, floor: f64) -> Option<u64> {
        self.buckets
            .iter()
            .filter(|b| b.start_ms >= from_ms)
            .find(|b| b.hit_rate().is_some_and(|h| h < floor))
            .map(|b| b.start_ms)
    }

    /// When the hit rate over a window of `window_ms` starting at or after `from_ms` first
    /// reached `target` (the end of that window, ms since the epoch).
    pub fn back_at(&self, from_ms: u64, target: f64, window_ms: u64) -> Option<u64> {
        self.buckets
            .iter()
            .filter(|b| b.start_ms >= from_ms)
            .map(|b| b.start_ms)
            .find(|&start| {
                self.hit_rate_between(start, start + window_ms)
                    .is_some_and(|h| h >= target)
            })
            .map(|start| start + window_ms)
    }

    /// The counters of `layer` in the first sample at or after `at_ms`.
    pub fn layer_at(&self, layer: &str, at_ms: u64) -> Option<&LayerSample> {
        self.samples
            .iter()
            .find(|s| s.at_ms >= at_ms)
            .and_then(|s| s.layers.iter().find(|l| l.layer == layer))
    }

    /// The counters of `layer` in the last sample taken before `at_ms`.
    pub fn layer_before(&self, layer: &str, at_ms: u64) -> Option<&LayerSample> {
        self.samples
            .iter()
            .rfind(|s| s.at_ms < at_ms)
            .and_then(|s| s.layers.iter().find(|l| l.layer == layer))
    }

    /// The counters of `layer` in the last sample.
    pub fn layer_last(&self, layer: &str) -> Option<&LayerSample> {
        self.samples
            .last()
            .and_then(|s| s.layers.iter().find(|l| l.layer == layer))
    }

    /// One line for a test's output.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} calls, errors {:?}, {} stale of {} reads checked, {} loader calls, \
             p50 {} µs, p99 {} µs, max {} µs, skew {} ms",
            self.process,
            self.calls,
            self.errors,
            self.stale,
            self.reads_checked,
            self.loader_calls,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.skew_ms
        )
    }
}

/// Hit rate over `buckets` together; `None` without reads.
pub fn hit_rate_of<'a>(buckets: impl Iterator<Item = &'a Bucket>) -> Option<f64> {
    let (reads, misses) = buckets.fold((0, 0), |(r, m), b| (r + b.reads, m + b.misses));
    (reads > 0).then(|| 1.0 - misses as f64 / reads as f64)
}

/// The `q` quantile (`0..=1`) of sorted `values`; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
