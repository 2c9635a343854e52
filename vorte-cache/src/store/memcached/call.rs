//! One call on one memcached server: what it does ([`Op`]), how it runs on a pooled connection
//! (retried once when an idle connection turns out dead), under the layer's timeout, through the
//! server's circuit.

use std::time::Duration;

use async_memcached::{Client, MetaProtocol, Status};
use bytes::Bytes;

use super::lease::LeaseOp;
use super::names::{exptime, physical_name, unix_now};
use super::server::Server;
use super::{McError, MemcachedStore};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Slot;

/// What one call does on the server that owns its key.
///
/// `read_after` is where an invalidation began (the store's clock, `elapsed_ns`), so that it acts
/// in a generation read after that ([`generation`](MemcachedStore::generation)); 0 for the rest.
pub(super) enum Op<'a> {
    Get(Slot<'a>),
    Put {
        slot: Slot<'a>,
        value: &'a [u8],
        ttl: Duration,
        read_after: u64,
    },
    Delete {
        slot: Slot<'a>,
        read_after: u64,
    },
    /// Reads the entry, then writes `marker` over it.
    Tombstone {
        key: &'a str,
        marker: &'a [u8],
        ttl: Duration,
        read_after: u64,
    },
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
    /// A lease (`lease.rs`): outside every generation.
    Lease(LeaseOp<'a>),
}

impl Op<'_> {
    fn read_after(&self) -> u64 {
        match self {
            Op::Put { read_after, .. }
            | Op::Delete { read_after, .. }
            | Op::Tombstone { read_after, .. } => *read_after,
            Op::Get(_) | Op::Cas { .. } | Op::Bump | Op::Warm | Op::Lease(_) => 0,
        }
    }
}

/// What a call returned.
pub(super) enum Done {
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

/// Memcached refused a value for its size (`SERVER_ERROR object too large for cache`, past the
/// server's `-I` item size): the server is healthy, so this is no failure of its circuit.
fn is_too_large(e: &McError) -> bool {
    matches!(
        e,
        McError::Protocol(Status::Error(async_memcached::ErrorKind::Server(message)))
            if message.contains("too large")
    )
}

/// A failure of the connection itself, as when an idle connection's server has restarted.
fn is_connection_error(e: &McError) -> bool {
    matches!(e, McError::Io(_) | McError::ConnectionClosed)
}

impl MemcachedStore {
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
            let at = self.elapsed_ns();
            let generation = self.bump(client, 1).await?;
            Self::remember(server, generation, at);
            return Ok(Done::Unit);
        }
        if let Op::Lease(lease) = op {
            return match self.run_lease(client, lease).await {
                Err(e) if is_outcome(&e) => Ok(Done::Flag(false)),
                other => other,
            };
        }
        let generation = self.generation(server, client, op.read_after()).await?;
        let name = |slot: Slot<'_>| physical_name(&self.prefix, generation, slot);
        let ttl_flag = |ttl: Duration| format!("T{}", exptime(ttl, unix_now()));
        let outcome = match op {
            Op::Warm | Op::Bump | Op::Lease(_) => return Ok(Done::Unit),
            Op::Get(slot) => client
                .meta_get(name(*slot), false, None, Some(&["v"]))
                .await
                .map(|v| Done::Value(v.map(|v| Bytes::from(v.data.unwrap_or_default())))),
            Op::Put {
                slot, value, ttl, ..
            } => {
                let ttl = ttl_flag(*ttl);
                client
                    .meta_set(name(*slot), *value, false, None, Some(&[ttl.as_str()]))
                    .await
                    .map(|_| Done::Unit)
            }
            Op::Delete { slot, .. } => client
                .meta_delete(name(*slot), false, None, None)
                .await
                .map(|_| Done::Flag(true)),
            Op::Tombstone {
                key, marker, ttl, ..
            } => {
                let name = name(Slot::Entry(key));
                let ttl = ttl_flag(*ttl);
                let old = client
                    .meta_get(&name, false, None, Some(&["v"]))
                    .await?
                    .map(|v| Bytes::from(v.data.unwrap_or_default()));
                client
                    .meta_set(&name, *marker, false, None, Some(&[ttl.as_str()]))
                    .await
                    .map(|_| Done::Value(old))
            }
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

    /// Runs `op` on server `index` under the layer's timeout, with a pooled or new connection,
    /// through the server's circuit.
    pub(super) async fn call(&self, what: &str, index: usize, op: Op<'_>) -> Result<Done> {
        let server = &self.servers[index];
        server.breaker.admit(&server.circuit)?;
        let result = self.attempt_in_time(what, server, &op).await;
        server.breaker.record(result, &server.circuit)
    }

    /// Runs `op` on `server` under the layer's timeout.
    async fn attempt_in_time(&self, what: &str, server: &Server, op: &Op<'_>) -> Result<Done> {
        let attempt = self.attempt(server, op);
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) if is_too_large(&e) => Err(Error::new(
                ErrorKind::ValueTooLarge,
                format!("{} memcached {what} on {}: {e}", self.layer, server.label),
            )
            .with_source(e)),
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
