//! One receiver, the same for the main stream and every event stream: it reads its stream from
//! where it left off, makes sure before handing on each batch that nothing after its position
//! was lost, and hands each message to its sink, on a client of its own.
//!
//! It never stops while its cache lives: a command that fails or goes unanswered renews the
//! connection and is tried again, a handler or sink that panics is caught, and even a panic in
//! the loop itself restarts the loop from the position it had reached
//! (`docs/consistency.md#gaps-g4`).
//!
//! While the receiver of the main stream (the invalidations) cannot read it (a command failed,
//! or went unanswered past the bus timeout), its cache keeps nothing locally: another process's
//! invalidation may be waiting in that process's queue, and nothing would tell this one. It
//! trusts its local state again once it has read the stream (`docs/guarantees.md#g4-gap-detection`).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fred::interfaces::EventInterface as _;
use fred::prelude::{Client, ClientLike, StreamsInterface, Value};
use futures_util::FutureExt as _;
use tokio::sync::broadcast::error::RecvError;

use super::redis::stream_info;
use super::stats::Counters;
use super::streams::{Continuity, Position, continuity, lost_after, parse_id};
use super::{Body, Doubt, EventNotice, EventSink, Message, Notice, NoticeSink};
use crate::events::panic_message;
use crate::observe::ActivityKind;

/// The most entries one read hands on.
const BATCH: u64 = 1_000;

/// How long the read that waits for new entries of an event stream blocks before the receiver
/// checks that its cache still exists.
const BLOCK: Duration = Duration::from_millis(500);

/// The same for the main stream: shorter, because a hung server is noticed only once this read
/// goes unanswered past it (plus the bus timeout), and until then another process's
/// invalidation may wait unnoticed while L1 is used. Ten reads a second of an idle stream cost
/// little.
const MAIN_BLOCK: Duration = Duration::from_millis(100);

/// How long any other receiver command may go unanswered before the receiver gives up on its
/// connection and opens a new one.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the client must have been whole (a read of the stream with no connection error and
/// every connection up, [`Receiver::receive`]) before a suspension ends. The other processes'
/// notices of the outage wait in their publishers until their own clients reconnect (fred tries
/// again within 250 ms; a publisher retries as soon as its client is back, within 200 ms in any
/// case): a receiver that resumed at its first good read could use L1 before they arrive
/// (`docs/guarantees.md#g4-gap-detection`).
const SETTLE: Duration = Duration::from_millis(400);

/// The same for the receiver of the main stream: five reads a second of a server that is down
/// cost little, and L1 is used again that much sooner once it is back.
const MAIN_MAX_PAUSE: Duration = Duration::from_millis(200);

/// The longest pause between two attempts of a failing receiver.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How grave a doubt is, for [`Receiver::suspended`]: never 0.
fn doubt_level(doubt: Doubt) -> u8 {
    match doubt {
        Doubt::Refused => 1,
        Doubt::Outage => 2,
    }
}

/// One stream entry: its id and its fields.
type Entry = (String, HashMap<String, String>);

/// Why a receiver command did not answer.
enum Failure {
    /// The server answered with an error; fred reconnects by itself if it must.
    Error(String),
    /// The connection closed under the command (or fred gave up on it): the server is out.
    Lost(String),
    /// Nothing came back in time: the connection may be dead without being closed.
    Silent(String),
}

impl Failure {
    /// `what` failed with fred's error `e`.
    fn of(what: &str, e: &fred::error::Error) -> Failure {
        use fred::error::ErrorKind;
        match e.kind() {
            ErrorKind::Timeout => Failure::Silent(what.to_owned()),
            ErrorKind::IO | ErrorKind::Canceled => {
                Failure::Lost(format!("{what}: {}", e.details()))
            }
            _ => Failure::Error(format!("{what}: {}", e.details())),
        }
    }

    /// How grave a doubt it casts on the bus. A closed connection is the same outage that the
    /// client reports on its own (`watch_connections`): seen as a refusal first, it would
    /// suspend the local state twice, each time forgetting the loads in flight.
    fn doubt(&self) -> Doubt {
        match self {
            Failure::Error(_) => Doubt::Refused,
            Failure::Lost(_) | Failure::Silent(_) => Doubt::Outage,
        }
    }
}

pub(super) struct Receiver {
    pub(super) reader: Client,
    pub(super) stream: String,
    /// Whether this is the main stream, whose invalidations the local state depends on.
    pub(super) carries_notices: bool,
    /// Whether, and for what, the local state is suspended because of this receiver (module
    /// docs): 0 not, else the level of the gravest [`Doubt`] since it was ([`doubt_level`]).
    pub(super) suspended: AtomicU8,
    /// Calls of [`Receiver::suspend`] so far, suspended already or not (each connection error
    /// its client reports is one): a step during which one happened proves nothing.
    pub(super) suspend_calls: AtomicU64,
    /// How long past its blocking time a command may go unanswered before the local state is
    /// suspended: the bus timeout.
    pub(super) trusted_within: Duration,
    /// The id of the cache this receiver belongs to: its own invalidations are skipped.
    pub(super) origin: u64,
    pub(super) notices: Weak<dyn NoticeSink>,
    pub(super) events: Option<Weak<dyn EventSink>>,
    /// Set when the publisher is dropped.
    pub(super) closed: Arc<AtomicBool>,
    pub(super) counters: Arc<Counters>,
    /// How long one event handler may run (`[cache.bus] handler_timeout_ms`).
    pub(super) handler_timeout: Duration,
    /// Where what is received, and its lag, is measured.
    pub(super) instruments: Arc<crate::observe::Instruments>,
}

impl Receiver {
    /// Whether there is nothing left to receive for.
    fn gone(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.notices.strong_count() == 0
    }

    /// Runs until the publisher or the engine is gone, then quits its client.
    ///
    /// `start` is where to read from: after the newest id when the cache was built (what was
    /// sent before it existed is not for it), or `None` when the stream could not be asked then.
    pub(super) async fn run(self, start: Option<Position>) {
        let mut position = start;
        let receive = async {
            while !self.gone() {
                // The loop catches what it can foresee; this catches the rest, so that no bug and
                // no sink can end the receiver for good. The position survives.
                if let Err(panic) = AssertUnwindSafe(self.receive(&mut position))
                    .catch_unwind()
                    .await
                {
                    Counters::add(&self.counters.receiver_errors, 1);
                    tracing::error!(
                        stream = self.stream,
                        panic = panic_message(panic.as_ref()),
                        "the bus receiver panicked; it starts again from where it was"
                    );
                    tokio::time::sleep(MAX_PAUSE).await;
                }
            }
        };
        // The watch never ends; the receiving ends once there is nothing left to receive for.
        tokio::select! {
            () = receive => {}
            () = self.watch_connections() => {}
        }
        let _ = self.reader.quit().await;
    }

    /// Suspends the local state at each connection error fred reports on the reader's client: a
    /// connection reset by a server that died, a reconnection that failed, on any node of a
    /// cluster. A killed server is seen at once, not when a blocking read misses its deadline,
    /// and a cluster node that fails delays every command of the client while it resyncs, the
    /// other processes' notices included (`docs/guarantees.md#g4-gap-detection`).
    async fn watch_connections(&self) {
        if self.carries_notices {
            let mut errors = self.reader.error_rx();
            // Ends only when the client is gone (a lagging watch counts what it missed as one).
            while let Ok(_) | Err(RecvError::Lagged(_)) = errors.recv().await {
                self.suspend(Doubt::Outage);
            }
        }
        std::future::pending::<()>().await;
    }

    async fn receive(&self, position: &mut Option<Position>) {
        let mut failures = 0u32;
        // The newest id handed on before its batch was checked (`step`).
        let mut handed_on = None;
        // Since when the client has been whole while suspended.
        let mut whole_since = None;
        while !self.gone() {
            let suspends_before = self.suspend_calls.load(Ordering::Acquire);
            let step = match position {
                None => self.start().await.map(|start| *position = Some(start)),
                Some(at) => self.step(at, &mut handed_on).await,
            };
            match step {
                Ok(()) => {
                    failures = 0;
                    // Only a step with no suspension while it ran (a connection error is one),
                    // by a client whose every connection is up, proves the client whole: a
                    // cluster client's reads of this stream's node go on answering while another
                    // node is down, and the other processes' notices may wait in theirs until the
                    // cluster has failed over.
                    let whole = self.suspend_calls.load(Ordering::Acquire) == suspends_before
                        && self.reader.is_connected();
                    if !whole || self.suspended.load(Ordering::Acquire) == 0 {
                        whole_since = None;
                    } else if whole_since.get_or_insert_with(Instant::now).elapsed() >= SETTLE {
                        whole_since = None;
                        self.resume();
                    }
                }
                Err(failure) => {
                    whole_since = None;
                    failures = failures.saturating_add(1);
                    self.recover(failure, failures).await;
                }
            }
        }
    }

    /// Fixes the position of a receiver whose stream could not be asked when the cache was
    /// built. What was sent between then and now cannot be known, so local state goes.
    async fn start(&self) -> Result<Position, Failure> {
        let info = self
            .command("XINFO STREAM", stream_info(&self.reader, &self.stream))
            .await?;
        self.lost(
            "0-0",
            "the bus could not be reached when this cache was built, so messages sent since may \
             be lost",
        );
        Ok(Position::start(info.as_ref()))
    }

    /// Reads what follows the position, checks that nothing between was lost, hands it on, and
    /// waits for more once it has caught up. What the wait returns is handed on at once (an
    /// invalidation is never harmed by arriving early) and checked by the next step's read, which
    /// skips what is `handed_on` already.
    async fn step(
        &self,
        at: &mut Position,
        handed_on: &mut Option<(u64, u64)>,
    ) -> Result<(), Failure> {
        // Inclusive of the position: finding it again proves that nothing after it was trimmed.
        let read = self
            .reader
            .xrange_values::<String, String, String, _, _, _>(
                self.stream.as_str(),
                at.last.as_str(),
                "+",
                Some(BATCH + 1),
            );
        let mut entries = self.command("XRANGE", read).await?;
        if self.gone() {
            return Ok(());
        }
        let full = entries.len() as u64 > BATCH;
        // Only the reads that check a wait's batch may skip what the wait handed on, and only on
        // the same stream (ids only grow on one server; a server that lost its data starts again
        // lower). It is kept until the check has its answers: a read cut short before (the
        // `XINFO` below) reads the same batch again, whose entries ran already.
        let mut handed = *handed_on;
        match continuity(at, entries.first().map(|(id, _)| id.as_str())) {
            Continuity::Intact => {
                entries.remove(0);
            }
            Continuity::Trimmed => {
                self.lost(
                    &at.last,
                    "messages were trimmed before this process read them",
                );
            }
            Continuity::Unknown => {
                let info = self
                    .command("XINFO STREAM", stream_info(&self.reader, &self.stream))
                    .await?;
                if lost_after(info.as_ref(), at) {
                    // A stream that went back holds other entries under the ids handed on.
                    if info
                        .as_ref()
                        .is_none_or(|i| handed.is_some_and(|h| i.last_generated < h))
                    {
                        handed = None;
                    }
                    self.lost(
                        &at.last,
                        "the stream was trimmed, went back to an older id, or vanished before \
                         this process read all of it",
                    );
                    if entries.is_empty() {
                        // Read on from where the stream is now, so one loss is counted once.
                        *at = Position::start(info.as_ref());
                    }
                }
            }
        }
        *handed_on = None;
        for (id, fields) in entries {
            // What the blocking read returned was handed on already; this read checks it.
            if handed.is_none_or(|done| parse_id(&id) > done) {
                self.hand_on(&id, &fields).await;
            }
            *at = Position::after(id);
        }
        if !full {
            for (id, fields) in self.wait(&at.last).await? {
                self.hand_on(&id, &fields).await;
                *handed_on = Some(parse_id(&id));
            }
        }
        Ok(())
    }

    /// Blocks until the stream has entries after `last` (or [`MAIN_BLOCK`] or [`BLOCK`] passes),
    /// and returns them. The next step reads them again, from `last` inclusive, so that every
    /// batch is checked for a gap; handing them on now saves that round trip to the server on
    /// the way of every notice (`docs/guarantees.md#g2-invalidation`). An answer that cannot be
    /// decoded returns nothing: the next step's read hands it on.
    async fn wait(&self, last: &str) -> Result<Vec<Entry>, Failure> {
        let blocking = if self.carries_notices {
            MAIN_BLOCK
        } else {
            BLOCK
        };
        let block = u64::try_from(blocking.as_millis()).unwrap_or(u64::MAX);
        let wait =
            self.reader
                .xread::<Value, _, _>(Some(BATCH), Some(block), self.stream.as_str(), last);
        match self
            .answer(blocking, blocking + COMMAND_TIMEOUT, wait)
            .await
        {
            Some(Ok(Value::Null)) => Ok(Vec::new()),
            Some(Ok(answer)) => Ok(answer
                .into_xread_response::<String, String, String, String>()
                .ok()
                .and_then(|mut streams| streams.remove(&self.stream))
                .unwrap_or_default()),
            Some(Err(e)) => Err(Failure::of("XREAD", &e)),
            None => Err(Failure::Silent("XREAD".to_owned())),
        }
    }

    /// Awaits `answer` for at most `limit`. One that has not come `trusted_within` after
    /// `blocking` (how long the command may block by design) suspends the local state.
    async fn answer<T>(
        &self,
        blocking: Duration,
        limit: Duration,
        answer: impl Future<Output = T>,
    ) -> Option<T> {
        let mut answer = std::pin::pin!(answer);
        let trusted = blocking + self.trusted_within;
        if let Ok(answered) = tokio::time::timeout(trusted, answer.as_mut()).await {
            return Some(answered);
        }
        // Late is not yet out: a busy machine answers late too. Out is a connection error, or
        // no answer by the command's deadline (`recover`).
        self.suspend(Doubt::Refused);
        tokio::time::timeout(limit.saturating_sub(trusted), answer)
            .await
            .ok()
    }

    /// Suspends the cache's local state, if this receiver carries its invalidations (module
    /// docs). Also before a receiver whose stream could not be asked starts.
    pub(super) fn suspend(&self, doubt: Doubt) {
        self.suspend_calls.fetch_add(1, Ordering::AcqRel);
        if !self.carries_notices {
            return;
        }
        let level = doubt_level(doubt);
        let before = self.suspended.fetch_max(level, Ordering::AcqRel);
        if before == 0 {
            Counters::add(&self.counters.suspensions, 1);
            tracing::warn!(
                stream = self.stream,
                ?doubt,
                "the bus does not answer: L1 and memoised versions are not used until it does"
            );
        }
        // Once per suspension, and again only if the doubt grows: each call forgets what the
        // process learnt, loads in flight included (their waiters would load again).
        if level > before
            && let Some(sink) = self.notices.upgrade()
        {
            sink.suspend_local_state(doubt);
        }
    }

    /// Ends a suspension: the stream has been read (from the position, gap checked) since.
    fn resume(&self) {
        if self.suspended.swap(0, Ordering::AcqRel) == 0 {
            return;
        }
        tracing::info!(
            stream = self.stream,
            "the bus answers again: L1 is used again"
        );
        if let Some(sink) = self.notices.upgrade() {
            sink.resume_local_state();
        }
    }

    /// Runs one command under [`COMMAND_TIMEOUT`].
    async fn command<T>(
        &self,
        what: &str,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, Failure> {
        match self.answer(Duration::ZERO, COMMAND_TIMEOUT, command).await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(e)) => Err(Failure::of(what, &e)),
            None => Err(Failure::Silent(what.to_owned())),
        }
    }

    /// After a failed command: a connection that went silent is replaced (fred would wait on it
    /// forever), then a pause that grows with each failure in a row. The next step reads from the
    /// position inclusive, so it checks for a gap whatever happened meanwhile.
    async fn recover(&self, failure: Failure, failures: u32) {
        Counters::add(&self.counters.receiver_errors, 1);
        // A connection that failed is reported by the client too (`watch_connections`).
        self.suspend(failure.doubt());
        match failure {
            Failure::Error(e) | Failure::Lost(e) => {
                tracing::debug!(stream = self.stream, error = e, "bus read failed; retrying");
            }
            Failure::Silent(what) => {
                tracing::warn!(
                    stream = self.stream,
                    "bus {what} unanswered after {COMMAND_TIMEOUT:?}: reconnecting"
                );
                // Also while fred is reconnecting: an attempt stuck on a server that accepted the
                // socket and went silent is cut short too.
                let _ =
                    tokio::time::timeout(COMMAND_TIMEOUT, self.reader.force_reconnection()).await;
            }
        }
        let pause = Duration::from_millis(20).saturating_mul(1 << failures.min(6));
        // The main stream's receiver decides when L1 is trusted again: it tries more often.
        let most = if self.carries_notices {
            MAIN_MAX_PAUSE
        } else {
            MAX_PAUSE
        };
        super::redis::pause_until_reconnected(std::slice::from_ref(&self.reader), pause.min(most))
            .await;
    }

    /// Messages after `last` may be lost: drops L1 and the tag versions, says why, counts it.
    fn lost(&self, last: &str, why: &str) {
        Counters::add(&self.counters.gaps, 1);
        tracing::warn!(
            stream = self.stream,
            last_seen = last,
            "invalidation messages were lost ({why}): dropping L1 and tag versions"
        );
        if let Some(sink) = self.notices.upgrade() {
            sink.drop_local_state();
        }
    }

    /// Decodes one entry and hands it to its sink; a sink that panics is logged and counted.
    async fn hand_on(&self, id: &str, fields: &HashMap<String, String>) {
        let Some(body) = fields.get("m") else {
            return;
        };
        let message = match serde_json::from_str::<Message>(body) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, stream = self.stream, "unreadable bus message skipped");
                return;
            }
        };
        // The id's first part is the server's clock when it appended the message.
        let sent_ms = parse_id(id).0;
        let lag = (sent_ms > 0)
            .then(|| Duration::from_millis(crate::clock::now_ms().saturating_sub(sent_ms)));
        if let Err(panic) = AssertUnwindSafe(self.deliver(message, lag))
            .catch_unwind()
            .await
        {
            Counters::add(&self.counters.receiver_errors, 1);
            tracing::error!(
                stream = self.stream,
                panic = panic_message(panic.as_ref()),
                "applying a bus message panicked; the receiver goes on"
            );
        }
    }

    /// Hands one message to its sink, in the span of its applying (feature `tracing`), and
    /// notes it as received activity (`lag`: measured when it was read).
    ///
    /// Another process's invalidation is noted once applied: `Observe::activity` tells that
    /// this process no longer serves what it replaced, and the history check takes it as that
    /// moment (`docs/history.md#the-bound`). An event is noted before its handlers run, since a
    /// handler may run for as long as the handler timeout.
    async fn deliver(&self, message: Message, lag: Option<Duration>) {
        if matches!(&message.body, Body::Landed { .. })
            || (message.origin == self.origin && !matches!(&message.body, Body::Event { .. }))
        {
            return self.deliver_unobserved(message).await;
        }
        let (kind, subjects) = observed_as(&message.body);
        let activity = self
            .instruments
            .received(kind, &subjects, message.origin, lag);
        let after = if kind == ActivityKind::Event {
            self.instruments.note_received(activity);
            None
        } else {
            Some(activity)
        };
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument;
            let lag_ms = lag.map(|l| l.as_secs_f64() * 1000.0);
            let span = crate::observe::spans::bus_apply(kind.name(), lag_ms);
            self.deliver_unobserved(message).instrument(span).await;
        }
        #[cfg(not(feature = "tracing"))]
        self.deliver_unobserved(message).await;
        if let Some(activity) = after {
            self.instruments.note_received(activity);
        }
    }

    async fn deliver_unobserved(&self, message: Message) {
        match message.body {
            Body::Event { event, payload } => {
                let Some(sink) = self.events.as_ref().and_then(Weak::upgrade) else {
                    return;
                };
                let event = EventNotice {
                    event,
                    payload,
                    process: message.process,
                };
                let handled = sink.deliver(event, self.handler_timeout).await;
                Counters::add(&self.counters.handler_panics, handled.panicked);
                Counters::add(&self.counters.handler_timeouts, handled.timed_out);
            }
            // Its own invalidations the cache applied before publishing them.
            _ if message.origin == self.origin => {}
            Body::Keys { keys, owed } => {
                let owed = super::owed_layers(&owed);
                self.apply(Notice::Keys { keys, owed }).await;
            }
            Body::Tag { tag, version, owed } => {
                self.apply(Notice::Tag { tag, version, owed }).await;
            }
            Body::Flush => self.apply(Notice::Flush).await,
            Body::Landed { key } => self.apply(Notice::Landed { key }).await,
        }
    }

    async fn apply(&self, notice: Notice) {
        if let Some(sink) = self.notices.upgrade() {
            sink.apply(notice).await;
        }
    }
}

/// What a message is, for the recent activity: its kind and its keys, tag or event name.
fn observed_as(body: &Body) -> (ActivityKind, Vec<&str>) {
    match body {
        Body::Keys { keys, .. } => (
            ActivityKind::Keys,
            keys.iter().map(String::as_str).collect(),
        ),
        Body::Tag { tag, .. } => (ActivityKind::Tag, vec![tag.as_str()]),
        Body::Flush | Body::Landed { .. } => (ActivityKind::Flush, Vec::new()),
        Body::Event { event, .. } => (ActivityKind::Event, vec![event.as_str()]),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
    use std::time::Duration;

    use fred::prelude::Builder;

    use super::{Body, Doubt, Failure, Message, Notice, NoticeSink, Receiver};
    use crate::bus::stats::Counters;
    use crate::config::ObserveConfig;
    use crate::observe::{Activity, ActivityKind, Instruments, Observe};
    use crate::store::BoxFuture;

    /// Counts the notices applied and the suspensions it is told of.
    #[derive(Default)]
    struct Counting {
        applied: AtomicU64,
        suspends: AtomicU64,
        resumes: AtomicU64,
    }

    impl NoticeSink for Counting {
        fn apply(&self, _: Notice) -> BoxFuture<'_, ()> {
            Box::pin(async {
                tokio::task::yield_now().await;
                self.applied.fetch_add(1, Ordering::Relaxed);
            })
        }
        fn drop_local_state(&self) {}
        fn suspend_local_state(&self, _: Doubt) {
            self.suspends.fetch_add(1, Ordering::Relaxed);
        }
        fn resume_local_state(&self) {
            self.resumes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn receiver(sink: &Arc<Counting>, instruments: Arc<Instruments>) -> Option<Receiver> {
        let notices: Arc<dyn NoticeSink> = sink.clone();
        Some(Receiver {
            reader: Builder::default_centralized().build().ok()?,
            stream: "s".to_owned(),
            carries_notices: true,
            suspended: AtomicU8::new(0),
            suspend_calls: AtomicU64::new(0),
            trusted_within: Duration::from_millis(250),
            origin: 1,
            notices: Arc::downgrade(&notices),
            events: None,
            closed: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
            handler_timeout: Duration::from_secs(1),
            instruments,
        })
    }

    /// Notes, for each activity it hears of, how many notices the sink had applied by then.
    struct Watching {
        sink: Arc<Counting>,
        seen: std::sync::Mutex<Vec<(ActivityKind, u64)>>,
    }

    impl Observe for Watching {
        fn activity(&self, activity: &Activity) {
            let applied = self.sink.applied.load(Ordering::Relaxed);
            if let Ok(mut seen) = self.seen.lock() {
                seen.push((activity.kind, applied));
            }
        }
    }

    /// `Observe::activity` says another process's invalidation was applied: a process that
    /// takes the activity as the moment it stopped serving the old value (the history check,
    /// `docs/history.md#the-bound`) must not hear of it before. The lag stays the one measured at
    /// receipt.
    #[tokio::test]
    async fn a_received_invalidation_is_observed_once_applied() {
        let sink = Arc::new(Counting::default());
        let watching = Arc::new(Watching {
            sink: sink.clone(),
            seen: std::sync::Mutex::default(),
        });
        let instruments = Arc::new(Instruments::new(
            &ObserveConfig::default(),
            Some(1),
            vec![watching.clone()],
        ));
        let Some(receiver) = receiver(&sink, instruments.clone()) else {
            panic!("a client that is not connected");
        };
        let from_another = |body| Message {
            origin: 2,
            process: 0,
            body,
        };
        let lag = Some(Duration::from_millis(3));
        let keys = Body::Keys {
            keys: vec!["k".to_owned()],
            owed: Vec::new(),
        };
        receiver.deliver(from_another(keys), lag).await;
        let tag = Body::Tag {
            tag: "t".to_owned(),
            version: 1,
            owed: false,
        };
        receiver.deliver(from_another(tag), lag).await;
        receiver.deliver(from_another(Body::Flush), lag).await;
        let seen = watching.seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(
            seen,
            vec![
                (ActivityKind::Keys, 1),
                (ActivityKind::Tag, 2),
                (ActivityKind::Flush, 3)
            ]
        );
        let recent = instruments.recent();
        assert_eq!(recent.len(), 3);
        assert!(recent.iter().all(|a| a.received && a.lag == lag));
    }

    /// A read cut by a connection the server closed (fred's IO error; `Canceled` when fred gives
    /// up on it) is an outage at once, as the client's own report of the closed connection is:
    /// taken for a refusal first, the local state was suspended twice, a refusal then an outage,
    /// each forgetting the loads in flight, and the chaos suite's stampede row (10,000 misses
    /// while L2 is killed) loaded twice in a process (CI, 2026-12-06). A refusal with an answer
    /// (a stream whose slot moved) stays a refusal.
    #[test]
    fn a_read_cut_by_a_closed_connection_is_an_outage_at_once() {
        use fred::error::{Error, ErrorKind};
        let closed = Failure::of("XREAD", &Error::new(ErrorKind::IO, "Connection closed."));
        assert_eq!(closed.doubt(), Doubt::Outage, "a closed connection");
        let canceled = Failure::of("XREAD", &Error::new(ErrorKind::Canceled, "Canceled."));
        assert_eq!(canceled.doubt(), Doubt::Outage, "a command fred gave up on");
        let late = Failure::of(
            "XREAD",
            &Error::new(ErrorKind::Timeout, "Request timed out."),
        );
        assert_eq!(late.doubt(), Doubt::Outage, "no answer in time");
        let moved = Failure::of(
            "XREAD",
            &Error::new(ErrorKind::Routing, "MOVED 42 127.0.0.1:7001"),
        );
        assert_eq!(moved.doubt(), Doubt::Refused, "an answer that refuses");

        let sink = Arc::new(Counting::default());
        let Some(receiver) = receiver(&sink, Arc::default()) else {
            panic!("a client that is not connected");
        };
        // The read's failure, then the client's report of the same closed connection.
        receiver.suspend(closed.doubt());
        receiver.suspend(Doubt::Outage);
        assert_eq!(sink.suspends.load(Ordering::Relaxed), 1);
    }

    /// A server that stays down reports a connection error at each reconnection attempt: the
    /// local state is suspended once, not at each, since each suspension forgets the loads in
    /// flight and their waiters would load again (the chaos suite's stampede row, 10,000 misses
    /// while L2 is down, loaded twice in a process). A doubt that grows is passed on.
    #[test]
    fn a_suspension_is_passed_on_once_and_again_only_when_the_doubt_grows() {
        let sink = Arc::new(Counting::default());
        let Some(receiver) = receiver(&sink, Arc::default()) else {
            panic!("a client that is not connected");
        };
        receiver.suspend(Doubt::Refused);
        receiver.suspend(Doubt::Refused);
        assert_eq!(sink.suspends.load(Ordering::Relaxed), 1);
        receiver.suspend(Doubt::Outage);
        receiver.suspend(Doubt::Outage);
        receiver.suspend(Doubt::Refused);
        receiver.suspend(Doubt::Outage);
        assert_eq!(sink.suspends.load(Ordering::Relaxed), 2);
        receiver.resume();
        receiver.suspend(Doubt::Outage);
        assert_eq!(sink.suspends.load(Ordering::Relaxed), 3);
        assert_eq!(sink.resumes.load(Ordering::Relaxed), 1);
    }
}
