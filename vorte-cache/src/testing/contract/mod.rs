//! The store contract: every rule the [`Store`] docs state, as checks that run against any store.
//!
//! ```
//! use vorte_cache::testing::TestStore;
//! use vorte_cache::testing::contract::{self, Capabilities, Stores};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = TestStore::new().neighbour("app:");
//! let stores = Stores {
//!     store: &store,
//!     twin: &store.neighbour("app:"),
//!     neighbour: &store.neighbour("other:"),
//! };
//! let outcome = contract::check(&stores, &Capabilities::full()).await;
//! assert!(outcome.is_ok(), "{}", outcome.err().map(|v| v.to_string()).unwrap_or_default());
//! # }
//! ```
//!
//! [`check`] takes three stores over one server ([`Stores`]): the store under test, its twin
//! (another handle on the same key prefix, as another process would open), and a neighbour under
//! another key prefix; and the [`Capabilities`] the store claims. Every rule runs, in order, and
//! every broken one is reported as a [`Violation`] naming its [`Rule`]; nothing panics. The checks
//! clear the stores, and take a few seconds (expiry is waited for in real time).
//!
//! Values written for entries are envelopes as the cache writes them (carrying their logical key
//! and expiry), except in [`Rule::BinaryValues`], which writes raw bytes: a store may read the
//! envelope (the object stores list hashed names from it, and sweep by its expiry).

use std::fmt;

use crate::store::Store;

mod ctx;
mod entries;
mod leases;
mod namespace;
mod swaps;

use ctx::Ctx;

/// What a store can do, beyond what every store must. The suite holds the store to exactly what
/// it claims: claiming more than it does is a violation, and so, mostly, is claiming less.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `list` returns the keys (otherwise it always returns none, as memcached's does).
    pub lists_keys: bool,
    /// `usage` counts entries and bytes (otherwise it always reports zero).
    pub reports_usage: bool,
    /// `clear` returns the number of names it removed (otherwise 0: memcached removes nothing
    /// physically).
    pub counts_cleared: bool,
    /// [`Store::has_compare_and_set`] is `true` and compare-and-set is atomic.
    pub compare_and_set: bool,
    /// `tombstone` and `delete_many` leave the marker behind.
    pub tombstones: bool,
    /// Entries disappear by themselves once their TTL has passed; otherwise `sweep` removes
    /// expired entries.
    pub native_expiry: bool,
    /// [`Store::has_leases`] is `true`, and leases are exclusive, expire and are renewed as
    /// [`Store::lease_acquire`] says (otherwise the lease methods answer "unsupported").
    pub leases: bool,
}

impl Capabilities {
    /// Everything, as the Redis store and [`TestStore`](super::TestStore) do.
    pub fn full() -> Self {
        Capabilities {
            lists_keys: true,
            reports_usage: true,
            counts_cleared: true,
            compare_and_set: true,
            tombstones: true,
            native_expiry: true,
            leases: true,
        }
    }
}

/// One rule of the store contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// `get` of a name never written is `Ok(None)`, for entries and tag records.
    GetMissing,
    /// `put` then `get` returns the bytes written; a second `put` replaces them. An entry in the
    /// newest envelope format (version 3, with a validator) reads back whole.
    PutReplaces,
    /// `delete` reports `true` for a name that was there and removes it; `Ok(false)` (never an
    /// error) for a missing one.
    DeleteReports,
    /// `Slot::Entry(x)` and `Slot::Tag(x)` are separate names; `list` and `usage` see no tag
    /// records.
    SlotsSeparate,
    /// Values are bytes: empty, NUL, invalid UTF-8, protocol delimiters and 256 KiB all round-trip.
    BinaryValues,
    /// Keys and tags with spaces, control characters, unicode, path and glob syntax, and up to
    /// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes round-trip, never collide, and list back as written.
    HostileKeys,
    /// An entry is readable until its TTL; afterwards `get` returns it unchanged or nothing (with
    /// native expiry: nothing). Long TTLs (over 30 days, over a century) are kept.
    TtlExpiry,
    /// `delete_many` reports per key whether a real entry was there, handles any number of keys,
    /// and leaves the marker only where the store has tombstones.
    DeleteMany,
    /// `tombstone` replaces an entry with the marker and reports whether a real entry was there
    /// (a value beginning with [`TOMBSTONE_PREFIX`](crate::store::TOMBSTONE_PREFIX) is not one),
    /// or answers `Ok(None)` when the store has no tombstones.
    Tombstone,
    /// `compare_and_set` swaps only when the entry holds exactly `expected` (`None`: no entry),
    /// and answers `Ok(None)` without writing when the store has none.
    CompareAndSet,
    /// A compare-and-set that expects no entry fails on a tombstone (docs/consistency.md: a load
    /// that began before a delete cannot write the old value back); one that expects a delete's
    /// tombstone replaces it (a load that began after the delete is cached), but not a later
    /// delete's.
    CompareAndSetOnTombstone,
    /// A compare-and-set that expects the exact bytes of a tombstone swaps while that tombstone is
    /// there, and fails once another delete's tombstone replaced it (a load that saw one delete
    /// cannot write over a later one).
    CompareAndSetExpectsTombstone,
    /// A compare-and-set that expects an empty value is not one that expects no entry: it fails
    /// on a missing entry, and one that expects no entry fails on an empty value.
    CompareAndSetEmptyValue,
    /// Concurrent compare-and-sets: exactly one of many racing creations wins, and counters
    /// built on compare-and-set lose no update.
    CompareAndSetIsAtomic,
    /// Two stores with different key prefixes over one server never see each other's names.
    PrefixIsolation,
    /// `list(prefix)` returns exactly this store's entry keys that start with `prefix`, glob
    /// characters taken literally.
    List,
    /// `clear` removes every entry and tag record of this store, and nothing of another prefix.
    ClearOwnPrefix,
    /// `usage` counts this store's entries and their bytes, tag records excluded.
    Usage,
    /// `sweep(batch)` removes at most `batch` entries per pass, only expired ones of this store;
    /// without native expiry, passes remove every expired entry, whatever its envelope version.
    Sweep,
    /// Two handles on one prefix (two processes) see each other's writes and deletes; after one
    /// clears, the other sees nothing of the old contents once told so
    /// ([`Store::forget_cached_state`]), and what it writes then is seen by both.
    TwinHandles,
    /// A lease is held by one token at a time, whichever handle on the prefix asks: a second
    /// acquire fails; renew and release with another token fail and change nothing; release by
    /// its token frees it. A store without leases answers `Ok(None)` and `false`, changing
    /// nothing, and says so in [`Store::has_leases`].
    LeaseExclusive,
    /// A lease ends by itself once its TTL has passed; a renewal by its token extends it; a
    /// renewal after it ended fails, and does not take back a lease another token took since.
    LeaseExpiry,
    /// A lease is a name of its own: it neither hides nor is hidden by the entry or tag record of
    /// its key, `list` and `usage` do not count it, and a store under another prefix has leases
    /// of its own.
    LeaseSeparate,
}

impl Rule {
    /// Every rule, in the order [`check`] runs them.
    pub const ALL: [Rule; 23] = [
        Rule::GetMissing,
        Rule::PutReplaces,
        Rule::DeleteReports,
        Rule::SlotsSeparate,
        Rule::BinaryValues,
        Rule::HostileKeys,
        Rule::TtlExpiry,
        Rule::DeleteMany,
        Rule::Tombstone,
        Rule::CompareAndSet,
        Rule::CompareAndSetOnTombstone,
        Rule::CompareAndSetExpectsTombstone,
        Rule::CompareAndSetEmptyValue,
        Rule::CompareAndSetIsAtomic,
        Rule::PrefixIsolation,
        Rule::List,
        Rule::ClearOwnPrefix,
        Rule::Usage,
        Rule::Sweep,
        Rule::TwinHandles,
        Rule::LeaseExclusive,
        Rule::LeaseExpiry,
        Rule::LeaseSeparate,
    ];

    /// A stable, kebab-case name (`"delete-many"`).
    pub fn id(self) -> &'static str {
        match self {
            Rule::GetMissing => "get-missing",
            Rule::PutReplaces => "put-replaces",
            Rule::DeleteReports => "delete-reports",
            Rule::SlotsSeparate => "slots-separate",
            Rule::BinaryValues => "binary-values",
            Rule::HostileKeys => "hostile-keys",
            Rule::TtlExpiry => "ttl-expiry",
            Rule::DeleteMany => "delete-many",
            Rule::Tombstone => "tombstone",
            Rule::CompareAndSet => "compare-and-set",
            Rule::CompareAndSetOnTombstone => "compare-and-set-on-tombstone",
            Rule::CompareAndSetExpectsTombstone => "compare-and-set-expects-tombstone",
            Rule::CompareAndSetEmptyValue => "compare-and-set-empty-value",
            Rule::CompareAndSetIsAtomic => "compare-and-set-is-atomic",
            Rule::PrefixIsolation => "prefix-isolation",
            Rule::List => "list",
            Rule::ClearOwnPrefix => "clear-own-prefix",
            Rule::Usage => "usage",
            Rule::Sweep => "sweep",
            Rule::TwinHandles => "twin-handles",
            Rule::LeaseExclusive => "lease-exclusive",
            Rule::LeaseExpiry => "lease-expiry",
            Rule::LeaseSeparate => "lease-separate",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A broken rule, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// What the store did instead.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

impl std::error::Error for Violation {}

/// Every rule a store broke, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    /// The rules broken.
    pub fn rules(&self) -> Vec<Rule> {
        self.0.iter().map(|v| v.rule).collect()
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} store contract rule(s) broken:", self.0.len())?;
        for v in &self.0 {
            write!(f, "\n- {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// The stores [`check`] runs on, all over one server.
#[derive(Debug, Clone, Copy)]
pub struct Stores<'a> {
    /// The store under test.
    pub store: &'a dyn Store,
    /// Another handle under the same key prefix: what another process would open.
    pub twin: &'a dyn Store,
    /// A store under another key prefix; neither prefix may start with the other.
    pub neighbour: &'a dyn Store,
}

/// Runs every rule (the stores are cleared).
pub async fn check(stores: &Stores<'_>, caps: &Capabilities) -> Result<(), Violations> {
    let mut broken = Vec::new();
    for rule in Rule::ALL {
        if let Err(v) = check_rule(rule, stores, caps).await {
            broken.push(v);
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Violations(broken))
    }
}

/// Runs one rule (see [`check`]).
pub async fn check_rule(
    rule: Rule,
    stores: &Stores<'_>,
    caps: &Capabilities,
) -> Result<(), Violation> {
    let c = Ctx {
        rule,
        store: stores.store,
        twin: stores.twin,
        neighbour: stores.neighbour,
        caps,
    };
    match rule {
        Rule::GetMissing => c.get_missing().await,
        Rule::PutReplaces => c.put_replaces().await,
        Rule::DeleteReports => c.delete_reports().await,
        Rule::SlotsSeparate => c.slots_separate().await,
        Rule::BinaryValues => c.binary_values().await,
        Rule::HostileKeys => c.hostile_keys().await,
        Rule::TtlExpiry => c.ttl_expiry().await,
        Rule::DeleteMany => c.delete_many().await,
        Rule::Tombstone => c.tombstone().await,
        Rule::CompareAndSet => c.compare_and_set().await,
        Rule::CompareAndSetOnTombstone => c.compare_and_set_on_tombstone().await,
        Rule::CompareAndSetExpectsTombstone => c.compare_and_set_expects_tombstone().await,
        Rule::CompareAndSetEmptyValue => c.compare_and_set_empty_value().await,
        Rule::CompareAndSetIsAtomic => c.compare_and_set_is_atomic().await,
        Rule::PrefixIsolation => c.prefix_isolation().await,
        Rule::List => c.list().await,
        Rule::ClearOwnPrefix => c.clear_own_prefix().await,
        Rule::Usage => c.usage().await,
        Rule::Sweep => c.sweep().await,
        Rule::TwinHandles => c.twin_handles().await,
        Rule::LeaseExclusive => c.lease_exclusive().await,
        Rule::LeaseExpiry => c.lease_expiry().await,
        Rule::LeaseSeparate => c.lease_separate().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BoxFuture, Slot, Usage};
    use crate::testing::TestStore;
    use bytes::Bytes;
    use std::time::Duration;

    /// A store that answers `true` to every delete, whatever was there.
    #[derive(Debug)]
    struct AlwaysDeletes(TestStore);

    impl Store for AlwaysDeletes {
        fn backend(&self) -> &'static str {
            "always-deletes"
        }
        fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, crate::Result<Option<Bytes>>> {
            self.0.get(slot)
        }
        fn put<'a>(
            &'a self,
            slot: Slot<'a>,
            v: Bytes,
            ttl: Duration,
        ) -> BoxFuture<'a, crate::Result<()>> {
            self.0.put(slot, v, ttl)
        }
        fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, crate::Result<bool>> {
            Box::pin(async move { self.0.delete(slot).await.map(|_| true) })
        }
        fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, crate::Result<Vec<String>>> {
            self.0.list(prefix)
        }
        fn clear(&self) -> BoxFuture<'_, crate::Result<u64>> {
            self.0.clear()
        }
        fn usage(&self) -> BoxFuture<'_, crate::Result<Usage>> {
            self.0.usage()
        }
    }

    #[tokio::test]
    async fn the_suite_names_the_rules_a_store_breaks() {
        let inner = TestStore::new().neighbour("a:");
        let broken = AlwaysDeletes(inner.clone());
        let neighbour = inner.neighbour("b:");
        let stores = Stores {
            store: &broken,
            twin: &inner,
            neighbour: &neighbour,
        };
        let caps = Capabilities {
            compare_and_set: false,
            tombstones: false,
            leases: false,
            ..Capabilities::full()
        };
        let broken_rules = check(&stores, &caps)
            .await
            .err()
            .map(|v| v.rules())
            .unwrap_or_default();
        assert_eq!(
            broken_rules,
            vec![Rule::DeleteReports, Rule::DeleteMany],
            "a delete that always says `true` breaks exactly the rules on delete answers"
        );

        // A "neighbour" under the same prefix is no neighbour: isolation and clear are caught.
        let same = Stores {
            store: &inner,
            twin: &inner,
            neighbour: &inner,
        };
        let rules = check(&same, &Capabilities::full())
            .await
            .err()
            .map(|v| v.rules())
            .unwrap_or_default();
        for rule in [
            Rule::PrefixIsolation,
            Rule::ClearOwnPrefix,
            Rule::List,
            Rule::Usage,
        ] {
            assert!(rules.contains(&rule), "{rule} caught: {rules:?}");
        }
    }
}
