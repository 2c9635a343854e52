//! What a load does when its loader is slow or fails: the per-call policy, the timeouts, and the
//! stale value that stands in (`docs/resilience.md#fail-safe`, `docs/resilience.md#loader-timeouts`).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::read::Stale;
use super::{Aging, Engine, Expiry, Fill, Write};
use crate::clock::now_ms;
use crate::codec::{Lifetime, TagStamp};
use crate::layer::{Layer, LayerSet};
use crate::stats::Counters;

/// One call's resilience options, as the caller or the `#[cached]` attribute gave them; each
/// `None` takes the config's `[cache.loads]` value. A zero duration turns its option off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LoadOptions {
    pub(crate) fail_safe_max: Option<Duration>,
    pub(crate) fail_safe_throttle: Option<Duration>,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    pub(crate) eager_refresh: Option<f64>,
    pub(crate) xfetch_beta: Option<f64>,
    pub(crate) ttl_jitter: Option<f64>,
    pub(crate) distributed_lock: Option<bool>,
}

impl LoadOptions {
    /// Every option from the config.
    pub(crate) const NONE: LoadOptions = LoadOptions {
        fail_safe_max: None,
        fail_safe_throttle: None,
        soft_timeout: None,
        hard_timeout: None,
        eager_refresh: None,
        xfetch_beta: None,
        ttl_jitter: None,
        distributed_lock: None,
    };

    /// A `#[cached]` function's options, as its attribute gave them.
    pub(crate) fn of(loads: &crate::cached::CachedLoads) -> LoadOptions {
        LoadOptions {
            fail_safe_max: loads.fail_safe,
            fail_safe_throttle: loads.fail_safe_throttle,
            soft_timeout: loads.soft_timeout,
            hard_timeout: loads.hard_timeout,
            eager_refresh: loads.early_refresh,
            xfetch_beta: loads.xfetch,
            ttl_jitter: None,
            distributed_lock: loads.distributed_lock,
        }
    }
}

/// [`LoadOptions`] resolved against the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) fail_safe_max: Option<Duration>,
    pub(crate) throttle: Duration,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    pub(crate) ttl_jitter: Option<f64>,
    pub(crate) distributed_lock: bool,
    pub(crate) lock_wait: Duration,
}

fn nonzero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

impl Policy {
    /// How a loaded value's TTL becomes its lifetime.
    pub(crate) fn aging(&self, load_ms: u32) -> Aging {
        Aging {
            stale_for: Some(self.fail_safe_max.unwrap_or(Duration::ZERO)),
            jitter: self.ttl_jitter,
            load_ms,
        }
    }
}

/// How a load ended for its caller.
pub(crate) enum Ran<R, A, S> {
    /// The loader finished (well or not) after `load_ms`; `stored` when a background task
    /// stored its value already. The stale value, if any, comes back for a failed result.
    Done {
        result: R,
        load_ms: u32,
        stored: bool,
        stale: Option<S>,
    },
    /// A timeout passed and the stale value stands in (`soft`: the soft timeout); `background`
    /// when the load goes on in a task of its own.
    StandIn {
        soft: bool,
        background: bool,
        stale: S,
    },
    /// The hard timeout passed with no stale value: the caller gets this answer.
    TimedOut(A),
}

impl Engine {
    /// The policy of one call; `fail_safe_max` is the one set on the call beside its options
    /// ([`Loader::fail_safe_max`](super::load::Loader::fail_safe_max)), which wins.
    pub(crate) fn policy(&self, options: &LoadOptions, fail_safe_max: Option<Duration>) -> Policy {
        let loads = &self.config.loads;
        Policy {
            fail_safe_max: nonzero(
                fail_safe_max
                    .or(options.fail_safe_max)
                    .or(loads.fail_safe_max),
            ),
            throttle: options
                .fail_safe_throttle
                .filter(|d| !d.is_zero())
                .unwrap_or(loads.fail_safe_throttle),
            soft_timeout: nonzero(options.soft_timeout.or(loads.soft_timeout)),
            hard_timeout: nonzero(options.hard_timeout.or(loads.hard_timeout)),
            ttl_jitter: options.ttl_jitter,
            distributed_lock: options.distributed_lock.unwrap_or(loads.distributed_lock),
            lock_wait: loads.distributed_lock_wait,
        }
    }

    /// How a value a `#[cached]` function's body began producing at `began` ages: by the
    /// function's fail-safe window and jitter, as its loads' fills are (a refresh, which is not
    /// counted as a load).
    pub(crate) fn aging_of(&self, loads: &crate::cached::CachedLoads, began: Instant) -> Aging {
        self.policy(&LoadOptions::of(loads), None)
            .aging(super::load::load_ms(began.elapsed()))
    }

    /// The early-refresh options of a call: the eager fraction and XFetch's β, each `None` when
    /// off. Resolved apart from the rest of the policy, since every hit asks for them.
    #[inline]
    pub(crate) fn early_refresh(&self, options: &LoadOptions) -> (Option<f64>, Option<f64>) {
        let loads = &self.config.loads;
        (
            options
                .eager_refresh
                .or(loads.eager_refresh)
                .filter(|f| *f > 0.0 && *f < 1.0),
            options
                .xfetch_beta
                .or(loads.xfetch_beta)
                .filter(|b| *b > 0.0),
        )
    }

    /// Caches a stale value as fresh for the policy's throttle, so the failing source is asked
    /// again at most once per period (`docs/resilience.md#fail-safe`). A fill under the load's
    /// ticket: an invalidation since the load began drops it. Only L1 while a load that goes on
    /// in the background will still fill the layers below, expecting what it saw there
    /// ([`stand_in_layers`]).
    pub(crate) async fn recache_stale<T>(
        &self,
        key: &str,
        stale: &Stale<T>,
        stamps: Box<[TagStamp]>,
        fill: Fill,
        throttle: Duration,
        layers: LayerSet,
    ) where
        T: Clone + Send + Sync + 'static,
    {
        let fresh_until_ms = now_ms().saturating_add(throttle.as_millis() as u64);
        let life = Lifetime {
            fresh_until_ms,
            expires_at_ms: stale.life.expires_at_ms.max(fresh_until_ms),
            load_ms: stale.life.load_ms,
        };
        // An old value, like a back-fill: it may not replace a tombstone it saw, which may be
        // a delete's on its way down (`docs/consistency.md#a-back-fill-never-replaces-a-tombstone`).
        let fill = Fill {
            ticket: fill.ticket,
            seen: fill.seen.without_tombstones(),
        };
        // The validator stays with the value: a later load may still revalidate it.
        let write =
            Write::fill(fill, Expiry::At(life), layers, stamps).validated(stale.validator.clone());
        let payload: Bytes = stale.payload.clone();
        if let Err(e) = self
            .write(
                key,
                payload,
                stale.serialization,
                write,
                Some(Box::new(stale.value.clone())),
            )
            .await
        {
            tracing::debug!(key, error = %e, "stale value not cached again");
        }
    }

    /// Counts a stale value served in place of a failed or slow load, and says so.
    pub(crate) fn served_stale(&self, key: &str, why: &'static str) {
        Counters::bump(&self.counters.loads.fail_safe_serves);
        tracing::warn!(key, why, "fail-safe: the stale value is served");
    }
}

/// The layers a stale stand-in is cached again in: only L1 while the load goes on in the
/// background (it fills the layers below itself, expecting what it saw there).
pub(crate) fn stand_in_layers(layers: LayerSet, background: bool) -> LayerSet {
    if background {
        LayerSet::of(&[Layer::L1])
    } else {
        layers
    }
}

/// Waits for a load running in a task of its own: its outcome, or which timeout passed first.
/// The soft timeout counts only when there is a stale value to serve; the hard one only when
/// there is a stale value or an `answer` for the caller.
pub(crate) async fn wait_detached<R: Send + 'static, A, S>(
    mut task: tokio::task::JoinHandle<(R, u32)>,
    policy: &Policy,
    stale: Option<S>,
    answer: Option<A>,
) -> Ran<R, A, S> {
    let started = Instant::now();
    let stand_in = |soft, stale| Ran::StandIn {
        soft,
        background: true,
        stale,
    };
    let joined = match (policy.soft_timeout, stale) {
        (Some(soft), Some(stale)) => match tokio::time::timeout(soft, &mut task).await {
            Ok(joined) => return joined_or_lost(joined, Some(stale), answer).await,
            Err(_) => return stand_in(true, stale),
        },
        (_, stale) => match policy.hard_timeout {
            Some(hard) if stale.is_some() || answer.is_some() => {
                let left = hard.saturating_sub(started.elapsed());
                match (tokio::time::timeout(left, &mut task).await, stale) {
                    (Ok(joined), stale) => return joined_or_lost(joined, stale, answer).await,
                    (Err(_), Some(stale)) => return stand_in(false, stale),
                    (Err(_), None) => match answer {
                        Some(answer) => return Ran::TimedOut(answer),
                        None => (task.await, None),
                    },
                }
            }
            _ => (task.await, stale),
        },
    };
    joined_or_lost(joined.0, joined.1, answer).await
}

/// The outcome of a finished load task. A task that panicked panics its caller, as the load
/// would have run in the caller; one cancelled (only when the runtime shuts down) ends like a
/// timeout.
async fn joined_or_lost<R, A, S>(
    joined: Result<(R, u32), tokio::task::JoinError>,
    stale: Option<S>,
    answer: Option<A>,
) -> Ran<R, A, S> {
    match joined {
        Ok((result, load_ms)) => Ran::Done {
            result,
            load_ms,
            stored: true,
            stale,
        },
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => match (stale, answer) {
            (Some(stale), _) => Ran::StandIn {
                soft: false,
                background: false,
                stale,
            },
            (None, Some(answer)) => Ran::TimedOut(answer),
            // Only a load with a stale value or an answer runs in a task (`run_loader`), and
            // the runtime that cancelled it is shutting down this caller too.
            (None, None) => std::future::pending().await,
        },
    }
}
