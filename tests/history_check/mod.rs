//! Histories of cache calls made by several OS processes against real servers, and the checker
//! that finds stale reads in them (issue 9, "the proof", part 3; `docs/history.md`).
//!
//! The workload keeps the truth outside the cache: a separate `redis-server` stands for the
//! database and holds one counter per key. Every write first bumps the key's counter (`INCRBY`),
//! then calls the cache ("update the database, then invalidate"); the loader reads the counter.
//! So every cached value is `KEY@VERSION`, versions of a key only grow, and a read that returns a
//! version older than one an invalidation had already made current is stale.
//!
//! Each process writes its calls as JSON lines, one [`Call`] a line; [`read_history`] merges the
//! files and [`check`] judges the whole.

mod check;
mod excerpt;
mod notices;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use check::{Fault, Report, Violation, check};
pub use excerpt::{excerpt, shape_of};
pub use notices::Notices;

/// A key's version in the database: `0` before the first bump.
pub type Version = u64;

/// One call of one process, with its wall-clock interval (µs since the Unix epoch, all processes
/// on one host): `start_us` is taken before the call begins, `end_us` after it returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The process that made the call.
    pub process: String,
    /// The task within that process.
    pub task: u32,
    /// Before the call began.
    pub start_us: u64,
    /// After the call returned.
    pub end_us: u64,
    /// What was called, and what it returned or changed.
    #[serde(flatten)]
    pub op: Op,
    /// The cache's error, if the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The calls of the workload. Values are strings `KEY@VERSION` ([`value_of`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `get(key)`: what it returned.
    Get {
        /// The key read.
        key: String,
        /// The value returned; `None` for a miss (or an error).
        value: Option<String>,
    },
    /// `get_or_set(key, loader)`: what it returned, loaded here or not.
    GetOrSet {
        /// The key read.
        key: String,
        /// The value returned; `None` only on an error.
        value: Option<String>,
    },
    /// The loader of a `get_or_set`: it read `version` from the database, then slept.
    Load {
        /// The key loaded.
        key: String,
        /// The database version it read (and returned).
        version: Version,
    },
    /// Bumped the key to `version`, then `set(key, "KEY@VERSION")`.
    Set {
        /// The key written.
        key: String,
        /// Its new database version, the one set.
        version: Version,
    },
    /// Bumped the key to `version`, then `delete(key)`.
    Delete {
        /// The key deleted.
        key: String,
        /// Its new database version.
        version: Version,
    },
    /// Bumped every key carrying the tag, then `invalidate_tag(tag)`.
    InvalidateTag {
        /// The tag invalidated.
        tag: String,
        /// The new database version of each key the tag covers.
        bumps: BTreeMap<String, Version>,
    },
    /// Bumped every key, then `flush()`.
    Flush {
        /// The new database version of each key.
        bumps: BTreeMap<String, Version>,
    },
    /// The bus id of the process's cache ([`Cache::bus_origin`](vorte_cache::Cache::bus_origin)),
    /// recorded once when it was built; absent without a bus.
    BusOrigin {
        /// 16 hex digits, as the notices it sends carry it.
        origin: String,
    },
    /// The process's cache applied another process's invalidation read from the bus
    /// (`Observe::activity`, told once it was applied): `start_us == end_us`, that moment.
    Applied {
        /// The bus id of the cache that sent it ([`Op::BusOrigin`] of its process).
        origin: String,
        /// What it invalidated.
        notice: Notice,
    },
}

/// An invalidation carried by the bus, as the receiving cache applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Keys deleted or overwritten (`set`, `delete`, `delete_many`).
    Keys {
        /// Every key it named.
        keys: Vec<String>,
    },
    /// A tag invalidated.
    Tag {
        /// The tag.
        tag: String,
    },
    /// Everything flushed.
    Flush,
}

/// The value the workload caches for version `version` of `key`.
pub fn value_of(key: &str, version: Version) -> String {
    format!("{key}@{version}")
}

/// The key and version of a cached value, if it has the workload's shape.
pub fn parse_value(value: &str) -> Option<(&str, Version)> {
    let (key, version) = value.rsplit_once('@')?;
    Some((key, version.parse().ok()?))
}

impl Call {
    /// The keys this call moved to a new version, with those versions (empty for reads and
    /// loads).
    pub fn bumps(&self) -> Vec<(&str, Version)> {
        match &self.op {
            Op::Set { key, version } | Op::Delete { key, version } => vec![(key, *version)],
            Op::InvalidateTag { bumps, .. } | Op::Flush { bumps } => {
                bumps.iter().map(|(k, v)| (k.as_str(), *v)).collect()
            }
            Op::Get { .. }
            | Op::GetOrSet { .. }
            | Op::Load { .. }
            | Op::BusOrigin { .. }
            | Op::Applied { .. } => Vec::new(),
        }
    }

    /// Whether this call removes entries from the cache (`delete`, `invalidate_tag`, `flush`).
    pub fn invalidates(&self) -> bool {
        matches!(
            self.op,
            Op::Delete { .. } | Op::InvalidateTag { .. } | Op::Flush { .. }
        )
    }
}

/// Reads and merges the JSON-lines histories of `files` (one per process), ordered by start.
pub fn read_history(files: &[impl AsRef<Path>]) -> std::io::Result<Vec<Call>> {
    let mut calls = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let call = serde_json::from_str::<Call>(line).map_err(|e| {
                std::io::Error::other(format!(
                    "{}:{}: not a call: {e}",
                    file.as_ref().display(),
                    n + 1
                ))
            })?;
            calls.push(call);
        }
    }
    calls.sort_by_key(|c| (c.start_us, c.end_us));
    Ok(calls)
}
