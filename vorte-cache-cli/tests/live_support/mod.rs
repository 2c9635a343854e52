//! What the live commands' tests add to `support`: the binary as a process to follow (`tail`,
//! `top` run until told to stop), a service's `/stats` served in the test process, and traffic
//! whose figures the tests know.
#![allow(dead_code, reason = "each test binary uses its part of the helpers")]

use std::process::Command;

use vorte_cache::Cache;

use crate::support::{Setup, base_command};

/// `vorte-cache --config FILE`, to be given its arguments and spawned; no `VORTE…` variable
/// inherited, stdin closed.
pub(crate) fn command(setup: &Setup) -> Command {
    let mut command = base_command();
    command.arg("--config").arg(setup.config());
    command
}

/// A service on `setup`'s stack after [`known_traffic`], its `/stats` served at the returned URL
/// (`http://127.0.0.1:PORT/ops/stats`, vorte-cache-axum's health routes, for as long as the test's
/// runtime runs); and the writer, a cache of the test on the same stack.
pub(crate) async fn service_after_known_traffic(setup: &Setup) -> (Cache, Cache, String) {
    let writer = setup.cache().await;
    let service = setup.cache().await;
    known_traffic(&writer, &service).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("its address");
    let app: axum::Router =
        axum::Router::new().nest("/ops", vorte_cache_axum::health::routes(service.clone()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (writer, service, format!("http://{address}/ops/stats"))
}

/// Traffic whose figures the tests know: one key written by `writer`, read by `service` three
/// times (an L1 miss found below, then two L1 hits), and one key nobody wrote (a miss). Over a
/// stack with a layer below L1: 3 hits of 4 reads, L1 2 of 4, the layer below 1 of 2.
async fn known_traffic(writer: &Cache, service: &Cache) {
    writer.set("known", &1u32).await.expect("set");
    // The write's notice, once it reaches the service, drops its L1 copy: wait for it first, so
    // that the second and third reads are L1 hits.
    if service.has_bus() {
        let heard = crate::support::eventually(std::time::Duration::from_secs(5), || async {
            service.stats().invalidations_received >= 1
        })
        .await;
        assert!(heard, "the service never heard of the write");
    }
    for _ in 0..3 {
        assert_eq!(service.get::<u32>("known").await.expect("get"), Some(1));
    }
    assert_eq!(service.get::<u32>("unknown").await.expect("get"), None);
}
