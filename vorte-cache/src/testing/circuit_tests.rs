//! The circuit breaker (`store/circuit.rs`) around the in-memory test store: threshold and
//! cool-down from the config, and what does not count (size refusals, scans). Here rather than
//! beside the breaker, because the test store lives above the stores.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Op, TestStore};
use crate::config::BreakerConfig;
use crate::error::{Error, ErrorKind};
use crate::stats::CircuitState;
use crate::store::circuit::{CircuitStore, JITTER};
use crate::store::{Slot, Store};

fn circuit(threshold: u32, cooldown: Duration) -> (TestStore, Arc<dyn Store>) {
    let server = TestStore::new();
    let store = CircuitStore::guard(
        Arc::new(server.clone()),
        "l2",
        BreakerConfig {
            threshold,
            cooldown,
        },
    );
    (server, store)
}

/// The state of the one circuit guarding `store`.
fn state(store: &Arc<dyn Store>) -> CircuitState {
    store.circuits()[0].state
}

/// `docs/guarantees.md#f2-circuit-breaker`: `breaker_threshold` failures open it (not one
/// fewer), it spares the server while open, and after `breaker_cooldown` (+20 % at most) a
/// probe closes it.
#[tokio::test]
async fn threshold_and_cooldown_come_from_the_config() {
    let cooldown = Duration::from_millis(150);
    let (server, store) = circuit(3, cooldown);
    server.set_unavailable(true);
    for _ in 0..2 {
        assert!(store.get(Slot::Entry("k")).await.is_err());
    }
    assert_eq!(state(&store), CircuitState::Closed, "2 < threshold");
    assert!(store.get(Slot::Entry("k")).await.is_err());
    assert_eq!(state(&store), CircuitState::Open, "3 = threshold");
    assert_eq!(store.circuits()[0].opened, 1);

    let reached = server.calls(Op::Get, "k");
    for _ in 0..100 {
        let e = store.get(Slot::Entry("k")).await.expect_err("open");
        assert!(e.message().contains("or 3 consecutive failures"), "{e}");
    }
    assert_eq!(
        server.calls(Op::Get, "k"),
        reached,
        "an open circuit spares the server"
    );

    server.set_unavailable(false);
    tokio::time::sleep(cooldown.mul_f64(1.0 + JITTER) + Duration::from_millis(30)).await;
    assert_eq!(state(&store), CircuitState::HalfOpen);
    assert!(
        store.get(Slot::Entry("k")).await.is_ok(),
        "the probe goes through"
    );
    assert_eq!(state(&store), CircuitState::Closed);
    assert!(store.get(Slot::Entry("k")).await.is_ok());
    assert_eq!(store.circuits()[0].opened, 1, "closing is not an opening");
}

/// A failed probe keeps it open for another (jittered) cool-down, without counting a new
/// opening.
#[tokio::test]
async fn a_failed_probe_keeps_it_open() {
    let cooldown = Duration::from_millis(100);
    let (server, store) = circuit(1, cooldown);
    server.set_unavailable(true);
    assert!(store.get(Slot::Entry("k")).await.is_err());
    tokio::time::sleep(cooldown.mul_f64(1.0 + JITTER) + Duration::from_millis(30)).await;
    let reached = server.calls(Op::Get, "k");
    assert!(
        store.get(Slot::Entry("k")).await.is_err(),
        "the probe fails"
    );
    assert_eq!(
        server.calls(Op::Get, "k"),
        reached + 1,
        "it reached the server"
    );
    assert_eq!(state(&store), CircuitState::Open);
    assert!(store.get(Slot::Entry("k")).await.is_err());
    assert_eq!(server.calls(Op::Get, "k"), reached + 1, "refused again");
    assert_eq!(store.circuits()[0].opened, 1);
}

/// A value the store refuses for its size is no failure of the server: however many, the
/// circuit stays closed, and the failures around it are not reset by it either.
#[tokio::test]
async fn a_size_refusal_does_not_count() {
    let (server, store) = circuit(2, Duration::from_secs(60));
    for i in 0..10 {
        server.fail(
            Op::Put,
            "big",
            Error::new(ErrorKind::ValueTooLarge, format!("refused #{i}")),
        );
        let e = store
            .put(
                Slot::Entry("big"),
                Bytes::from_static(b"v"),
                Duration::from_secs(1),
            )
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::ValueTooLarge);
    }
    assert_eq!(state(&store), CircuitState::Closed);
    assert!(
        store.get(Slot::Entry("k")).await.is_ok(),
        "the layer serves"
    );

    // One real failure, a size refusal, a real failure: two consecutive failures of the server.
    server.fail(Op::Get, "k", Error::backend("down"));
    assert!(store.get(Slot::Entry("k")).await.is_err());
    server.fail(Op::Put, "big", Error::new(ErrorKind::ValueTooLarge, "big"));
    let put = store.put(Slot::Entry("big"), Bytes::new(), Duration::from_secs(1));
    assert!(put.await.is_err());
    server.fail(Op::Get, "k", Error::backend("down"));
    assert!(store.get(Slot::Entry("k")).await.is_err());
    assert_eq!(state(&store), CircuitState::Open);
}

/// Scans that fail never open the circuit that guards reads; once reads opened it, scans are
/// refused at once (they spare the server too) but never probe.
#[tokio::test]
async fn a_failing_scan_does_not_open_it() {
    let (server, store) = circuit(1, Duration::from_secs(60));
    server.set_unavailable(true);
    for _ in 0..20 {
        assert!(store.list("").await.is_err());
        assert!(store.usage().await.is_err());
        assert!(store.clear().await.is_err());
    }
    assert_eq!(state(&store), CircuitState::Closed);
    assert_eq!(store.circuits()[0].opened, 0);

    assert!(store.get(Slot::Entry("k")).await.is_err());
    assert_eq!(
        state(&store),
        CircuitState::Open,
        "one read failure opens it"
    );
    let listed = server.calls(Op::List, "");
    assert!(store.list("").await.is_err());
    assert_eq!(server.calls(Op::List, ""), listed, "refused without a call");
}

/// A slow scan does not count either: a scan that times out leaves it closed.
#[tokio::test]
async fn a_timed_out_scan_does_not_count() {
    let (server, store) = circuit(1, Duration::from_secs(60));
    for _ in 0..5 {
        server.fail(Op::Usage, "", Error::timeout("the listing did not finish"));
        assert!(store.usage().await.is_err());
    }
    assert_eq!(state(&store), CircuitState::Closed);
}

/// `docs/guarantees.md#f2-circuit-breaker`: a call the server left unanswered for the whole
/// layer timeout opens the circuit at once, whatever the threshold: every call behind it would
/// wait as long, and a call that goes on to the same layer (a tagged `set`: the tag versions,
/// then the write) must not wait a second time. A refused call still counts one.
#[tokio::test]
async fn a_timeout_opens_the_circuit_at_once() {
    let (server, store) = circuit(5, Duration::from_secs(10));
    server.fail(Op::Get, "k", Error::timeout("no answer within 250 ms"));
    assert!(store.get(Slot::Entry("k")).await.is_err());
    assert_eq!(state(&store), CircuitState::Open, "one timeout opens it");
    let reached = server.calls(Op::Put, "k");
    assert!(
        store
            .put(
                Slot::Entry("k"),
                Bytes::from_static(b"v"),
                Duration::from_secs(1)
            )
            .await
            .is_err()
    );
    assert_eq!(
        server.calls(Op::Put, "k"),
        reached,
        "the next call waits for nothing"
    );

    let (server, store) = circuit(5, Duration::from_secs(10));
    server.fail(Op::Get, "k", Error::backend("connection refused"));
    assert!(store.get(Slot::Entry("k")).await.is_err());
    assert_eq!(
        state(&store),
        CircuitState::Closed,
        "an answered failure counts one"
    );
}
