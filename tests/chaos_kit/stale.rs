//! The stale-read rule of the chaos workload, the history check's rule
//! (`docs/history.md#what-it-checks`) applied by each worker to its own reads: a read that began
//! at `s` and returned version `x` of a key is stale when a write that succeeded bumped the key to
//! `y > x` and returned before `s` (before `s - bound` when it ran in another process), unless
//! `x` was written by a `set` still running when that write began (the two overlapped, and the
//! cache may order the `set` last).

use std::collections::BTreeMap;

use super::truth::{WriteKind, WriteRecord};

/// One read that returned a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The key index in the worker's key list.
    pub key: usize,
    /// The version it returned.
    pub version: u64,
    /// Before it began, µs (the database's clock).
    pub start_us: u64,
}

/// Why a read is stale: the write that had replaced its version, and how long before the read
/// (beyond the bound) that write returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The version that replaced the one read.
    pub by_version: u64,
    /// The process that wrote it.
    pub by_process: String,
    /// What kind of write it was.
    pub by_kind: WriteKind,
    /// When that write returned, µs.
    pub by_end_us: u64,
    /// How long beyond the bound, µs.
    pub late_us: u64,
}

/// Judges `read` (made by `process`) against the recorded writes of its key.
pub fn judge(
    read: &Read,
    process: &str,
    records: &BTreeMap<u64, WriteRecord>,
    other_process_bound_us: u64,
) -> Option<Stale> {
    let written_by_set = records
        .get(&read.version)
        .filter(|r| r.kind == WriteKind::Set);
    records
        .range(read.version + 1..)
        .filter(|(_, w)| w.kind != WriteKind::Failed)
        .filter_map(|(&version, w)| {
            let bound = if w.process == process {
                0
            } else {
                other_process_bound_us
            };
            let deadline = w.end_us.saturating_add(bound);
            let overlapped = written_by_set.is_some_and(|s| s.end_us > w.start_us);
            (deadline < read.start_us && !overlapped).then(|| Stale {
                by_version: version,
                by_process: w.process.clone(),
                by_kind: w.kind,
                by_end_us: w.end_us,
                late_us: read.start_us - deadline,
            })
        })
        .max_by_key(|s| s.late_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(start_us: u64, end_us: u64, process: &str, kind: WriteKind) -> WriteRecord {
        WriteRecord {
            start_us,
            end_us,
            process: process.to_owned(),
            kind,
        }
    }

    fn read(version: u64, start_us: u64) -> Read {
        Read {
            key: 0,
            version,
            start_us,
        }
    }

    #[test]
    fn a_version_replaced_before_the_read_is_stale_in_the_same_process_at_once() {
        let records = BTreeMap::from([(2, record(100, 200, "p0", WriteKind::Invalidate))]);
        assert_eq!(
            judge(&read(1, 201), "p0", &records, 5_000).map(|s| s.late_us),
            Some(1)
        );
        assert_eq!(judge(&read(1, 199), "p0", &records, 5_000), None);
    }

    #[test]
    fn another_process_gets_the_bound() {
        let records = BTreeMap::from([(2, record(100, 200, "p1", WriteKind::Invalidate))]);
        assert_eq!(judge(&read(1, 5_000), "p0", &records, 5_000), None);
        assert!(judge(&read(1, 5_300), "p0", &records, 5_000).is_some());
    }

    #[test]
    fn a_set_overlapping_the_write_explains_its_version() {
        let records = BTreeMap::from([
            (1, record(90, 250, "p1", WriteKind::Set)),
            (2, record(100, 200, "p0", WriteKind::Invalidate)),
        ]);
        assert_eq!(judge(&read(1, 10_000), "p0", &records, 0), None);
        let earlier = BTreeMap::from([
            (1, record(10, 50, "p1", WriteKind::Set)),
            (2, record(100, 200, "p0", WriteKind::Invalidate)),
        ]);
        assert!(judge(&read(1, 10_000), "p0", &earlier, 0).is_some());
    }

    #[test]
    fn a_failed_write_replaces_nothing_and_the_current_version_is_never_stale() {
        let records = BTreeMap::from([
            (1, record(10, 50, "p1", WriteKind::Set)),
            (2, record(100, 200, "p0", WriteKind::Failed)),
        ]);
        assert_eq!(judge(&read(1, 10_000), "p0", &records, 0), None);
        assert_eq!(judge(&read(2, 10_000), "p0", &records, 0), None);
    }
}
