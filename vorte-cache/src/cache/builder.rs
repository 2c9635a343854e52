//! [`CacheBuilder`]: a cache from its configuration, with stores of your own where you want them.

use std::sync::{Arc, Weak};

use super::Cache;
use crate::bus::{EventSink, NoticeSink};
use crate::config::CacheConfig;
use crate::engine::{self, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::layer::Layer;
use crate::observe::{Instruments, Observe, StatsSource, UsageFuture};
use crate::store::Store;

/// Builds a [`Cache`]: every layer its configuration names, and any layer below L1 served by a
/// [`Store`] of your own.
///
/// A store given for a layer replaces the backend the configuration names for it, and keeps that
/// layer's other settings (`ttl`, `max_value_bytes`, `compression`, `write_policy`); for a layer
/// the configuration does not name, the cache's defaults apply. Every store is wrapped in the
/// same circuit breaker as the built-in ones.
///
/// With the in-memory `TestStore` of `vorte_cache::testing` (feature `testing`):
#[cfg_attr(
    feature = "testing",
    doc = r#"
```
use std::sync::Arc;
use vorte_cache::{Cache, CacheConfig, Layer};
use vorte_cache::testing::TestStore;

# #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
let shared = Arc::new(TestStore::new());
let cache = Cache::builder(&CacheConfig::default())
    .store(Layer::L2, shared.clone())
    .build()
    .await?;
cache.set("k", &1u32).await?;
assert_eq!(cache.get::<u32>("k").await?, Some(1));
# Ok(()) }
```
"#
)]
#[must_use = "a CacheBuilder does nothing until built"]
pub struct CacheBuilder<'a> {
    config: &'a CacheConfig,
    stores: Vec<(Layer, Arc<dyn Store>)>,
    events: Option<Weak<dyn EventSink>>,
    observers: Vec<Arc<dyn Observe>>,
}

impl std::fmt::Debug for CacheBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field(
                "stores",
                &self.stores.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<'a> CacheBuilder<'a> {
    pub(crate) fn new(config: &'a CacheConfig) -> CacheBuilder<'a> {
        CacheBuilder {
            config,
            stores: Vec::new(),
            events: None,
            observers: Vec::new(),
        }
    }

    /// Serves `layer` (L2, L3 or L4) from `store`.
    pub fn store(mut self, layer: Layer, store: Arc<dyn Store>) -> Self {
        self.stores.push((layer, store));
        self
    }

    /// Hands the cache's measurements to `observer` as they are taken (store calls, loads,
    /// invalidations; `docs/observability.md`). Call again to add more. The adapters of the
    /// `metrics` and `opentelemetry` features are observers.
    pub fn observe(mut self, observer: Arc<dyn Observe>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Where the bus delivers other processes' events: the application, connected before any
    /// receiver starts.
    pub(crate) fn events(mut self, sink: Weak<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Opens every layer, connects the bus if there is one, and starts the background work.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when a layer cannot be opened (the message names the config path),
    /// names a backend this build does not include, or a store is given for L1 or twice for one
    /// layer.
    pub async fn build(self) -> Result<Cache> {
        let mut given: Vec<Layer> = Vec::new();
        for (layer, _) in &self.stores {
            if *layer == Layer::L1 {
                return Err(Error::new(
                    ErrorKind::Config,
                    "L1 is the in-process memory; a store can serve L2, L3 or L4",
                ));
            }
            if given.contains(layer) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("two stores given for {layer}"),
                ));
            }
            given.push(*layer);
        }
        let tiers = engine::open_tiers(self.config, self.stores).await?;
        let (publisher, receivers) = match crate::bus::open(self.config).await? {
            Some((publisher, receivers)) => (Some(publisher), Some(receivers)),
            None => (None, None),
        };
        let instruments = Arc::new(Instruments::new(
            &self.config.observe,
            publisher.as_ref().map(crate::bus::Publisher::origin),
            self.observers,
        ));
        let engine = Arc::new(Engine::new(
            self.config,
            tiers,
            publisher,
            engine::DEFAULT_LEASE_TTL,
            instruments.clone(),
        ));
        engine.start_sweepers();
        if let Some(receivers) = receivers {
            let notices = Arc::downgrade(&engine) as Weak<dyn NoticeSink>;
            receivers.start(notices, self.events, instruments.clone());
        }
        let (weak, weak_too) = (Arc::downgrade(&engine), Arc::downgrade(&engine));
        instruments.started(&StatsSource {
            stats: Arc::new(move || weak.upgrade().map(|engine| engine.stats())),
            usage: Arc::new(move || {
                let engine = weak_too.upgrade()?;
                let scan: UsageFuture = Box::pin(async move { engine.usage().await });
                Some(scan)
            }),
        });
        Ok(Cache::from_engine(engine))
    }
}
