//! This process's own cache, as the live views use it: built with every key recorded and an
//! observer that hands on store calls (for the probes) and bus activity (for `tail`), and read into
//! a [`SourceView`] with its usage and a probe of each layer.
//!
//! A CLI process has a cache of its own, whose hit counters say nothing of the services': what it
//! can tell is what the servers hold, whether and how fast each layer answers, and what crosses
//! the bus (`docs/cli.md#stats`).

use std::sync::Arc;

use tokio::sync::mpsc;
use vorte_cache::config::KeyRecording;
use vorte_cache::observe::{Activity, Observe, StoreCall};
use vorte_cache::{Cache, CacheConfig, CacheUsage, Layer};

use super::view::{SourceView, StatsJson};
use crate::context::{GlobalArgs, load_config};
use crate::exit::CliResult;
use crate::probe::{self, ProbeCalls, ProbeView};

/// What this process's cache is called in the views.
pub(crate) const THIS_PROCESS: &str = "this process";

/// The observer the live views attach to their cache.
#[derive(Debug)]
pub(crate) struct LiveObserver {
    /// The store calls made while a probe is armed.
    probing: ProbeCalls,
    /// Where bus activity goes, for `tail`.
    activity: Option<mpsc::UnboundedSender<Activity>>,
}

impl Observe for LiveObserver {
    fn store_call(&self, call: &StoreCall) {
        self.probing.record(call);
    }

    fn activity(&self, activity: &Activity) {
        if let Some(tx) = &self.activity {
            // Closed only once `tail` stops reading: nothing left to tell.
            let _ = tx.send(activity.clone());
        }
    }
}

/// This process's cache and what observes it.
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) cache: Cache,
    observer: Arc<LiveObserver>,
}

impl Local {
    /// Builds the cache of `config` with keys recorded as they are (a terminal is the operator's:
    /// `tail` must show which key moved), and, when `follow` is given, every bus activity sent
    /// there.
    pub(crate) async fn open(
        config: &CacheConfig,
        follow: Option<mpsc::UnboundedSender<Activity>>,
    ) -> vorte_cache::Result<Local> {
        let mut config = config.clone();
        config.observe.record_keys = KeyRecording::Plain;
        let observer = Arc::new(LiveObserver {
            probing: ProbeCalls::default(),
            activity: follow,
        });
        let cache = Cache::builder(&config)
            .observe(observer.clone())
            .build()
            .await?;
        Ok(Local { cache, observer })
    }

    /// This process's cache for `stats` and `top`; none with `--url` (`urls`) and no configuration
    /// given at all ([`GlobalArgs::config_given`]): the user wants the services alone
    /// (`docs/cli.md#stats`).
    ///
    /// # Errors
    ///
    /// Those of [`load_config`] (exit 3) and the library's when the cache cannot be built.
    pub(crate) async fn open_unless_services_alone(
        global: &GlobalArgs,
        urls: &[String],
    ) -> CliResult<Option<Local>> {
        if !urls.is_empty() && !global.config_given() {
            return Ok(None);
        }
        let config = load_config(global)?;
        Ok(Some(Local::open(&config.cache, None).await?))
    }

    /// Probes each layer below L1 (`crate::probe`), timed by its own store call, then reads this
    /// process's view with `usage` (when one was scanned) and the probes ([`Local::view`]).
    pub(crate) async fn snapshot(&self, usage: Option<&CacheUsage>) -> SourceView {
        // The answer is a miss, or an error when every layer fails: the layers say which.
        let probes = probe::probe(&self.cache, Some(&self.observer.probing))
            .await
            .layers;
        self.view(usage, &probes)
    }

    /// This process's view: its stats (its own counters: the probes' calls and latencies, the
    /// bus), `usage` when one was scanned, and `probes`.
    fn view(&self, usage: Option<&CacheUsage>, probes: &[(Layer, ProbeView)]) -> SourceView {
        let stats =
            serde_json::to_value(self.cache.stats()).and_then(serde_json::from_value::<StatsJson>);
        let mut view = match stats {
            Ok(stats) => SourceView::from_stats(THIS_PROCESS, stats),
            Err(e) => return SourceView::failed(THIS_PROCESS, e.to_string()),
        };
        for layer in &mut view.layers {
            let which = Layer::ALL.into_iter().find(|l| l.name() == layer.layer);
            if let Some(held) = usage.zip(which).and_then(|(u, l)| u.layer(l)) {
                layer.keys = Some(held.keys);
                layer.bytes = Some(held.bytes);
            }
            layer.probe = probes
                .iter()
                .find(|(l, _)| Some(*l) == which)
                .map(|(_, p)| p.clone());
        }
        view
    }
}
