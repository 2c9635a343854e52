//! Rules on what a store sees of its server: prefix isolation, listing, clearing, usage and
//! sweeping.

use super::Violation;
use super::ctx::*;
use crate::clock::now_ms;
use crate::store::{Slot, Usage};

impl Ctx<'_> {
    pub(super) async fn prefix_isolation(&self) -> Result<(), Violation> {
        let key = self.key("shared-name");
        let (mine, theirs) = (value(&key, "mine"), value(&key, "theirs"));
        for slot in [Slot::Entry(&key), Slot::Tag(&key)] {
            self.put(self.store, slot, mine.clone(), LONG).await?;
            self.expect(
                self.neighbour,
                slot,
                None,
                "written under the other prefix only",
            )
            .await?;
            self.put(self.neighbour, slot, theirs.clone(), LONG).await?;
            self.expect(self.store, slot, Some(&mine), "both prefixes written")
                .await?;
            self.expect(self.neighbour, slot, Some(&theirs), "both prefixes written")
                .await?;
            let existed = self.delete(self.store, slot).await?;
            ensure!(self, existed, "delete {slot:?} reported false");
            self.expect(
                self.neighbour,
                slot,
                Some(&theirs),
                "deleted under the other prefix",
            )
            .await?;
        }
        if self.caps.compare_and_set {
            let swapped = self.ok(
                "compare_and_set",
                self.store
                    .compare_and_set(&key, Some(&theirs), mine.clone(), LONG)
                    .await,
            )?;
            ensure!(
                self,
                swapped == Some(false),
                "compare_and_set matched the value under the other prefix ({swapped:?})"
            );
            let created = self.ok(
                "compare_and_set",
                self.store
                    .compare_and_set(&key, None, mine.clone(), LONG)
                    .await,
            )?;
            ensure!(
                self,
                created == Some(true),
                "creating an entry another prefix holds answered {created:?}"
            );
            self.expect(
                self.neighbour,
                Slot::Entry(&key),
                Some(&theirs),
                "after compare_and_set under the other prefix",
            )
            .await?;
        }
        self.clear_both().await
    }

    pub(super) async fn list(&self) -> Result<(), Violation> {
        self.clear_both().await?;
        let mine = ["user:1", "user:2", "user:*x", "user:?", "order:1", "user"];
        for key in mine {
            self.put(self.store, Slot::Entry(key), value(key, "v"), LONG)
                .await?;
        }
        self.put(
            self.store,
            Slot::Tag("user:tag"),
            value("user:tag", "t"),
            LONG,
        )
        .await?;
        self.put(
            self.neighbour,
            Slot::Entry("user:3"),
            value("user:3", "n"),
            LONG,
        )
        .await?;
        let expectations: [(&str, &[&str]); 6] = [
            ("", &mine),
            ("user:", &["user:1", "user:2", "user:*x", "user:?"]),
            ("user:*", &["user:*x"]),
            ("user:?", &["user:?"]),
            ("user:[12]", &[]),
            ("nothing-here", &[]),
        ];
        for (prefix, want) in expectations {
            let listed = self.listed(self.store, prefix).await?;
            let want = if self.caps.lists_keys {
                sorted(want.iter().map(|k| (*k).to_owned()).collect())
            } else {
                Vec::new()
            };
            ensure!(
                self,
                listed == want,
                "list({prefix:?}) returned {listed:?}, expected {want:?}"
            );
        }
        self.clear_both().await
    }

    pub(super) async fn clear_own_prefix(&self) -> Result<(), Violation> {
        self.clear_both().await?;
        let mine = ["a", "b", "c"];
        let theirs = ["a", "z"];
        for key in mine {
            self.put(self.store, Slot::Entry(key), value(key, "mine"), LONG)
                .await?;
        }
        for tag in ["t1", "t2"] {
            self.put(self.store, Slot::Tag(tag), value(tag, "mine"), LONG)
                .await?;
        }
        for key in theirs {
            self.put(self.neighbour, Slot::Entry(key), value(key, "theirs"), LONG)
                .await?;
        }
        self.put(self.neighbour, Slot::Tag("t1"), value("t1", "theirs"), LONG)
            .await?;
        let removed = self.ok("clear", self.store.clear().await)?;
        let want = if self.caps.counts_cleared { 5 } else { 0 };
        ensure!(
            self,
            removed == want,
            "clear reported {removed} names removed, expected {want}"
        );
        for key in mine {
            self.expect(self.store, Slot::Entry(key), None, "after clear")
                .await?;
        }
        for tag in ["t1", "t2"] {
            self.expect(self.store, Slot::Tag(tag), None, "after clear")
                .await?;
        }
        for key in theirs {
            let got = self.get(self.neighbour, Slot::Entry(key)).await?;
            ensure!(
                self,
                got.is_some(),
                "clear removed {key:?} of the other prefix"
            );
        }
        let tag = self.get(self.neighbour, Slot::Tag("t1")).await?;
        ensure!(
            self,
            tag.is_some(),
            "clear removed a tag record of the other prefix"
        );
        self.clear_both().await
    }

    pub(super) async fn usage(&self) -> Result<(), Violation> {
        self.clear_both().await?;
        let empty = self.ok("usage", self.store.usage().await)?;
        ensure!(
            self,
            empty == Usage::default(),
            "usage of a cleared store is {empty:?}"
        );
        let mut bytes = 0;
        for (key, size) in [("small", 10), ("medium", 1_000), ("large", 100_000)] {
            let v = value(key, &"x".repeat(size));
            bytes += v.len() as u64;
            self.put(self.store, Slot::Entry(key), v, LONG).await?;
        }
        self.put(self.store, Slot::Tag("tag"), value("tag", "t"), LONG)
            .await?;
        self.put(
            self.neighbour,
            Slot::Entry("other"),
            value("other", "n"),
            LONG,
        )
        .await?;
        let usage = self.ok("usage", self.store.usage().await)?;
        let want = if self.caps.reports_usage {
            Usage { keys: 3, bytes }
        } else {
            Usage::default()
        };
        ensure!(self, usage == want, "usage {usage:?}, expected {want:?}");
        self.clear_both().await
    }

    pub(super) async fn sweep(&self) -> Result<(), Violation> {
        self.clear_both().await?;
        let past = now_ms().saturating_sub(60_000);
        let expired: Vec<String> = (0..3).map(|i| format!("expired-{i}")).collect();
        for (i, key) in expired.iter().enumerate() {
            // Every envelope version expires alike; the last one is a version 3 entry.
            let old = if i == 2 {
                validated_at(key, b"old", past)
            } else {
                envelope_at(key, b"old", past)
            };
            self.put(self.store, Slot::Entry(key), old, LONG).await?;
        }
        self.put(
            self.neighbour,
            Slot::Entry("expired-0"),
            envelope_at("expired-0", b"old", past),
            LONG,
        )
        .await?;
        let live = value("live", "v");
        self.put(self.store, Slot::Entry("live"), live.clone(), LONG)
            .await?;
        let live_validated = validated_at("live-validated", b"v", now_ms() + 600_000);
        self.put(
            self.store,
            Slot::Entry("live-validated"),
            live_validated.clone(),
            LONG,
        )
        .await?;
        let tag = value("tag", "t");
        self.put(self.store, Slot::Tag("tag"), tag.clone(), LONG)
            .await?;
        let one = self.ok("sweep(1)", self.store.sweep(1).await)?;
        ensure!(self, one <= 1, "sweep(1) removed {one} entries");
        let mut removed = one;
        for _ in 0..10 {
            removed += self.ok("sweep(100)", self.store.sweep(100).await)?;
        }
        if !self.caps.native_expiry {
            ensure!(
                self,
                removed == 3,
                "sweep passes removed {removed} entries; 3 had expired"
            );
            for key in &expired {
                self.expect(self.store, Slot::Entry(key), None, "after sweeping")
                    .await?;
            }
        }
        self.expect(
            self.store,
            Slot::Entry("live"),
            Some(&live),
            "after sweeping",
        )
        .await?;
        self.expect(
            self.store,
            Slot::Entry("live-validated"),
            Some(&live_validated),
            "after sweeping (a live entry with a validator)",
        )
        .await?;
        self.expect(self.store, Slot::Tag("tag"), Some(&tag), "after sweeping")
            .await?;
        let theirs = self.get(self.neighbour, Slot::Entry("expired-0")).await?;
        ensure!(
            self,
            theirs.is_some(),
            "sweep removed an entry of the other prefix"
        );
        self.clear_both().await
    }

    pub(super) async fn twin_handles(&self) -> Result<(), Violation> {
        let key = self.key("k");
        let (first, second) = (value(&key, "first"), value(&key, "second"));
        self.put(self.twin, Slot::Entry(&key), first.clone(), LONG)
            .await?;
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&first),
            "written by the twin",
        )
        .await?;
        self.put(self.store, Slot::Entry(&key), second.clone(), LONG)
            .await?;
        self.expect(
            self.twin,
            Slot::Entry(&key),
            Some(&second),
            "replaced by the store",
        )
        .await?;
        let existed = self.delete(self.twin, Slot::Entry(&key)).await?;
        ensure!(
            self,
            existed,
            "the twin's delete of the store's entry reported false"
        );
        self.expect(self.store, Slot::Entry(&key), None, "deleted by the twin")
            .await?;

        // The twin clears while the store has read (and may cache) the old contents.
        self.put(self.store, Slot::Entry(&key), first.clone(), LONG)
            .await?;
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&first),
            "before the twin clears",
        )
        .await?;
        self.ok("the twin's clear", self.twin.clear().await)?;
        self.store.forget_cached_state();
        self.expect(
            self.store,
            Slot::Entry(&key),
            None,
            "after the twin cleared",
        )
        .await?;
        self.put(self.store, Slot::Entry(&key), second.clone(), LONG)
            .await?;
        self.expect(
            self.twin,
            Slot::Entry(&key),
            Some(&second),
            "written after the clear",
        )
        .await?;
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&second),
            "written after the clear",
        )
        .await?;
        self.clear_both().await
    }
}
