//! [`Vorte`]: the application, which builds the cache from configuration, wires the event
//! handlers and installs both as the global ones.

pub(crate) mod global;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::bus::{EventNotice, EventSink, Handled};
use crate::cache::Cache;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::events::Handlers;
use crate::store::BoxFuture;

/// What an application shares with its cache's bus receivers: its handlers, and whether a later
/// application replaced it.
#[derive(Debug)]
pub(crate) struct AppHandlers {
    handlers: Handlers,
    /// Set when another application is installed over this one: it then runs no more events
    /// from other processes (tests and restarts build several applications in one process).
    retired: AtomicBool,
}

impl AppHandlers {
    fn new(handlers: Handlers) -> AppHandlers {
        AppHandlers {
            handlers,
            retired: AtomicBool::new(false),
        }
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl EventSink for AppHandlers {
    /// Runs another process's event, each handler for at most `handler_timeout`. The emitting
    /// process ran its handlers in `emit`; the receiver starts before the application is
    /// installed, so an event read in between runs too. Failures are logged by the dispatch;
    /// panics and timeouts go back to the bus to be counted.
    fn deliver(&self, event: EventNotice, handler_timeout: Duration) -> BoxFuture<'_, Handled> {
        Box::pin(async move {
            if event.process == global::process_id() || self.retired.load(Ordering::Acquire) {
                return Handled::default();
            }
            let dispatched = self
                .handlers
                .dispatch(&event.event, event.payload, Some(handler_timeout))
                .await;
            Handled {
                panicked: dispatched.panicked,
                timed_out: dispatched.timed_out,
            }
        })
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
    shared: Arc<AppHandlers>,
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
    pub fn events(&self) -> &Handlers {
        &self.shared.handlers
    }
}

/// Builds a [`Vorte`]; see [`Vorte::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct VorteBuilder {
    auto_load: bool,
    config: Option<Config>,
    stores: Vec<(crate::Layer, Arc<dyn crate::Store>)>,
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

    /// Serves `layer` (L2, L3 or L4) from a store of your own: see
    /// [`CacheBuilder::store`](crate::CacheBuilder::store).
    pub fn store(mut self, layer: crate::Layer, store: Arc<dyn crate::Store>) -> Self {
        self.stores.push((layer, store));
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
        let handlers = if self.auto_load {
            Handlers::auto_loaded()
        } else {
            Handlers::empty()
        };
        let app = Arc::new(AppHandlers::new(handlers));
        // The handlers are connected before the cache's receivers start, so that an event read
        // before this application is installed still runs.
        let mut builder = Cache::builder(&config.cache);
        for (layer, store) in self.stores {
            builder = builder.store(layer, store);
        }
        let events = Arc::downgrade(&app) as std::sync::Weak<dyn EventSink>;
        let cache = builder.events(events).build().await?;
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
        global::install(global::Installed {
            cache: cache.clone(),
            shared: app.clone(),
        });
        Ok(Vorte { cache, shared: app })
    }
}

/// Emits `event` with `payload` to the installed application's handlers, in this process and in
/// every process that shares its bus.
///
/// Every `#[on_event(event)]` handler wired into the installed [`Vorte`] runs before this
/// returns; the return value is how many ran here. The event is then published on the global
/// cache's bus (`[cache.bus]`, else the Redis of L2 or L3), on the event stream its name hashes to
/// (one of `event_shards`, spread over the primaries of a cluster), and every other process runs
/// its own handlers when it reads it, including a process that was briefly disconnected; one that
/// was away past the bus's `retention` drops its L1 instead and logs why. Events of one name
/// arrive in the order they were emitted. Before any `Vorte` is built, the embedded default
/// application has every registered handler wired.
///
/// # Errors
///
/// - [`ErrorKind::Serialize`] when the payload does not serialize to JSON;
/// - [`ErrorKind::Handler`] (or the kind the handler itself returned) when a handler fails,
///   panics (the panic is caught and logged) or its parameters do not bind. The other handlers
///   still run.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
/// let ran = vorte_cache::emit("nobody.listens", &serde_json::json!({ "id": 1 })).await?;
/// assert_eq!(ran, 0);
/// # Ok(()) }
/// ```
pub async fn emit<P: Serialize + ?Sized>(event: &str, payload: &P) -> Result<usize> {
    let payload = serde_json::to_value(payload).map_err(|e| {
        Error::new(
            ErrorKind::Serialize,
            format!("event `{event}`: payload is not JSON-serializable: {e}"),
        )
        .with_source(e)
    })?;
    // No time limit here: the caller awaits its own handlers, and can bound that itself.
    let ran = global::installed_handlers()
        .handlers
        .dispatch(event, payload.clone(), None)
        .await
        .into_result();
    // Then the other processes, through the global cache's bus (if it has one).
    let notice = EventNotice {
        event: event.to_owned(),
        payload,
        process: global::process_id(),
    };
    let cache = Cache::global();
    let publish = async {
        cache.engine().publish_event(notice).await;
        ran
    };
    crate::observe::traced!(&cache.engine().instruments, "emit", Some(event), publish)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::events::EventHandler;

    static RAN: AtomicUsize = AtomicUsize::new(0);
    static HANDLER: EventHandler = EventHandler {
        event: "startup.window",
        name: "tests::handler",
        call: |_| {
            Box::pin(async {
                RAN.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        },
    };

    fn from(process: u64) -> EventNotice {
        EventNotice {
            event: "startup.window".to_owned(),
            payload: serde_json::json!({}),
            process,
        }
    }

    /// The bus receivers start while the cache is built, before `VorteBuilder::build` installs
    /// the application: an event from another process read in between must run. (It was dropped
    /// when the rule was "only the installed application runs remote events".)
    #[tokio::test]
    async fn an_application_runs_remote_events_before_it_is_installed() {
        let app = AppHandlers::new(Handlers::of(vec![&HANDLER]));
        let other = global::process_id().wrapping_add(1);
        app.deliver(from(other), Duration::from_secs(5)).await;
        assert_eq!(
            RAN.load(Ordering::SeqCst),
            1,
            "a remote event before install"
        );
        // Its own process's events ran in `emit`.
        app.deliver(from(global::process_id()), Duration::from_secs(5))
            .await;
        assert_eq!(RAN.load(Ordering::SeqCst), 1, "an event of its own process");
        // Replaced by a later application: no more remote events.
        app.retire();
        app.deliver(from(other), Duration::from_secs(5)).await;
        assert_eq!(RAN.load(Ordering::SeqCst), 1, "a retired application");
    }
}
