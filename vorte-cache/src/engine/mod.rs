//! The engine: composes L1 and the stores of L2–L4 into one cache.
//!
//! - Reads go L1 → L2 → L3 → L4 (`read.rs`). The first live, valid entry wins; the layers above it
//!   are back-filled with its *remaining* TTL, capped by each layer's `ttl`.
//! - Writes go through to every enabled layer the call selects (`write.rs`). A layer that fails is
//!   skipped for that call, counted and logged (`docs/guarantees.md#f1-a-failing-layer-is-skipped`).
//! - Loads (`get_or_set`, `#[cached]`) run one single-flight cache-aside loop (`load.rs`).
//! - Invalidations fence loads in flight, change every layer and tell the other processes through
//!   the bus (`invalidate.rs`); the bus hands other processes' invalidations back through
//!   [`NoticeSink`](crate::bus::NoticeSink), which the engine implements.
//! - Counters (`counter.rs`), listing and stats (`scan.rs`), and the background work of
//!   write-behind layers and sweepers (`background.rs`) each have a file.
//!
//! Expiry is checked from the envelope on every read, so no layer returns an entry past its TTL
//! whatever the backend does. A corrupt entry is a miss: removed and counted
//! (`docs/guarantees.md#f4-a-corrupt-entry-is-a-miss-a-type-mismatch-is-an-error`). A well-formed entry of another type is a `TypeMismatch` error, and
//! stays (`docs/guarantees.md#b1-bad-input-is-a-typed-error`).
//!
//! The engine knows nothing above it: not the handle, the application, its event handlers or any
//! process global.

mod adapt;
mod background;
mod counter;
mod epoch;
mod expiry;
mod fallback;
mod fill;
mod inspect;
mod invalidate;
mod lease;
mod load;
mod loaders;
mod read;
mod recovery;
mod refresh;
mod scan;
mod takeover;
mod write;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Publisher;
use crate::codec::Compression;
use crate::config::CacheConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fence::Fence;
use crate::flight::Flights;
use crate::l1::L1Memory;
use crate::layer::{Layer, LayerSet};
use crate::observe::Instruments;
use crate::observe::store::ObservedStore;
use crate::stats::Counters;
use crate::store::Store;
use crate::tags::TagIndex;

pub(crate) use expiry::{Aging, Expiry};
pub(crate) use fallback::LoadOptions;
pub(crate) use inspect::{Held, Inspected};
pub(crate) use lease::DEFAULT_LEASE_TTL;
pub(crate) use load::Served;
pub(crate) use loaders::{DetachFn, LoaderError};
pub(crate) use write::{Fill, Seen, SeenSlots, Write, WriteOptions};

/// A layer below L1, as the engine uses it.
#[derive(Debug)]
struct Tier {
    layer: Layer,
    store: Arc<dyn Store>,
    ttl_cap: Option<Duration>,
    max_value_bytes: usize,
    /// This layer's own compression, else the cache's.
    compression: Compression,
    /// The queue of a write-behind layer.
    behind: Option<background::Behind>,
    /// How often to sweep expired objects, and how many at most, for stores that ask for it.
    sweep: Option<(Duration, usize)>,
}

/// How one layer below L1 is opened: its store, and the settings the engine applies on top.
#[derive(Debug)]
pub(crate) struct TierSpec {
    pub(crate) layer: Layer,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ttl_cap: Option<Duration>,
    /// `None`: the cache's `max_value_bytes`.
    pub(crate) max_value_bytes: Option<usize>,
    /// `None`: the cache's compression.
    pub(crate) compression: Option<Compression>,
    /// `Some(capacity)` for a write-behind layer.
    pub(crate) write_behind: Option<usize>,
    pub(crate) sweep: Option<(Duration, usize)>,
    /// The layer's circuit breakers.
    pub(crate) breaker: crate::config::BreakerConfig,
    /// The layer's `timeout_ms`, when the configuration names the layer.
    pub(crate) timeout: Option<Duration>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) config: CacheConfig,
    l1: Option<L1Memory>,
    tiers: Vec<Tier>,
    /// Index in `tiers` of the most shared layer: it holds tag records and decides counters.
    authority: Option<usize>,
    enabled: LayerSet,
    tags: Arc<TagIndex>,
    /// Invalidations that did not reach a layer, retried until they do (`recovery.rs`).
    recovery: recovery::Recovery,
    /// The flush epoch every entry below L1 carries (`epoch.rs`).
    flush_epoch: epoch::FlushEpoch,
    flights: Flights,
    /// The keys this process is refreshing early (`refresh.rs`).
    refreshing: refresh::Refreshing,
    fence: Arc<Fence>,
    counters: Counters,
    counter_locks: Box<[tokio::sync::Mutex<()>]>,
    /// The bus to the other processes, when there is one (shared with the leases, which
    /// announce on it).
    publisher: Option<Arc<Publisher>>,
    /// The distributed single-flight (`lease.rs`): `None` without a layer that keeps leases or
    /// without a bus.
    leases: Option<lease::Leases>,
    /// Whether a write to L1 alone may keep its value decoded, never encoded: L1 is bounded by
    /// entries, not bytes, and neither it nor the cache sets a `max_value_bytes` below the
    /// default, so no limit needs the encoded size (derived from the configuration once).
    l1_keeps_decoded: bool,
    /// How long a call waits for the layers in all, when known: the longest `timeout_ms` of the
    /// layers below L1. A load's fill has what its reads left of it (`load.rs`).
    call_budget: Option<Duration>,
    /// The layer the bus rides on, when it has no Redis of its own.
    bus_server: Option<BusServer>,
    /// Where durations and invalidations are measured (`observe/mod.rs`).
    pub(crate) instruments: Arc<Instruments>,
    /// The hits and misses of scans (`keys`, `usage`), which are not the application's reads:
    /// counted here and reported nowhere.
    uncounted: crate::stats::LayerCounters,
}

/// Whether a read's hits and misses count in the stats: the application's reads do, a scan's
/// reads of the keys it lists do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tally {
    Count,
    Quiet,
}

/// The layer whose server carries the bus. While the bus is not trusted (its receiver suspended
/// the local state), that layer is not read either: the other processes' deletes it missed in
/// the same outage are owed, and the notices that say so wait in their queues until the bus is
/// back (`docs/guarantees.md#g4-gap-detection`).
#[derive(Debug)]
struct BusServer {
    layer: Layer,
    silent: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// An engine over already opened stores: starts the write-behind workers (the caller starts
    /// the sweepers once the engine is shared). `lease_ttl` is how long a lease of the
    /// distributed single-flight lives unless renewed ([`DEFAULT_LEASE_TTL`]).
    pub(crate) fn new(
        config: &CacheConfig,
        specs: Vec<TierSpec>,
        publisher: Option<Publisher>,
        lease_ttl: Duration,
        instruments: Arc<Instruments>,
    ) -> Engine {
        let max_value = config.max_value_bytes;
        let call_budget = specs.iter().filter_map(|s| s.timeout).max();
        let mut queues = Vec::new();
        let tiers: Vec<Tier> = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                if let Some(capacity) = spec.write_behind {
                    queues.push((i, capacity));
                }
                Tier {
                    layer: spec.layer,
                    store: ObservedStore::wrap(
                        crate::store::circuit::CircuitStore::guard(
                            spec.store,
                            spec.layer.name(),
                            spec.breaker,
                        ),
                        spec.layer,
                        instruments.clone(),
                    ),
                    ttl_cap: spec.ttl_cap,
                    max_value_bytes: spec.max_value_bytes.unwrap_or(max_value).min(max_value),
                    compression: spec.compression.unwrap_or(config.compression),
                    behind: None,
                    sweep: spec.sweep,
                }
            })
            .collect();
        let layers = &config.layers;
        let l1 = layers.l1.enabled.then(|| {
            L1Memory::new(
                layers.l1.max_size,
                layers.l1.max_bytes,
                layers.l1.ttl,
                layers
                    .l1
                    .max_value_bytes
                    .unwrap_or(max_value)
                    .min(max_value),
            )
        });
        let mut enabled = LayerSet::default();
        if l1.is_some() {
            enabled.insert(Layer::L1);
        }
        for tier in &tiers {
            enabled.insert(tier.layer);
        }
        // Tag records live in, and counters are decided by, the most shared layer: L3, else L2,
        // else L4.
        let authority = [Layer::L3, Layer::L2, Layer::L4]
            .iter()
            .find_map(|l| tiers.iter().position(|t| t.layer == *l));
        let authority_store = authority.map(|i| tiers[i].store.clone());
        let memo_ttl = layers.l1.ttl.unwrap_or(config.default_ttl);
        let l1_keeps_decoded = l1.as_ref().is_some_and(|l1| !l1.weighs_bytes())
            && layers.l1.max_value_bytes.is_none()
            && config.max_value_bytes >= crate::config::DEFAULT_MAX_VALUE_BYTES;
        let counters = Counters::default();
        let publisher = publisher.map(Arc::new);
        let bus_server = publisher
            .as_ref()
            .and_then(|p| p.rides_on())
            .filter(|l| tiers.iter().any(|t| t.layer == *l))
            .map(|layer| BusServer {
                layer,
                silent: std::sync::atomic::AtomicBool::new(false),
            });
        let tags = Arc::new(TagIndex::new(authority_store.clone(), memo_ttl));
        let recovery = recovery::Recovery::new(
            tiers
                .iter()
                .map(|t| {
                    (
                        t.layer,
                        t.store.clone(),
                        counters.layers[t.layer.index()].clone(),
                    )
                })
                .collect(),
            authority.map(|i| recovery::OwedTags {
                tags: tags.clone(),
                authority: tiers[i].layer,
                publisher: publisher.clone(),
            }),
            publisher.clone(),
        );
        let leases = lease::Leases::build(
            &tiers
                .iter()
                .map(|t| (t.layer, t.store.clone()))
                .collect::<Vec<_>>(),
            publisher.clone().map(|p| p as Arc<dyn lease::Announce>),
            lease_ttl,
            counters.leases.clone(),
        );
        if config.loads.distributed_lock && leases.is_none() {
            tracing::warn!(
                "distributed_lock is on, but this cache has no shared layer that keeps leases \
                 (redis, redis-cluster, memcached) or no bus: each process loads on its own \
                 (docs/leases.md#without-a-bus)"
            );
        }
        let mut engine = Engine {
            recovery,
            config: config.clone(),
            l1,
            tiers,
            enabled,
            tags,
            flush_epoch: epoch::FlushEpoch::new(authority_store, memo_ttl),
            authority,
            flights: Flights::default(),
            refreshing: refresh::Refreshing::default(),
            fence: Arc::default(),
            counters,
            counter_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            publisher,
            leases,
            l1_keeps_decoded,
            call_budget,
            bus_server,
            instruments,
            uncounted: Default::default(),
        };
        for (i, capacity) in queues {
            engine.tiers[i].behind = Some(engine.start_write_behind(i, capacity));
        }
        engine
    }

    /// Whether `layer` carries the bus and the bus is out (see [`BusServer`]).
    #[inline]
    fn bus_server_silent(&self, layer: Layer) -> bool {
        self.bus_server.as_ref().is_some_and(|b| {
            b.layer == layer && b.silent.load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// The embedded default: L1 only.
    pub(crate) fn embedded_default() -> Engine {
        Engine::new(
            &CacheConfig::default(),
            Vec::new(),
            None,
            DEFAULT_LEASE_TTL,
            Arc::default(),
        )
    }

    /// When a call began, for its notice's share of the call's budget
    /// (`docs/resilience.md#one-timeout-per-call`): read only where there is a bus to publish on
    /// and a budget to share, since a clock read is a good part of an L1 write's cost.
    pub(crate) fn call_began(&self) -> Option<std::time::Instant> {
        (self.publisher.is_some() && self.call_budget.is_some()).then(std::time::Instant::now)
    }

    /// Whether invalidations and events travel to other processes.
    pub(crate) fn has_bus(&self) -> bool {
        self.publisher.is_some()
    }

    /// This cache's id on the bus, when there is one.
    pub(crate) fn bus_origin(&self) -> Option<u64> {
        self.publisher.as_deref().map(Publisher::origin)
    }

    /// What the bus counted, when there is one.
    pub(crate) fn bus_stats(&self) -> Option<crate::bus::BusStats> {
        self.publisher.as_deref().map(Publisher::stats)
    }

    fn skip(&self, layer: Layer, what: &str, key: &str, e: &Error) {
        if e.kind() == ErrorKind::ValueTooLarge {
            // The server refused the value's size (a memcached item limit, Redis's bulk
            // length): the layer is well, the value is not for it.
            Counters::bump(&self.counters.layer(layer).too_large);
            tracing::debug!(layer = %layer, key, error = %e, "{what} refused for its size; layer skipped for this value");
            return;
        }
        Counters::bump(&self.counters.layer(layer).errors);
        tracing::warn!(layer = %layer, key, error = %e, "{what} failed; layer skipped for this call");
    }

    /// The layers of `layers` that are enabled; an error when none is.
    fn selected(&self, layers: LayerSet) -> Result<LayerSet> {
        let mut selected = LayerSet::default();
        for layer in Layer::ALL {
            if layers.contains(layer) && self.enabled.contains(layer) {
                selected.insert(layer);
            }
        }
        if selected == LayerSet::default() {
            return Err(Self::nothing_selected());
        }
        Ok(selected)
    }

    fn nothing_selected() -> Error {
        Error::new(
            ErrorKind::Config,
            "none of the layers selected for this write is enabled",
        )
    }
}

/// The layers below L1: each configured layer with its store opened, except where `given` holds
/// a store of the caller's for it, which then serves the layer with the layer's settings (or the
/// cache's defaults when the configuration does not name the layer).
pub(crate) async fn open_tiers(
    config: &CacheConfig,
    mut given: Vec<(Layer, Arc<dyn Store>)>,
) -> Result<Vec<TierSpec>> {
    let layers = &config.layers;
    let mut specs = Vec::new();
    for (layer, cfg) in [
        (Layer::L2, &layers.l2),
        (Layer::L3, &layers.l3),
        (Layer::L4, &layers.l4),
    ] {
        let own = given
            .iter()
            .position(|(l, _)| *l == layer)
            .map(|i| given.swap_remove(i).1);
        let spec = match (cfg, own) {
            (Some(cfg), own) => {
                let store = match own {
                    Some(store) => store,
                    None => crate::store::open(layer, cfg, &config.key_prefix).await?,
                };
                TierSpec {
                    layer,
                    store,
                    ttl_cap: cfg.ttl,
                    max_value_bytes: cfg.max_value_bytes,
                    compression: cfg.compression,
                    write_behind: match cfg.write {
                        crate::config::WritePolicy::Behind { queue } => Some(queue),
                        crate::config::WritePolicy::Through => None,
                    },
                    sweep: cfg.sweep.map(|sweep| (sweep.every, sweep.batch)),
                    breaker: cfg.breaker,
                    timeout: Some(cfg.timeout),
                }
            }
            (None, Some(store)) => TierSpec {
                layer,
                store,
                ttl_cap: None,
                max_value_bytes: None,
                compression: None,
                write_behind: None,
                sweep: None,
                breaker: crate::config::BreakerConfig::default(),
                timeout: None,
            },
            (None, None) => continue,
        };
        specs.push(spec);
    }
    Ok(specs)
}
