//! The time of each request, for TTLs: the trace's own timestamps (CSV) or the request's index
//! over a fixed rate (`--rate`, `docs/simulate.md#ttls-and-time`).

/// Maps a request's index to its time in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock<'a> {
    /// The trace's timestamps, one per request.
    Timestamps(&'a [f64]),
    /// Requests arrive evenly at this many a second, the first at 0.
    Rate(f64),
}

impl Clock<'_> {
    /// The time of request `index`, in seconds.
    pub(crate) fn time(&self, index: usize) -> f64 {
        match self {
            Clock::Timestamps(times) => times.get(index).copied().unwrap_or(f64::INFINITY),
            Clock::Rate(rate) => index as f64 / rate,
        }
    }
}
