//! The checker: no read returns a version that an invalidation or a later write had replaced
//! before the read began (`docs/guarantees.md#g2-invalidation`,
//! `docs/guarantees.md#g3-no-resurrection`), allowing reads in other processes the time their
//! cache took to apply the replacing call's notice.
//!
//! Version `x` of key `k` reaches a cache in one of two ways: the `set` that bumped `k` to `x`
//! wrote it, or a loader read `x` from the database. A read that began at `s` and returned `x` is
//! stale when some call `W` that succeeded bumped `k` to `y > x`, `W`'s deadline for the read's
//! process was before `s`, and neither way explains `x` after `W`. The deadline is `W`'s return
//! in `W`'s own process; in another, the later of `W`'s return and the moment that process
//! applied `W`'s notice from the bus ([`Notices`]), or `W`'s return plus a fixed bound when it
//! never applied it (or there is no bus):
//!
//! - a loader that read `x` read it before `W` bumped `k` (versions only grow), so it began before
//!   `W`'s invalidation and may not write `x` back after it (G3); single-flight waiters that began
//!   after `W` returned may not receive it either;
//! - the `set` of `x` explains it only if it was still running when `W` began: the two then
//!   overlap and the cache may order the `set` last. A failed `set` may still be writing, so it
//!   explains its version at any time.
//!
//! Misses are never stale (an entry may always be evicted).

use std::collections::HashMap;
use std::time::Duration;

use super::{Call, Notices, Op, Version, parse_value};

/// What the checker looked at, and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Reads (`get`, `get_or_set`) that returned a value: each was checked.
    pub reads: usize,
    /// `get`s that returned nothing.
    pub misses: usize,
    /// Loader runs.
    pub loads: usize,
    /// `set`s that succeeded.
    pub sets: usize,
    /// `delete`, `invalidate_tag` and `flush` calls that succeeded.
    pub invalidations: usize,
    /// Delete-during-load trials: loads during which an invalidation of their key, bumping it
    /// past the version they read, began.
    pub trials: usize,
    /// Calls that returned an error (not checked as reads; never taken as invalidations).
    pub errors: usize,
    /// The largest time from an invalidating call's return to another process applying its
    /// notice, for information; `None` without a bus.
    pub largest_notice_delay_us: Option<u64>,
    /// How many times another process with a bus never applied a call's notice within the run
    /// (its reads were then held to the fixed bound), for information: mostly calls made after
    /// that process had finished.
    pub unapplied_notices: usize,
    /// The reads that broke the rule.
    pub violations: Vec<Violation>,
}

/// A read that broke the rule: `read` indexes the checked calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The read.
    pub read: usize,
    /// How it broke the rule.
    pub fault: Fault,
}

/// How a read broke the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// It returned a version that call `superseded_by` had replaced, and began `late_us` µs
    /// after that call's deadline for the read's process.
    Stale {
        /// The call that bumped the key past the version read (the one whose deadline was
        /// earliest before the read).
        superseded_by: usize,
        /// How long after that deadline the read began.
        late_us: u64,
    },
    /// It returned a value that is not `KEY@VERSION` of the key read.
    Foreign,
    /// It returned a version of the key that no call ever made.
    Phantom,
}

/// A bump of one key by one call: the call's index and the new version.
type Bump = (usize, Version);

/// Checks `calls` (every process's, merged): reads in the process that made an invalidation are
/// held to it once it returned, reads in another process once it also applied its notice, or
/// `unnoticed_bound` after it returned when that process never applied it.
pub fn check(calls: &[Call], unnoticed_bound: Duration) -> Report {
    let bound_us = u64::try_from(unnoticed_bound.as_micros()).unwrap_or(u64::MAX);
    let notices = Notices::of(calls);
    let mut bumps: HashMap<&str, Vec<Bump>> = HashMap::new();
    let mut set_of: HashMap<(&str, Version), usize> = HashMap::new();
    for (i, call) in calls.iter().enumerate() {
        for (key, version) in call.bumps() {
            bumps.entry(key).or_default().push((i, version));
            if matches!(call.op, Op::Set { .. }) {
                set_of.insert((key, version), i);
            }
        }
    }
    let no_bumps = Vec::new();
    let (largest_notice_delay_us, unapplied_notices) = notices.delays(calls);
    let mut report = Report {
        largest_notice_delay_us,
        unapplied_notices,
        ..Report::default()
    };
    for (i, call) in calls.iter().enumerate() {
        if call.error.is_some() {
            report.errors += 1;
            continue;
        }
        match &call.op {
            Op::Get { value: None, .. } => report.misses += 1,
            Op::Get {
                key,
                value: Some(value),
            }
            | Op::GetOrSet {
                key,
                value: Some(value),
            } => {
                report.reads += 1;
                let key_bumps = bumps.get(key.as_str()).unwrap_or(&no_bumps);
                let fault = match parse_value(value) {
                    Some((k, x)) if k == key => {
                        let deadlines = Deadlines {
                            notices: &notices,
                            bound_us,
                        };
                        judge_read(calls, i, (key, x), key_bumps, &set_of, &deadlines)
                    }
                    _ => Some(Fault::Foreign),
                };
                if let Some(fault) = fault {
                    report.violations.push(Violation { read: i, fault });
                }
            }
            // A successful get_or_set always returns a value; without one there is nothing to judge.
            Op::GetOrSet { value: None, .. } => {}
            Op::Load { key, version } => {
                report.loads += 1;
                let key_bumps = bumps.get(key.as_str()).unwrap_or(&no_bumps);
                if invalidated_during(calls, call, *version, key_bumps) {
                    report.trials += 1;
                }
            }
            Op::Set { .. } => report.sets += 1,
            Op::Delete { .. } | Op::InvalidateTag { .. } | Op::Flush { .. } => {
                report.invalidations += 1;
            }
            Op::BusOrigin { .. } | Op::Applied { .. } => {}
        }
    }
    report
}

/// From when a call binds the reads of each process.
struct Deadlines<'a> {
    notices: &'a Notices<'a>,
    /// For another process that never applied the call's notice.
    bound_us: u64,
}

impl Deadlines<'_> {
    /// From when `w` binds the reads of `process`.
    fn of(&self, w: &Call, process: &str) -> u64 {
        if w.process == process {
            return w.end_us;
        }
        match self.notices.applied(process, w) {
            Some(at) => at.max(w.end_us),
            None => w.end_us.saturating_add(self.bound_us),
        }
    }
}

/// Whether read `i`, which returned version `x` of `key`, broke the rule, and how.
fn judge_read(
    calls: &[Call],
    i: usize,
    (key, x): (&str, Version),
    key_bumps: &[Bump],
    set_of: &HashMap<(&str, Version), usize>,
    deadlines: &Deadlines<'_>,
) -> Option<Fault> {
    if x > 0 && !key_bumps.iter().any(|&(_, v)| v == x) {
        return Some(Fault::Phantom);
    }
    let read = &calls[i];
    let source_set = set_of.get(&(key, x)).map(|&s| &calls[s]);
    if source_set.is_some_and(|s| s.error.is_some()) {
        return None;
    }
    let mut worst: Option<(usize, u64)> = None;
    for &(j, y) in key_bumps {
        let w = &calls[j];
        if y <= x || w.error.is_some() {
            continue;
        }
        let deadline = deadlines.of(w, &read.process);
        if deadline >= read.start_us {
            continue;
        }
        if source_set.is_some_and(|s| s.end_us >= w.start_us) {
            continue;
        }
        let late_us = read.start_us - deadline;
        if worst.is_none_or(|(_, l)| late_us > l) {
            worst = Some((j, late_us));
        }
    }
    worst.map(|(superseded_by, late_us)| Fault::Stale {
        superseded_by,
        late_us,
    })
}

/// Whether an invalidation of the load's key that bumped it past the version the load read began
/// before the load ended.
fn invalidated_during(calls: &[Call], load: &Call, version: Version, key_bumps: &[Bump]) -> bool {
    key_bumps.iter().any(|&(j, y)| {
        let w = &calls[j];
        y > version && w.error.is_none() && w.invalidates() && w.start_us < load.end_us
    })
}
