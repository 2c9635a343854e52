//! The publishing half of a cache's connection to the bus.
//!
//! A message is appended at once when the bus answers. When it does not (an error, no answer
//! within the bus timeout or what is left of the caller's), the message waits in a queue, and
//! every message after it queues behind it, so the order is kept; a task of the publisher's own
//! retries the queue with backoff until the bus takes each message. The caller waits for one
//! attempt at most (while messages wait, none; nor after a layer failed in the same call): it
//! gets `Ok`, as the message is now the publisher's to deliver.
//!
//! The queue is bounded. When it is full, the messages in it are replaced by one flush notice:
//! every other process drops its L1 when it reads it, which is what a lost message needs, so
//! nothing is lost unnoticed (counted in [`BusStats::publish_dropped`] and logged as an error).
//! What is still queued when the cache is dropped is lost: that too is counted and logged.
//!
//! A message whose append timed out may have reached the server all the same; its retry then
//! sends it twice. An invalidation applied twice changes nothing; an event's handlers run twice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fred::prelude::{ClientLike, Pool, StreamsInterface};
use tokio::sync::Notify;

use super::stats::{BusStats, Counters};
use super::streams::event_shard;
use super::{Body, EventNotice, Message, Notice};
use crate::error::{Error, ErrorKind, Result};
use crate::layer::Layer;

/// The most messages that wait for the bus: beyond, they collapse into one flush notice.
const MAX_WAITING: usize = 10_000;

/// The first pause before a retry; it doubles with each failure in a row, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Short, so that what waited reaches the other processes soon after the bus is back: until
/// then they may read what it invalidates, and a notice that lands a second late removes what
/// they cached meanwhile (the hit rate dips again). A retry while the bus is down costs one
/// command that fails.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// How long a forced reconnection is waited for (a connection attempt gives up after 2 s).
const RENEW_WAIT: Duration = Duration::from_secs(3);

/// How often the retry task looks whether the publisher was dropped, when it has nothing to do.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Where messages go and how: shared by the publisher and its retry task.
struct Link {
    pool: Pool,
    /// This cache's id on the bus: random, so no two caches share one.
    origin: u64,
    /// The main stream: invalidations.
    stream: String,
    /// `MAXLEN ~` of every stream.
    retention: i64,
    timeout: Duration,
    /// Whether a forced reconnection is under way.
    renewing: Arc<AtomicBool>,
}

/// One message waiting for the bus.
struct Waiting {
    stream: String,
    body: String,
}

/// The messages waiting for the bus, oldest first, and the retry task's wake-up.
#[derive(Default)]
struct Queue {
    waiting: Mutex<VecDeque<Waiting>>,
    wake: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The publishing half of one cache's connection to the bus. Dropping it closes the bus: the
/// receivers see that within one blocking read and quit.
pub(crate) struct Publisher {
    link: Arc<Link>,
    /// The event streams, indexed by [`event_shard`]; never empty.
    events: Vec<String>,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    /// Set when the publisher is dropped: tells the receivers and the retry task to quit.
    closed: Arc<AtomicBool>,
    /// The layer whose Redis the bus rides on, if it has none of its own.
    rides_on: Option<Layer>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("stream", &self.link.stream)
            .field("events", &self.events)
            .field("retention", &self.link.retention)
            .finish_non_exhaustive()
    }
}

impl Drop for Publisher {
    /// Closes every connection. fred keeps a client connected (and reconnecting) until it is
    /// told to quit, whether or not anyone holds it, so the receivers are not aborted: they
    /// see `closed` within one blocking read and quit their own clients.
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.queue.wake.notify_one();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.link.pool.clone();
            runtime.spawn(async move {
                let _ = pool.quit().await;
            });
        }
    }
}

/// What `connect` knows of the publisher it builds.
pub(super) struct PublisherSetup {
    pub(super) pool: Pool,
    pub(super) origin: u64,
    pub(super) stream: String,
    pub(super) events: Vec<String>,
    pub(super) retention: u64,
    pub(super) timeout: Duration,
    pub(super) counters: Arc<Counters>,
    pub(super) closed: Arc<AtomicBool>,
    pub(super) rides_on: Option<Layer>,
}

impl Publisher {
    /// The publisher, and its retry task started.
    pub(super) fn start(setup: PublisherSetup) -> Publisher {
        let link = Arc::new(Link {
            pool: setup.pool,
            origin: setup.origin,
            stream: setup.stream,
            retention: i64::try_from(setup.retention).unwrap_or(i64::MAX),
            timeout: setup.timeout,
            renewing: Arc::new(AtomicBool::new(false)),
        });
        let queue = Arc::new(Queue::default());
        drop(tokio::spawn(retry(
            link.clone(),
            queue.clone(),
            setup.counters.clone(),
            setup.closed.clone(),
        )));
        Publisher {
            link,
            events: setup.events,
            queue,
            counters: setup.counters,
            closed: setup.closed,
            rides_on: setup.rides_on,
        }
    }

    /// What the bus counted since the cache was built.
    /// The layer whose Redis the bus rides on, if it has no Redis of its own: an outage of the
    /// bus is one of that layer too.
    pub(crate) fn rides_on(&self) -> Option<Layer> {
        self.rides_on
    }

    /// This cache's id on the bus, which every message it sends carries.
    pub(crate) fn origin(&self) -> u64 {
        self.link.origin
    }

    pub(crate) fn stats(&self) -> BusStats {
        self.counters.snapshot()
    }

    /// Appends an invalidation to the main stream, now or, if the bus does not take it, later.
    /// The caller waits for the bus at most `wait` (and never past the bus timeout): a call whose
    /// layers took most of its budget, or failed (`Duration::ZERO`: the message is queued without
    /// an attempt), does not wait for the bus on top (`docs/resilience.md#one-timeout-per-call`).
    pub(crate) async fn publish(&self, notice: Notice, wait: Duration) -> Result<()> {
        let stream = self.link.stream.clone();
        self.send(stream, notice.into(), 0, wait).await
    }

    /// Appends a hint to the main stream if the bus takes it at once; otherwise drops it and
    /// returns why. For [`Notice::Landed`]: a hint that comes late is of no
    /// use, and one that is lost only makes a waiter load at its bound, so it never waits in the
    /// queue, where it could push invalidations towards the flush a full queue collapses into.
    pub(crate) async fn publish_hint(&self, notice: Notice) -> Result<()> {
        if !self.queue.lock().is_empty() {
            return Err(Error::new(
                ErrorKind::Backend,
                "bus publish: the bus is behind; hint dropped",
            ));
        }
        let body = self.link.encode(notice.into(), 0)?;
        let appended = self.link.append(&self.link.stream, &body).await;
        if appended.is_ok() {
            Counters::add(&self.counters.published, 1);
        }
        appended
    }

    /// Appends an event to its name's event stream, now or later.
    pub(crate) async fn publish_event(&self, event: EventNotice) -> Result<()> {
        let shard = event_shard(&event.event, self.events.len());
        let stream = self.events.get(shard).unwrap_or(&self.link.stream).clone();
        let body = Body::Event {
            event: event.event,
            payload: event.payload,
        };
        self.send(stream, body, event.process, self.link.timeout)
            .await
    }

    async fn send(&self, stream: String, body: Body, process: u64, wait: Duration) -> Result<()> {
        let body = self.link.encode(body, process)?;
        // Behind messages still waiting, in order.
        if wait.is_zero() || !self.queue.lock().is_empty() {
            self.wait(Waiting { stream, body });
            return Ok(());
        }
        let append = self.link.append(&stream, &body);
        let appended = if wait < self.link.timeout {
            tokio::time::timeout(wait, append)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!("bus publish: the call's time ran out after {wait:?}"),
                    ))
                })
        } else {
            append.await
        };
        match appended {
            Ok(()) => Counters::add(&self.counters.published, 1),
            Err(e) => {
                Counters::add(&self.counters.publish_retries, 1);
                tracing::warn!(
                    error = %e,
                    "bus publish failed; the message waits and is retried until the bus takes it"
                );
                self.wait(Waiting { stream, body });
            }
        }
        Ok(())
    }

    /// Queues a message for the retry task. A full queue collapses into one flush notice.
    fn wait(&self, message: Waiting) {
        let mut waiting = self.queue.lock();
        if waiting.len() >= MAX_WAITING {
            let dropped = waiting.len() as u64;
            waiting.clear();
            Counters::add(&self.counters.publish_dropped, dropped);
            tracing::error!(
                dropped,
                "the bus has not taken {dropped} messages: they are replaced by one flush notice, \
                 which makes every other process drop its L1 once it reads it"
            );
            if let Ok(flush) = self.link.encode(Body::Flush, 0) {
                waiting.push_back(Waiting {
                    stream: self.link.stream.clone(),
                    body: flush,
                });
            }
        }
        waiting.push_back(message);
        drop(waiting);
        self.queue.wake.notify_one();
    }
}

impl Link {
    /// Replaces the connection, which did not answer: it may be dead without being closed, and
    /// fred would wait on it forever. Asked after each unanswered attempt, also while fred is
    /// reconnecting (an attempt stuck on a server that accepted the socket and went silent is cut
    /// short too). One at a time, in the background: the next attempt queues behind the new
    /// connection.
    fn renew(&self) {
        if self.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, renewing) = (self.pool.clone(), self.renewing.clone());
        drop(tokio::spawn(async move {
            let _ = tokio::time::timeout(RENEW_WAIT, pool.force_reconnection()).await;
            renewing.store(false, Ordering::Release);
        }));
    }

    fn encode(&self, body: Body, process: u64) -> Result<String> {
        let message = Message {
            origin: self.origin,
            process,
            body,
        };
        serde_json::to_string(&message)
            .map_err(|e| Error::new(ErrorKind::Serialize, format!("bus message: {e}")))
    }

    /// One `XADD`, under the bus timeout.
    async fn append(&self, stream: &str, body: &str) -> Result<()> {
        let add = self.pool.xadd::<String, _, _, _, _>(
            stream,
            false,
            ("MAXLEN", "~", self.retention),
            "*",
            vec![("m", body)],
        );
        match tokio::time::timeout(self.timeout, add).await {
            Ok(Ok(_)) => Ok(()),
            // fred's own command timeout is the same as this one and often fires first.
            Ok(Err(e)) if *e.kind() == fred::error::ErrorKind::Timeout => Err(Error::new(
                ErrorKind::Timeout,
                format!("bus publish took longer than {:?}", self.timeout),
            )),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Backend,
                format!("bus publish: {}", e.details()),
            )),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("bus publish took longer than {:?}", self.timeout),
            )),
        }
    }
}

/// The retry task: sends the waiting messages, oldest first, each until the bus takes it.
async fn retry(
    link: Arc<Link>,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    closed: Arc<AtomicBool>,
) {
    let mut pause = FIRST_PAUSE;
    loop {
        if closed.load(Ordering::Acquire) {
            let lost = queue.lock().drain(..).count() as u64;
            if lost > 0 {
                Counters::add(&counters.publish_dropped, lost);
                tracing::error!(
                    lost,
                    "the cache was dropped before the bus took {lost} messages: other processes \
                     never receive them"
                );
            }
            return;
        }
        let next = queue
            .lock()
            .front()
            .map(|w| (w.stream.clone(), w.body.clone()));
        let Some((stream, body)) = next else {
            let _ = tokio::time::timeout(IDLE_CHECK, queue.wake.notified()).await;
            continue;
        };
        match link.append(&stream, &body).await {
            Ok(()) => {
                // Only the retry task removes from the front, so this is the message just sent
                // (a collapse may have replaced it: then the flush it became goes next).
                let mut waiting = queue.lock();
                if waiting.front().is_some_and(|w| w.body == body) {
                    waiting.pop_front();
                }
                Counters::add(&counters.published, 1);
                pause = FIRST_PAUSE;
            }
            Err(e) => {
                Counters::add(&counters.publish_retries, 1);
                tracing::debug!(error = %e, "bus publish retry failed");
                if e.kind() == ErrorKind::Timeout {
                    link.renew();
                }
                super::redis::pause_until_reconnected(link.pool.clients(), pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}
