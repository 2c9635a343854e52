//! One memcached server: its address, its bounded connection pool, its cached generation and
//! its circuit breaker.
//!
//! The pool bounds the connections it opens (see the module doc of `store::memcached`): a call
//! holds one of [`MAX_CONNECTIONS`] slots while it runs, and connects only when it finds no idle
//! client.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use async_memcached::Client;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::BreakerConfig;
use crate::store::circuit::Breaker;

/// The most connections open to one server, in use or idle: memcached's default `maxconns` is
/// 1,024, and a call holds a connection for one round trip, so 16 per process is plenty and keeps
/// hundreds of processes within the server's limit.
const MAX_CONNECTIONS: usize = 16;

/// One memcached server: its address, idle connections, cached generation and circuit.
pub(super) struct Server {
    /// `host:port`, for messages and hashing.
    pub(super) label: String,
    /// What async-memcached connects to: `tcp://host:port`.
    pub(super) dsn: String,
    /// Rendezvous-hashing seed, from `label`.
    pub(super) seed: u64,
    /// One permit per call running on this server: at most [`MAX_CONNECTIONS`].
    pub(super) slots: tokio::sync::Semaphore,
    /// Clients of completed calls, at most [`MAX_CONNECTIONS`].
    pub(super) idle: Mutex<Vec<Client>>,
    /// The generation of this server's namespace; 0 while unknown.
    pub(super) generation: AtomicU64,
    /// When the request that read `generation` was sent: the store's clock (`elapsed_ns`; 0: never).
    pub(super) checked: AtomicU64,
    /// Held while the generation is read or bumped, so a bump is never overwritten by an older read.
    pub(super) gen_lock: tokio::sync::Mutex<()>,
    /// This server's circuit: a dead server fails its own keys at once and no others.
    pub(super) breaker: Breaker,
    /// What the circuit guards, for messages: `l2 memcached on host:port`.
    pub(super) circuit: String,
}

impl Server {
    /// A server of `layer` at `label` (`host:port`), with no connection yet.
    pub(super) fn new(layer: &str, label: String, breaker: BreakerConfig) -> Self {
        Server {
            circuit: format!("{layer} memcached on {label}"),
            dsn: format!("tcp://{label}"),
            seed: xxh3_64(label.as_bytes()),
            label,
            slots: tokio::sync::Semaphore::new(MAX_CONNECTIONS),
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            gen_lock: tokio::sync::Mutex::new(()),
            breaker: Breaker::new(breaker),
        }
    }

    /// An idle client that is still open, if any.
    pub(super) fn take(&self) -> Option<Client> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(client) = idle.pop() {
            if !client.is_closed() {
                return Some(client);
            }
        }
        None
    }

    /// Keeps the client of a completed call for the next one.
    pub(super) fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_CONNECTIONS {
            idle.push(client);
        }
    }

    /// Drops every idle client (their server restarted).
    pub(super) fn drop_idle(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
