//! A lock-free latency histogram: fixed buckets, one relaxed atomic add per sample.
//!
//! Fixed bounds, not a sketch: the buckets are what Prometheus and OpenTelemetry export as they
//! are, two snapshots subtract into the histogram of the interval between them (what a dashboard
//! plots each second), and recording costs a short search and two adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 50 µs to 10 s, about three per decade; the last
/// bucket takes everything above.
const BOUNDS_US: [u64; 19] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Samples of one duration (a layer's calls, the loads, the bus lag).
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyStats {
        let mut counts = [0; BUCKETS];
        for (count, bucket) in counts.iter_mut().zip(&self.buckets) {
            *count = bucket.load(Ordering::Relaxed);
        }
        LatencyStats {
            counts,
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram of durations, in a [`CacheStats`](crate::CacheStats): counts per bucket since the
/// cache was built. [`since`](Self::since) turns two snapshots into the histogram of the time
/// between them.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = vorte_cache::Cache::from_config(&Default::default()).await?;
/// let before = cache.stats().loads.time;
/// let _: u32 = cache.get_or_set("k", || async { Ok::<_, std::io::Error>(7) }).await?;
/// let loads = cache.stats().loads.time.since(&before);
/// assert_eq!(loads.count(), 1);
/// assert!(loads.percentile(0.99).is_some());
/// # Ok::<(), vorte_cache::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyStats {
    counts: [u64; BUCKETS],
    sum_us: u64,
}

impl LatencyStats {
    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the samples.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us)
    }

    /// The mean sample, `None` without samples.
    pub fn mean(&self) -> Option<Duration> {
        let count = self.count();
        (count > 0).then(|| Duration::from_micros(self.sum_us / count))
    }

    /// The `q` quantile (`0.5`, `0.99`), `None` without samples: the upper bound of the bucket
    /// that holds it, so an over-estimate by at most the bucket's width (about ×2.5).
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(
                    BOUNDS_US.get(i).copied().unwrap_or(u64::MAX / 2),
                ));
            }
        }
        None
    }

    /// The buckets: `(upper bound, samples in it)`, the last bound `None` (above every other).
    /// Counts are per bucket, not cumulative.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (BOUNDS_US.get(i).map(|&us| Duration::from_micros(us)), c))
    }

    /// The samples recorded after `earlier` (a snapshot of the same histogram) and up to this one.
    pub fn since(&self, earlier: &LatencyStats) -> LatencyStats {
        let mut counts = [0; BUCKETS];
        for (i, count) in counts.iter_mut().enumerate() {
            *count = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        LatencyStats {
            counts,
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }
}

/// As JSON: `count`, `sum_ms`, `mean_ms`, `p50_ms`, `p90_ms`, `p99_ms` (`null` without samples)
/// and `buckets`, a list of `[upper bound in ms or null, samples]`.
impl serde::Serialize for LatencyStats {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let buckets: Vec<(Option<f64>, u64)> = self.buckets().map(|(le, c)| (ms(le), c)).collect();
        let mut st = s.serialize_struct("LatencyStats", 7)?;
        st.serialize_field("count", &self.count())?;
        st.serialize_field("sum_ms", &(self.sum().as_secs_f64() * 1000.0))?;
        st.serialize_field("mean_ms", &ms(self.mean()))?;
        st.serialize_field("p50_ms", &ms(self.percentile(0.5)))?;
        st.serialize_field("p90_ms", &ms(self.percentile(0.9)))?;
        st.serialize_field("p99_ms", &ms(self.percentile(0.99)))?;
        st.serialize_field("buckets", &buckets)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentile_is_the_bound_of_the_bucket_that_holds_it() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(Duration::from_micros(80)); // the 100 µs bucket
        }
        h.record(Duration::from_millis(3)); // 5 ms
        h.record(Duration::from_secs(100)); // above every bound
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.percentile(0.5), Some(Duration::from_micros(100)));
        assert_eq!(s.percentile(0.98), Some(Duration::from_micros(100)));
        assert_eq!(s.percentile(0.99), Some(Duration::from_millis(5)));
        assert!(
            s.percentile(1.0)
                .is_some_and(|d| d > Duration::from_secs(60))
        );
        assert_eq!(LatencyStats::default().percentile(0.5), None);
    }

    #[test]
    fn two_snapshots_subtract_into_the_interval_between_them() {
        let h = Histogram::default();
        h.record(Duration::from_millis(1));
        let before = h.snapshot();
        h.record(Duration::from_millis(20));
        h.record(Duration::from_millis(20));
        let interval = h.snapshot().since(&before);
        assert_eq!(interval.count(), 2);
        assert_eq!(interval.sum(), Duration::from_millis(40));
        assert_eq!(interval.percentile(0.5), Some(Duration::from_millis(25)));
        let bucket = interval.buckets().find(|(_, c)| *c > 0);
        assert_eq!(bucket, Some((Some(Duration::from_millis(25)), 2)));
    }
}
