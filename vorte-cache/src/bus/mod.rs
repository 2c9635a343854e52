//! The invalidation bus: the transport that carries invalidations and events between processes,
//! on Redis Streams, and nothing else.
//!
//! The transport never names what sits above it. What it reads it hands to two sinks given to it
//! at start: a [`NoticeSink`] for invalidations (the engine implements it) and an [`EventSink`]
//! for events (the application implements it). Both are connected before any receiver starts, so
//! nothing read at start-up is dropped for want of a recipient.
//!
//! Every process appends what it invalidates (deleted or rewritten keys, new tag versions,
//! flushes) to the main stream, `<key_prefix>bus`, and the events it emits to one of N event
//! streams, and reads every stream from dedicated connections with `XREAD BLOCK`. Streams rather
//! than pub/sub, because a stream keeps what was sent while a receiver was away: after a
//! reconnect, each receiver reads on from the last id it saw, so a brief disconnection loses
//! nothing (see `docs/consistency.md`).
//!
//! Invalidations share one stream because their relative order matters (a flush, then a tag
//! version, then a delete must be applied in that order). Events only need their order per event
//! name, so they are spread over `event_shards` streams by a stable hash of the name: on a Redis
//! Cluster one stream key lives on one primary, and one stream for every event would put all of
//! `emit`'s traffic on one node. Each event stream's key carries a hash tag chosen so that the N
//! streams sit in N evenly spread slot ranges, hence on different primaries under the usual even
//! slot split (see [`event_stream`]). Events are therefore not ordered relative to invalidations,
//! nor relative to events of another name.
//!
//! Every stream is capped by `XADD MAXLEN ~ retention` (`[cache.bus] retention`, default 100,000;
//! the defaults apply when the bus rides on L2 or L3), which keeps at least that many entries.
//! A receiver that finds entries it had not read gone (trimmed while it lagged or was away, a
//! stream that vanished or went back to an older id, a start after the cache was built) has lost
//! messages (an event's handlers may be what invalidates), so it drops its whole L1 and its
//! memoised tag versions, and logs why. It checks before every batch it hands on, not only after
//! a reconnection: each read starts *at* its position, and finding that entry again proves
//! nothing after it was trimmed (`streams.rs` says how each case is told).
//!
//! A publish that fails waits, in order with those after it, and is retried with backoff until
//! the bus takes it (`publisher.rs`). Every receiver command has a deadline, after which the
//! receiver renews its connection and checks again; a handler that panics or runs past
//! `handler_timeout_ms` is abandoned, counted ([`BusStats`]) and logged, and the receiver reads
//! on. `docs/consistency.md#gaps-g4` describes all of it.
//!
//! `event_shards` defaults to 1 on a single Redis and to 3 on a cluster (one stream per primary of
//! the smallest cluster; set it to the number of primaries for a larger one). The default is a
//! constant, not read off the cluster's topology, because every process must use the same number,
//! or events land on streams others do not read: processes started before and after a resharding
//! would otherwise disagree.
//!
//! Each message carries the id of the cache that sent it, which skips its own messages because it
//! applied them before publishing; several caches in one process (tests use them to stand in for
//! processes) still hear each other. Events also carry the sending process's id, so that the
//! application can skip on the way back the events whose handlers its own `emit` already ran.

#[cfg(feature = "redis")]
mod publisher;
#[cfg(feature = "redis")]
mod receiver;
#[cfg(feature = "redis")]
mod redis;
mod stats;
#[cfg(feature = "redis")]
mod streams;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layer::Layer;
use crate::store::BoxFuture;

#[cfg(feature = "redis")]
pub(crate) use publisher::Publisher;
#[cfg(feature = "redis")]
pub(crate) use redis::Receivers;
/// A real `redis-server` for the crate's own tests.
#[cfg(all(test, feature = "redis"))]
pub(crate) use redis::tests::redis_server;
pub use stats::BusStats;

/// An invalidation one process tells the others.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Notice {
    /// These keys were deleted or rewritten: drop their L1 copies. `owed` names the shared
    /// layers the sender could not remove their older values from: the receiver owes those
    /// deletes too, and reads none of these keys there until they land
    /// (`docs/guarantees.md#f3-invalidations-reach-a-layer-that-comes-back`).
    Keys { keys: Vec<String>, owed: Vec<Layer> },
    /// A tag has a new version. `owed`: its record could not be written, so the authority still
    /// holds the old version, and the receiver must not trust it either until a new one lands.
    Tag {
        tag: String,
        version: u64,
        owed: bool,
    },
    /// Everything under the prefix was flushed.
    Flush,
    /// Another process's load of this key finished (its value is in the shared layers) or gave
    /// up, and its lease is released: a waiter for the key reads the layers again. Drops nothing
    /// (`docs/leases.md#waiting-for-another-process`).
    Landed { key: String },
}

/// An event for the `#[on_event]` handlers of other processes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventNotice {
    pub(crate) event: String,
    pub(crate) payload: serde_json::Value,
    /// The emitting process: it ran its own handlers already, so it skips this on the way back.
    pub(crate) process: u64,
}

/// Where the transport delivers invalidations: the engine.
/// Why the transport stopped trusting what it hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "only the Redis transport delivers notices")
)]
pub(crate) enum Doubt {
    /// Its server cannot be reached or does not answer. The other processes cannot reach it
    /// either: what they fail to write to it meanwhile, and their notices saying so, wait in
    /// their queues until it is back.
    Outage,
    /// A read was refused with an answer (the stream's slot moved, for one), or answered late,
    /// past the bus timeout: a message may come late, but nothing says the server is out.
    Refused,
}

#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "only the Redis transport delivers notices")
)]
pub(crate) trait NoticeSink: Send + Sync {
    /// Applies another cache's invalidation to this process's local state.
    fn apply(&self, notice: Notice) -> BoxFuture<'_, ()>;
    /// Forgets everything held locally: the transport lost messages and cannot tell which.
    fn drop_local_state(&self);
    /// The transport cannot tell whether messages arrive (its stream fails or went silent):
    /// forgets everything held locally, and keeps nothing until [`resume_local_state`](Self::resume_local_state).
    /// Called again, already suspended, when the doubt grows to an [`Doubt::Outage`].
    fn suspend_local_state(&self, doubt: Doubt);
    /// The transport reads its stream again: what is learnt from now on may be kept.
    fn resume_local_state(&self);
}

/// Where the transport delivers events: the application.
#[cfg_attr(
    all(not(feature = "redis"), not(test)),
    expect(dead_code, reason = "only the Redis transport delivers events")
)]
pub(crate) trait EventSink: Send + Sync {
    /// Runs the handlers of an event published by any cache on the bus, this one included; the
    /// sink decides which to run (the emitting process has run its own). Each handler gets at
    /// most `handler_timeout`; one that panics or runs past it is abandoned, and the others run.
    fn deliver(&self, event: EventNotice, handler_timeout: Duration) -> BoxFuture<'_, Handled>;
}

/// What became of an event's handlers, for the bus to count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handled {
    /// Handlers that panicked.
    pub(crate) panicked: u64,
    /// Handlers abandoned after the timeout.
    pub(crate) timed_out: u64,
}

/// What travels on a stream: the sending cache's id, the sending process's id (events only) and
/// the notice, flattened.
#[cfg_attr(
    all(not(feature = "redis"), not(test)),
    expect(dead_code, reason = "only the Redis transport sends messages")
)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    /// The sending cache's id: a cache skips its own invalidations, which it applied before
    /// publishing.
    pub(crate) origin: u64,
    /// The sending process's id, on events.
    #[serde(default)]
    pub(crate) process: u64,
    #[serde(flatten)]
    pub(crate) body: Body,
}

/// A message's content: an invalidation or an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Body {
    Keys {
        keys: Vec<String>,
        /// The names of the layers owed (`l2`, ...); absent when none, as from older versions.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        owed: Vec<String>,
    },
    Tag {
        tag: String,
        version: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        owed: bool,
    },
    Flush,
    Landed {
        key: String,
    },
    Event {
        event: String,
        payload: serde_json::Value,
    },
}

impl From<Notice> for Body {
    fn from(notice: Notice) -> Body {
        match notice {
            Notice::Keys { keys, owed } => Body::Keys {
                keys,
                owed: owed.iter().map(|l| l.name().to_owned()).collect(),
            },
            Notice::Tag { tag, version, owed } => Body::Tag { tag, version, owed },
            Notice::Flush => Body::Flush,
            Notice::Landed { key } => Body::Landed { key },
        }
    }
}

/// The layers named in a message's `owed`; a name this version does not know is left out.
#[cfg_attr(
    all(not(feature = "redis"), not(test)),
    expect(dead_code, reason = "only the Redis transport receives messages")
)]
pub(crate) fn owed_layers(names: &[String]) -> Vec<Layer> {
    names
        .iter()
        .filter_map(|n| Layer::ALL.into_iter().find(|l| l.name() == n))
        .collect()
}

/// Connects the bus that a cache's configuration asks for (`[cache.bus]`, else the Redis of L2,
/// else the cluster of L3), if any: its publisher, and its receivers, not yet started.
pub(crate) async fn open(
    config: &crate::config::CacheConfig,
) -> crate::error::Result<Option<(Publisher, Receivers)>> {
    #[cfg(feature = "redis")]
    {
        match redis::bus_config(config)? {
            Some(setup) => Ok(Some(redis::connect(setup, &config.key_prefix).await?)),
            None => Ok(None),
        }
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = config;
        Ok(None)
    }
}

/// The transport of a build without the `redis` feature: there is none, so a cache's publisher
/// is always `None` and the engine needs no `cfg` of its own.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub(crate) enum Publisher {}

#[cfg(not(feature = "redis"))]
impl Publisher {
    pub(crate) async fn publish(
        &self,
        _: Notice,
        _: std::time::Duration,
    ) -> crate::error::Result<()> {
        match *self {}
    }

    pub(crate) async fn publish_event(&self, _: EventNotice) -> crate::error::Result<()> {
        match *self {}
    }

    pub(crate) async fn publish_hint(&self, _: Notice) -> crate::error::Result<()> {
        match *self {}
    }

    pub(crate) fn rides_on(&self) -> Option<crate::layer::Layer> {
        match *self {}
    }

    pub(crate) fn origin(&self) -> u64 {
        match *self {}
    }

    pub(crate) fn stats(&self) -> BusStats {
        match *self {}
    }
}

/// The receivers of a build without the `redis` feature: there are none.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub(crate) enum Receivers {}

#[cfg(not(feature = "redis"))]
impl Receivers {
    pub(crate) fn start(
        self,
        _: std::sync::Weak<dyn NoticeSink>,
        _: Option<std::sync::Weak<dyn EventSink>>,
        _: std::sync::Arc<crate::observe::Instruments>,
    ) {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_json() {
        let m = Message {
            origin: 7,
            process: 3,
            body: Notice::Tag {
                tag: "t".into(),
                version: 9,
                owed: false,
            }
            .into(),
        };
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(
            json,
            r#"{"origin":7,"process":3,"kind":"tag","tag":"t","version":9}"#
        );
        let back: Message = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.body, m.body);

        let landed = Message {
            origin: 7,
            process: 0,
            body: Notice::Landed { key: "k".into() }.into(),
        };
        let json = serde_json::to_string(&landed).expect("json");
        assert_eq!(
            json,
            r#"{"origin":7,"process":0,"kind":"landed","key":"k"}"#
        );
        let back: Message = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.body, Body::Landed { key: "k".into() });
    }

    #[test]
    fn owed_layers_travel_by_name_and_are_absent_when_none() {
        let owed = Message {
            origin: 7,
            process: 0,
            body: Notice::Keys {
                keys: vec!["k".into()],
                owed: vec![Layer::L3],
            }
            .into(),
        };
        let json = serde_json::to_string(&owed).expect("json");
        assert_eq!(
            json,
            r#"{"origin":7,"process":0,"kind":"keys","keys":["k"],"owed":["l3"]}"#
        );
        // A message without `owed` (none owed, or from an older version) owes nothing; a name
        // this version does not know is left out.
        let plain = r#"{"origin":7,"kind":"keys","keys":["k"]}"#;
        let back: Message = serde_json::from_str(plain).expect("parse");
        let Body::Keys { owed, .. } = back.body else {
            panic!("not keys: {back:?}");
        };
        assert!(owed.is_empty());
        let names = ["l2".to_owned(), "l9".to_owned(), "l4".to_owned()];
        assert_eq!(owed_layers(&names), [Layer::L2, Layer::L4]);
        let tag = r#"{"origin":7,"kind":"tag","tag":"t","version":9,"owed":true}"#;
        let back: Message = serde_json::from_str(tag).expect("parse");
        assert!(matches!(back.body, Body::Tag { owed: true, .. }));
    }
}
