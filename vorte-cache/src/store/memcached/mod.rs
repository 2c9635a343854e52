//! L2 `memcached`, on async-memcached (meta protocol), over one or more servers.
//!
//! **Servers.** `memcached://host:port` URLs (port 11211 by default; credentials, a path or a query
//! are ignored: memcached has no authentication). With several servers, each logical key goes to
//! one server chosen by rendezvous (highest-random-weight) hashing on xxh3: every process that
//! lists the same servers, in any order, picks the same server for a key, and removing a server
//! moves only the keys that lived on it. A server that is down fails the calls for its keys
//! (`Backend` or `Timeout`); its keys are not re-routed to another server, so a server that comes
//! back never serves values that another server has meanwhile replaced. Each server has its own
//! circuit breaker ([`Breaker`](super::circuit::Breaker),
//! `docs/guarantees.md#f2-circuit-breaker`): after `breaker_threshold` consecutive failures (5 by
//! default) the calls for its keys fail at once, and one is let through as a probe after each
//! `breaker_cooldown` (0.5 s by default, ±20 %). A value memcached refuses for its size
//! (`SERVER_ERROR object too large for cache`) is a [`ValueTooLarge`](ErrorKind::ValueTooLarge)
//! error and does not count. The cache does not put the layer
//! behind one more circuit ([`Store::has_own_breakers`]), so a dead server never stops the keys of
//! the others, and a `delete_many` tries every key, whatever server failed.
//!
//! **Connections.** async-memcached has one connection per `Client` and no pool, so each server
//! has a small bounded pool of its own ([`server`]): at most
//! [`MAX_CONNECTIONS`](server::MAX_CONNECTIONS) calls run on a server at once (a semaphore; a call
//! waits for a slot within its timeout), and a free list keeps the clients of completed calls. A
//! call takes an idle client or, when there is none, connects: since a call connects only while
//! it holds a slot and finds no idle client, a server never has more than that many connections
//! open, however many calls arrive at once. A client goes back only when its call completed: a
//! call that failed or timed out drops its client, because async-memcached 0.9 closes a
//! connection whose operation was cancelled or left half-read. An idle connection that turns out
//! dead (the server restarted) empties the free list and the call is retried once on a fresh
//! connection, so a restarted server is used again at once. Every call is bounded by the layer's
//! `timeout_ms`; nothing waits longer, nothing panics.
//!
//! The pool is our own rather than a pool crate's (deadpool, bb8) because it is a semaphore and a
//! `Vec`, and the drop-on-failure and retry-once-when-stale rules above are memcached-specific
//! anyway.
//!
//! **Names.** Memcached keys are at most 250 bytes of printable ASCII without spaces. An entry is
//! stored as `<key_prefix><gen>:e:<key>` when that name obeys the rules, and otherwise as
//! `<key_prefix><gen>:h:<hex xxh3_128(key)>`; tag records likewise as `:t:` and `:th:`. Hashing
//! is safe because the engine's envelope holds the logical key. `<gen>` is the namespace
//! generation below. Every name starts with `key_prefix` (`docs/guarantees.md#g6-prefix-isolation`).
//!
//! **Flush without `flush_all`.** Each server keeps a generation record `<key_prefix>gen` (an
//! integer that never expires, created on first use with a time-based start value
//! `unix_ms << 16 | random 16 bits`, so a record that was evicted and created again is larger than
//! any earlier generation and cannot revive old entries). Every name embeds its server's current
//! generation, and [`clear`](Store::clear) increments the record on every server (meta arithmetic
//! `ma`): older entries become unreachable at once and expire by themselves (or are evicted
//! first). No other key is touched, and `clear` reports 0 names removed, since none is removed
//! physically.
//!
//! The store caches each server's generation. Its own `clear` updates the cache before returning,
//! so the process that flushes never reads an old entry afterwards. Another process's flush is
//! seen by the first call that starts more than [`GEN_REFRESH`](generation::GEN_REFRESH) (1 s)
//! after it returned: the generation is re-read, lazily on a call, once it is older than that. An
//! evicted generation record only causes misses.
//!
//! An invalidation (a tombstone, a delete, a tag record) does not wait for that: it acts in a
//! generation read after it began, so it never lands in one another process has flushed, where
//! it would hide nothing (`docs/consistency.md#memcached-generations-and-servers`). The keys of
//! one `delete_many` share one such read per server.
//!
//! **TTL.** Memcached counts whole seconds: a TTL is rounded *up* (never shorter than asked, at
//! least 1 s); a TTL over 30 days is sent as an absolute unix time, as the protocol requires; one
//! beyond what memcached can represent (year 2038) is sent as "no expiry". The engine checks expiry
//! itself from the envelope, so rounding up never serves an expired entry.
//!
//! **Listing and usage.** Memcached cannot list keys. [`list`](Store::list) returns nothing, so
//! `Cache::keys` is complete from the layers that can list: L1 and any other layer. Memcached
//! does not report per-prefix usage either: [`usage`](Store::usage) reports 0 keys and 0 bytes.
//!
//! **Leases** (`lease.rs`): an add with the token, and a renew or release conditional on the CAS
//! token of a value that is still ours; outside the generations.
//!
//! **Compare-and-set** is native: `mg <name> v c` reads the value and its CAS token, and
//! `ms <name> <len> T<ttl> C<cas>` writes only if nothing changed in between (`ms … ME`, an add,
//! when no entry is expected), so counters are exact across processes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::call::{Done, Op};
use self::lease::LeaseOp;
use self::ring::rendezvous;
use self::server::Server;
use super::{BoxFuture, Slot, Store, Usage, delete_each};
use crate::config::url::ServerUrl;
use crate::config::{BreakerConfig, MemcachedConfig};
use crate::error::{Error, ErrorKind, Result};

mod call;
mod generation;
mod lease;
mod names;
mod ring;
mod server;

/// Whether `value` is a tombstone: any delete's ([`crate::store::is_tombstone`]), or the one being
/// written (a store's caller may choose a marker of its own).
fn is_tombstone(value: &[u8], marker: &[u8]) -> bool {
    crate::store::is_tombstone(value) || value == marker
}

/// Memcached's port when a URL has none.
const DEFAULT_PORT: u16 = 11211;

type McError = async_memcached::Error;

/// A memcached store over one or more servers.
pub(crate) struct MemcachedStore {
    layer: &'static str,
    servers: Vec<Server>,
    prefix: String,
    /// `<prefix>gen`: the generation record, on every server.
    gen_name: String,
    timeout: Duration,
    epoch: Instant,
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `host:port` only: whatever else a URL held is never printed (`docs/guarantees.md#s1-credentials-never-shown`).
        let servers: Vec<&str> = self.servers.iter().map(|s| s.label.as_str()).collect();
        f.debug_struct("MemcachedStore")
            .field("layer", &self.layer)
            .field("servers", &servers)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MemcachedStore {
    /// Opens a store over the servers of `cfg`. Connections are made lazily: a server that is
    /// down makes the calls for its keys fail until it answers. Resolution has checked
    /// `key_prefix` against memcached's key rules (`config/backend.rs`).
    pub(crate) async fn connect(
        layer: &'static str,
        cfg: &MemcachedConfig,
        key_prefix: &str,
        timeout: Duration,
        breaker: BreakerConfig,
    ) -> Result<Self> {
        let path = format!("cache.layers.{layer}.urls");
        if cfg.urls.is_empty() {
            return Err(Error::new(ErrorKind::Config, format!("{path}: no URL")));
        }
        let mut servers: Vec<Server> = Vec::with_capacity(cfg.urls.len());
        for (i, url) in cfg.urls.iter().enumerate() {
            let label = ServerUrl::parse(
                url.expose(),
                &format!("{path}[{i}]"),
                &["memcached"],
                "memcached://",
            )?
            .host_port(DEFAULT_PORT);
            if servers.iter().any(|s| s.label == label) {
                continue;
            }
            servers.push(Server::new(layer, label, breaker));
        }
        let store = MemcachedStore {
            layer,
            servers,
            prefix: key_prefix.to_owned(),
            gen_name: format!("{key_prefix}gen"),
            timeout,
            epoch: Instant::now(),
        };
        // Warm up: connect and read each generation now, so that the first calls are fast. A
        // server that does not answer is only logged; its calls fail until it does.
        let warm: Vec<_> = (0..store.servers.len())
            .map(|i| store.call("connect", i, Op::Warm))
            .collect();
        for (i, r) in futures_util::future::join_all(warm)
            .await
            .into_iter()
            .enumerate()
        {
            if let Err(e) = r {
                tracing::warn!(
                    layer,
                    server = %store.servers[i].label,
                    error = %e,
                    "memcached not reachable at start-up; its keys fail until it answers"
                );
            }
        }
        Ok(store)
    }

    fn server_of(&self, key: &str) -> usize {
        if self.servers.len() == 1 {
            return 0;
        }
        let seeds: Vec<u64> = self.servers.iter().map(|s| s.seed).collect();
        rendezvous(&seeds, key)
    }

    fn slot_server(&self, slot: Slot<'_>) -> usize {
        match slot {
            Slot::Entry(k) | Slot::Tag(k) => self.server_of(k),
        }
    }

    /// Writes `marker` over the entry of `key` in a generation read after `read_after`; reports
    /// whether a real entry (not a tombstone) was there.
    async fn tombstone_in_current(
        &self,
        key: &str,
        marker: &[u8],
        ttl: Duration,
        read_after: u64,
    ) -> Result<bool> {
        let op = Op::Tombstone {
            key,
            marker,
            ttl,
            read_after,
        };
        match self.call("tombstone", self.server_of(key), op).await? {
            Done::Value(old) => Ok(old.is_some_and(|b| !is_tombstone(&b, marker))),
            _ => Err(Error::new(
                ErrorKind::Backend,
                format!("{} memcached tombstone: not stored", self.layer),
            )),
        }
    }
}

impl Store for MemcachedStore {
    fn backend(&self) -> &'static str {
        "memcached"
    }

    /// Another process flushed: re-read every server's generation on the next call, instead of
    /// up to [`GEN_REFRESH`](generation::GEN_REFRESH) later.
    fn forget_cached_state(&self) {
        for server in &self.servers {
            server.checked.store(0, Ordering::Release);
        }
    }

    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            match self
                .call("get", self.slot_server(slot), Op::Get(slot))
                .await?
            {
                Done::Value(v) => Ok(v),
                Done::Unit | Done::Flag(_) => Ok(None),
            }
        })
    }

    fn put<'a>(&'a self, slot: Slot<'a>, value: Bytes, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // A tag record is an invalidation (`invalidate_tag`): it must land in the current
            // generation. An entry may go to one up to `GEN_REFRESH` old, like a read.
            let read_after = match slot {
                Slot::Tag(_) => self.elapsed_ns(),
                Slot::Entry(_) => 0,
            };
            let op = Op::Put {
                slot,
                value: &value,
                ttl,
                read_after,
            };
            match self.call("set", self.slot_server(slot), op).await? {
                Done::Flag(false) => Err(Error::new(
                    ErrorKind::Backend,
                    format!("{} memcached set: not stored", self.layer),
                )),
                _ => Ok(()),
            }
        })
    }

    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let op = Op::Delete {
                slot,
                read_after: self.elapsed_ns(),
            };
            match self.call("delete", self.slot_server(slot), op).await? {
                Done::Flag(existed) => Ok(existed),
                _ => Ok(true),
            }
        })
    }

    /// Memcached cannot list keys: always empty (see the module docs).
    fn list<'a>(&'a self, _prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Moves every server to a new generation; old names become unreachable. Returns 0: nothing
    /// is removed physically. Fails if any server could not be reached (the others are flushed).
    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let bumps: Vec<_> = (0..self.servers.len())
                .map(|i| self.call("flush", i, Op::Bump))
                .collect();
            let mut first_error = None;
            for r in futures_util::future::join_all(bumps).await {
                if let Err(e) = r {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(0), Err)
        })
    }

    /// Memcached does not report usage per prefix: always zero (see the module docs).
    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        Box::pin(async { Ok(Usage::default()) })
    }

    /// Memcached has no atomic get-and-set: the read that reports existence and the write are two
    /// requests. The tombstone itself is what `docs/guarantees.md#g3-no-resurrection` needs; only
    /// the returned flag can race.
    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move {
            self.tombstone_in_current(key, &marker, ttl, self.elapsed_ns())
                .await
                .map(Some)
        })
    }

    /// As the default, with one `read_after` for every key: one generation read per server.
    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        let read_after = self.elapsed_ns();
        Box::pin(delete_each(keys, move |key| {
            let marker = marker.clone();
            async move {
                self.tombstone_in_current(key, &marker, ttl, read_after)
                    .await
            }
        }))
    }

    /// One circuit per server (see the module docs).
    fn has_own_breakers(&self) -> bool {
        true
    }

    fn circuits(&self) -> Vec<crate::stats::CircuitStats> {
        self.servers
            .iter()
            .map(|s| s.breaker.stats(&s.circuit))
            .collect()
    }

    fn has_compare_and_set(&self) -> bool {
        true
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move {
            let op = Op::Cas {
                key,
                expected: expected.map(|b| b.as_ref()),
                new: &new,
                ttl,
            };
            match self
                .call("compare-and-set", self.server_of(key), op)
                .await?
            {
                Done::Flag(swapped) => Ok(Some(swapped)),
                _ => Ok(Some(false)),
            }
        })
    }

    fn has_leases(&self) -> bool {
        true
    }

    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        let op = LeaseOp::Acquire { key, token, ttl };
        Box::pin(async move { self.lease("lease acquire", op).await.map(Some) })
    }

    fn lease_renew<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.lease("lease renew", LeaseOp::Renew { key, token, ttl }))
    }

    fn lease_release<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.lease("lease release", LeaseOp::Release { key, token }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_port(url: &str) -> Option<String> {
        ServerUrl::parse(url, "p", &["memcached"], "memcached://")
            .ok()
            .map(|u| u.host_port(DEFAULT_PORT))
    }

    #[test]
    fn urls_become_host_port() {
        assert_eq!(
            host_port("memcached://127.0.0.1:11211").as_deref(),
            Some("127.0.0.1:11211")
        );
        assert_eq!(host_port("memcached://h").as_deref(), Some("h:11211"));
        assert_eq!(host_port("memcached://u:p@h:1/x?y").as_deref(), Some("h:1"));
        assert_eq!(host_port("memcached://[::1]:7").as_deref(), Some("[::1]:7"));
        assert_eq!(
            host_port("memcached://[::1]").as_deref(),
            Some("[::1]:11211")
        );
        assert_eq!(host_port("memcached://h:notaport"), None);
        assert_eq!(host_port("memcached://"), None);
    }
}
