//! Rules on single names: reads, writes, deletes, slots, values, keys and expiry.

use std::time::Duration;

use bytes::Bytes;

use super::Violation;
use super::ctx::*;
use crate::clock::now_ms;
use crate::codec::Envelope;
use crate::store::{Slot, Usage};

impl Ctx<'_> {
    pub(super) async fn get_missing(&self) -> Result<(), Violation> {
        let key = self.key("never-written");
        self.expect(self.store, Slot::Entry(&key), None, "never written")
            .await?;
        self.expect(self.store, Slot::Tag(&key), None, "never written")
            .await
    }

    pub(super) async fn put_replaces(&self) -> Result<(), Violation> {
        let key = self.key("k");
        for (slot, first, second) in [
            (Slot::Entry(&key), "first", "second"),
            (Slot::Tag(&key), "tag-first", "tag-second"),
        ] {
            let (first, second) = (value(&key, first), value(&key, second));
            self.put(self.store, slot, first.clone(), LONG).await?;
            self.expect(self.store, slot, Some(&first), "after put")
                .await?;
            self.put(self.store, slot, second.clone(), LONG).await?;
            self.expect(self.store, slot, Some(&second), "after a second put")
                .await?;
            self.store.forget_cached_state();
            self.expect(self.store, slot, Some(&second), "after forget_cached_state")
                .await?;
            self.delete(self.store, slot).await?;
        }
        // The newest envelope (a validator, a stale window) is bytes like any other, and reads
        // back whole, validator included.
        let slot = Slot::Entry(&key);
        let validated = validated_at(&key, b"v3", now_ms() + 600_000);
        self.put(self.store, slot, validated.clone(), LONG).await?;
        self.expect(
            self.store,
            slot,
            Some(&validated),
            "after a put of a version 3 entry",
        )
        .await?;
        let back = self.get(self.store, slot).await?;
        let validator = back
            .as_ref()
            .and_then(|b| Envelope::decode(b, usize::MAX).ok())
            .and_then(|env| env.validator);
        ensure!(
            self,
            validator.as_deref().map(String::as_str) == Some("\"etag-contract\""),
            "a version 3 entry read back without its validator: {}",
            show(back.as_ref())
        );
        self.delete(self.store, slot).await?;
        Ok(())
    }

    pub(super) async fn delete_reports(&self) -> Result<(), Violation> {
        let key = self.key("k");
        for slot in [Slot::Entry(&key), Slot::Tag(&key)] {
            self.put(self.store, slot, value(&key, "v"), LONG).await?;
            let existed = self.delete(self.store, slot).await?;
            ensure!(
                self,
                existed,
                "delete {slot:?} of a written name reported false"
            );
            self.expect(self.store, slot, None, "after delete").await?;
            let again = self.delete(self.store, slot).await?;
            ensure!(self, !again, "a second delete {slot:?} reported true");
            let missing = self.key("never-written");
            let never = self.delete(self.store, Slot::Entry(&missing)).await?;
            ensure!(self, !never, "delete of a never-written name reported true");
        }
        Ok(())
    }

    pub(super) async fn slots_separate(&self) -> Result<(), Violation> {
        self.clear_both().await?;
        let key = self.key("x");
        let (entry, tag) = (value(&key, "entry"), value(&key, "tag"));
        self.put(self.store, Slot::Entry(&key), entry.clone(), LONG)
            .await?;
        self.put(self.store, Slot::Tag(&key), tag.clone(), LONG)
            .await?;
        self.expect(
            self.store,
            Slot::Entry(&key),
            Some(&entry),
            "entry and tag of one name",
        )
        .await?;
        self.expect(
            self.store,
            Slot::Tag(&key),
            Some(&tag),
            "entry and tag of one name",
        )
        .await?;
        let tag_only = self.key("tag-only");
        self.put(self.store, Slot::Tag(&tag_only), tag.clone(), LONG)
            .await?;
        self.expect(
            self.store,
            Slot::Entry(&tag_only),
            None,
            "only a tag written",
        )
        .await?;
        if self.caps.lists_keys {
            let listed = self.listed(self.store, "").await?;
            ensure!(
                self,
                listed == vec![key.clone()],
                "list(\"\") returned {listed:?}; expected the one entry, no tag records"
            );
        }
        let usage = self.ok("usage", self.store.usage().await)?;
        let want = if self.caps.reports_usage {
            Usage {
                keys: 1,
                bytes: entry.len() as u64,
            }
        } else {
            Usage::default()
        };
        ensure!(
            self,
            usage == want,
            "usage {usage:?}, expected {want:?} (tag records excluded)"
        );
        self.delete(self.store, Slot::Entry(&key)).await?;
        self.expect(
            self.store,
            Slot::Tag(&key),
            Some(&tag),
            "after deleting the entry",
        )
        .await?;
        self.clear_both().await
    }

    pub(super) async fn binary_values(&self) -> Result<(), Violation> {
        let all_bytes: Vec<u8> = (0..=255).collect();
        let big: Vec<u8> = (0..256 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let values: Vec<Bytes> = vec![
            Bytes::new(),
            Bytes::from_static(b"\0"),
            Bytes::from(all_bytes),
            Bytes::from_static(b"\xff\xfe not utf-8 \xc3\x28"),
            Bytes::from_static(b"\r\nEND\r\nVALUE x 0 1\r\n"),
            Bytes::from_static(MARKER),
            Bytes::from(big),
        ];
        for (i, v) in values.into_iter().enumerate() {
            let key = self.key(&i.to_string());
            self.put(self.store, Slot::Entry(&key), v.clone(), LONG)
                .await?;
            self.expect(self.store, Slot::Entry(&key), Some(&v), "binary value")
                .await?;
            self.put(self.store, Slot::Tag(&key), v.clone(), LONG)
                .await?;
            self.expect(self.store, Slot::Tag(&key), Some(&v), "binary value")
                .await?;
            self.delete(self.store, Slot::Entry(&key)).await?;
            self.delete(self.store, Slot::Tag(&key)).await?;
        }
        Ok(())
    }

    pub(super) async fn hostile_keys(&self) -> Result<(), Violation> {
        self.clear_both().await?;
        let keys = hostile_keys();
        for key in &keys {
            self.put(self.store, Slot::Entry(key), value(key, key), LONG)
                .await?;
            self.put(self.store, Slot::Tag(key), value(key, "tag"), LONG)
                .await?;
        }
        for key in &keys {
            let got = self.get(self.store, Slot::Entry(key)).await?;
            let payload = got
                .as_ref()
                .and_then(|b| Envelope::decode(b, usize::MAX).ok())
                .map(|env| (env.key, env.payload));
            ensure!(
                self,
                payload.as_ref().map(|(k, p)| (k.as_str(), p.as_ref()))
                    == Some((key, key.as_bytes())),
                "key {:?} read back {}",
                abbreviated(key),
                show(got.as_ref())
            );
            let tag = self.get(self.store, Slot::Tag(key)).await?;
            let tag_key = tag
                .as_ref()
                .and_then(|b| Envelope::decode(b, usize::MAX).ok())
                .map(|env| env.key);
            ensure!(
                self,
                tag_key.as_deref() == Some(key.as_str()),
                "tag {:?} read back {}",
                abbreviated(key),
                show(tag.as_ref())
            );
        }
        if self.caps.lists_keys {
            let listed = self.listed(self.store, "").await?;
            let want = sorted(keys.clone());
            if listed != want {
                let missing: Vec<_> = want
                    .iter()
                    .filter(|k| !listed.contains(k))
                    .map(|k| abbreviated(k))
                    .collect();
                let extra: Vec<_> = listed
                    .iter()
                    .filter(|k| !want.contains(k))
                    .map(|k| abbreviated(k))
                    .collect();
                return Err(self.violation(format!(
                    "list(\"\") missed {missing:?} and returned extra {extra:?}"
                )));
            }
        }
        for key in &keys {
            let existed = self.delete(self.store, Slot::Entry(key)).await?;
            ensure!(
                self,
                existed,
                "delete of hostile key {:?} reported false",
                abbreviated(key)
            );
            self.expect(self.store, Slot::Entry(key), None, "after delete")
                .await?;
        }
        self.clear_both().await
    }

    pub(super) async fn ttl_expiry(&self) -> Result<(), Violation> {
        let key = self.key("short");
        let v = value(&key, "short-lived");
        let ttl = Duration::from_millis(300);
        self.put(self.store, Slot::Entry(&key), v.clone(), ttl)
            .await?;
        self.expect(self.store, Slot::Entry(&key), Some(&v), "within its TTL")
            .await?;
        // Native expiry may round up (memcached counts whole seconds): wait up to 3 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        tokio::time::sleep(ttl).await;
        loop {
            let got = self.get(self.store, Slot::Entry(&key)).await?;
            match got {
                None => break,
                Some(got) => ensure!(
                    self,
                    got == v,
                    "past its TTL, get returned {} instead of the entry or nothing",
                    show(Some(&got))
                ),
            }
            if !self.caps.native_expiry {
                break;
            }
            ensure!(
                self,
                tokio::time::Instant::now() < deadline,
                "the entry was still there 3 s past its {ttl:?} TTL (the store claims native expiry)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (name, ttl) in [
            ("forty-days", Duration::from_secs(40 * 86_400)),
            ("century", Duration::from_secs(100 * 365 * 86_400)),
        ] {
            let key = self.key(name);
            let v = value(&key, name);
            self.put(self.store, Slot::Entry(&key), v.clone(), ttl)
                .await?;
            self.expect(
                self.store,
                Slot::Entry(&key),
                Some(&v),
                &format!("TTL {name}"),
            )
            .await?;
            self.delete(self.store, Slot::Entry(&key)).await?;
        }
        Ok(())
    }
}
