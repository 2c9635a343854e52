//! `vorte-cache stats` against real servers: each stack's layers with what they hold and a probe,
//! as JSON and as a table, and running services' figures read from their `/stats`
//! (`docs/cli.md#stats`).
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

mod live_support;
mod support;

use serde_json::Value;
use vorte_cache_tests::Stack;

use live_support::service_after_known_traffic;
use support::Setup;

/// The stack's layers, keys and bytes, a probe of each layer below L1, closed circuits and the
/// bus where there is one; then the same as a table.
async fn stats_show_each_layer_its_keys_and_probe(stack: Stack) {
    let setup = Setup::new(stack, "");
    let writer = setup.cache().await;
    for i in 0..3 {
        writer.set(&format!("k{i}"), &i).await.expect("set");
    }
    let report = setup.run(&["--json", "stats"]).await;
    report.expect_code(0);
    let report = report.json();
    let process = &report["process"];
    assert_eq!(process["source"], "this process");
    let expected: Vec<(String, String)> = writer
        .stats()
        .layers
        .iter()
        .map(|l| (l.layer.to_string(), l.backend.to_owned()))
        .collect();
    let layers = process["layers"].as_array().expect("layers");
    let shown: Vec<(String, String)> = layers
        .iter()
        .map(|l| {
            (
                l["layer"].as_str().unwrap_or_default().to_owned(),
                l["backend"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(layers.len(), 2);
    // This process's L1 starts empty; the layer below holds what the writer wrote.
    assert_eq!(layers[0]["keys"], 0);
    assert_eq!(layers[0]["probe"], Value::Null);
    let below = &layers[1];
    if stack.lists_keys() {
        assert_eq!(below["keys"], 3, "{below}");
        assert!(below["bytes"].as_u64().is_some_and(|b| b > 0), "{below}");
    }
    assert_eq!(below["probe"]["reachable"], true, "{below}");
    assert!(
        below["probe"]["latency_ms"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0)
    );
    let circuits = below["circuits"].as_array().expect("circuits");
    assert!(!circuits.is_empty());
    assert!(circuits.iter().all(|c| c["state"] == "closed"), "{below}");
    assert_eq!(process["bus"].is_object(), stack.has_redis(), "{process}");
    assert_eq!(report["services"], serde_json::json!([]));

    let text = setup.run(&["stats"]).await;
    text.expect_code(0);
    let text = text.stdout;
    let header = [
        "layer", "backend", "keys", "bytes", "probe", "errors", "circuits",
    ];
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(header.iter().copied())),
        "{text}"
    );
    let row = |layer: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{layer} ")))
            .unwrap_or_else(|| panic!("no {layer} row: {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let l1 = row(&expected[0].0);
    assert_eq!(l1[1..3], [expected[0].1.clone(), "0".to_owned()]);
    let lower = row(&expected[1].0);
    assert_eq!(lower[1], expected[1].1);
    if stack.lists_keys() {
        assert_eq!(lower[2], "3", "{text}");
    }
    assert!(lower.contains(&"ok".to_owned()), "{text}");
    assert_eq!(text.contains("bus: none"), !stack.has_redis(), "{text}");
}

on_cli_stacks!(stats_show_each_layer_its_keys_and_probe);

/// With `--url`, each service's hits and misses per layer and its hit rate, exactly what the
/// test's traffic caused, and their sum over two URLs; an unreachable URL is shown and ends
/// with exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_read_running_services_and_sum_them() {
    let setup = Setup::new(Stack::L1Redis, "");
    let (_writer, service, url) = service_after_known_traffic(&setup).await;
    let one = setup.run(&["--json", "stats", "--url", &url]).await;
    let two = setup
        .run(&["--json", "stats", "--url", &url, "--url", &url])
        .await;
    let truth = service.stats();
    assert_eq!((truth.l1_hits, truth.l2_hits, truth.misses), (2, 1, 1));

    let report = one.expect_code(0).json();
    let read = &report["services"][0];
    assert_eq!(read["source"], url.as_str());
    assert_eq!(read["error"], Value::Null);
    assert_eq!(
        (read["hits"].as_u64(), read["reads"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(read["hit_rate"].as_f64(), Some(truth.hit_rate()));
    assert_eq!(read["hit_rate"].as_f64(), Some(0.75));
    for (shown, layer) in read["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(&truth.layers)
    {
        assert_eq!(shown["layer"], layer.layer.name());
        assert_eq!(shown["hits"].as_u64(), Some(layer.hits));
        assert_eq!(shown["misses"].as_u64(), Some(layer.misses));
    }
    assert_eq!(read["layers"][0]["hit_rate"].as_f64(), Some(0.5));
    assert_eq!(read["layers"][1]["hit_rate"].as_f64(), Some(0.5));
    assert!(read["layers"][1]["p50_ms"].as_f64().is_some(), "{read}");
    assert_eq!(read["layers"][1]["circuits"][0]["state"], "closed");
    assert!(read["bus"].is_object());
    assert_eq!(report["total"], Value::Null, "a sum only of several");

    let report = two.expect_code(0).json();
    let total = &report["total"];
    assert_eq!(total["source"], "all services");
    assert_eq!(
        (total["hits"].as_u64(), total["reads"].as_u64()),
        (Some(6), Some(8))
    );
    assert_eq!(total["hit_rate"].as_f64(), Some(0.75));
    assert_eq!(total["layers"][1]["hits"].as_u64(), Some(2));

    // A service that does not answer: the others are shown, the error says which, exit 4.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let address = listener.local_addr().expect("address");
        drop(listener);
        format!("http://ops:s3cret@{address}/ops/stats")
    };
    let table = setup.run(&["stats", "--url", &url]).await;
    table.expect_code(0);
    println!("{}", table.stdout);
    assert!(
        table
            .stdout
            .contains(&format!("{url}: hit rate 75.0 % (3 of 4 reads)"))
    );
    let run = setup.run(&["stats", "--url", &url, "--url", &dead]).await;
    run.expect_code(4);
    let (stdout, stderr) = (&run.stdout, &run.stderr);
    assert!(
        stdout.contains("hit rate 75.0 % (3 of 4 reads)"),
        "{stdout}"
    );
    assert!(stdout.contains("UNREACHABLE"), "{stdout}");
    assert!(
        stderr.contains("unreachable: http://***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
}

/// With `--url` and no configuration at all (no `--config`, no `VORTE_CACHE_CONFIG`, no `VORTE__`
/// override), the services alone: their figures, no block of this process, exit 0. A
/// configuration that is given is still checked (exit 3), and without `--url` none is exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_with_urls_and_no_configuration_show_the_services_alone() {
    let setup = Setup::new(Stack::L1Redis, "");
    let (_writer, _service, url) = service_after_known_traffic(&setup).await;
    let run = support::run(&["--json", "stats", "--url", &url]).await;
    let report = run.expect_code(0).json();
    assert_eq!(report["process"], Value::Null, "{report}");
    let read = &report["services"][0];
    assert_eq!(read["source"], url.as_str());
    assert_eq!(
        (read["hits"].as_u64(), read["reads"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(read["layers"][1]["layer"], "l2");

    let table = support::run(&["stats", "--url", &url]).await;
    table.expect_code(0);
    println!("{}", table.stdout);
    assert!(
        table
            .stdout
            .starts_with(&format!("{url}: hit rate 75.0 % (3 of 4 reads)")),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains("this process"), "{}", table.stdout);

    // Given, a configuration must still name a layer below L1, from a file or the environment.
    let l1_only = setup.path("l1.toml");
    std::fs::write(&l1_only, "[cache]\ndefault_ttl = 60\n").expect("config written");
    let l1_only = l1_only.to_str().expect("a UTF-8 path");
    let given = support::run(&["--config", l1_only, "stats", "--url", &url]).await;
    given.expect_code(3);
    assert!(given.stderr.contains("no layer below L1"), "{given:?}");
    let from_env = support::run_env(
        &["stats", "--url", &url],
        &[("VORTE__CACHE__DEFAULT_TTL", "-1")],
    )
    .await;
    from_env.expect_code(3);
    assert!(
        from_env.stderr.contains("cache.default_ttl"),
        "{from_env:?}"
    );
    let without_url = support::run(&["stats"]).await;
    without_url.expect_code(3);
    assert!(
        without_url.stderr.contains("no layer below L1"),
        "{without_url:?}"
    );
}

/// A layer whose server does not answer: its probe says so and `stats` ends with exit 4. (With
/// the bus on that server, the library does not even call the layer while the bus is out, so the
/// probe found no call and showed nothing, and `stats` exited 0.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_a_layer_that_does_not_answer() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("address").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cache.toml");
    std::fs::write(
        &config,
        format!(
            "[cache]\nkey_prefix = \"dead:\"\n[cache.layers.l2]\nbackend = \"redis\"\n\
             url = \"redis://127.0.0.1:{closed}\"\ntimeout_ms = 300\n"
        ),
    )
    .expect("config written");
    let config = config.to_str().expect("a UTF-8 path");
    let run = support::run(&["--config", config, "--json", "stats"]).await;
    run.expect_code(4);
    let report = run.json();
    let l2 = &report["process"]["layers"][1];
    assert_eq!(l2["layer"], "l2");
    assert_eq!(l2["probe"]["reachable"], false, "{l2}");
    assert!(
        run.stderr.contains("unreachable: l2 (redis)"),
        "{}",
        run.stderr
    );
}
