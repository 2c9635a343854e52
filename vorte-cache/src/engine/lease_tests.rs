//! The distributed single-flight over the in-memory `TestStore`, two `Leases` standing in for two
//! processes, joined by an in-process bus.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use super::*;
use crate::testing::{Call, Op, TestStore};

/// A bus in one process: `landed` reaches every other `Leases` that joined.
#[derive(Debug, Default)]
struct LocalBus {
    peers: Mutex<Vec<Weak<Leases>>>,
}

impl Announce for LocalBus {
    fn landed(&self, key: &str) -> BoxFuture<'_, Result<()>> {
        let peers: Vec<Arc<Leases>> = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for peer in peers {
            peer.notify_landed(key);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Two "processes" over one store and one bus, with leases of `ttl`.
fn two(store: &TestStore, ttl: Duration) -> (Arc<Leases>, Arc<Leases>) {
    let bus = Arc::new(LocalBus::default());
    let open = || {
        let tiers = [(Layer::L2, Arc::new(store.clone()) as Arc<dyn Store>)];
        let bus = bus.clone() as Arc<dyn Announce>;
        let leases = Leases::build(&tiers, Some(bus), ttl, Arc::default());
        Arc::new(leases.expect("the test store keeps leases"))
    };
    let (a, b) = (open(), open());
    bus.peers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend([Arc::downgrade(&a), Arc::downgrade(&b)]);
    (a, b)
}

fn held(outcome: LeaseOutcome) -> LeaseGuard {
    match outcome {
        LeaseOutcome::Held(guard) => guard,
        other => panic!("expected the lease, got {other:?}"),
    }
}

fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// `leases` asking for the lease of `k` (held by another) in a task, once it has tried it.
async fn waiting_for_k(
    store: &TestStore,
    leases: &Arc<Leases>,
) -> tokio::task::JoinHandle<LeaseOutcome> {
    let tried = store.calls(Op::LeaseAcquire, "k") + 1;
    let waiter = tokio::spawn({
        let leases = leases.clone();
        async move { leases.acquire("k", NEVER).await }
    });
    while store.calls(Op::LeaseAcquire, "k") < tried {
        tokio::task::yield_now().await;
    }
    waiter
}

/// Long enough never to be reached when the test passes: a wait that ends at it fails the test.
const NEVER: Duration = Duration::from_secs(30);

/// `docs/leases.md#waiting-for-another-process`: the second process waits for the first's load
/// and is told when it lands, instead of loading too.
#[tokio::test]
async fn a_waiter_is_woken_when_the_holders_load_lands() {
    let store = TestStore::new();
    let (a, b) = two(&store, DEFAULT_LEASE_TTL);
    let guard = held(a.acquire("k", NEVER).await);
    let waiter = waiting_for_k(&store, &b).await;
    guard.release().await;
    let outcome = waiter.await.expect("the waiter task");
    assert!(matches!(outcome, LeaseOutcome::Landed), "{outcome:?}");
    assert_eq!(count(&a.counters.acquired), 1);
    assert_eq!(count(&b.counters.waits_landed), 1);
    assert_eq!(count(&b.counters.waits_bounded), 0);
    assert!(b.lock().is_empty(), "the waiter's registration is gone");
    // Released: the next load of the key takes the lease.
    drop(held(b.acquire("k", NEVER).await));
}

/// The waiter registers before it tries the lease: a `Landed` that arrives after its failed try
/// and before it starts waiting still wakes it.
#[tokio::test]
async fn a_landed_notice_between_the_failed_try_and_the_wait_is_not_lost() {
    let store = TestStore::new();
    let (a, b) = two(&store, DEFAULT_LEASE_TTL);
    let guard = held(a.acquire("k", NEVER).await);
    // Hold b's try once it has found the lease taken, before it answers.
    let pause = store.pause_call(Call::new(Op::LeaseAcquire, "k").after_effect());
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.acquire("k", NEVER).await }
    });
    pause.reached().await;
    guard.release().await;
    pause.release();
    let outcome = waiter.await.expect("the waiter task");
    assert!(matches!(outcome, LeaseOutcome::Landed), "{outcome:?}");
}

/// `docs/leases.md#when-the-holder-dies`: a holder that never announces leaves its waiter to load
/// at the bound; its lease lapses at the TTL and the key is free again.
#[tokio::test]
async fn a_dead_holder_costs_the_wait_bound_and_its_lease_lapses() {
    let store = TestStore::new();
    let ttl = Duration::from_millis(300);
    let (_, b) = two(&store, ttl);
    // Another process took the lease and died: nobody renews it, nobody announces.
    let dead = store.lease_acquire("k", 7, ttl).await.expect("acquire");
    assert_eq!(dead, Some(true));
    let outcome = b.acquire("k", Duration::from_millis(50)).await;
    assert!(matches!(outcome, LeaseOutcome::Proceed), "{outcome:?}");
    assert_eq!(count(&b.counters.waits_bounded), 1);
    tokio::time::sleep(ttl).await;
    drop(held(b.acquire("k", NEVER).await));
}

/// Renewal keeps the lease of a load that runs past several TTLs.
#[tokio::test]
async fn a_long_load_keeps_its_lease_by_renewal() {
    let store = TestStore::new();
    let ttl = Duration::from_millis(150);
    let (a, b) = two(&store, ttl);
    let guard = held(a.acquire("k", NEVER).await);
    tokio::time::sleep(ttl * 5).await;
    assert!(store.calls(Op::LeaseRenew, "k") >= 3, "renewed every ttl/3");
    let outcome = b.acquire("k", Duration::from_millis(10)).await;
    assert!(
        matches!(outcome, LeaseOutcome::Proceed),
        "still held: {outcome:?}"
    );
    guard.release().await;
    let renewals = store.calls(Op::LeaseRenew, "k");
    tokio::time::sleep(ttl).await;
    assert_eq!(
        store.calls(Op::LeaseRenew, "k"),
        renewals,
        "renewal stops at the release"
    );
    assert_eq!(count(&a.counters.errors), 0);
}

/// A guard dropped unreleased (the load was cancelled or panicked) still frees the key and
/// wakes the waiter.
#[tokio::test]
async fn a_dropped_guard_releases_and_announces() {
    let store = TestStore::new();
    let (a, b) = two(&store, DEFAULT_LEASE_TTL);
    let guard = held(a.acquire("k", NEVER).await);
    let waiter = waiting_for_k(&store, &b).await;
    drop(guard);
    let outcome = waiter.await.expect("the waiter task");
    assert!(matches!(outcome, LeaseOutcome::Landed), "{outcome:?}");
    assert_eq!(
        store.lease_acquire("k", 9, ttl_of(&a)).await.ok(),
        Some(Some(true))
    );
}

fn ttl_of(leases: &Leases) -> Duration {
    leases.ttl
}

/// A lease layer that fails does not fail the load: it goes on without the lease, counted.
#[tokio::test]
async fn a_failing_lease_layer_means_loading_without_a_lease() {
    let store = TestStore::new();
    let (a, _) = two(&store, DEFAULT_LEASE_TTL);
    store.set_unavailable(true);
    let outcome = a.acquire("k", NEVER).await;
    assert!(matches!(outcome, LeaseOutcome::Proceed), "{outcome:?}");
    assert_eq!(count(&a.counters.errors), 1);
    assert!(a.lock().is_empty());
}

/// `docs/leases.md#without-a-bus`, `docs/leases.md#where-the-lease-lives`: no bus, or no layer
/// that keeps leases, builds no leases; the most shared layer that keeps them is chosen.
#[test]
fn leases_need_a_bus_and_a_layer_that_keeps_them() {
    let with = Arc::new(TestStore::new()) as Arc<dyn Store>;
    let without = Arc::new(TestStore::new().without_leases()) as Arc<dyn Store>;
    let bus = || Some(Arc::new(LocalBus::default()) as Arc<dyn Announce>);
    let build = |tiers: &[(Layer, Arc<dyn Store>)], bus| {
        Leases::build(tiers, bus, DEFAULT_LEASE_TTL, Arc::default()).map(|l| l.layer)
    };
    assert_eq!(build(&[(Layer::L2, with.clone())], None), None);
    assert_eq!(build(&[(Layer::L2, without.clone())], bus()), None);
    assert_eq!(
        build(
            &[(Layer::L2, with.clone()), (Layer::L3, without.clone())],
            bus()
        ),
        Some(Layer::L2)
    );
    assert_eq!(
        build(&[(Layer::L2, with.clone()), (Layer::L3, with)], bus()),
        Some(Layer::L3)
    );
}

/// How many `SET` commands `server` has run (`INFO commandstats`).
#[cfg(feature = "redis")]
async fn sets_run(client: &fred::prelude::Client) -> u64 {
    use fred::prelude::ClientLike;
    let info: String = client
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `docs/leases.md#waiting-for-another-process` end to end over a real Redis: two caches (two
/// processes, in effect) with the bus riding on their L2; the holder's release reaches the
/// waiter as `Notice::Landed` through the stream and the waiter's `NoticeSink`, and the notice
/// drops nothing from the waiter's L1.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landed_travels_over_a_real_bus_and_drops_nothing() {
    use fred::prelude::{ClientLike, Config as FredConfig};

    let server = crate::bus::redis_server();
    let url = format!("redis://127.0.0.1:{}", server.port);
    let toml = format!(
        "[cache]\nkey_prefix = \"lease:\"\n[cache.layers.l2]\nbackend = \"redis\"\nurl = {url:?}\n"
    );
    let config = crate::Config::from_toml_str(&toml).expect("config").cache;
    let a = crate::Cache::from_config(&config).await.expect("cache a");
    let b = crate::Cache::from_config(&config).await.expect("cache b");
    let leases = |cache: &crate::Cache| cache.engine().leases.is_some();
    assert!(
        leases(&a) && leases(&b),
        "L2 Redis keeps leases; the bus rides on it"
    );
    let probe = fred::types::Builder::from_config(FredConfig::from_url(&url).expect("url"))
        .build()
        .expect("client");
    probe.init().await.expect("connect");

    b.set("kept", &"v".to_owned()).await.expect("set");
    let guard = held(
        a.engine()
            .leases
            .as_ref()
            .expect("leases")
            .acquire("k", NEVER)
            .await,
    );
    let before = sets_run(&probe).await;
    let waiter = tokio::spawn({
        let b = b.clone();
        async move {
            let leases = b.engine().leases.as_ref().expect("leases");
            leases.acquire("k", NEVER).await
        }
    });
    // The waiter's `SET NX` has run (and failed: `a` holds the lease) before `a` releases.
    while sets_run(&probe).await == before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    guard.release().await;
    let outcome = waiter.await.expect("the waiter task");
    assert!(matches!(outcome, LeaseOutcome::Landed), "{outcome:?}");

    let l1_hits = b.stats().l1_hits;
    assert_eq!(
        b.get::<String>("kept").await.expect("get").as_deref(),
        Some("v")
    );
    let stats = b.stats();
    assert_eq!(stats.l1_hits, l1_hits + 1, "`kept` is still in b's L1");
    assert_eq!(stats.lease_waits_landed, 1);
    assert_eq!(a.stats().leases_acquired, 1);
    let _ = probe.quit().await;
}
