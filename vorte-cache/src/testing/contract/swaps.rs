//! Rules on deletes that leave tombstones, and on compare-and-set.

use bytes::Bytes;

use super::Violation;
use super::ctx::*;
use crate::store::Slot;

impl Ctx<'_> {
    pub(super) async fn delete_many(&self) -> Result<(), Violation> {
        let marker = Bytes::from_static(MARKER);
        let none = self.ok(
            "delete_many of no keys",
            self.store.delete_many(&[], marker.clone(), LONG).await,
        )?;
        ensure!(self, none.is_empty(), "delete_many(&[]) returned {none:?}");
        // More than one chunk of the default implementation (16 keys).
        let keys: Vec<String> = (0..40).map(|i| self.key(&i.to_string())).collect();
        let written: Vec<bool> = (0..40).map(|i| i % 3 != 0).collect();
        for (key, written) in keys.iter().zip(&written) {
            if *written {
                self.put(self.store, Slot::Entry(key), value(key, "v"), LONG)
                    .await?;
            }
            self.put(self.neighbour, Slot::Entry(key), value(key, "n"), LONG)
                .await?;
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let found = self.ok(
            "delete_many",
            self.store.delete_many(&refs, marker.clone(), LONG).await,
        )?;
        ensure!(
            self,
            found == written,
            "delete_many reported {found:?}; the keys written were {written:?}"
        );
        for key in &keys {
            let got = self.get(self.store, Slot::Entry(key)).await?;
            let fine = match &got {
                None => !self.caps.tombstones,
                Some(b) => self.caps.tombstones && *b == marker,
            };
            ensure!(
                self,
                fine,
                "after delete_many, {key:?} holds {} (tombstones: {})",
                show(got.as_ref()),
                self.caps.tombstones
            );
            let theirs = self.get(self.neighbour, Slot::Entry(key)).await?;
            ensure!(
                self,
                theirs.is_some_and(|b| b != marker),
                "delete_many reached {key:?} of the store under the other prefix"
            );
        }
        let again = self.ok(
            "a second delete_many",
            self.store
                .delete_many(&refs, Bytes::from_static(LATER_MARKER), LONG)
                .await,
        )?;
        ensure!(
            self,
            again.iter().all(|f| !f) && again.len() == keys.len(),
            "a second delete_many reported {again:?}: a tombstone is not an entry"
        );
        self.clear_both().await
    }

    pub(super) async fn tombstone(&self) -> Result<(), Violation> {
        let marker = Bytes::from_static(MARKER);
        let key = self.key("k");
        let entry = value(&key, "v");
        self.put(self.store, Slot::Entry(&key), entry.clone(), LONG)
            .await?;
        let first = self.ok(
            "tombstone",
            self.store.tombstone(&key, marker.clone(), LONG).await,
        )?;
        if !self.caps.tombstones {
            ensure!(
                self,
                first.is_none(),
                "tombstone answered {first:?} on a store without tombstones"
            );
            self.expect(
                self.store,
                Slot::Entry(&key),
                Some(&entry),
                "after an unsupported tombstone",
            )
            .await?;
            return self.clear_both().await;
        }
        ensure!(
            self,
            first == Some(true),
            "tombstone of a written entry answered {first:?}"
        );
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&marker),
            "after tombstone",
        )
        .await?;
        let second = self.ok(
            "a second tombstone",
            self.store
                .tombstone(&key, Bytes::from_static(LATER_MARKER), LONG)
                .await,
        )?;
        ensure!(
            self,
            second == Some(false),
            "tombstone over a tombstone answered {second:?}"
        );
        let missing = self.key("never-written");
        let never = self.ok(
            "tombstone of a missing entry",
            self.store.tombstone(&missing, marker.clone(), LONG).await,
        )?;
        ensure!(
            self,
            never == Some(false),
            "tombstone of a missing entry answered {never:?}"
        );
        self.clear_both().await
    }

    pub(super) async fn compare_and_set(&self) -> Result<(), Violation> {
        let has = self.store.has_compare_and_set();
        ensure!(
            self,
            has == self.caps.compare_and_set,
            "has_compare_and_set() is {has}, the store claims {}",
            self.caps.compare_and_set
        );
        let key = self.key("k");
        let (v1, v2, v3) = (value(&key, "1"), value(&key, "2"), value(&key, "3"));
        let cas = |expected: Option<Bytes>, new: Bytes| {
            let key = key.clone();
            async move {
                self.ok(
                    "compare_and_set",
                    self.store
                        .compare_and_set(&key, expected.as_ref(), new, LONG)
                        .await,
                )
            }
        };
        if !self.caps.compare_and_set {
            let answer = cas(None, v1.clone()).await?;
            ensure!(
                self,
                answer.is_none(),
                "compare_and_set answered {answer:?} on a store without it"
            );
            self.expect(
                self.store,
                Slot::Entry(&key),
                None,
                "after an unsupported compare_and_set",
            )
            .await?;
            return Ok(());
        }
        let created = cas(None, v1.clone()).await?;
        ensure!(
            self,
            created == Some(true),
            "creating an absent entry answered {created:?}"
        );
        self.expect(self.store, Slot::Entry(&key), Some(&v1), "after creating")
            .await?;
        let refused = cas(None, v2.clone()).await?;
        ensure!(
            self,
            refused == Some(false),
            "expecting no entry over an entry answered {refused:?}"
        );
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&v1),
            "after a refused create",
        )
        .await?;
        let swapped = cas(Some(v1.clone()), v3.clone()).await?;
        ensure!(
            self,
            swapped == Some(true),
            "swapping the expected value answered {swapped:?}"
        );
        self.expect(self.store, Slot::Entry(&key), Some(&v3), "after a swap")
            .await?;
        let stale = cas(Some(v1.clone()), v2.clone()).await?;
        ensure!(
            self,
            stale == Some(false),
            "swapping a stale expected value answered {stale:?}"
        );
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&v3),
            "after a refused swap",
        )
        .await?;
        let missing = self.key("never-written");
        let absent = self.ok(
            "compare_and_set of a missing entry",
            self.store
                .compare_and_set(&missing, Some(&v1), v2.clone(), LONG)
                .await,
        )?;
        ensure!(
            self,
            absent == Some(false),
            "expecting a value of a missing entry answered {absent:?}"
        );
        self.expect(
            self.store,
            Slot::Entry(&missing),
            None,
            "after a refused swap",
        )
        .await?;
        self.delete(self.store, Slot::Entry(&key)).await?;
        Ok(())
    }

    pub(super) async fn compare_and_set_empty_value(&self) -> Result<(), Violation> {
        if !self.caps.compare_and_set {
            return Ok(());
        }
        let empty = Bytes::new();
        let missing = self.key("missing");
        let swapped = self.ok(
            "compare_and_set",
            self.store
                .compare_and_set(&missing, Some(&empty), value(&missing, "v"), LONG)
                .await,
        )?;
        ensure!(
            self,
            swapped == Some(false),
            "expecting an empty value of a missing entry answered {swapped:?}"
        );
        self.expect(
            self.store,
            Slot::Entry(&missing),
            None,
            "after the refused swap",
        )
        .await?;
        let key = self.key("empty");
        self.put(self.store, Slot::Entry(&key), empty.clone(), LONG)
            .await?;
        let created = self.ok(
            "compare_and_set",
            self.store
                .compare_and_set(&key, None, value(&key, "v"), LONG)
                .await,
        )?;
        ensure!(
            self,
            created == Some(false),
            "expecting no entry over an empty value answered {created:?}"
        );
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&empty),
            "after the refused create",
        )
        .await?;
        let swapped = self.ok(
            "compare_and_set",
            self.store
                .compare_and_set(&key, Some(&empty), value(&key, "v"), LONG)
                .await,
        )?;
        ensure!(
            self,
            swapped == Some(true),
            "swapping an empty value answered {swapped:?}"
        );
        self.clear_both().await
    }

    pub(super) async fn compare_and_set_on_tombstone(&self) -> Result<(), Violation> {
        if !(self.caps.compare_and_set && self.caps.tombstones) {
            return Ok(());
        }
        let key = self.key("k");
        self.put(self.store, Slot::Entry(&key), value(&key, "old"), LONG)
            .await?;
        self.ok(
            "delete_many",
            self.store
                .delete_many(&[key.as_str()], Bytes::from_static(MARKER), LONG)
                .await,
        )?;
        let load = self.ok(
            "compare_and_set",
            self.store
                .compare_and_set(&key, None, value(&key, "stale load"), LONG)
                .await,
        )?;
        ensure!(
            self,
            load == Some(false),
            "a compare-and-set expecting no entry answered {load:?} over a tombstone"
        );
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&Bytes::from_static(MARKER)),
            "after the refused load",
        )
        .await?;
        // A load that began after the delete saw its tombstone, and replaces it; one that saw
        // it before a later delete's replaced it does not.
        let marker = Bytes::from_static(MARKER);
        let later = self.ok(
            "compare_and_set",
            self.store
                .compare_and_set(&key, Some(&marker), value(&key, "later load"), LONG)
                .await,
        )?;
        ensure!(
            self,
            later == Some(true),
            "a compare-and-set expecting the tombstone there answered {later:?}"
        );
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&value(&key, "later load")),
            "after a load replaced the tombstone",
        )
        .await?;
        self.ok(
            "tombstone",
            self.store.tombstone(&key, marker.clone(), LONG).await,
        )?;
        self.ok(
            "a later tombstone",
            self.store
                .tombstone(&key, Bytes::from_static(LATER_MARKER), LONG)
                .await,
        )?;
        let stale = self.ok(
            "compare_and_set",
            self.store
                .compare_and_set(&key, Some(&marker), value(&key, "stale load"), LONG)
                .await,
        )?;
        ensure!(
            self,
            stale == Some(false),
            "a compare-and-set expecting an earlier delete's tombstone answered {stale:?} over a later one's"
        );
        self.clear_both().await
    }

    pub(super) async fn compare_and_set_is_atomic(&self) -> Result<(), Violation> {
        if !self.caps.compare_and_set {
            return Ok(());
        }
        const RACERS: usize = 16;
        let key = self.key("race");
        let creations = (0..RACERS).map(|i| {
            let new = value(&key, &i.to_string());
            let key = &key;
            async move { self.store.compare_and_set(key, None, new, LONG).await }
        });
        let mut winners = 0;
        for answer in futures_util::future::join_all(creations).await {
            if self.ok("compare_and_set", answer)? == Some(true) {
                winners += 1;
            }
        }
        ensure!(
            self,
            winners == 1,
            "{winners} of {RACERS} racing creations won"
        );
        // Counters on a get + compare-and-set loop, as the cache's `increment` does.
        const ROUNDS: usize = 5;
        let counter = self.key("counter");
        let increments = (0..RACERS).map(|_| {
            let counter = &counter;
            async move {
                for _ in 0..ROUNDS {
                    loop {
                        let current = self.store.get(Slot::Entry(counter)).await?;
                        let n = current.as_ref().and_then(counter_value).unwrap_or(0);
                        let next = value(counter, &(n + 1).to_string());
                        if self
                            .store
                            .compare_and_set(counter, current.as_ref(), next, LONG)
                            .await?
                            == Some(true)
                        {
                            break;
                        }
                    }
                }
                Ok::<(), crate::Error>(())
            }
        });
        for done in futures_util::future::join_all(increments).await {
            self.ok("counting", done)?;
        }
        let total = self.get(self.store, Slot::Entry(&counter)).await?;
        let count = total.as_ref().and_then(counter_value);
        ensure!(
            self,
            count == Some(RACERS * ROUNDS),
            "{RACERS} tasks x {ROUNDS} increments ended at {count:?}"
        );
        self.clear_both().await
    }
}
