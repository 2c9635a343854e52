//! Single flight per key in this process (`docs/web.md#rc11-single-flight`): the first request to
//! miss a key produces the response; the others wait for what it found.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::stored::StoredResponse;

/// What a flight's leader tells its waiters.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// The response, stored under the flight's key: serve it.
    Hit(Arc<StoredResponse>),
    /// The response was stored under another key (its `Vary` changed the key): look up again.
    Retry,
    /// The response could not be kept: ask the inner service yourself.
    Pass,
}

type Slot = watch::Receiver<Option<Outcome>>;

/// The flights in progress, by cache key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<String, Slot>>,
}

/// A caller's part in a flight.
pub(crate) enum Role {
    /// Produce the response, then [`Leader::finish`].
    Leader(Leader),
    /// Wait for the leader's outcome.
    Waiter(Slot),
}

/// The leader of a flight. Dropped without [`Leader::finish`] (its request cancelled), it ends
/// the flight and its waiters go round again.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: String,
    sender: watch::Sender<Option<Outcome>>,
}

impl Flights {
    fn running(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // The map is consistent after any panic in between (each step is one insert or one
        // remove): a poisoned lock is taken as it is.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight of `key`, or starts it.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut running = self.running();
        if let Some(slot) = running.get(key) {
            return Role::Waiter(slot.clone());
        }
        let (sender, slot) = watch::channel(None);
        running.insert(key.to_owned(), slot);
        Role::Leader(Leader {
            flights: self.clone(),
            key: key.to_owned(),
            sender,
        })
    }
}

impl Leader {
    /// Hands `outcome` to the waiters and ends the flight.
    pub(crate) fn finish(self, outcome: Outcome) {
        // No receiver left is fine: nobody waited.
        let _ = self.sender.send(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.flights.running().remove(&self.key);
    }
}

/// Waits for the leader's outcome; a leader gone without one is [`Outcome::Retry`].
pub(crate) async fn wait(mut slot: Slot) -> Outcome {
    match slot.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Outcome::Retry),
        Err(_) => Outcome::Retry,
    }
}
