//! Event handlers: `#[on_event]` registration, and the table of handlers an application runs.
//!
//! A handler written with `#[on_event("user.updated")]` is registered at link time through
//! `inventory`. [`Vorte::builder().auto_load(true)`](crate::VorteBuilder::auto_load) wires every
//! registered handler into the application's [`Handlers`]; [`emit`](crate::emit) runs them in
//! this process and publishes the event for the others (the application and the bus do that;
//! this module only knows handlers and how to run them).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// The boxed future an event handler returns.
pub type HandlerFuture =
    std::pin::Pin<Box<dyn Future<Output = crate::Result<()>> + Send + 'static>>;

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

/// The handlers wired into one application, and the dispatch that runs them.
#[derive(Debug, Default)]
pub struct Handlers {
    handlers: Vec<&'static EventHandler>,
}

/// The former name of [`Handlers`]: it never was a bus (the bus is the transport between
/// processes), only the table of handlers.
#[deprecated(since = "0.1.0", note = "renamed `Handlers`")]
pub type EventBus = Handlers;

impl Handlers {
    /// A table with no handlers.
    pub(crate) fn empty() -> Self {
        Handlers::default()
    }

    /// Every handler that `#[on_event]` registered in this binary.
    pub(crate) fn auto_loaded() -> Self {
        Handlers {
            handlers: inventory::iter::<EventHandler>.into_iter().collect(),
        }
    }

    /// A table of exactly these handlers.
    #[cfg(test)]
    pub(crate) fn of(handlers: Vec<&'static EventHandler>) -> Self {
        Handlers { handlers }
    }

    /// How many handlers are wired.
    pub fn handler_count(&self) -> usize {
        self.handlers.len()
    }

    /// Runs every wired handler of `event`, one after another, in registration order, each for
    /// at most `limit` (when there is one).
    ///
    /// Every handler runs even when an earlier one fails, panics or runs out of time: a panic is
    /// caught, and a handler past `limit` is abandoned (its future dropped). Each such failure is
    /// logged and counted in what this returns.
    pub(crate) async fn dispatch(
        &self,
        event: &str,
        payload: serde_json::Value,
        limit: Option<Duration>,
    ) -> Dispatched {
        let payload = Arc::new(payload);
        let mut dispatched = Dispatched::default();
        for handler in self.handlers.iter().filter(|h| h.event == event) {
            dispatched.ran += 1;
            let error = match run(handler, payload.clone(), limit).await {
                Outcome::Done => continue,
                Outcome::Failed(e) => {
                    tracing::warn!(event, handler = handler.name, error = %e, "event handler failed");
                    e
                }
                Outcome::Panicked(message) => {
                    dispatched.panicked += 1;
                    tracing::error!(
                        event,
                        handler = handler.name,
                        panic = message,
                        "event handler panicked"
                    );
                    Error::new(
                        ErrorKind::Handler,
                        format!("{}: panicked: {message}", handler.name),
                    )
                }
                Outcome::TimedOut(limit) => {
                    dispatched.timed_out += 1;
                    tracing::error!(
                        event,
                        handler = handler.name,
                        "event handler still running after {limit:?}: abandoned"
                    );
                    Error::new(
                        ErrorKind::Timeout,
                        format!("{}: abandoned after {limit:?}", handler.name),
                    )
                }
            };
            dispatched.first_error.get_or_insert(error);
        }
        dispatched
    }
}

/// What became of the handlers of one event.
#[derive(Debug, Default)]
pub(crate) struct Dispatched {
    /// How many handlers ran, whatever their outcome.
    pub(crate) ran: usize,
    /// How many panicked.
    pub(crate) panicked: u64,
    /// How many were abandoned past the time limit.
    pub(crate) timed_out: u64,
    /// The first failure: an error a handler returned, a panic, or a timeout.
    pub(crate) first_error: Option<Error>,
}

impl Dispatched {
    /// How many handlers ran, or the first failure.
    pub(crate) fn into_result(self) -> Result<usize> {
        match self.first_error {
            Some(e) => Err(e),
            None => Ok(self.ran),
        }
    }
}

/// How one handler ended.
enum Outcome {
    Done,
    Failed(Error),
    Panicked(String),
    TimedOut(Duration),
}

/// Runs one handler, catching a panic, for at most `limit`.
async fn run(
    handler: &EventHandler,
    payload: Arc<serde_json::Value>,
    limit: Option<Duration>,
) -> Outcome {
    // Building the future runs the handler's binding code: a panic there is caught too.
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| (handler.call)(payload))) {
        Ok(future) => future,
        Err(panic) => return Outcome::Panicked(panic_message(panic.as_ref()).to_owned()),
    };
    let guarded = AssertUnwindSafe(future).catch_unwind();
    let finished = match limit {
        Some(limit) => match tokio::time::timeout(limit, guarded).await {
            Ok(finished) => finished,
            Err(_) => return Outcome::TimedOut(limit),
        },
        None => guarded.await,
    };
    match finished {
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(panic) => Outcome::Panicked(panic_message(panic.as_ref()).to_owned()),
    }
}

/// The message a panic carried, when it is text.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static AFTER: AtomicUsize = AtomicUsize::new(0);

    fn handler(
        name: &'static str,
        call: fn(Arc<serde_json::Value>) -> HandlerFuture,
    ) -> EventHandler {
        EventHandler {
            event: "guarded",
            name,
            call,
        }
    }

    /// A handler that panics, before or while it runs, or never finishes, is caught or abandoned,
    /// counted, and the handlers after it still run.
    #[tokio::test]
    async fn a_handler_that_panics_or_hangs_does_not_stop_the_others() {
        let table: Vec<&'static EventHandler> = vec![
            Box::leak(Box::new(handler("binds_then_panics", |_| {
                panic!("while binding its parameters")
            }))),
            Box::leak(Box::new(handler("panics_while_running", |_| {
                Box::pin(async { panic!("while running") })
            }))),
            Box::leak(Box::new(handler("never_finishes", |_| {
                Box::pin(std::future::pending())
            }))),
            Box::leak(Box::new(handler("runs_after", |_| {
                Box::pin(async {
                    AFTER.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            }))),
        ];
        let handlers = Handlers::of(table);
        let limit = Some(Duration::from_millis(50));
        let dispatched = handlers
            .dispatch("guarded", serde_json::json!({}), limit)
            .await;
        assert_eq!(
            (dispatched.ran, dispatched.panicked, dispatched.timed_out),
            (4, 2, 1)
        );
        assert_eq!(AFTER.load(Ordering::SeqCst), 1, "the last handler ran");
        let first = dispatched.into_result().expect_err("the first failure");
        assert_eq!(first.kind(), ErrorKind::Handler);
        assert!(first.to_string().contains("binds_then_panics"), "{first}");
    }
}
