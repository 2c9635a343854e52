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

fn origin(p: &str, at: u64, origin: &str) -> Call {
    let origin = origin.to_owned();
    call(p, at, at, Op::BusOrigin { origin })
}

fn applied(p: &str, at: u64, origin: &str, notice: Notice) -> Call {
    let origin = origin.to_owned();
    call(p, at, at, Op::Applied { origin, notice })
}

fn keys(list: &[&str]) -> Notice {
    let keys = list.iter().map(|&k| k.to_owned()).collect();
    Notice::Keys { keys }
}

#[test]
fn another_process_is_held_to_a_call_once_it_applied_its_notice() {
    let calls = vec![
        origin("p0", 0, "a0"),
        origin("p1", 0, "a1"),
        set("p0", 0, 10, "k0", 1),
        applied("p1", 12, "a0", keys(&["k0"])),
        delete("p0", 20, 30, "k0", 2),
        // 10 ms past the delete's return, but p1 had not applied its notice yet: not stale.
        get("p1", 40, 41, "k0", Some(1)),
        applied("p1", 45, "a0", keys(&["k0"])),
        // Began once p1 had applied it: stale, however soon after.
        get("p1", 46, 47, "k0", Some(1)),
    ];
    let report = check(&calls, BUS);
    assert_eq!(stale_by(&report), vec![(7, 4)]);
    assert_eq!(report.largest_notice_delay_us, Some(15_000));
    let Fault::Stale { late_us, .. } = report.violations[0].fault else {
        panic!("{report:?}");
    };
    assert_eq!(late_us, 1_000, "late from the notice, not from the bound");
}

#[test]
fn only_a_notice_from_the_calling_process_naming_what_it_replaced_counts() {
    let calls = vec![
        origin("p0", 0, "a0"),
        origin("p1", 0, "a1"),
        origin("p2", 0, "a2"),
        set("p0", 0, 10, "k0", 1),
        delete("p0", 20, 30, "k0", 2),
        // Before the delete began: not its notice.
        applied("p1", 15, "a0", keys(&["k0"])),
        // Another sender, another key, another kind: none is the delete's notice.
        applied("p1", 31, "a2", keys(&["k0"])),
        applied("p1", 32, "a0", keys(&["k1"])),
        applied(
            "p1",
            33,
            "a0",
            Notice::Tag {
                tag: "t0".to_owned(),
            },
        ),
        applied("p1", 33, "a0", Notice::Flush),
        get("p1", 34, 35, "k0", Some(1)),
        // Without its notice the bound holds: 5 ms after the delete returned.
        get("p1", 36, 37, "k0", Some(1)),
    ];
    let report = check(&calls, BUS);
    assert_eq!(stale_by(&report), vec![(11, 4)]);
    // The set's notice reached p1 (at 15), the delete's did not, and p2 applied neither.
    assert_eq!(report.unapplied_notices, 3);
    let text = excerpt(&calls, &report.violations[0], 16);
    assert!(text.contains("applied Keys"), "{text}");
}

/// Two sets of one key back to back in `p0`: the first's notice reaches `p1` after the second
/// began. That notice is the first set's, not the second's: until `p1` applies the second's, it may
/// still hold the first's value (read from the shared layer between the two notices).
#[test]
fn a_call_is_paired_with_its_own_notice_not_an_earlier_one_still_in_flight() {
    let calls = vec![
        origin("p0", 0, "a0"),
        origin("p1", 0, "a1"),
        set("p0", 0, 10, "k0", 1),
        set("p0", 11, 20, "k0", 2),
        applied("p1", 15, "a0", keys(&["k0"])),
        // Past the second set's return and the first notice: not stale, the second's is on its way.
        get("p1", 21, 22, "k0", Some(1)),
        applied("p1", 30, "a0", keys(&["k0"])),
        get("p1", 31, 32, "k0", Some(1)),
    ];
    let report = check(&calls, BUS);
    assert_eq!(stale_by(&report), vec![(7, 3)]);
    assert_eq!(report.largest_notice_delay_us, Some(10_000));
}

/// Two tasks of `p0` delete one key at overlapping times: their notices may go either way, so
/// each binds `p1` once both are applied.
#[test]
fn overlapping_calls_of_one_process_bind_once_both_notices_are_applied() {
    let calls = vec![
        origin("p0", 0, "a0"),
        origin("p1", 0, "a1"),
        set("p0", 0, 10, "k0", 1),
        applied("p1", 12, "a0", keys(&["k0"])),
        delete("p0", 20, 30, "k0", 2),
        delete("p0", 25, 35, "k0", 3),
        applied("p1", 32, "a0", keys(&["k0"])),
        // The first delete's notice may be the second's: not stale yet.
        get("p1", 36, 37, "k0", Some(1)),
        applied("p1", 38, "a0", keys(&["k0"])),
        get("p1", 39, 40, "k0", Some(1)),
    ];
    let report = check(&calls, BUS);
    let reads: Vec<usize> = stale_by(&report).into_iter().map(|(r, _)| r).collect();
    assert_eq!(reads, vec![9]);
}

#[test]
fn a_notice_applied_before_the_call_returned_binds_from_its_return() {
    let tag = call(
        "p0",
        20,
        30,
        Op::InvalidateTag {
            tag: "t0".to_owned(),
            bumps: bumps(&[("k0", 2)]),
        },
    );
    let calls = vec![
        origin("p0", 0, "a0"),
        origin("p1", 0, "a1"),
        set("p0", 0, 10, "k0", 1),
        tag,
        applied(
            "p1",
            25,
            "a0",
            Notice::Tag {
                tag: "t0".to_owned(),
            },
        ),
        // Overlaps the invalidation: may return either version.
        get("p1", 26, 27, "k0", Some(1)),
        get("p1", 31, 32, "k0", Some(1)),
    ];
    let report = check(&calls, BUS);
    assert_eq!(stale_by(&report), vec![(6, 3)]);
    assert_eq!(report.largest_notice_delay_us, Some(0));
}

#[test]
fn bus_records_round_trip_through_json() {
    let records = [
        origin("p0", 1, "00000000000000a0"),
        applied("p0", 2, "00000000000000a1", keys(&["k0", "k1"])),
        applied(
            "p0",
            3,
            "00000000000000a1",
            Notice::Tag {
                tag: "t1".to_owned(),
            },
        ),
        applied("p0", 4, "00000000000000a1", Notice::Flush),
    ];
    for record in records {
        let line = serde_json::to_string(&record).expect("json");
        assert_eq!(serde_json::from_str::<Call>(&line).expect("parse"), record);
    }
}
