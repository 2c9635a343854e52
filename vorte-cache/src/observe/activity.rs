//! The recent activity: the last invalidations and events a cache sent or received, for a
//! dashboard or a command line to show.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// What an [`Activity`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActivityKind {
    /// Keys deleted or overwritten (the notice other processes act on).
    Keys,
    /// A tag invalidated.
    Tag,
    /// Everything under the prefix flushed.
    Flush,
    /// An application event (`emit`), read from the bus.
    Event,
}

impl ActivityKind {
    /// `keys`, `tag`, `flush` or `event`.
    pub fn name(self) -> &'static str {
        match self {
            ActivityKind::Keys => "keys",
            ActivityKind::Tag => "tag",
            ActivityKind::Flush => "flush",
            ActivityKind::Event => "event",
        }
    }
}

/// One invalidation or event, from [`Cache::recent_activity`](crate::Cache::recent_activity).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Activity {
    /// When it was recorded, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What it was.
    pub kind: ActivityKind,
    /// The key (the first, when several) or tag, as `[cache.observe] record_keys` allows
    /// (`None` by default), or the event's name.
    pub subject: Option<String>,
    /// Every key of a [`Keys`](ActivityKind::Keys) activity (a `delete_many` names several), as
    /// `record_keys` allows, up to [`MAX_KEYS_RECORDED`] of them; empty for the other kinds and
    /// when keys are not recorded. [`key_count`](Self::key_count) says how many there were.
    pub keys: Vec<String>,
    /// How many keys a [`Keys`](ActivityKind::Keys) activity named, recorded or not; 0 for the
    /// other kinds.
    pub key_count: u64,
    /// Whether it came from another process through the bus.
    pub received: bool,
    /// The bus id of the cache that made it, 16 hex digits: the sender's for one received, this
    /// cache's own for one it made ([`Cache::bus_origin`](crate::Cache::bus_origin)); `None` for
    /// one made by a cache without a bus.
    pub origin: Option<String>,
    /// For one received: the time from its publication to this process reading it (the
    /// stream id's time on the Redis server's clock to this host's clock).
    #[serde(serialize_with = "millis")]
    pub lag: Option<Duration>,
}

/// The most keys one [`Activity`] lists: a `delete_many` of thousands of keys is not copied
/// whole into the recent activity and to each observer.
pub const MAX_KEYS_RECORDED: usize = 100;

/// How a cache's bus id (`origin` in each bus message) is shown: 16 hex digits.
pub(crate) fn origin_id(origin: u64) -> String {
    format!("{origin:016x}")
}

fn millis<S: serde::Serializer>(lag: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match lag {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

/// A bounded list of the latest activity, oldest first.
#[derive(Debug)]
pub(super) struct Recent {
    capacity: usize,
    list: Mutex<VecDeque<Activity>>,
}

impl Recent {
    pub(super) fn new(capacity: usize) -> Recent {
        Recent {
            capacity,
            list: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    pub(super) fn push(&self, activity: Activity) {
        if self.capacity == 0 {
            return;
        }
        // A poisoned lock only means a panic elsewhere while pushing: the list is still whole.
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() == self.capacity {
            list.pop_front();
        }
        list.push_back(activity);
    }

    pub(super) fn list(&self) -> Vec<Activity> {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().cloned().collect()
    }
}
