//! The cache a command works on, opened from the global options (`docs/cli.md#configuration`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vorte_cache::{BusStats, Cache, Config, Layer, Vorte};

use crate::config_file::{self, describe_layer};
use crate::exit::{CliError, CliResult, Exit};
use crate::output::Output;
use crate::probe;

/// The options every subcommand but `simulate` takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GlobalArgs {
    /// The cache's configuration: TOML, JSON or YAML by extension (`.toml`, `.json`, `.yaml`/`.yml`).
    /// Without it, the embedded default (L1 only) with the `VORTE__…` overrides of the environment.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "VORTE_CACHE_CONFIG",
        value_name = "FILE"
    )]
    pub(crate) config: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text (and errors as JSON on stderr).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// What a command works with: the opened cache (its configuration, overrides applied, is
/// [`Cache::config`]) and the output mode.
#[derive(Debug)]
pub(crate) struct Context {
    /// The cache, also installed as the process's global one (so `emit` publishes on its bus).
    pub(crate) cache: Cache,
    /// Text or JSON.
    pub(crate) out: Output,
}

/// Loads the configuration of the global options, overrides applied, and checks that it names a
/// layer below L1.
///
/// # Errors
///
/// Exit 3 for a configuration that cannot be read or is invalid, or that names no layer another
/// process could share (L1 alone: this process's L1 starts empty, so there would be nothing to
/// inspect or operate on).
pub(crate) fn load_config(global: &GlobalArgs) -> CliResult<Config> {
    let config = config_file::load(global.config.as_deref())?;
    let layers = &config.cache.layers;
    if layers.l2.is_none() && layers.l3.is_none() && layers.l4.is_none() {
        return Err(CliError::new(
            Exit::Config,
            "the configuration has no layer below L1 (cache.layers.l2, l3 or l4): a new \
             process's L1 is empty, so there is nothing to inspect; pass --config FILE or set \
             VORTE_CACHE_CONFIG",
        ));
    }
    Ok(config)
}

impl GlobalArgs {
    /// Whether the user gave a configuration at all: `--config` (or `VORTE_CACHE_CONFIG`), or a
    /// `VORTE__…` override. Without one, `stats` and `top` with `--url` show the services alone
    /// (`docs/cli.md#stats`).
    pub(crate) fn config_given(&self) -> bool {
        self.config.is_some()
            || std::env::vars_os().any(|(name, _)| {
                name.to_str()
                    .is_some_and(|name| name.starts_with(ENV_OVERRIDE_PREFIX))
            })
    }

    /// Text or JSON, as `--json` says.
    pub(crate) fn output(&self) -> Output {
        Output { json: self.json }
    }
}

impl Context {
    /// Loads the configuration ([`load_config`]) and opens the cache.
    ///
    /// # Errors
    ///
    /// Those of [`load_config`], and the library's when the cache cannot be built.
    pub(crate) async fn open(global: &GlobalArgs) -> CliResult<Context> {
        let config = load_config(global)?;
        // No `auto_load`: the command runs no `#[on_event]` handler of its own; it only
        // publishes on the bus for the application processes.
        let app = Vorte::builder().config(config).build().await?;
        Ok(Context {
            cache: app.cache().clone(),
            out: global.output(),
        })
    }

    /// Asks every layer below L1 once (a read of a key nobody writes) and fails with exit 4
    /// naming the layers that did not answer.
    ///
    /// The library skips a failing layer rather than failing a read (so that an application keeps
    /// serving from the others); a command must not report "not found" when in truth a server is
    /// down, so it checks first. Bounded by each layer's `timeout_ms` (the read) and, for Redis,
    /// the 2 s the library waits for the first connection when the cache is opened.
    pub(crate) async fn check_reachable(&self) -> CliResult {
        let probe = probe::probe(&self.cache, None).await;
        let failed: Vec<String> = probe.unreachable().map(|l| self.describe(l)).collect();
        probe.read?;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(CliError::new(
                Exit::Unreachable,
                format!("server unreachable: {}", failed.join("; ")),
            ))
        }
    }

    /// The bus's counters before a command changes anything: see [`Context::settle_bus`].
    pub(crate) fn bus_mark(&self) -> Option<BusStats> {
        self.cache.bus_stats()
    }

    /// Waits until the bus has taken the `messages` messages published since `mark` (one per
    /// `delete`, per tag, per `flush`, per event), for at most [`BUS_SETTLE`]. Without a bus there
    /// is nothing to wait for.
    ///
    /// # Errors
    ///
    /// Exit 4 when the bus has not taken them by then: the change is made in the layers, but
    /// other processes have not been told (they keep their L1 copies up to their L1 `ttl`).
    pub(crate) async fn settle_bus(&self, mark: Option<BusStats>, messages: usize) -> CliResult {
        let Some(mark) = mark else { return Ok(()) };
        let wanted = mark.published + messages as u64;
        let deadline = Instant::now() + BUS_SETTLE;
        loop {
            let now = self.cache.bus_stats().map_or(0, |s| s.published);
            if now >= wanted {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CliError::new(
                    Exit::Unreachable,
                    format!(
                        "the bus ({}) did not take {} of {messages} messages within \
                         {BUS_SETTLE:?}: the change is made in this cache's layers, but other \
                         processes were not told and keep their L1 copies up to their L1 ttl",
                        self.describe_bus(),
                        wanted - now
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where the bus is: `[cache.bus]`'s URL (credentials hidden), else the Redis layer it
    /// rides on.
    pub(crate) fn describe_bus(&self) -> String {
        if let Some(bus) = &self.cache.config().bus {
            return format!("redis at {}", bus.url);
        }
        let layers = &self.cache.config().layers;
        let redis = |l: &Option<vorte_cache::config::LayerConfig>| {
            l.as_ref().is_some_and(|l| {
                matches!(
                    l.kind(),
                    vorte_cache::config::Backend::Redis
                        | vorte_cache::config::Backend::RedisCluster
                )
            })
        };
        if redis(&layers.l2) {
            format!("on {}", self.describe(Layer::L2))
        } else if redis(&layers.l3) {
            format!("on {}", self.describe(Layer::L3))
        } else {
            "none".to_owned()
        }
    }

    /// Every enabled layer, described (`l1`, `l2 (redis at …)`, …).
    pub(crate) fn layers_described(&self) -> Vec<String> {
        let layers = &self.cache.config().layers;
        let enabled = [
            layers.l1.enabled,
            layers.l2.is_some(),
            layers.l3.is_some(),
            layers.l4.is_some(),
        ];
        Layer::ALL
            .into_iter()
            .zip(enabled)
            .filter(|(_, on)| *on)
            .map(|(layer, _)| self.describe(layer))
            .collect()
    }

    /// `l2 (redis at redis://***@host:6379)`: a layer and where its server is, credentials hidden.
    pub(crate) fn describe(&self, layer: Layer) -> String {
        let layers = &self.cache.config().layers;
        let config = match layer {
            Layer::L1 => None,
            Layer::L2 => layers.l2.as_ref(),
            Layer::L3 => layers.l3.as_ref(),
            Layer::L4 => layers.l4.as_ref(),
        };
        match config {
            Some(config) => format!("{layer} ({})", describe_layer(config)),
            None => layer.to_string(),
        }
    }
}

/// How long a command waits, at its end, for the bus to take its messages.
///
/// The library's publisher answers `Ok` once a message is its to deliver: appended, or queued for
/// a retry in the background. A command's process exits right after, which would drop the queue,
/// so the command waits for the appends and says so when the bus did not take them.
const BUS_SETTLE: Duration = Duration::from_secs(3);

/// What the names of the library's environment overrides start with (`Config::with_env_overrides`).
const ENV_OVERRIDE_PREFIX: &str = "VORTE__";
