//! [`TestStore`]: an in-memory store that behaves like the Redis one, with hooks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::hooks::{Call, Hooks, Op, Pause};
use crate::error::{Error, Result};
use crate::store::{BoxFuture, Slot, Store, Usage};

/// An in-memory [`Store`] for tests: compare-and-set, tombstones, leases and native expiry like
/// the Redis store, plus hooks that hold or fail a chosen call.
///
/// Several stores can share one "server" ([`TestStore::neighbour`]), each under its own key
/// prefix, as several processes or key prefixes share one Redis. Two caches built over one
/// `TestStore` stand in for two processes.
///
/// Expiry follows [`tokio::time::Instant`], so `tokio::time::pause` and `advance` drive it.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use vorte_cache::{Slot, Store};
/// use vorte_cache::testing::{Op, TestStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
/// let store = TestStore::new();
/// // Hold the next read of "k" at the door, before it sees anything.
/// let pause = store.pause(Op::Get, "k");
/// let reader = tokio::spawn({
///     let store = store.clone();
///     async move { store.get(Slot::Entry("k")).await }
/// });
/// pause.reached().await;
/// store.put(Slot::Entry("k"), Bytes::from_static(b"v"), Duration::from_secs(60)).await?;
/// pause.release();
/// let read = reader.await.expect("the reader task");
/// assert_eq!(read?.as_deref(), Some(&b"v"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TestStore {
    server: Arc<Server>,
    entries: String,
    tags: String,
    /// Where leases live: `<key_prefix>l:`, apart from entries and tag records.
    leases: String,
    compare_and_set: bool,
    has_leases: bool,
}

/// What the stores of one "server" share.
#[derive(Default)]
struct Server {
    names: Mutex<BTreeMap<String, Stored>>,
    hooks: Hooks,
    unavailable: AtomicBool,
}

#[derive(Clone)]
struct Stored {
    value: Bytes,
    expires_at: Instant,
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore")
            .field("entries", &self.entries)
            .field("compare_and_set", &self.compare_and_set)
            .field("has_leases", &self.has_leases)
            .finish_non_exhaustive()
    }
}

impl Default for TestStore {
    fn default() -> Self {
        TestStore::new()
    }
}

impl TestStore {
    /// An empty store on a server of its own, with key prefix `""`, compare-and-set,
    /// tombstones and leases.
    pub fn new() -> Self {
        TestStore {
            server: Arc::default(),
            entries: "e:".into(),
            tags: "t:".into(),
            leases: "l:".into(),
            compare_and_set: true,
            has_leases: true,
        }
    }

    /// Another store on the same server under `key_prefix`: what a cache with another
    /// `key_prefix` would open. Hooks are shared by the two.
    pub fn neighbour(&self, key_prefix: &str) -> Self {
        TestStore {
            server: self.server.clone(),
            entries: format!("{key_prefix}e:"),
            tags: format!("{key_prefix}t:"),
            leases: format!("{key_prefix}l:"),
            compare_and_set: self.compare_and_set,
            has_leases: self.has_leases,
        }
    }

    /// The same store without compare-and-set and tombstones, as the object stores are:
    /// [`Store::compare_and_set`] and [`Store::tombstone`] answer `Ok(None)`.
    #[must_use]
    pub fn without_compare_and_set(mut self) -> Self {
        self.compare_and_set = false;
        self
    }

    /// The same store without leases, as the object stores are: [`Store::lease_acquire`]
    /// answers `Ok(None)`, renew and release `Ok(false)`.
    #[must_use]
    pub fn without_leases(mut self) -> Self {
        self.has_leases = false;
        self
    }

    /// Holds the next call of `op` on `key` before it reads or changes anything, until the
    /// returned handle releases it (see [`Op`] for what `key` means per operation).
    pub fn pause(&self, op: Op, key: &str) -> Pause {
        self.pause_call(Call::new(op, key))
    }

    /// Holds the chosen call: the `nth`, or after its effect (see [`Call`]).
    pub fn pause_call(&self, call: Call) -> Pause {
        self.server.hooks.pause(call)
    }

    /// Makes the next call of `op` on `key` fail with `error`, changing nothing.
    pub fn fail(&self, op: Op, key: &str, error: Error) {
        self.fail_call(Call::new(op, key), error);
    }

    /// Makes the chosen call fail with `error`: the `nth`, or after its effect (see [`Call`]).
    pub fn fail_call(&self, call: Call, error: Error) {
        self.server.hooks.fail(call, error);
    }

    /// While `true`, every call fails with a [`Backend`](crate::ErrorKind::Backend) error, as
    /// when the server is down.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.server.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// How many calls of `op` on `key` have reached this server so far (failed ones included).
    pub fn calls(&self, op: Op, key: &str) -> usize {
        self.server.hooks.calls(op, key)
    }

    fn name(&self, slot: Slot<'_>) -> String {
        match slot {
            Slot::Entry(k) => format!("{}{k}", self.entries),
            Slot::Tag(t) => format!("{}{t}", self.tags),
        }
    }

    /// One call: the hooks set for before it, the server's availability, its effect (`work`),
    /// then the hooks set for after it.
    async fn call_on<T>(
        &self,
        op: Op,
        keys: &[&str],
        work: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.server.hooks.enter(op, keys).await?;
        if self.server.unavailable.load(Ordering::SeqCst) {
            return Err(Error::backend("test store: unavailable"));
        }
        let answer = work()?;
        self.server.hooks.leave(op, keys).await?;
        Ok(answer)
    }

    /// [`TestStore::call_on`] one key (`""` for calls without one).
    async fn call<T>(&self, op: Op, key: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
        self.call_on(op, &[key], work).await
    }

    /// The server's names, with expired ones removed (expiry is native, as in Redis).
    fn names(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stored>> {
        let mut names = self.server.names.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        names.retain(|_, stored| stored.expires_at > now);
        names
    }

    fn store(names: &mut BTreeMap<String, Stored>, name: String, value: Bytes, ttl: Duration) {
        let expires_at = Instant::now() + ttl.max(Duration::from_millis(1));
        names.insert(name, Stored { value, expires_at });
    }

    /// Names under `space` (the entry or tag namespace of this store).
    fn under<'n>(names: &'n BTreeMap<String, Stored>, space: &str) -> Vec<&'n String> {
        names
            .range(space.to_owned()..)
            .take_while(|(name, _)| name.starts_with(space))
            .map(|(name, _)| name)
            .collect()
    }

    /// Runs `work` on the lease of `key` (its name, and the server's live names), or answers
    /// `unsupported` without touching anything when this store has no leases.
    fn lease_call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        key: &'a str,
        unsupported: T,
        work: impl FnOnce(&mut BTreeMap<String, Stored>, String) -> T + Send + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(self.call(op, key, move || {
            if !self.has_leases {
                return Ok(unsupported);
            }
            Ok(work(&mut self.names(), format!("{}{key}", self.leases)))
        }))
    }

    fn tombstone_now(&self, key: &str, marker: Bytes, ttl: Duration) -> bool {
        let mut names = self.names();
        let name = self.name(Slot::Entry(key));
        let existed = names
            .get(&name)
            .is_some_and(|old| !crate::store::is_tombstone(&old.value));
        Self::store(&mut names, name, marker, ttl);
        existed
    }
}

fn op_of(slot: Slot<'_>, entry: Op, tag: Op) -> (Op, &str) {
    match slot {
        Slot::Entry(k) => (entry, k),
        Slot::Tag(t) => (tag, t),
    }
}

/// Whether `name` holds the lease of `token` (a lease's value is its token in decimal).
fn holds(names: &BTreeMap<String, Stored>, name: &str, token: u64) -> bool {
    names
        .get(name)
        .is_some_and(|s| s.value == token.to_string().as_bytes())
}

impl Store for TestStore {
    fn backend(&self) -> &'static str {
        "test"
    }

    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let (op, key) = op_of(slot, Op::Get, Op::GetTag);
        Box::pin(self.call(op, key, move || {
            Ok(self.names().get(&self.name(slot)).map(|s| s.value.clone()))
        }))
    }

    fn put<'a>(&'a self, slot: Slot<'a>, value: Bytes, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        let (op, key) = op_of(slot, Op::Put, Op::PutTag);
        Box::pin(self.call(op, key, move || {
            Self::store(&mut self.names(), self.name(slot), value, ttl);
            Ok(())
        }))
    }

    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        let (op, key) = op_of(slot, Op::Delete, Op::DeleteTag);
        Box::pin(self.call(op, key, move || {
            Ok(self.names().remove(&self.name(slot)).is_some())
        }))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.call(Op::List, prefix, move || {
            let names = self.names();
            let space = format!("{}{prefix}", self.entries);
            Ok(Self::under(&names, &space)
                .into_iter()
                .filter_map(|name| name.strip_prefix(&self.entries).map(str::to_owned))
                .collect())
        }))
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.call(Op::Clear, "", move || {
            let mut names = self.names();
            let doomed: Vec<String> = [&self.entries, &self.tags]
                .into_iter()
                .flat_map(|space| Self::under(&names, space))
                .cloned()
                .collect();
            for name in &doomed {
                names.remove(name);
            }
            Ok(doomed.len() as u64)
        }))
    }

    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        Box::pin(self.call(Op::Usage, "", move || {
            let names = self.names();
            let entries = Self::under(&names, &self.entries);
            Ok(Usage {
                keys: entries.len() as u64,
                bytes: entries
                    .iter()
                    .filter_map(|name| names.get(*name))
                    .map(|s| s.value.len() as u64)
                    .sum(),
            })
        }))
    }

    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(self.call(Op::Tombstone, key, move || {
            Ok(self
                .compare_and_set
                .then(|| self.tombstone_now(key, marker, ttl)))
        }))
    }

    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(self.call_on(Op::DeleteMany, keys, move || {
            Ok(keys
                .iter()
                .map(|key| {
                    if self.compare_and_set {
                        self.tombstone_now(key, marker.clone(), ttl)
                    } else {
                        self.names().remove(&self.name(Slot::Entry(key))).is_some()
                    }
                })
                .collect())
        }))
    }

    /// Expiry is native: nothing is left to sweep.
    fn sweep(&self, batch: usize) -> BoxFuture<'_, Result<u64>> {
        let _ = batch;
        Box::pin(self.call(Op::Sweep, "", || Ok(0)))
    }

    fn has_compare_and_set(&self) -> bool {
        self.compare_and_set
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(self.call(Op::CompareAndSet, key, move || {
            if !self.compare_and_set {
                return Ok(None);
            }
            let mut names = self.names();
            let name = self.name(Slot::Entry(key));
            if names.get(&name).map(|s| &s.value) != expected {
                return Ok(Some(false));
            }
            Self::store(&mut names, name, new, ttl);
            Ok(Some(true))
        }))
    }

    fn has_leases(&self) -> bool {
        self.has_leases
    }

    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        self.lease_call(Op::LeaseAcquire, key, None, move |names, name| {
            if names.contains_key(&name) {
                return Some(false);
            }
            Self::store(names, name, Bytes::from(token.to_string()), ttl);
            Some(true)
        })
    }

    fn lease_renew<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        self.lease_call(Op::LeaseRenew, key, false, move |names, name| {
            if !holds(names, &name, token) {
                return false;
            }
            Self::store(names, name, Bytes::from(token.to_string()), ttl);
            true
        })
    }

    fn lease_release<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<bool>> {
        self.lease_call(Op::LeaseRelease, key, false, move |names, name| {
            holds(names, &name, token) && names.remove(&name).is_some()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::testing::contract::{self, Capabilities, Rule, Stores};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn passes_the_store_contract() {
        let store = TestStore::new().neighbour("app:");
        let stores = Stores {
            store: &store,
            twin: &store.neighbour("app:"),
            neighbour: &store.neighbour("other:"),
        };
        if let Err(v) = contract::check(&stores, &Capabilities::full()).await {
            panic!("{v}");
        }
    }

    #[tokio::test]
    async fn without_compare_and_set_passes_as_a_store_without_it() {
        let store = TestStore::new().without_compare_and_set();
        let stores = Stores {
            store: &store,
            twin: &store.clone(),
            neighbour: &store.neighbour("other:"),
        };
        let caps = Capabilities {
            compare_and_set: false,
            tombstones: false,
            ..Capabilities::full()
        };
        if let Err(v) = contract::check(&stores, &caps).await {
            panic!("{v}");
        }
        // Claiming what it cannot do is caught.
        let claimed =
            contract::check_rule(Rule::CompareAndSet, &stores, &Capabilities::full()).await;
        assert_eq!(claimed.map_err(|v| v.rule), Err(Rule::CompareAndSet));
    }

    #[tokio::test]
    async fn without_leases_passes_as_a_store_without_them() {
        let store = TestStore::new().without_leases();
        let stores = Stores {
            store: &store,
            twin: &store.clone(),
            neighbour: &store.neighbour("other:"),
        };
        let caps = Capabilities {
            leases: false,
            ..Capabilities::full()
        };
        if let Err(v) = contract::check(&stores, &caps).await {
            panic!("{v}");
        }
        let claimed =
            contract::check_rule(Rule::LeaseExclusive, &stores, &Capabilities::full()).await;
        assert_eq!(claimed.map_err(|v| v.rule), Err(Rule::LeaseExclusive));
    }

    #[tokio::test]
    async fn a_paused_call_waits_until_released_and_sees_what_happened_meanwhile() {
        let store = TestStore::new();
        store
            .put(Slot::Entry("k"), b("old"), Duration::from_secs(60))
            .await
            .unwrap();
        let pause = store.pause(Op::CompareAndSet, "k");
        let load = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .compare_and_set("k", Some(&b("old")), b("loaded"), Duration::from_secs(60))
                    .await
            }
        });
        pause.reached().await;
        assert!(pause.is_reached());
        // Meanwhile another "process" deletes, leaving a tombstone.
        let found = store
            .delete_many(&["k"], b("tomb"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(found, vec![true]);
        assert!(!load.is_finished(), "the paused call is still held");
        pause.release();
        assert_eq!(
            load.await.unwrap().unwrap(),
            Some(false),
            "the load lost to the delete"
        );
        assert_eq!(store.get(Slot::Entry("k")).await.unwrap(), Some(b("tomb")));
    }

    #[tokio::test]
    async fn pause_nth_catches_only_that_call_and_other_keys_pass() {
        let store = TestStore::new();
        let second = store.pause_call(Call::new(Op::Get, "k").nth(2));
        assert_eq!(
            store.get(Slot::Entry("k")).await.unwrap(),
            None,
            "first call passes"
        );
        assert_eq!(
            store.get(Slot::Entry("other")).await.unwrap(),
            None,
            "other keys pass"
        );
        assert_eq!(
            store.get(Slot::Tag("k")).await.unwrap(),
            None,
            "tag reads are another op"
        );
        let held = tokio::spawn({
            let store = store.clone();
            async move { store.get(Slot::Entry("k")).await }
        });
        second.reached().await;
        // A third call is not held.
        assert_eq!(store.get(Slot::Entry("k")).await.unwrap(), None);
        drop(second); // dropping the handle releases
        assert_eq!(held.await.unwrap().unwrap(), None);
        assert_eq!(store.calls(Op::Get, "k"), 3);
        assert_eq!(store.calls(Op::GetTag, "k"), 1);
    }

    #[tokio::test]
    async fn a_chosen_call_fails_and_changes_nothing() {
        let store = TestStore::new();
        let neighbour = store.neighbour("p:");
        store.fail_call(Call::new(Op::Put, "k").nth(2), Error::timeout("injected"));
        store
            .put(Slot::Entry("k"), b("1"), Duration::from_secs(60))
            .await
            .unwrap();
        let e = store
            .put(Slot::Entry("k"), b("2"), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(store.get(Slot::Entry("k")).await.unwrap(), Some(b("1")));
        // Hooks are the server's: a neighbour's call of the same op and key is caught too.
        store.fail(Op::DeleteMany, "k", Error::backend("injected"));
        assert!(
            neighbour
                .delete_many(&["x", "k"], b("t"), Duration::from_secs(1))
                .await
                .is_err()
        );
        store.set_unavailable(true);
        assert_eq!(store.usage().await.unwrap_err().kind(), ErrorKind::Backend);
        store.set_unavailable(false);
        assert_eq!(store.usage().await.unwrap(), Usage { keys: 1, bytes: 1 });
    }

    #[tokio::test]
    async fn after_effect_holds_a_stale_answer_or_fails_a_write_that_happened() {
        let store = TestStore::new();
        let ttl = Duration::from_secs(60);
        store.put(Slot::Entry("k"), b("old"), ttl).await.unwrap();
        let pause = store.pause_call(Call::new(Op::Get, "k").after_effect());
        let read = tokio::spawn({
            let store = store.clone();
            async move { store.get(Slot::Entry("k")).await }
        });
        pause.reached().await;
        store.put(Slot::Entry("k"), b("new"), ttl).await.unwrap();
        pause.release();
        assert_eq!(
            read.await.unwrap().unwrap(),
            Some(b("old")),
            "read before the put"
        );

        store.fail_call(
            Call::new(Op::Put, "k").after_effect(),
            Error::timeout("answer lost"),
        );
        assert!(store.put(Slot::Entry("k"), b("newer"), ttl).await.is_err());
        assert_eq!(store.get(Slot::Entry("k")).await.unwrap(), Some(b("newer")));
    }

    #[tokio::test]
    async fn entries_expire_natively() {
        let store = TestStore::new();
        store
            .put(Slot::Entry("k"), b("v"), Duration::from_millis(150))
            .await
            .unwrap();
        assert_eq!(store.get(Slot::Entry("k")).await.unwrap(), Some(b("v")));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.get(Slot::Entry("k")).await.unwrap(), None);
        assert_eq!(store.usage().await.unwrap(), Usage::default());
    }
}
