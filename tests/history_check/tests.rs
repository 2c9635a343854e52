//! The checker on hand-made histories: it flags what is stale and passes what overlaps, so a
//! clean run of the real workload means something.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const BUS: Duration = Duration::from_millis(5);

fn call(process: &str, start_ms: u64, end_ms: u64, op: Op) -> Call {
    Call {
        process: process.to_owned(),
        task: 0,
        start_us: start_ms * 1000,
        end_us: end_ms * 1000,
        op,
        error: None,
    }
}

fn set(p: &str, s: u64, e: u64, key: &str, version: Version) -> Call {
    let key = key.to_owned();
    call(p, s, e, Op::Set { key, version })
}

fn delete(p: &str, s: u64, e: u64, key: &str, version: Version) -> Call {
    let key = key.to_owned();
    call(p, s, e, Op::Delete { key, version })
}

fn get(p: &str, s: u64, e: u64, key: &str, version: Option<Version>) -> Call {
    let value = version.map(|v| value_of(key, v));
    let key = key.to_owned();
    call(p, s, e, Op::Get { key, value })
}

fn get_or_set(p: &str, s: u64, e: u64, key: &str, version: Version) -> Call {
    let value = Some(value_of(key, version));
    let key = key.to_owned();
    call(p, s, e, Op::GetOrSet { key, value })
}

fn load(p: &str, s: u64, e: u64, key: &str, version: Version) -> Call {
    let key = key.to_owned();
    call(p, s, e, Op::Load { key, version })
}

fn bumps(list: &[(&str, Version)]) -> BTreeMap<String, Version> {
    list.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
}

fn stale_by(report: &Report) -> Vec<(usize, usize)> {
    report
        .violations
        .iter()
        .filter_map(|v| match v.fault {
            Fault::Stale { superseded_by, .. } => Some((v.read, superseded_by)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_read_after_a_delete_returned_that_returns_the_old_version_is_flagged() {
    let calls = vec![
        set("p0", 0, 10, "k0", 1),
        delete("p0", 20, 30, "k0", 2),
        get("p0", 40, 41, "k0", Some(1)),
    ];
    let report = check(&calls, BUS);
    assert_eq!(stale_by(&report), vec![(2, 1)]);
    assert_eq!((report.reads, report.sets, report.invalidations), (1, 1, 1));
    let text = excerpt(&calls, &report.violations[0], 10);
    assert!(text.contains("p0/t0"), "{text}");
    assert!(text.contains("delete k0"), "{text}");
}

#[test]
fn overlapping_calls_pass() {
    let calls = vec![
        // The set overlaps the delete: the cache may order it last, and keep k0@1.
        set("p0", 0, 100, "k0", 1),
        delete("p1", 10, 20, "k0", 2),
        get("p1", 110, 111, "k0", Some(1)),
        // A get_or_set whose loader read the database before a delete that ended after the
        // get_or_set began: its caller gets what it loaded.
        get_or_set("p2", 200, 260, "k1", 0),
        load("p2", 201, 259, "k1", 0),
        delete("p0", 210, 220, "k1", 1),
        // A read that overlaps the delete may return either version.
        get("p1", 215, 230, "k1", Some(0)),
        // A miss is never stale.
        get("p1", 300, 301, "k1", None),
    ];
    let report = check(&calls, BUS);
    assert_eq!(report.violations, Vec::new());
    assert_eq!((report.reads, report.misses, report.loads), (3, 1, 1));
    assert_eq!(report.trials, 1, "the delete began during the load");
}

#[test]
fn another_process_has_the_bound_and_the_same_process_none() {
    let calls = vec![
        set("p0", 0, 10, "k0", 1),
        delete("p0", 20, 30, "k0", 2),
        // 3 ms after the delete returned, in another process: within a 5 ms bound.
        get("p1", 33, 34, "k0", Some(1)),
        // ...and in the deleting process itself: stale at once.
        get("p0", 31, 32, "k0", Some(1)),
    ];
    assert_eq!(stale_by(&check(&calls, BUS)), vec![(3, 1)]);
    assert_eq!(
        stale_by(&check(&calls, Duration::from_millis(1))),
        vec![(2, 1), (3, 1)]
    );
}

#[test]
fn a_waiter_that_began_after_a_delete_receives_no_load_that_began_before_it() {
    let calls = vec![
        get_or_set("p0", 0, 60, "k0", 0),
        load("p0", 1, 59, "k0", 0),
        delete("p0", 10, 20, "k0", 1),
        // Joined the load in flight after the delete had returned: the third row of issue 9.
        get_or_set("p0", 30, 60, "k0", 0),
    ];
    let report = check(&calls, BUS);
    assert_eq!(stale_by(&report), vec![(3, 2)]);
    assert_eq!(report.trials, 1);
}

#[test]
fn tag_invalidations_and_flushes_replace_the_versions_they_bump() {
    let tag = call(
        "p1",
        20,
        30,
        Op::InvalidateTag {
            tag: "t0".to_owned(),
            bumps: bumps(&[("k0", 2), ("k2", 3)]),
        },
    );
    let flush = call(
        "p1",
        50,
        60,
        Op::Flush {
            bumps: bumps(&[("k0", 4), ("k1", 5), ("k2", 6)]),
        },
    );
    let calls = vec![
        set("p0", 0, 10, "k0", 1),
        tag,
        get("p1", 40, 41, "k0", Some(1)),
        // k1 is not under the tag: its value stands until the flush.
        get("p1", 40, 41, "k1", Some(0)),
        flush,
        get("p1", 70, 71, "k1", Some(0)),
        get("p1", 70, 71, "k2", Some(3)),
    ];
    assert_eq!(stale_by(&check(&calls, BUS)), vec![(2, 1), (5, 4), (6, 4)]);
}

#[test]
fn a_set_that_ended_before_a_later_delete_began_explains_nothing_after_it() {
    let calls = vec![
        set("p0", 0, 10, "k0", 1),
        // Overlaps nothing of the set...
        delete("p1", 5, 30, "k0", 2),
        // ...but this one began after the set had returned, and so replaced k0@1.
        delete("p1", 40, 50, "k0", 3),
        get("p1", 60, 61, "k0", Some(1)),
        get("p1", 35, 36, "k0", Some(1)),
    ];
    assert_eq!(stale_by(&check(&calls, BUS)), vec![(3, 2)]);
}

#[test]
fn a_later_set_replaces_an_earlier_version() {
    let calls = vec![
        set("p0", 0, 10, "k0", 1),
        set("p0", 20, 30, "k0", 2),
        get("p0", 40, 41, "k0", Some(1)),
    ];
    assert_eq!(stale_by(&check(&calls, BUS)), vec![(2, 1)]);
}

#[test]
fn failed_calls_neither_replace_nor_get_ruled_out() {
    let mut failed_delete = delete("p0", 20, 30, "k0", 2);
    failed_delete.error = Some("timeout".to_owned());
    let mut failed_set = set("p0", 0, 10, "k1", 1);
    failed_set.error = Some("timeout".to_owned());
    let calls = vec![
        set("p0", 0, 10, "k0", 1),
        failed_delete,
        get("p0", 40, 41, "k0", Some(1)),
        failed_set,
        delete("p0", 20, 30, "k1", 2),
        get("p0", 40, 41, "k1", Some(1)),
    ];
    let report = check(&calls, BUS);
    assert_eq!(report.violations, Vec::new());
    assert_eq!(report.errors, 2);
}

#[test]
fn values_of_another_key_or_of_no_call_are_flagged() {
    let mut foreign = get("p0", 0, 1, "k0", None);
    foreign.op = Op::Get {
        key: "k0".to_owned(),
        value: Some("k1@0".to_owned()),
    };
    let calls = vec![foreign, get("p0", 2, 3, "k0", Some(7))];
    let faults: Vec<Fault> = check(&calls, BUS)
        .violations
        .into_iter()
        .map(|v| v.fault)
        .collect();
    assert_eq!(faults, vec![Fault::Foreign, Fault::Phantom]);
}

#[test]
fn histories_round_trip_through_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let calls = [
        set("p0", 0, 10, "k0", 1),
        call(
            "p0",
            20,
            30,
            Op::Flush {
                bumps: bumps(&[("k0", 2)]),
            },
        ),
        get("p1", 5, 6, "k0", None),
    ];
    let write = |name: &str, calls: &[Call]| {
        let path = dir.path().join(name);
        let lines: Vec<String> = calls
            .iter()
            .map(|c| serde_json::to_string(c).expect("json"))
            .collect();
        std::fs::write(&path, lines.join("\n")).expect("write");
        path
    };
    let files = [write("p0", &calls[..2]), write("p1", &calls[2..])];
    let merged = read_history(&files).expect("read");
    assert_eq!(
        merged,
        vec![calls[0].clone(), calls[2].clone(), calls[1].clone()]
    );
}
