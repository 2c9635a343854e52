//! Events and their handlers: `#[on_event]` registration and [`emit`].
//!
//! A handler written with `#[on_event("user.updated")]` is registered at link time through
//! `inventory`. [`Vorte::builder().auto_load(true)`](crate::VorteBuilder::auto_load) wires every
//! registered handler into the application's [`EventBus`]; [`emit`] runs the wired handlers of the
//! installed application before it returns.
//!
//! The bus separates *dispatch* (run the local handlers for an event) from *transport* (carry an
//! event to other processes). This issue ships the local dispatch; a transport that publishes the
//! same [`EventMessage`] on Redis plugs in beside it, and receivers call the same dispatch. Each
//! message carries its origin id so that the emitting process never runs its handlers twice.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::HandlerFuture;
use crate::error::{Error, ErrorKind, Result};

/// One `#[on_event]` handler, as the macro registers it.
#[derive(Debug)]
pub struct EventHandler {
    /// The event name it handles, e.g. `"user.updated"`.
    pub event: &'static str,
    /// The handler's path, for logs and errors.
    pub name: &'static str,
    /// Binds the payload to the handler's parameters and runs it.
    pub call: fn(Arc<serde_json::Value>) -> HandlerFuture,
}

inventory::collect!(EventHandler);

/// What an `#[on_event]` handler may return: `()`, or a `Result<(), E>` whose error converts into a
/// boxed error.
pub trait HandlerOutput {
    /// The handler's outcome as a crate result.
    fn into_result(self) -> Result<()>;
}

impl HandlerOutput for () {
    fn into_result(self) -> Result<()> {
        Ok(())
    }
}

impl<E> HandlerOutput for std::result::Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn into_result(self) -> Result<()> {
        self.map_err(|e| {
            let source = e.into();
            match source.downcast::<Error>() {
                Ok(err) => *err,
                Err(other) => Error::new(ErrorKind::Handler, other.to_string()).with_source(other),
            }
        })
    }
}

/// Reads the parameter `name` of `handler` from an event payload.
///
/// The payload must be a JSON object (any `Serialize` struct or map) with a field of that name. A
/// missing field is read as `null`, so `Option` parameters may be left out.
pub fn event_arg<T: DeserializeOwned>(
    payload: &serde_json::Value,
    handler: &str,
    name: &str,
) -> Result<T> {
    let field = match payload {
        serde_json::Value::Object(map) => map.get(name).unwrap_or(&serde_json::Value::Null),
        _ => {
            return Err(Error::new(
                ErrorKind::Handler,
                format!(
                    "{handler}: the event payload is not an object, so parameter `{name}` cannot bind"
                ),
            ));
        }
    };
    T::deserialize(field).map_err(|e| {
        Error::new(
            ErrorKind::Handler,
            format!("{handler}: payload field `{name}` does not bind: {e}"),
        )
        .with_source(e)
    })
}

/// An event as it travels: its name, payload and the id of the process that emitted it.
///
/// This is the unit a cross-process transport publishes; a receiver whose [`origin`] equals its
/// own id drops it, because [`emit`] already ran the local handlers.
///
/// [`origin`]: EventMessage::origin
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct EventMessage {
    pub(crate) event: String,
    pub(crate) payload: serde_json::Value,
    pub(crate) origin: u64,
}

/// This process's id on the bus: random, so that two processes never share one.
pub(crate) fn process_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(rand::random)
}

/// The handlers wired into one application, and the dispatch that runs them.
#[derive(Debug, Default)]
pub struct EventBus {
    handlers: Vec<&'static EventHandler>,
}

impl EventBus {
    /// A bus with no handlers.
    pub(crate) fn empty() -> Self {
        EventBus::default()
    }

    /// A bus wired with every handler that `#[on_event]` registered in this binary.
    pub(crate) fn auto_loaded() -> Self {
        EventBus {
            handlers: inventory::iter::<EventHandler>.into_iter().collect(),
        }
    }

    /// How many handlers are wired.
    pub fn handler_count(&self) -> usize {
        self.handlers.len()
    }

    /// Runs every wired handler of `event`, one after another, in registration order.
    ///
    /// Every handler runs even when an earlier one fails; the first failure is returned.
    pub(crate) async fn dispatch(&self, message: EventMessage) -> Result<usize> {
        let EventMessage { event, payload, .. } = message;
        let event = event.as_str();
        let payload = Arc::new(payload);
        let mut ran = 0;
        let mut first_error = None;
        for handler in self.handlers.iter().filter(|h| h.event == event) {
            ran += 1;
            if let Err(e) = (handler.call)(payload.clone()).await {
                tracing::warn!(event, handler = handler.name, error = %e, "event handler failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(ran),
        }
    }
}

/// The bus of the embedded default application: every registered handler, as with
/// `auto_load(true)`, so that `emit` works before any `Vorte` is built.
pub(crate) fn default_bus() -> Arc<EventBus> {
    static BUS: OnceLock<Arc<EventBus>> = OnceLock::new();
    BUS.get_or_init(|| Arc::new(EventBus::auto_loaded()))
        .clone()
}

/// Emits `event` with `payload` to the installed application's handlers, in this process and in
/// every process that shares its bus.
///
/// Every `#[on_event(event)]` handler wired into the installed [`Vorte`](crate::Vorte) runs before
/// this returns; the return value is how many ran here. The event is then published on the global
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
/// - [`ErrorKind::Handler`] (or the kind the handler itself returned) when a handler fails or its
///   parameters do not bind. The other handlers still run.
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
    let message = EventMessage {
        event: event.to_owned(),
        payload: payload.clone(),
        origin: process_id(),
    };
    let ran = crate::vorte::installed_bus().dispatch(message).await;
    // Then the other processes, through the global cache's bus (if it has one).
    crate::cache::Cache::global()
        .router()
        .announce(|| crate::bus::Notice::Event {
            event: event.to_owned(),
            payload,
        })
        .await;
    ran
}
