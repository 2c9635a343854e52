//! `vorte-cache simulate` end to end (`docs/simulate.md`): the published LRU figures on the ARC
//! paper's OLTP trace, exact LRU and Belady counts on hand-made traces, the readers on good and
//! bad input, TTLs, the layer model's arithmetic, and the CSV and SVG reports.

#[allow(clippy::expect_used, reason = "a failed step fails the test")]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::write;

/// The workspace root (the simulator is run from there, as a user in the repository would).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn simulate() -> Command {
    let mut command = support::base_command();
    command.current_dir(workspace()).arg("simulate");
    command
}

/// Runs `command` to its end.
fn run(command: &mut Command) -> std::process::Output {
    match command.output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run vorte-cache: {e}"),
    }
}

/// Runs `simulate ARGS --json` and returns its report; fails the test unless it succeeds.
fn report(args: &[&str]) -> Value {
    let output = run(simulate().args(args).arg("--json"));
    assert!(
        output.status.success(),
        "simulate {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout) {
        Ok(value) => value,
        Err(e) => panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ),
    }
}

fn results(report: &Value) -> Vec<Value> {
    report["results"].as_array().cloned().unwrap_or_default()
}

/// The `hits` of the row for `policy` at `size`.
fn hits(report: &Value, policy: &str, size: u64) -> u64 {
    results(report)
        .iter()
        .find(|r| r["policy"] == policy && r["size"] == size)
        .and_then(|r| r["hits"].as_u64())
        .unwrap_or_else(|| panic!("no row for {policy} at {size}: {report}"))
}

fn temp() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("no temporary directory: {e}"),
    }
}

/// The ARC paper's OLTP trace, kept in the repository (`traces/README.md`).
const OLTP: &str = "traces/OLTP.lis.zst";

#[test]
fn lru_on_oltp_gives_the_published_figures() {
    assert!(
        workspace().join(OLTP).is_file(),
        "{OLTP} is missing from the repository: the published figures cannot be checked"
    );
    // The exact command of docs/simulate.md, path as a user gives it.
    let output = run(simulate().args([OLTP, "--policy", "lru", "--sizes", "1000,2000"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let ratio = |size: &str| {
        stdout
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&"lru") && cells.get(1) == Some(&size))
            .and_then(|cells| cells.get(cells.len() - 2).map(|c| c.to_string()))
            .unwrap_or_else(|| panic!("no lru row at {size}:\n{stdout}"))
    };
    assert_eq!(ratio("1000"), "32.83", "{stdout}");
    assert_eq!(ratio("2000"), "42.47", "{stdout}");
    assert!(
        stdout.contains("914145 requests, 186880 unique keys"),
        "{stdout}"
    );
}

#[test]
fn belady_beats_every_policy_on_oltp() {
    let report = report(&[
        OLTP,
        "--policy",
        "lru,vorte,quick_cache,moka,belady",
        "--sizes",
        "500,5000",
        "--quiet",
    ]);
    for size in [500, 5000] {
        let bound = hits(&report, "belady", size);
        for policy in ["lru", "vorte", "quick_cache", "moka"] {
            let achieved = hits(&report, policy, size);
            assert!(
                achieved <= bound,
                "{policy} at {size}: {achieved} > belady {bound}"
            );
            assert!(achieved > 0, "{policy} at {size} hit nothing");
        }
    }
}

#[test]
fn lru_and_belady_are_exact_on_a_hand_made_trace() {
    let dir = temp();
    // a b c a b d a b c d. Capacity 3: LRU hits a b a b (4); Belady keeps a b c and declines
    // d twice (its next use is the farthest, then never): hits a b a b c (5).
    let trace = write(&dir, "trace.txt", b"a\nb\nc\na\nb\nd\na\nb\nc\nd\n");
    let report = report(&[&trace, "--policy", "lru,belady", "--sizes", "1,2,3"]);
    assert_eq!(report["trace"]["requests"], 10);
    assert_eq!(report["trace"]["unique_keys"], 4);
    assert_eq!(hits(&report, "lru", 3), 4);
    assert_eq!(hits(&report, "belady", 3), 5);
    // Capacity 1: no key repeats at once, LRU hits nothing; Belady keeps a (wanted at 3,
    // sooner than b at 4 or c at 8), hits it at 3 and 6, and declines every other key.
    assert_eq!(hits(&report, "lru", 1), 0);
    assert_eq!(hits(&report, "belady", 1), 2);
    // Capacity 2: LRU: a b c(-a) a(-b) b(-c) d(-a) a(-b) b(-d) c(-a) d(-b): 0 hits. Belady
    // keeps a and b (wanted at 3 and 4) and declines c and d: hits at 3, 4, 6, 7.
    assert_eq!(hits(&report, "lru", 2), 0);
    assert_eq!(hits(&report, "belady", 2), 4);
}

#[test]
fn arc_traces_read_alike_plain_and_compressed() {
    let dir = temp();
    // Pages 10 11 12, then 11, then 10 11: 6 requests, 3 unique.
    let text = b"10 3 0 0\n11 1 0 1\n10 2 0 2\n";
    let plain = write(&dir, "t.lis", text);
    let compressed = match zstd::encode_all(&text[..], 3) {
        Ok(bytes) => write(&dir, "t.lis.zst", &bytes),
        Err(e) => panic!("zstd: {e}"),
    };
    for trace in [&plain, &compressed] {
        let report = report(&[trace, "--policy", "lru", "--sizes", "3"]);
        assert_eq!(report["trace"]["format"], "arc", "{trace}");
        assert_eq!(report["trace"]["requests"], 6, "{trace}");
        assert_eq!(report["trace"]["unique_keys"], 3, "{trace}");
        assert_eq!(hits(&report, "lru", 3), 3, "{trace}");
    }
    // zstd is recognised by its magic number whatever the name says.
    let renamed = dir.path().join("renamed.lis");
    if let Err(e) = std::fs::copy(&compressed, &renamed) {
        panic!("copy: {e}");
    }
    let report = report(&[
        &renamed.display().to_string(),
        "--sizes",
        "3",
        "--policy",
        "lru",
    ]);
    assert_eq!(report["trace"]["requests"], 6);
}

#[test]
fn csv_traces_read_with_or_without_a_header() {
    let dir = temp();
    let with = write(
        &dir,
        "with.csv",
        b"timestamp,key,size\n0.5,user:1,100\n1,user:2,80\n2.25,user:1,100\n",
    );
    let without = write(
        &dir,
        "without.csv",
        b"0.5,user:1,100\n1,user:2,80\n2.25,user:1,100\n",
    );
    for trace in [&with, &without] {
        let report = report(&[trace, "--policy", "lru", "--sizes", "2"]);
        assert_eq!(report["trace"]["format"], "csv");
        assert_eq!(report["trace"]["requests"], 3, "{trace}");
        assert_eq!(report["trace"]["unique_keys"], 2, "{trace}");
        assert_eq!(hits(&report, "lru", 2), 1, "{trace}");
    }
}

/// Runs `simulate ARGS`, expects it to fail with `code`, and returns its stderr.
fn failure(args: &[&str], code: i32) -> String {
    let output = run(simulate().args(args));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_input_is_named_with_its_file_and_line() {
    let dir = temp();
    let arc = write(&dir, "bad.lis", b"1 1 0 0\n2 x 0 1\n");
    let stderr = failure(&[&arc], 1);
    assert!(stderr.contains(&format!("{arc}:2:")), "{stderr}");
    assert!(stderr.contains("`x` is not a whole number"), "{stderr}");

    let short = write(&dir, "short.lis", b"1 1 0 0\n1 1\n");
    let stderr = failure(&[&short], 1);
    assert!(
        stderr.contains(&format!("{short}:2:")) && stderr.contains("4 fields"),
        "{stderr}"
    );

    let csv = write(&dir, "bad.csv", b"timestamp,key,size\n1,a,10\nsoon,b,10\n");
    let stderr = failure(&[&csv], 1);
    assert!(
        stderr.contains(&format!("{csv}:3:")) && stderr.contains("`soon`"),
        "{stderr}"
    );

    let csv = write(&dir, "fields.csv", b"1,a\n");
    let stderr = failure(&[&csv], 1);
    assert!(
        stderr.contains(&format!("{csv}:1:")) && stderr.contains("3 fields"),
        "{stderr}"
    );

    let corrupt = write(
        &dir,
        "corrupt.lis.zst",
        &[0x28, 0xB5, 0x2F, 0xFD, 1, 2, 3, 4, 5],
    );
    let stderr = failure(&[&corrupt], 1);
    assert!(stderr.contains(&corrupt), "{stderr}");

    let empty = write(&dir, "empty.txt", b"\n\n");
    let stderr = failure(&[&empty], 1);
    assert!(stderr.contains("holds no request"), "{stderr}");

    let missing = dir.path().join("missing.lis").display().to_string();
    let stderr = failure(&[&missing], 1);
    assert!(stderr.contains(&missing), "{stderr}");

    let keys = write(&dir, "keys.txt", b"a\n");
    let stderr = failure(&[&keys, "--sizes", "0"], 2);
    assert!(stderr.contains("size"), "{stderr}");
    let stderr = failure(&[&keys, "--ttls", "5x"], 2);
    assert!(stderr.contains("5x"), "{stderr}");
}

#[test]
fn sizes_as_a_share_of_unique_keys() {
    let dir = temp();
    let keys: String = (0..200).map(|i| format!("k{}\n", i % 100)).collect();
    let trace = write(&dir, "keys.txt", keys.as_bytes());
    let report = report(&[&trace, "--policy", "lru", "--sizes", "10%,100%"]);
    let rows = results(&report);
    let sizes: Vec<_> = rows
        .iter()
        .map(|r| (r["size"].clone(), r["size_given"].clone()))
        .collect();
    assert_eq!(
        sizes,
        vec![(10.into(), "10%".into()), (100.into(), "100%".into())]
    );
    // 100 keys cycled twice: an LRU of 10 never hits, one of 100 hits the whole second round.
    assert_eq!(hits(&report, "lru", 10), 0);
    assert_eq!(hits(&report, "lru", 100), 100);
}

#[test]
fn an_expired_entry_counts_a_miss_and_is_loaded_again() {
    let dir = temp();
    // Key a at 0 s (miss), 10 s (hit), 100 s (expired under 60s), 110 s (hit again).
    let trace = write(&dir, "t.csv", b"0,a,1\n10,a,1\n100,a,1\n110,a,1\n");
    let timed = report(&[
        &trace,
        "--policy",
        "lru,belady",
        "--sizes",
        "10",
        "--ttls",
        "60s,none",
    ]);
    let row = |policy: &str, ttl: &str| {
        results(&timed)
            .into_iter()
            .find(|r| r["policy"] == policy && r["ttl"] == ttl)
            .unwrap_or_else(|| panic!("no {policy} {ttl} row: {timed}"))
    };
    for policy in ["lru", "belady"] {
        assert_eq!(row(policy, "1m")["hits"], 2, "{policy}");
        assert_eq!(row(policy, "none")["hits"], 3, "{policy}");
    }
    assert_eq!(row("lru", "1m")["expired"], 1);
    // Belady under a TTL keeps what will still be fresh when next read: capacity 1, a at 0 s is
    // next read at 10 s (expired under 10s), b at 1 s next read at 10.5 s (fresh): it keeps b.
    let trace = write(&dir, "belady.csv", b"0,a,1\n1,b,1\n10,a,1\n10.5,b,1\n");
    let bound = report(&[
        &trace,
        "--policy",
        "belady,lru",
        "--sizes",
        "1",
        "--ttls",
        "10s",
    ]);
    assert_eq!(hits(&bound, "belady", 1), 1);
    assert_eq!(hits(&bound, "lru", 1), 0);
    // Without timestamps, --rate spaces requests: 4 requests at 0.1/s are 10 s apart.
    let keys = write(&dir, "keys.txt", b"a\na\na\na\n");
    let report = report(&[
        &keys, "--policy", "lru", "--sizes", "1", "--ttls", "15s", "--rate", "0.1",
    ]);
    // Loads at 0 s and 20 s: hits at 10 s and 30 s.
    assert_eq!(hits(&report, "lru", 1), 2);
    assert_eq!(results(&report)[0]["expired"], 1);
}

#[test]
fn layers_below_l1_and_the_expected_latency() {
    let dir = temp();
    // a b a b c a through an LRU L1 of 1 (no hit), an L2 of 2, an L3 of 3.
    let trace = write(&dir, "t.txt", b"a\nb\na\nb\nc\na\n");
    let latency = "l1=1us,l2=10us,l3=100us,origin=1ms";
    // L2 alone sees all 6 requests: hits a, b at 2 and 3 (c then evicts a): 2 hits, 4 loads.
    let two_layers = report(&[
        &trace,
        "--policy",
        "lru,belady",
        "--sizes",
        "1",
        "--l2-size",
        "2",
        "--latency",
        latency,
    ]);
    let lru = &results(&two_layers)[0];
    assert_eq!(lru["hits"], 0);
    assert_eq!(
        (lru["l2_lookups"].clone(), lru["l2_hits"].clone()),
        (6.into(), 2.into())
    );
    assert_eq!(lru["origin_loads"], 4);
    // 6 × 1 us + 6 × 10 us + 4 × 1 ms over 6 requests.
    let expected = (6.0 + 60.0 + 4000.0) / 6.0;
    assert!(
        (lru["latency_us"].as_f64().unwrap_or(0.0) - expected).abs() < 1e-6,
        "{lru}"
    );
    // Belady feeds no layer: no layer figures for it.
    let belady = &results(&two_layers)[1];
    assert_eq!(belady["policy"], "belady");
    assert!(
        belady["l2_hits"].is_null() && belady["latency_us"].is_null(),
        "{belady}"
    );

    // With an L3 of 3 below: L3 sees L2's 4 misses a b c a and hits the last a.
    let report = report(&[
        &trace,
        "--policy",
        "lru",
        "--sizes",
        "1",
        "--l2-size",
        "2",
        "--l3-size",
        "3",
        "--latency",
        latency,
    ]);
    let lru = &results(&report)[0];
    assert_eq!(
        (lru["l3_lookups"].clone(), lru["l3_hits"].clone()),
        (4.into(), 1.into())
    );
    assert_eq!(lru["origin_loads"], 3);
    let expected = (6.0 + 60.0 + 400.0 + 3000.0) / 6.0;
    assert!(
        (lru["latency_us"].as_f64().unwrap_or(0.0) - expected).abs() < 1e-6,
        "{lru}"
    );
}

#[test]
fn csv_and_svg_reports_are_written() {
    let dir = temp();
    let csv = dir.path().join("report.csv");
    let svg = dir.path().join("plot.svg");
    let mut command = simulate();
    command
        .args([
            "--zipf",
            "1.0",
            "--keys",
            "1000",
            "--requests",
            "20000",
            "--policy",
            "lru,quick_cache",
        ])
        .args(["--sizes", "10,50,200", "--csv"])
        .arg(&csv)
        .arg("--plot")
        .arg(&svg);
    let output = run(&mut command);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut reader = match csv::Reader::from_path(&csv) {
        Ok(reader) => reader,
        Err(e) => panic!("{}: {e}", csv.display()),
    };
    let headers = reader.headers().cloned().unwrap_or_default();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(policy), Some(size), Some(ratio)) =
        (column("policy"), column("size"), column("hit_ratio"))
    else {
        panic!("columns missing: {headers:?}");
    };
    let rows: Vec<csv::StringRecord> = reader.records().flatten().collect();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let hit_ratio: f64 = row[ratio].parse().unwrap_or(-1.0);
        assert!(
            (0.0..=100.0).contains(&hit_ratio) && hit_ratio > 0.0,
            "{row:?}"
        );
    }
    assert_eq!((&rows[0][policy], &rows[0][size]), ("lru", "10"));
    let text = std::fs::read_to_string(&svg).unwrap_or_default();
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    assert!(text.contains("lru") && text.contains("quick_cache") && text.contains("hit ratio"));
    assert!(
        text.contains("<polyline") || text.contains("<path"),
        "no line drawn"
    );
}

#[test]
fn a_zipf_trace_repeats_with_its_seed_and_replays_do_not_depend_on_threads() {
    let args = [
        "--zipf",
        "0.8",
        "--keys",
        "5000",
        "--requests",
        "50000",
        "--sizes",
        "1%,10%",
    ];
    let policies = ["--policy", "lru,quick_cache,moka,belady"];
    let one: Vec<&str> = args
        .iter()
        .chain(&policies)
        .chain(&["--threads", "1"])
        .copied()
        .collect();
    let two: Vec<&str> = args
        .iter()
        .chain(&policies)
        .chain(&["--threads", "2"])
        .copied()
        .collect();
    let first = report(&one);
    assert_eq!(first["trace"]["requests"], 50_000);
    let unique = first["trace"]["unique_keys"].as_u64().unwrap_or(0);
    assert!(unique > 4000 && unique <= 5000, "{unique}");
    assert_eq!(results(&first).len(), 8);
    assert_eq!(first, report(&two));
    let other_seed: Vec<&str> = args
        .iter()
        .chain(&["--policy", "lru", "--seed", "7"])
        .copied()
        .collect();
    assert_ne!(report(&other_seed)["results"][0], first["results"][0]);
}
