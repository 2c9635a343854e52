//! The policies a trace is replayed through (`docs/simulate.md#policies`): one file each, behind
//! one small trait the replay drives.

mod belady;
mod lru;
mod moka;
mod quick_cache;
mod vorte;

use std::fmt;

pub(crate) use belady::{Belady, Expiry, NextUse};
pub(crate) use lru::Lru;

/// A cache policy over `u64` keys whose entries weigh one each.
pub(crate) trait Policy: Send {
    /// A read: whether the policy holds `key`. Called once per request, in trace order.
    fn get(&mut self, key: u64) -> bool;
    /// The fill after a miss: `key` is offered to the cache (which may decline it).
    fn insert(&mut self, key: u64);
    /// `key` leaves the cache (its entry expired).
    fn remove(&mut self, key: u64);
}

/// A policy's name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum PolicyKind {
    /// Exact least-recently-used.
    Lru,
    /// vorte-cache's L1 policy, through `vorte_cache::simulate::L1Model`.
    Vorte,
    /// `quick_cache::sync::Cache::new(n)`'s options, with a fixed hasher.
    #[value(name = "quick_cache")]
    QuickCache,
    /// `moka::sync::Cache` with `max_capacity(n)`.
    Moka,
    /// Belady's optimal offline policy: the bound.
    Belady,
}

impl PolicyKind {
    /// The name as written on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Vorte => "vorte",
            PolicyKind::QuickCache => "quick_cache",
            PolicyKind::Moka => "moka",
            PolicyKind::Belady => "belady",
        }
    }

    /// A policy of this kind holding `capacity` entries. Belady needs the trace's next uses
    /// (`next_use`, built once for all its replays) and the TTL, if any, to know which entries
    /// will have expired before their next use.
    pub(crate) fn build<'a>(
        self,
        capacity: usize,
        next_use: Option<&'a NextUse>,
        expiry: Option<Expiry<'a>>,
    ) -> Option<Box<dyn Policy + 'a>> {
        Some(match self {
            PolicyKind::Lru => Box::new(Lru::new(capacity)),
            PolicyKind::Vorte => Box::new(vorte::Vorte::new(capacity)),
            PolicyKind::QuickCache => Box::new(quick_cache::QuickCache::new(capacity)),
            PolicyKind::Moka => Box::new(moka::Moka::new(capacity)),
            PolicyKind::Belady => Box::new(Belady::new(capacity, next_use?, expiry)),
        })
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
