//! Single-flight: concurrent misses on one key share one load.
//!
//! The first caller to miss becomes the *leader* and runs the load; the others *wait* on its
//! flight. A leader that succeeds publishes its value to the waiters; one that fails, returns an
//! uncacheable result, or is dropped mid-load publishes nothing, and the waiters retry: the first
//! of them to come back becomes the next leader. A load error is therefore never shared and never
//! cached.
//!
//! An invalidation *detaches* the flights it concerns ([`Flights::forget`],
//! [`Flights::forget_tagged`], [`Flights::forget_all`]) before it returns: the load goes on for
//! the callers already waiting on it (they began before the invalidation), but a caller that
//! comes after finds no flight and leads a load of its own, so it never receives a value loaded
//! before it began (`docs/guarantees.md#g3-no-resurrection`).
//!
//! A waiter waits at most its patience (`load_wait_timeout`): past it, it detaches the flight as an
//! invalidation would and goes round again, so a hung leader blocks its waiters for a bounded time
//! (`docs/guarantees.md#f6-a-hung-load-blocks-its-waiters-for-a-bounded-time`). The callers that
//! give up on one flight share the next one.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
struct Flight {
    outcome: Mutex<Option<Option<Shared>>>,
    done: Notify,
    /// The tags its value will carry: `invalidate_tag` detaches the flights that carry the tag.
    tags: Box<[String]>,
}

/// The flights in progress of one cache, by key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
    /// `map.len()`, readable without the lock; changed under it.
    active: AtomicUsize,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Flights").field("in_progress", &n).finish()
    }
}

/// What a caller is in a flight.
pub(crate) enum Role<'a> {
    Leader(Leader<'a>),
    Waiter(Waiter<'a>),
}

/// The caller that runs the load. Dropping it without [`Leader::finish`] counts as a failure.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
    finished: bool,
}

/// A caller waiting on another's load.
pub(crate) struct Waiter<'a> {
    flights: &'a Flights,
    flight: Arc<Flight>,
}

/// How a wait on another caller's load ended.
pub(crate) enum Waited {
    /// The leader's value.
    Value(Shared),
    /// The leader failed, kept nothing, or was dropped: go round again.
    Retry,
    /// The leader took longer than the waiter's patience. Its flight is detached, so going round
    /// again leads a load of one's own, or joins the one another caller that gave up leads.
    GaveUp,
}

impl Flights {
    /// Whether a load of `key` is in flight now.
    ///
    /// Sequentially consistent with [`Flights::join`]'s count: a caller that moved a sequence on
    /// (`Fence::advance`, also `SeqCst`) and then finds no flight knows that any leader joining
    /// later takes a ticket that sees it.
    pub(crate) fn in_flight(&self, key: &str) -> bool {
        if self.active.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Joins the flight of `key`, leading it (with `tags`) when there is none.
    pub(crate) fn join(&self, key: &str, tags: &[String]) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = map.get(key) {
            return Role::Waiter(Waiter {
                flights: self,
                flight: flight.clone(),
            });
        }
        let flight = Arc::new(Flight {
            tags: tags.into(),
            ..Flight::default()
        });
        map.insert(key.to_owned(), flight.clone());
        self.active.fetch_add(1, Ordering::SeqCst);
        Role::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            flight,
            finished: false,
        })
    }
}

impl Flights {
    /// Detaches `flight` if it is still the flight of `key` (a later one may have replaced it).
    fn detach_if_current(&self, key: &str, flight: &Arc<Flight>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(key);
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Detaches the flight of `key`: later callers start a load of their own.
    pub(crate) fn forget(&self, key: &str) {
        if self.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.remove(key).is_some() {
            // Its leader finds it gone and leaves the count alone.
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Detaches every flight whose value carries `tag`; returns their keys.
    pub(crate) fn forget_tagged(&self, tag: &str) -> Vec<String> {
        if self.active.load(Ordering::SeqCst) == 0 {
            return Vec::new();
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<String> = map
            .iter()
            .filter(|(_, flight)| flight.tags.iter().any(|t| t == tag))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            map.remove(key);
        }
        self.active.store(map.len(), Ordering::SeqCst);
        keys
    }

    /// Detaches every flight.
    pub(crate) fn forget_all(&self) {
        if self.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.clear();
        self.active.store(0, Ordering::SeqCst);
    }
}

impl Leader<'_> {
    /// Ends the flight, sharing `value` with the waiters (`None`: they retry).
    pub(crate) fn finish(mut self, value: Option<Shared>) {
        self.publish(value);
    }

    fn publish(&mut self, value: Option<Shared>) {
        self.finished = true;
        self.flights.detach_if_current(&self.key, &self.flight);
        *self
            .flight
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(value);
        self.flight.done.notify_waiters();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.publish(None);
        }
    }
}

impl Waiter<'_> {
    /// Waits for the leader of `key`'s flight, at most `patience`.
    pub(crate) async fn wait(self, key: &str, patience: Duration) -> Waited {
        let notified = self.flight.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(outcome) = self.outcome() {
            return Self::waited(outcome);
        }
        if tokio::time::timeout(patience, notified).await.is_ok() {
            return Self::waited(self.outcome().flatten());
        }
        // The leader may have finished as the time ran out: its value is as good as any.
        if let Some(outcome) = self.outcome() {
            return Self::waited(outcome);
        }
        self.flights.detach_if_current(key, &self.flight);
        Waited::GaveUp
    }

    fn waited(outcome: Option<Shared>) -> Waited {
        outcome.map_or(Waited::Retry, Waited::Value)
    }

    fn outcome(&self) -> Option<Option<Shared>> {
        self.flight
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
