//! Rules on leases: the names the cache's distributed single-flight takes so that one process at a
//! time loads a key (`docs/leases.md`).

use std::time::Duration;

use super::Violation;
use super::ctx::*;
use crate::store::{Slot, Store};

/// The tokens of two holders (two processes).
const MINE: u64 = 0x5eed_0000_0000_0001;
const THEIRS: u64 = 0x5eed_0000_0000_0002;

/// A lease TTL that outlasts a rule.
const HELD: Duration = Duration::from_secs(30);

/// A lease TTL that [`Rule::LeaseExpiry`](super::Rule::LeaseExpiry) waits out. Memcached counts
/// whole seconds and may keep a name up to a second past its TTL, hence the wait below.
const SHORT: Duration = Duration::from_secs(1);
const PAST_SHORT: Duration = Duration::from_millis(2_300);

/// A lease call of a rule's step.
#[derive(Debug, Clone, Copy)]
enum Call {
    Acquire,
    Renew,
    Release,
}
use Call::{Acquire, Release, Renew};

/// One step of a rule: which handle makes which call on which key, with which token, and the
/// answer it must get (for an acquire, `Some(answer)`).
type Step<'s> = (&'s dyn Store, &'s str, u64, Call, bool, &'static str);

impl Ctx<'_> {
    /// Makes one lease call (an acquire or renewal for `ttl`); whether it acted. An acquire
    /// that answers "unsupported" on a store that claims leases breaks the rule.
    async fn lease_call(
        &self,
        store: &dyn Store,
        key: &str,
        token: u64,
        call: Call,
        ttl: Duration,
    ) -> Result<bool, Violation> {
        match call {
            Acquire => {
                let got = self.ok("lease_acquire", store.lease_acquire(key, token, ttl).await)?;
                ensure!(
                    self,
                    got.is_some(),
                    "lease_acquire of {key:?} answered None"
                );
                Ok(got == Some(true))
            }
            Renew => self.ok("lease_renew", store.lease_renew(key, token, ttl).await),
            Release => self.ok("lease_release", store.lease_release(key, token).await),
        }
    }

    /// Runs `steps` in order, each with a [`HELD`] TTL.
    async fn steps(&self, steps: &[Step<'_>]) -> Result<(), Violation> {
        for &(store, key, token, call, want, when) in steps {
            let got = self.lease_call(store, key, token, call, HELD).await?;
            ensure!(
                self,
                got == want,
                "{when}: {call:?} of {key:?} answered {got}, expected {want}"
            );
        }
        Ok(())
    }

    /// On a store without leases: every lease call answers "unsupported" and nothing is held.
    async fn leases_unsupported(&self, key: &str) -> Result<(), Violation> {
        let acquired = self.ok(
            "lease_acquire",
            self.store.lease_acquire(key, MINE, HELD).await,
        )?;
        ensure!(
            self,
            acquired.is_none(),
            "lease_acquire answered {acquired:?} on a store without leases"
        );
        self.steps(&[
            (self.store, key, MINE, Renew, false, "without leases"),
            (self.store, key, MINE, Release, false, "without leases"),
        ])
        .await
    }

    pub(super) async fn lease_exclusive(&self) -> Result<(), Violation> {
        let has = self.store.has_leases();
        ensure!(
            self,
            has == self.caps.leases,
            "has_leases() is {has}, the store claims {}",
            self.caps.leases
        );
        let key = self.key("k");
        if !self.caps.leases {
            return self.leases_unsupported(&key).await;
        }
        let (store, twin, k) = (self.store, self.twin, key.as_str());
        self.steps(&[
            (store, k, MINE, Acquire, true, "a free lease"),
            (store, k, THEIRS, Acquire, false, "held by another token"),
            (
                twin,
                k,
                THEIRS,
                Acquire,
                false,
                "held, asked by another handle",
            ),
            (
                store,
                k,
                MINE,
                Acquire,
                false,
                "held, asked again by its token",
            ),
            (twin, k, THEIRS, Renew, false, "another token"),
            (twin, k, THEIRS, Release, false, "another token"),
            (
                twin,
                k,
                THEIRS,
                Acquire,
                false,
                "after a wrong-token release",
            ),
            (twin, k, MINE, Renew, true, "its token, from another handle"),
            (store, k, MINE, Release, true, "its token"),
            (store, k, MINE, Release, false, "released already"),
            (store, k, MINE, Renew, false, "released already"),
            (twin, k, THEIRS, Acquire, true, "after the release"),
            (twin, k, THEIRS, Release, true, "its token"),
        ])
        .await
    }

    pub(super) async fn lease_expiry(&self) -> Result<(), Violation> {
        if !self.caps.leases {
            return Ok(());
        }
        let (lapsing, renewed) = (self.key("lapsing"), self.key("renewed"));
        for key in [&lapsing, &renewed] {
            let got = self
                .lease_call(self.store, key, MINE, Acquire, SHORT)
                .await?;
            ensure!(self, got, "lease_acquire of a free {key:?} answered false");
        }
        let (store, twin) = (self.store, self.twin);
        let (lapsing, renewed) = (lapsing.as_str(), renewed.as_str());
        self.steps(&[(store, renewed, MINE, Renew, true, "its token")])
            .await?;
        tokio::time::sleep(PAST_SHORT).await;
        self.steps(&[
            (
                twin,
                renewed,
                THEIRS,
                Acquire,
                false,
                "renewed past its first TTL",
            ),
            (store, lapsing, MINE, Renew, false, "after the TTL"),
            (twin, lapsing, THEIRS, Acquire, true, "after the TTL"),
            (
                store,
                lapsing,
                MINE,
                Renew,
                false,
                "a lapsed holder, another's lease",
            ),
            (
                store,
                lapsing,
                MINE,
                Release,
                false,
                "a lapsed holder, another's lease",
            ),
            (
                store,
                lapsing,
                MINE,
                Acquire,
                false,
                "the new holder's lease",
            ),
            (twin, lapsing, THEIRS, Release, true, "its token"),
            (store, renewed, MINE, Release, true, "its token"),
        ])
        .await
    }

    pub(super) async fn lease_separate(&self) -> Result<(), Violation> {
        if !self.caps.leases {
            return Ok(());
        }
        self.clear_both().await?;
        let key = self.key("k");
        let entry = value(&key, "v");
        let (store, twin, k) = (self.store, self.twin, key.as_str());
        self.steps(&[(store, k, MINE, Acquire, true, "a free lease")])
            .await?;
        for slot in [Slot::Entry(&key), Slot::Tag(&key)] {
            self.expect(self.store, slot, None, "only the lease taken")
                .await?;
            self.put(self.store, slot, entry.clone(), LONG).await?;
            self.expect(self.store, slot, Some(&entry), "written beside a lease")
                .await?;
        }
        self.steps(&[(
            twin,
            k,
            THEIRS,
            Acquire,
            false,
            "an entry and tag beside it",
        )])
        .await?;
        if self.caps.lists_keys {
            let listed = self.listed(self.store, &self.key("")).await?;
            ensure!(
                self,
                listed == vec![key.clone()],
                "list shows {listed:?}; only the entry {key:?} is one"
            );
        }
        if self.caps.reports_usage {
            let usage = self.ok("usage", self.store.usage().await)?;
            ensure!(
                self,
                usage.keys == 1,
                "usage counts {} keys; one entry is there",
                usage.keys
            );
        }
        for slot in [Slot::Entry(&key), Slot::Tag(&key)] {
            self.delete(self.store, slot).await?;
        }
        let neighbour = self.neighbour;
        self.steps(&[
            (
                neighbour,
                k,
                THEIRS,
                Acquire,
                true,
                "under the other prefix",
            ),
            (twin, k, THEIRS, Acquire, false, "its entry and tag deleted"),
            (
                store,
                k,
                MINE,
                Release,
                true,
                "beside the other prefix's lease",
            ),
            (
                neighbour,
                k,
                THEIRS,
                Release,
                true,
                "the other prefix's own",
            ),
        ])
        .await?;
        self.clear_both().await
    }
}
