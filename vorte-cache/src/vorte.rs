//! [`Vorte`]: the application, which builds the cache from configuration, wires the event
//! handlers and installs both as the global ones.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use crate::cache::Cache;
use crate::config::Config;
use crate::error::Result;
use crate::events::EventBus;
use crate::router::Router;

#[derive(Debug)]
struct Installed {
    cache: Cache,
    bus: Arc<EventBus>,
}

static INSTALLED: ArcSwapOption<Installed> = ArcSwapOption::const_empty();

fn embedded_default() -> &'static Cache {
    static DEFAULT: OnceLock<Cache> = OnceLock::new();
    DEFAULT.get_or_init(|| Cache::from_router(Router::embedded_default()))
}

pub(crate) fn global_cache() -> Cache {
    match &*INSTALLED.load() {
        Some(installed) => installed.cache.clone(),
        None => embedded_default().clone(),
    }
}

/// Runs `f` on the global cache without cloning its handle.
#[inline]
pub(crate) fn with_global<R>(f: impl FnOnce(&Cache) -> R) -> R {
    match &*INSTALLED.load() {
        Some(installed) => f(&installed.cache),
        None => f(embedded_default()),
    }
}

pub(crate) fn installed_bus() -> Arc<EventBus> {
    match &*INSTALLED.load() {
        Some(installed) => installed.bus.clone(),
        None => crate::events::default_bus(),
    }
}

/// An application: its cache and its event handlers. Built by [`Vorte::builder`].
///
/// ```
/// use vorte_cache::{Cache, Config, Vorte};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
/// let config = Config::from_toml_str(r#"
///     [cache]
///     default_ttl = 300
///     key_prefix = "doc:"
///     [cache.layers.l1]
///     max_size = 1000
/// "#)?;
/// let app = Vorte::builder().auto_load(true).config(config).build().await?;
/// app.cache().set("k", &1u8).await?;
/// assert_eq!(Cache::global().get::<u8>("k").await?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Vorte {
    cache: Cache,
    bus: Arc<EventBus>,
}

impl Vorte {
    /// Starts building an application.
    pub fn builder() -> VorteBuilder {
        VorteBuilder::default()
    }

    /// The application's cache (also [`Cache::global`] once built).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The application's event handlers.
    pub fn events(&self) -> &EventBus {
        &self.bus
    }
}

/// Builds a [`Vorte`]; see [`Vorte::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct VorteBuilder {
    auto_load: bool,
    config: Option<Config>,
}

impl VorteBuilder {
    /// Wires every `#[on_event]` handler linked into the binary. Off by default: without it,
    /// [`emit`](crate::emit) runs no handler of this application.
    pub fn auto_load(mut self, auto_load: bool) -> Self {
        self.auto_load = auto_load;
        self
    }

    /// The configuration; without it, the embedded default (L1 only).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Builds the cache, wires the handlers and installs both as the global ones, so that
    /// [`Cache::global`], `#[cached]` and [`emit`](crate::emit) use them. A later build replaces
    /// an earlier one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when a layer cannot be opened.
    pub async fn build(self) -> Result<Vorte> {
        let config = self.config.unwrap_or_default();
        let cache = Cache::from_config(&config.cache).await?;
        let bus = Arc::new(if self.auto_load {
            EventBus::auto_loaded()
        } else {
            EventBus::empty()
        });
        let shared = [
            &config.cache.layers.l2,
            &config.cache.layers.l3,
            &config.cache.layers.l4,
        ]
        .iter()
        .any(|l| l.is_some());
        if cache.config().layers.l1.enabled && shared && !cache.has_bus() {
            tracing::warn!(
                "no invalidation bus (no Redis in L2/L3 and no [cache.bus]): other processes' L1 \
                 copies stay stale for up to their L1 ttl after an invalidation here"
            );
        }
        INSTALLED.store(Some(Arc::new(Installed {
            cache: cache.clone(),
            bus: bus.clone(),
        })));
        Ok(Vorte { cache, bus })
    }
}
