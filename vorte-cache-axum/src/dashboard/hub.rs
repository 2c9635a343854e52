//! The one producer of snapshots behind a dashboard's routes: a task that reads the counters once
//! a second for every open page at once, and a task that asks the stores what they hold every
//! [`USAGE_EVERY`]. Both run only while a page is connected.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use vorte_cache::{Cache, CacheUsage};

use super::snapshot::Snapshot;
use crate::health::TroubleWatch;

/// How often a snapshot is sent.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// How often `Cache::usage` runs: it lists and reads every store, too costly for every tick.
pub(crate) const USAGE_EVERY: Duration = Duration::from_secs(5);

/// The latest snapshot as JSON (`None` before the first), shared with every connected page.
pub(crate) type Latest = Option<Arc<str>>;

pub(crate) struct Hub {
    cache: Cache,
    sender: watch::Sender<Latest>,
    /// Whether the ticker runs. Locked while a page subscribes and while the ticker decides to
    /// stop, so that a page never subscribes to a ticker that is ending.
    running: Mutex<bool>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Hub {
    pub(crate) fn new(cache: Cache) -> Arc<Hub> {
        Arc::new(Hub {
            cache,
            sender: watch::Sender::new(None),
            running: Mutex::new(false),
        })
    }

    /// A receiver of the snapshots, starting the ticker if no page was connected. Must be called
    /// inside a Tokio runtime (a request handler is).
    pub(crate) fn subscribe(self: &Arc<Hub>) -> watch::Receiver<Latest> {
        // A poisoned lock only means a panic elsewhere while holding it: the flag is still valid.
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut receiver = self.sender.subscribe();
        // The page gets the latest snapshot at once, not a second later.
        receiver.mark_changed();
        if !*running {
            *running = true;
            tokio::spawn(self.clone().tick());
        }
        receiver
    }

    /// Sends a snapshot every [`TICK`] while a page is connected.
    async fn tick(self: Arc<Hub>) {
        let usage: Arc<Mutex<Option<(CacheUsage, u64)>>> = Arc::default();
        let usage_task = AbortOnDrop(
            tokio::spawn(refresh_usage(self.cache.clone(), usage.clone())).abort_handle(),
        );
        let mut trouble = TroubleWatch::default();
        let mut before = None;
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if self.sender.receiver_count() == 0 {
                    *running = false;
                    break;
                }
            }
            let at_ms = now_ms();
            let stats = self.cache.stats();
            let health = trouble.assess(&stats, Instant::now());
            let held = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let snapshot = Snapshot::compute(
                at_ms,
                &stats,
                before.as_ref().map(|(s, at)| (s, *at)),
                held.as_ref(),
                self.cache.recent_activity(),
                health,
            );
            match serde_json::to_string(&snapshot) {
                Ok(json) => {
                    self.sender.send_replace(Some(json.into()));
                }
                // Not expected (every field serializes); a page keeps the last one it had.
                Err(e) => {
                    tracing::warn!(error = %e, "vorte-cache dashboard: a snapshot did not serialize")
                }
            }
            before = Some((stats, at_ms));
        }
        drop(usage_task);
    }
}

/// Aborts the usage task when the ticker ends, however it ends.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `Cache::usage` every [`USAGE_EVERY`], one at a time: a slow scan delays the next one
/// instead of piling up.
async fn refresh_usage(cache: Cache, into: Arc<Mutex<Option<(CacheUsage, u64)>>>) {
    loop {
        match cache.usage().await {
            Ok(usage) => {
                *into.lock().unwrap_or_else(|p| p.into_inner()) = Some((usage, now_ms()));
            }
            Err(e) => tracing::warn!(error = %e, "vorte-cache dashboard: usage scan failed"),
        }
        tokio::time::sleep(USAGE_EVERY).await;
    }
}
