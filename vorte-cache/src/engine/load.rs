//! Loads: the one single-flight cache-aside loop behind `get_or_set` and every `#[cached]` call.
//!
//! A caller checks only L1 before joining the key's flight: the leader then reads L2–L4 once for
//! all the waiters (so 10,000 concurrent misses do not become 10,000 reads of every layer), runs
//! the load, stores its value as a [fill](super::WriteKind::Fill) under the fence ticket it took
//! before the load began, and hands the value to the waiters. A waiter whose leader failed or was
//! cancelled goes round again, and may lead.
//!
//! What a slow or failing loader does to the caller (fail-safe, soft and hard timeouts) is in
//! `fallback.rs`; background refreshes of entries still fresh are in `refresh.rs`; the two
//! loaders (`get_or_set`'s, a `#[cached]` body) in `loaders.rs`; what the loader decided about
//! its value in `adapt.rs`; storing the value in `fill.rs`.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::fallback::{LoadOptions, Policy, Ran, stand_in_layers, wait_detached};
use super::lease::{LeaseGuard, LeaseOutcome};
use super::read::{ReadThrough, Stale};
use super::{Engine, Fill, SeenSlots};
use crate::codec::TagStamp;
use crate::error::{Error, ErrorKind};
use crate::flight::{Leader, Role};
use crate::layer::LayerSet;
use crate::load::Given;
use crate::stats::Counters;
use crate::store::BoxFuture;

/// What a load ran: the caller's answer, and what the cache keeps of it (with its TTL), if
/// anything.
pub(crate) struct LoadResult<O, S> {
    pub(crate) output: O,
    pub(crate) keep: Option<(S, Option<Duration>)>,
    /// What the loader decided about its entry (`crate::load`).
    pub(crate) adapted: crate::load::Adapted,
}

/// A load's result.
pub(crate) type Loaded<L> = std::result::Result<
    LoadResult<<L as Loader>::Output, <L as Loader>::Stored>,
    <L as Loader>::Error,
>;

/// A load that can outlive its caller, so that it can go on in the background.
pub(crate) type DetachedLoad<L> = BoxFuture<'static, Loaded<L>>;

/// The caller's answer when a hard timeout passes and no stale value stands in.
pub(crate) enum TimeoutAnswer<O, E> {
    /// An error (`get_or_set`).
    Error(fn(Error) -> E),
    /// An output made from the error (a `#[cached]` function returning `Result<_, E>` with
    /// `E: From<vorte_cache::Error>`).
    Output(fn(Error) -> O),
}

/// A load in the cache-aside loop: what runs on a miss, and how cache failures are treated.
pub(crate) trait Loader: Send + Sized {
    /// What the cache stores and the waiters receive.
    type Stored: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What the caller receives.
    type Output: Send + 'static;
    /// The caller's error type: [`Error`] for `get_or_set`, [`Infallible`](std::convert::Infallible) for `#[cached]`, which
    /// never fails because of the cache.
    type Error: Send + 'static;

    /// A cache failure (a type mismatch, a layer error, unavailable tag versions, a failed
    /// write) as the caller's error, or `None` to go on without the cache.
    fn cache_failure(e: Error) -> Option<Self::Error>;

    /// Runs the load, `given` the entry it replaces (`crate::load`).
    fn run(self, given: Given) -> impl Future<Output = Loaded<Self>> + Send;

    /// The load as a future that can outlive its caller, when it can (its loader is `'static`).
    fn detach(self, given: Given) -> std::result::Result<DetachedLoad<Self>, Self>;

    /// The caller's answer from a cached value.
    fn from_stored(stored: Self::Stored) -> Self::Output;

    /// Whether a result is a failure, for which a stale value may stand in.
    fn failed(result: &Loaded<Self>) -> bool;

    /// How a hard timeout without a stale value answers, if this load can answer one.
    fn timeout_answer(&self) -> Option<TimeoutAnswer<Self::Output, Self::Error>>;

    /// `fail_safe_max` set on the call itself, apart from its other options (see
    /// `GetOrSet::fail_safe`): `Some(ZERO)` turns fail-safe off for the call.
    fn fail_safe_max(&self) -> Option<Duration> {
        None
    }
}

/// Awaits `step`, adding the time it took to `spent` if it is measured.
async fn timed<F: Future>(spent: &mut Option<Duration>, step: F) -> F::Output {
    let Some(spent) = spent else {
        return step.await;
    };
    let began = Instant::now();
    let output = step.await;
    *spent += began.elapsed();
    output
}

/// A value handed to the waiters of a flight, and whether it is a stale stand-in.
struct Shared<T> {
    value: T,
    stale: bool,
}

fn share<T: Send + Sync + 'static>(value: T, stale: bool) -> Arc<dyn Any + Send + Sync> {
    Arc::new(Shared { value, stale })
}

/// A caller's answer and whether it is a stale stand-in (`docs/resilience.md#fail-safe`).
pub(crate) struct Served<O> {
    pub(crate) output: O,
    pub(crate) stale: bool,
}

impl<O> Served<O> {
    fn fresh(output: O) -> Self {
        Served {
            output,
            stale: false,
        }
    }
}

impl Engine {
    /// The cache-aside loop: see the module docs. The caller has validated `key`.
    pub(crate) async fn load<L: Loader>(
        self: &Arc<Self>,
        key: &str,
        tags: &[String],
        layers: LayerSet,
        options: &LoadOptions,
        loader: L,
    ) -> std::result::Result<Served<L::Output>, L::Error> {
        loop {
            if let Some(entry) = self.l1.as_ref().and_then(|l1| l1.get(key)) {
                // Recorded before the hit is read (a read that misses records again): no span
                // call may come between the value and its return, which would keep it on the
                // stack (`docs/performance.md#tracing-and-metrics-overhead`).
                #[cfg(feature = "tracing")]
                crate::observe::spans::answered(Some(crate::layer::Layer::L1));
                match self.l1_hit_now::<L::Stored>(key, &entry) {
                    Some(Ok(v)) => {
                        // The whole policy only when early refresh is on: a hit resolves two
                        // options, not nine (`docs/performance.md#fail-safe-cost`).
                        let (eager, beta) = self.early_refresh(options);
                        if (eager.is_some() || beta.is_some()) && entry.refresh_due(eager, beta) {
                            let policy = self.policy(options, loader.fail_safe_max());
                            // The refresh may revalidate the entry it replaces.
                            let given = || Given {
                                stale: Some(Arc::new(v.clone())),
                                validator: entry.validator.clone(),
                            };
                            self.refresh_early(key, tags, layers, &policy, loader, given);
                        }
                        return Ok(Served::fresh(L::from_stored(v)));
                    }
                    Some(Err(e)) => Self::fail::<L>(key, e)?,
                    None => {}
                }
            }
            match self.flights.join(key, tags) {
                Role::Leader(leader) => {
                    // Boxed: the leader's path (timeouts, a task, fail-safe) is large, and
                    // inline it would grow every call's future, the waiters' too.
                    let policy = self.policy(options, loader.fail_safe_max());
                    return Box::pin(self.lead(key, tags, layers, &policy, loader, leader)).await;
                }
                Role::Waiter(waiter) => {
                    use crate::flight::Waited;
                    match waiter.wait(key, self.config.load_wait_timeout).await {
                        Waited::Value(shared) => {
                            if let Some(v) = shared.downcast_ref::<Shared<L::Stored>>() {
                                return Ok(Served {
                                    output: L::from_stored(v.value.clone()),
                                    stale: v.stale,
                                });
                            }
                        }
                        Waited::Retry => {}
                        // The flight is detached: going round again leads a load (or joins the
                        // one that another caller who gave up leads).
                        Waited::GaveUp => {
                            Counters::bump(&self.counters.load_wait_timeouts);
                            tracing::warn!(
                                key,
                                load_wait_timeout = ?self.config.load_wait_timeout,
                                "a load of this key ran past load_wait_timeout; this caller stopped \
                                 waiting for it and loads the value itself"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The leader's part: read every layer once, then load, store and share.
    async fn lead<L: Loader>(
        self: &Arc<Self>,
        key: &str,
        tags: &[String],
        layers: LayerSet,
        policy: &Policy,
        loader: L,
        leader: Leader<'_>,
    ) -> std::result::Result<Served<L::Output>, L::Error> {
        // Every layer now, once for all the waiters: the value may be below L1, or a previous
        // leader may have stored it between our miss and our joining. What the layers hold now
        // is what the fill will expect to replace: a delete after this read leaves a new
        // tombstone, in any process, and refuses it.
        // The time spent reading the layers: the fill has what is left of the call's budget
        // (measured only when there is one: a clock read is a good part of a miss's cost).
        let mut spent = self.call_budget.map(|_| Duration::ZERO);
        let mut read = timed(&mut spent, self.read_for_load::<L>(key)).await?;
        let mut lease = None;
        if read.value.is_none()
            && policy.distributed_lock
            && let Some(leases) = &self.leases
        {
            // One process at a time loads the key (`docs/leases.md`). Held or landed, the
            // layers are read again: another process's value may have landed since our read.
            match leases.acquire(key, policy.lock_wait).await {
                LeaseOutcome::Held(guard) => {
                    lease = Some(guard);
                    read = timed(&mut spent, self.read_for_load::<L>(key)).await?;
                }
                LeaseOutcome::Landed => {
                    read = timed(&mut spent, self.read_for_load::<L>(key)).await?;
                }
                LeaseOutcome::Proceed => {}
            }
        }
        if let Some(v) = read.value {
            leader.finish(Some(share(v.clone(), false)));
            if let Some(guard) = lease {
                guard.release().await;
            }
            return Ok(Served::fresh(L::from_stored(v)));
        }
        // Taken before the load begins: an invalidation after this drops its value.
        let fill = Fill {
            ticket: self.fence.ticket(),
            seen: read.seen,
        };
        let stamps = match timed(&mut spent, self.stamps_for(tags)).await {
            Ok(stamps) => Some(stamps),
            Err(e) => {
                // The layer of the tag versions is down: skipped, like any failing layer. The
                // load runs; its value, unstampable, is not cached.
                tracing::warn!(key, error = %e, "tag versions unavailable; the value is not cached");
                None
            }
        };
        // Before the load: a tag invalidation after this refuses tags the loader adds.
        let tag_epoch = self.tags.epoch();
        // The loader sees the entry it replaces (conditional refresh); it stands in for a failed
        // or slow load only with fail-safe on (an entry with a validator is kept stale without).
        let given = read
            .stale
            .as_deref()
            .map_or_else(Given::default, |stale| Given {
                stale: Some(Arc::new(stale.value.clone())),
                validator: stale.validator.clone(),
            });
        let stand_in = read.stale.filter(|_| policy.fail_safe_max.is_some());
        let ran = self
            .run_loader(
                key, layers, policy, loader, given, &stamps, &fill, stand_in, &mut lease,
            )
            .await;
        let (result, load_ms, stored, stale) = match ran {
            Ran::Done {
                result,
                load_ms,
                stored,
                stale,
            } => (result, load_ms, stored, stale),
            Ran::StandIn {
                soft,
                background,
                stale,
            } => {
                Counters::bump(if soft {
                    &self.counters.loads.soft_timeouts
                } else {
                    &self.counters.loads.hard_timeouts
                });
                self.served_stale(key, if soft { "soft timeout" } else { "hard timeout" });
                if let Some(stamps) = stamps {
                    // A load still running in the background fills the layers below itself,
                    // expecting what it saw there: only L1 takes the stand-in then.
                    let layers = stand_in_layers(layers, background);
                    self.recache_stale(key, &stale, stamps, fill, policy.throttle, layers)
                        .await;
                }
                return Ok(self.finish_stale::<L>(leader, &stale));
            }
            Ran::TimedOut(answer) => {
                Counters::bump(&self.counters.loads.hard_timeouts);
                Counters::bump(&self.counters.loads.failures);
                leader.finish(None);
                let after = policy.hard_timeout.unwrap_or_default();
                let e = Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "key `{key}`: the loader did not finish within {after:?} (hard_timeout)"
                    ),
                );
                return match answer {
                    TimeoutAnswer::Error(f) => Err(f(e)),
                    TimeoutAnswer::Output(f) => Ok(Served::fresh(f(e))),
                };
            }
        };
        let failed = L::failed(&result);
        if failed {
            Counters::bump(&self.counters.loads.failures);
            if let Some(stale) = &stale {
                // The loader failed: the stale value stands in, cached again for a while.
                self.served_stale(key, "the loader failed");
                if let Some(stamps) = stamps {
                    self.recache_stale(key, stale, stamps, fill, policy.throttle, layers)
                        .await;
                }
                return Ok(self.finish_stale::<L>(leader, stale));
            }
        }
        let LoadResult {
            output,
            keep,
            adapted,
        } = result?;
        let shared = match (keep, stamps) {
            // Skipped: the waiters have the value too, and nothing is written.
            (Some((stored_value, _)), _) if stored || adapted.skip => {
                Some(share(stored_value, false))
            }
            (Some((stored_value, ttl)), Some(stamps)) => {
                // `None`: the loader's decisions keep nothing; the waiters still get the value.
                if let Some(adaptation) = self
                    .adapt(key, &adapted, ttl, layers, stamps, tag_epoch)
                    .await
                {
                    // Boxed: the write path's future is several kilobytes, and inline it would
                    // make every call's future that large.
                    let filled = adaptation.into_job(fill, policy.aging(load_ms));
                    let stored_ok = self
                        .fill_within(
                            key,
                            &stored_value,
                            filled,
                            spent.unwrap_or_default(),
                            &mut lease,
                        )
                        .await;
                    if let Err(e) = stored_ok {
                        Self::fail::<L>(key, e)?;
                    }
                }
                Some(share(stored_value, false))
            }
            _ => None,
        };
        // The value is in the shared layers: the waiting processes may read it.
        if let Some(guard) = lease {
            guard.release().await;
        }
        leader.finish(shared);
        Ok(Served::fresh(output))
    }

    /// A leader's read of every layer, with the stale entry if one is kept (for fail-safe, or for
    /// the loader to revalidate); a failure is the caller's error or an empty read.
    async fn read_for_load<L: Loader>(
        &self,
        key: &str,
    ) -> std::result::Result<ReadThrough<L::Stored>, L::Error> {
        match self.read_through_seeing::<L::Stored>(key, true).await {
            Ok(read) => Ok(read),
            Err(e) => {
                Self::fail::<L>(key, e)?;
                Ok(ReadThrough {
                    value: None,
                    seen: SeenSlots::default(),
                    stale: None,
                })
            }
        }
    }

    /// Ends the flight with a stale stand-in and answers with it.
    fn finish_stale<L: Loader>(
        &self,
        leader: Leader<'_>,
        stale: &Stale<L::Stored>,
    ) -> Served<L::Output> {
        leader.finish(Some(share(stale.value.clone(), true)));
        Served {
            output: L::from_stored(stale.value.clone()),
            stale: true,
        }
    }

    /// Runs the loader under the policy's timeouts. A load that can outlive its caller runs in a
    /// task of its own when a timeout may cut the wait short, and stores its value from there
    /// when it finishes, whenever that is; otherwise it runs here, and a hard timeout cancels it.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    async fn run_loader<L: Loader>(
        self: &Arc<Self>,
        key: &str,
        layers: LayerSet,
        policy: &Policy,
        loader: L,
        given: Given,
        stamps: &Option<Box<[TagStamp]>>,
        fill: &Fill,
        stale: Option<Box<Stale<L::Stored>>>,
        lease: &mut Option<LeaseGuard>,
    ) -> Ran<Loaded<L>, TimeoutAnswer<L::Output, L::Error>, Box<Stale<L::Stored>>> {
        Counters::bump(&self.counters.loads.runs);
        let tag_epoch = self.tags.epoch();
        let answer = loader.timeout_answer();
        let soft = policy.soft_timeout.filter(|_| stale.is_some());
        let hard = policy
            .hard_timeout
            .filter(|_| stale.is_some() || answer.is_some());
        let started = Instant::now();
        #[cfg(feature = "tracing")]
        crate::observe::spans::loaded();
        // Without a timeout the load runs here: nothing could let it go on without its caller.
        let detached = if soft.is_none() && hard.is_none() {
            Err(loader)
        } else {
            loader.detach(given.clone())
        };
        let loader = match detached {
            Err(loader) => loader,
            Ok(detached) => {
                let engine = Arc::clone(self);
                let key = key.to_owned();
                let stamps = stamps.clone();
                let fill = fill.clone();
                let policy = *policy;
                // The lease goes with the load: it ends once the value is stored.
                let lease = lease.take();
                let task = tokio::spawn(async move {
                    let result = detached.await;
                    let load_ms = engine.load_ended(started, !L::failed(&result));
                    // A copy, so that no borrow of the result lives across the await.
                    let kept = match &result {
                        Ok(LoadResult {
                            keep: Some((stored, ttl)),
                            adapted,
                            ..
                        }) if !L::failed(&result) => Some((stored.clone(), *ttl, adapted.clone())),
                        _ => None,
                    };
                    if let (Some((stored, ttl, adapted)), Some(stamps)) = (kept, stamps)
                        && let Some(to) = engine
                            .adapt(&key, &adapted, ttl, layers, stamps, tag_epoch)
                            .await
                    {
                        let job = to.into_job(fill, policy.aging(load_ms));
                        if let Err(e) = engine.store_loaded(&key, &stored, job).await {
                            tracing::debug!(key, error = %e, "a background load's value was not stored");
                        }
                    }
                    if let Some(guard) = lease {
                        guard.release().await;
                    }
                    (result, load_ms)
                });
                return wait_detached(task, &policy, stale, answer).await;
            }
        };
        // Runs here: a soft timeout cannot let it go on, so only the hard one applies, if any.
        let run = loader.run(given);
        let outcome = match hard {
            Some(hard) => tokio::time::timeout(hard, run).await.ok(),
            None => Some(run.await),
        };
        let load_ms = self.load_ended(started, outcome.as_ref().is_some_and(|r| !L::failed(r)));
        match (outcome, stale, answer) {
            (Some(result), stale, _) => Ran::Done {
                result,
                load_ms,
                stored: false,
                stale,
            },
            (None, Some(stale), _) => Ran::StandIn {
                soft: false,
                background: false,
                stale,
            },
            (None, None, Some(answer)) => Ran::TimedOut(answer),
            // `hard` is set only with a stale value or an answer.
            (None, None, None) => std::future::pending().await,
        }
    }

    /// A load ended, `ok` or not: its duration is recorded (`LoadStats::time`, the load
    /// histogram), and its milliseconds returned for its entry's aging. The one place a load's
    /// duration is recorded.
    pub(super) fn load_ended(&self, started: Instant, ok: bool) -> u32 {
        let elapsed = started.elapsed();
        self.instruments.load(elapsed, ok);
        load_ms(elapsed)
    }

    /// A cache failure inside a load: the caller's error, or logged and passed over.
    pub(super) fn fail<L: Loader>(key: &str, e: Error) -> std::result::Result<(), L::Error> {
        match L::cache_failure(e.clone()) {
            Some(failure) => Err(failure),
            None => {
                tracing::warn!(key, error = %e, "cache unavailable for this call; the function runs uncached");
                Ok(())
            }
        }
    }
}

/// A load's duration as its entry's aging keeps it (`Aging::load_ms`).
pub(super) fn load_ms(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX)
}
