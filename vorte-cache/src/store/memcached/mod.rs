//! L2 `memcached`, on async-memcached (meta protocol), over one or more servers.
//!
//! **Servers.** `memcached://host:port` URLs (port 11211 by default; credentials, a path or a query
//! are ignored: memcached has no authentication). With several servers, each logical key goes to
//! one server chosen by rendezvous (highest-random-weight) hashing on xxh3: every process that
//! lists the same servers, in any order, picks the same server for a key, and removing a server
//! moves only the keys that lived on it. A server that is down fails the calls for its keys
//! (`Backend` or `Timeout`); its keys are not re-routed to another server, so a server that comes
//! back never serves values that another server has meanwhile replaced.
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
//! **TTL.** Memcached counts whole seconds: a TTL is rounded *up* (never shorter than asked, at
//! least 1 s); a TTL over 30 days is sent as an absolute unix time, as the protocol requires; one
//! beyond what memcached can represent (year 2038) is sent as "no expiry". The engine checks expiry
//! itself from the envelope, so rounding up never serves an expired entry.
//!
//! **Listing and usage.** Memcached cannot list keys. [`list`](Store::list) returns nothing, so
//! `Cache::keys` is complete from the layers that can list: L1 and any other layer. Memcached
//! does not report per-prefix usage either: [`usage`](Store::usage) reports 0 keys and 0 bytes.
//!
//! **Compare-and-set** is native: `mg <name> v c` reads the value and its CAS token, and
//! `ms <name> <len> T<ttl> C<cas>` writes only if nothing changed in between (`ms … ME`, an add,
//! when no entry is expected), so counters are exact across processes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_memcached::{Client, MetaProtocol, Status};
use bytes::Bytes;

use self::names::{exptime, physical_name, unix_now};
use self::ring::rendezvous;
use self::server::Server;
use super::{BoxFuture, Slot, Store, Usage};
use crate::config::MemcachedConfig;
use crate::config::url::ServerUrl;
use crate::error::{Error, ErrorKind, Result};

mod generation;
mod names;
mod ring;
mod server;

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

/// What one call does on the server that owns its key.
enum Op<'a> {
    Get(Slot<'a>),
    Put(Slot<'a>, &'a [u8], Duration),
    Delete(Slot<'a>),
    Cas {
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Duration,
    },
    /// Increment the generation (one server's share of `clear`).
    Bump,
    /// Connect and load the generation only.
    Warm,
}

/// What a call returned.
enum Done {
    Value(Option<Bytes>),
    Unit,
    Flag(bool),
}

/// A status that completes an operation normally (the connection stays usable).
fn is_outcome(e: &McError) -> bool {
    matches!(
        e,
        McError::Protocol(Status::NotStored | Status::Exists | Status::NotFound)
    )
}

/// A failure of the connection itself, as when an idle connection's server has restarted.
fn is_connection_error(e: &McError) -> bool {
    matches!(e, McError::Io(_) | McError::ConnectionClosed)
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
            servers.push(Server::new(label));
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

    /// Runs `op` on `client`, connected to `server`. Normal outcomes (miss, not stored, CAS
    /// mismatch) are `Ok`; an `Err` means the connection must not be reused.
    async fn run(
        &self,
        server: &Server,
        client: &mut Client,
        op: &Op<'_>,
    ) -> std::result::Result<Done, McError> {
        if let Op::Bump = op {
            let _guard = server.gen_lock.lock().await;
            let at = self.elapsed_ms();
            let generation = self.bump(client, 1).await?;
            Self::remember(server, generation, at);
            return Ok(Done::Unit);
        }
        let generation = self.generation(server, client).await?;
        let name = |slot: Slot<'_>| physical_name(&self.prefix, generation, slot);
        let ttl_flag = |ttl: Duration| format!("T{}", exptime(ttl, unix_now()));
        let outcome = match op {
            Op::Warm | Op::Bump => return Ok(Done::Unit),
            Op::Get(slot) => client
                .meta_get(name(*slot), false, None, Some(&["v"]))
                .await
                .map(|v| Done::Value(v.map(|v| Bytes::from(v.data.unwrap_or_default())))),
            Op::Put(slot, value, ttl) => {
                let ttl = ttl_flag(*ttl);
                client
                    .meta_set(name(*slot), *value, false, None, Some(&[ttl.as_str()]))
                    .await
                    .map(|_| Done::Unit)
            }
            Op::Delete(slot) => client
                .meta_delete(name(*slot), false, None, None)
                .await
                .map(|_| Done::Flag(true)),
            Op::Cas {
                key,
                expected,
                new,
                ttl,
            } => {
                let name = name(Slot::Entry(key));
                let ttl = ttl_flag(*ttl);
                match expected {
                    None => client
                        .meta_set(&name, *new, false, None, Some(&[ttl.as_str(), "ME"]))
                        .await
                        .map(|_| Done::Flag(true)),
                    Some(expected) => {
                        let current = client
                            .meta_get(&name, false, None, Some(&["v", "c"]))
                            .await?;
                        match current {
                            Some(v)
                                if v.data.as_deref().unwrap_or_default() == *expected
                                    && v.cas.is_some() =>
                            {
                                let cas = format!("C{}", v.cas.unwrap_or_default());
                                client
                                    .meta_set(
                                        &name,
                                        *new,
                                        false,
                                        None,
                                        Some(&[ttl.as_str(), cas.as_str()]),
                                    )
                                    .await
                                    .map(|_| Done::Flag(true))
                            }
                            _ => Ok(Done::Flag(false)),
                        }
                    }
                }
            }
        };
        match outcome {
            Err(e) if is_outcome(&e) => Ok(Done::Flag(false)),
            other => other,
        }
    }

    /// Runs `op` with a pooled or new connection; retries once on a fresh connection when an
    /// idle one turns out dead (its server restarted: the other idle ones are dropped too).
    async fn attempt(&self, server: &Server, op: &Op<'_>) -> std::result::Result<Done, McError> {
        // Held until the call ends, so at most MAX_CONNECTIONS calls (and connections) at once.
        // The semaphore is never closed; if it were, the call would run unbounded, not fail.
        let _slot = server.slots.acquire().await.ok();
        let mut retried = false;
        loop {
            let (mut client, reused) = match server.take() {
                Some(client) => (client, true),
                None => (Client::new(&server.dsn).await?, false),
            };
            match self.run(server, &mut client, op).await {
                Ok(done) => {
                    server.give_back(client);
                    return Ok(done);
                }
                Err(e) if reused && !retried && is_connection_error(&e) => {
                    server.drop_idle();
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `op` on server `index` under the layer's timeout, with a pooled or new connection.
    async fn call(&self, what: &str, index: usize, op: Op<'_>) -> Result<Done> {
        let server = &self.servers[index];
        let attempt = self.attempt(server, &op);
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Backend,
                format!("{} memcached {what} on {}: {e}", self.layer, server.label),
            )
            .with_source(e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} memcached {what} on {} took longer than {:?}",
                    self.layer, server.label, self.timeout
                ),
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
            match self
                .call("set", self.slot_server(slot), Op::Put(slot, &value, ttl))
                .await?
            {
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
            match self
                .call("delete", self.slot_server(slot), Op::Delete(slot))
                .await?
            {
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
    /// calls. The tombstone itself is what `docs/guarantees.md#g3-no-resurrection` needs; only the returned flag can race.
    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move {
            let old = self.get(Slot::Entry(key)).await?;
            self.put(Slot::Entry(key), marker.clone(), ttl).await?;
            Ok(Some(old.is_some_and(|b| !crate::store::is_tombstone(&b))))
        })
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
