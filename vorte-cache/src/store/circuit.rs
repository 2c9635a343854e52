//! Circuit breakers around any [`Store`] (`docs/guarantees.md#f2-circuit-breaker`).
//!
//! After `breaker_threshold` consecutive failures the circuit *opens*: calls fail at once,
//! without touching the server, so a dead layer costs nothing but a skip. After the cool-down
//! (`breaker_cooldown`, drawn anew within ±[`JITTER`] at each opening, so that many processes do
//! not probe a recovering server in the same millisecond) one call is let through as a probe; if
//! it succeeds the circuit closes and the layer is back, with no restart.
//!
//! Only what says something about the server's health counts: a call that failed
//! ([`ErrorKind::Backend`]) or timed out ([`ErrorKind::Timeout`]) on the read and write path.
//! A timeout opens the circuit at once, whatever the threshold: the server left a call
//! unanswered for the layer's whole timeout, every call behind it would wait as long, and a call
//! that goes on to the same layer (a tagged `set` reads the tag versions, then writes) must not
//! wait a second time (`docs/resilience.md#l2-redis-hung`). A failure that comes back at once (a
//! refused connection, an error reply) costs no wait and counts one towards the threshold.
//! A value refused for its size ([`ErrorKind::ValueTooLarge`]) does not: the server answered, and
//! one large value must not close the layer to every other key. Nor do scans (`list`, `usage`,
//! `clear`, `sweep`): they are long and touch every server, and a slow or failing scan must not
//! open the circuit that guards reads. While a circuit is open, scans fail at once too, but they
//! never probe.
//!
//! A wrapper ([`CircuitStore`]) rather than code in each backend: every store gets the same
//! behaviour, except a store that reaches several servers and keeps one [`Breaker`] per server
//! (memcached, Redis Cluster), so that one dead server does not close the layer to the keys of
//! the others ([`Store::has_own_breakers`]).

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{BoxFuture, Slot, Store, Usage};
use crate::clock;
use crate::config::BreakerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::stats::{CircuitState, CircuitStats};

/// How far each opening's cool-down may stray from `breaker_cooldown`, either way: ±20 %.
pub(crate) const JITTER: f64 = 0.2;

/// Whether an error of a store call counts against its circuit: only a server that failed or did
/// not answer (see the module docs).
fn counts_as_failure(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Backend | ErrorKind::Timeout)
}

/// One opening's cool-down in milliseconds: `cooldown` scaled into `1 ± JITTER` by `unit`, a
/// draw in `[0, 1)`; at least 1 ms.
fn jittered_ms(cooldown: Duration, unit: f64) -> u64 {
    let scale = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    let ms = (cooldown.as_secs_f64() * 1000.0 * scale).round();
    // A cool-down is at most what the config grammar accepts, far below u64::MAX ms.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = ms as u64;
    ms.max(1)
}

/// One circuit: counts consecutive failures, and refuses calls while open. [`CircuitStore`] keeps
/// one per layer; a store that reaches several servers may keep one per server instead
/// ([`Store::has_own_breakers`]).
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// 0 when closed; otherwise when the next probe may go (clock milliseconds).
    open_until: AtomicU64,
    /// Whether a probe was let through and has not been counted yet (for [`Breaker::state`]).
    probing: AtomicBool,
    /// How many times it went from closed to open.
    opened: AtomicU64,
}

impl Breaker {
    /// A closed circuit with `config`'s threshold and cool-down.
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            threshold: config.threshold.max(1),
            cooldown: config.cooldown,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            opened: AtomicU64::new(0),
        }
    }

    /// When the next probe may go, for an opening (or a failed probe) at `now`.
    fn next_probe_at(&self, now: u64) -> u64 {
        now.saturating_add(jittered_ms(self.cooldown, rand::random::<f64>()))
    }

    fn refused(&self, what: &dyn Display) -> Error {
        Error::new(
            ErrorKind::Backend,
            format!(
                "{what}: circuit open after a timeout or {} consecutive failures",
                self.threshold
            ),
        )
    }

    /// Lets a call go when the circuit is closed, or as the probe of an open one; otherwise
    /// fails at once, naming `what` the circuit guards.
    pub(crate) fn admit(&self, what: &dyn Display) -> Result<()> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(());
        }
        let now = clock::precise_ms();
        // Half-open: the first caller past the cool-down moves it on and probes; others wait.
        if now >= until
            && self
                .open_until
                .compare_exchange(
                    until,
                    self.next_probe_at(now),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.probing.store(true, Ordering::Release);
            return Ok(());
        }
        Err(self.refused(what))
    }

    /// Lets a scan go while the circuit is closed; never as a probe (see the module docs).
    pub(crate) fn admit_scan(&self, what: &dyn Display) -> Result<()> {
        if self.open_until.load(Ordering::Acquire) == 0 {
            Ok(())
        } else {
            Err(self.refused(what))
        }
    }

    /// Counts the outcome of an admitted call, opening or closing the circuit of `what`.
    pub(crate) fn record<T>(&self, result: Result<T>, what: &dyn Display) -> Result<T> {
        match &result {
            Ok(_) => {
                self.failures.store(0, Ordering::Release);
                self.probing.store(false, Ordering::Release);
                if self.open_until.load(Ordering::Acquire) != 0
                    && self.open_until.swap(0, Ordering::AcqRel) != 0
                {
                    tracing::info!(circuit = %what, "a call succeeded; circuit closed");
                }
            }
            Err(e) if !counts_as_failure(e) => {
                // The server answered; the call says nothing of its health either way.
                self.probing.store(false, Ordering::Release);
            }
            Err(e) => {
                self.probing.store(false, Ordering::Release);
                let n = self
                    .failures
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                // A call left unanswered for the whole timeout opens it at once (module docs).
                if (n >= self.threshold || e.kind() == ErrorKind::Timeout)
                    && self
                        .open_until
                        .compare_exchange(
                            0,
                            self.next_probe_at(clock::precise_ms()),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                {
                    self.opened.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(circuit = %what, failures = n, "circuit opened");
                }
            }
        }
        result
    }

    /// Where the circuit stands now.
    pub(crate) fn state(&self) -> CircuitState {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            CircuitState::Closed
        } else if self.probing.load(Ordering::Acquire) || clock::precise_ms() >= until {
            CircuitState::HalfOpen
        } else {
            CircuitState::Open
        }
    }

    /// Its figures for [`LayerStats::circuits`](crate::LayerStats::circuits), named `name`.
    pub(crate) fn stats(&self, name: &str) -> CircuitStats {
        CircuitStats {
            name: name.to_owned(),
            state: self.state(),
            opened: self.opened.load(Ordering::Relaxed),
        }
    }
}

/// A store behind one circuit for its whole layer. See the module docs.
#[derive(Debug)]
pub(crate) struct CircuitStore {
    inner: Arc<dyn Store>,
    /// What the circuit guards, for messages: `l2 redis`.
    name: String,
    breaker: Breaker,
}

impl CircuitStore {
    /// `store` behind a circuit of its own with `config`, unless it keeps its own circuits
    /// ([`Store::has_own_breakers`]).
    pub(crate) fn guard(
        store: Arc<dyn Store>,
        layer: &'static str,
        config: BreakerConfig,
    ) -> Arc<dyn Store> {
        if store.has_own_breakers() {
            return store;
        }
        Arc::new(CircuitStore {
            name: format!("{layer} {}", store.backend()),
            inner: store,
            breaker: Breaker::new(config),
        })
    }

    fn admit(&self) -> Result<()> {
        self.breaker.admit(&self.name)
    }

    fn admit_scan(&self) -> Result<()> {
        self.breaker.admit_scan(&self.name)
    }

    fn record<T>(&self, result: Result<T>) -> Result<T> {
        self.breaker.record(result, &self.name)
    }
}

/// A call on the read and write path: admitted by the circuit, and counted.
macro_rules! guarded {
    ($self:ident, $call:expr) => {
        Box::pin(async move {
            $self.admit()?;
            $self.record($call.await)
        })
    };
}

/// A scan: refused while the circuit is open, never a probe, never counted.
macro_rules! scanned {
    ($self:ident, $call:expr) => {
        Box::pin(async move {
            $self.admit_scan()?;
            $call.await
        })
    };
}

impl Store for CircuitStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn get<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<Option<Bytes>>> {
        guarded!(self, self.inner.get(slot))
    }
    fn put<'a>(&'a self, slot: Slot<'a>, value: Bytes, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        guarded!(self, self.inner.put(slot, value, ttl))
    }
    fn delete<'a>(&'a self, slot: Slot<'a>) -> BoxFuture<'a, Result<bool>> {
        guarded!(self, self.inner.delete(slot))
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        scanned!(self, self.inner.list(prefix))
    }
    fn clear(&self) -> BoxFuture<'_, Result<u64>> {
        scanned!(self, self.inner.clear())
    }
    fn usage(&self) -> BoxFuture<'_, Result<Usage>> {
        scanned!(self, self.inner.usage())
    }
    fn circuits(&self) -> Vec<CircuitStats> {
        vec![self.breaker.stats(&self.name)]
    }
    fn forget_cached_state(&self) {
        self.inner.forget_cached_state();
    }
    fn takeovers(&self) -> Option<u64> {
        self.inner.takeovers()
    }
    fn has_compare_and_set(&self) -> bool {
        self.inner.has_compare_and_set()
    }
    fn delete_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        guarded!(self, self.inner.delete_many(keys, marker, ttl))
    }
    fn sweep(&self, batch: usize) -> BoxFuture<'_, Result<u64>> {
        scanned!(self, self.inner.sweep(batch))
    }
    fn tombstone<'a>(
        &'a self,
        key: &'a str,
        marker: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        guarded!(self, self.inner.tombstone(key, marker, ttl))
    }
    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a Bytes>,
        new: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        guarded!(self, self.inner.compare_and_set(key, expected, new, ttl))
    }
    fn has_leases(&self) -> bool {
        self.inner.has_leases()
    }
    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        guarded!(self, self.inner.lease_acquire(key, token, ttl))
    }
    fn lease_renew<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        guarded!(self, self.inner.lease_renew(key, token, ttl))
    }
    fn lease_release<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<bool>> {
        guarded!(self, self.inner.lease_release(key, token))
    }
}

#[cfg(test)]
mod tests;
