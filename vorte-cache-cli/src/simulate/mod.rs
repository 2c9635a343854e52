//! `vorte-cache simulate`: replays a trace through L1's own policy and reference policies, for
//! lists of L1 sizes and TTLs, with LRU layers below when asked, and reports what each achieves
//! (`docs/simulate.md`).

mod clock;
mod error;
mod plot;
mod policy;
mod replay;
mod report;
mod spec;
mod trace;
mod zipf;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use clock::Clock;
use error::SimulateError;
use policy::{NextUse, PolicyKind};
use replay::{Layers, Scenario, Shared};
use report::{Row, TraceSummary};
use spec::{Latencies, SizeSpec, Ttl};
use trace::TraceFormat;

/// `vorte-cache simulate TRACE [--policy ...] [--sizes ...] [--ttls ...]`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// The trace: ARC `.lis`, one key per line, or CSV `timestamp,key,size`, each plain or
    /// zstd-compressed. Omit it with `--zipf`.
    #[arg(required_unless_present = "zipf")]
    trace: Option<PathBuf>,
    /// The trace's format, when its name does not say it (`.lis` ARC, `.csv` CSV, else keys).
    #[arg(long, value_enum)]
    format: Option<TraceFormat>,
    /// Policies to replay, comma-separated: lru, vorte, quick_cache, moka, belady.
    #[arg(
        long = "policy",
        value_enum,
        value_delimiter = ',',
        default_value = "lru,vorte"
    )]
    policies: Vec<PolicyKind>,
    /// L1 sizes, comma-separated: entries (`1000`) or a share of the unique keys (`1%`).
    #[arg(long, value_delimiter = ',', default_value = "0.1%,1%,10%")]
    sizes: Vec<SizeSpec>,
    /// TTLs, comma-separated (`60s`, `5m`, `none`). An expired entry counts a miss.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    ttls: Vec<Ttl>,
    /// Requests a second, for the time of a request when the trace has no timestamps.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Size of an LRU L2 fed by L1's misses (entries or % of unique keys).
    #[arg(long)]
    l2_size: Option<SizeSpec>,
    /// Size of an LRU L3 fed by L2's misses (needs --l2-size).
    #[arg(long, requires = "l2_size")]
    l3_size: Option<SizeSpec>,
    /// Per-layer latencies for the expected latency per request
    /// [default: l1=100ns,l2=250us,l3=600us,origin=20ms].
    #[arg(long)]
    latency: Option<Latencies>,
    /// A synthetic trace instead of a file: Zipf with this exponent (needs --keys, --requests).
    #[arg(long, conflicts_with = "trace", requires_all = ["keys", "requests"])]
    zipf: Option<f64>,
    /// Keys of the Zipf trace.
    #[arg(long, requires = "zipf")]
    keys: Option<u64>,
    /// Requests of the Zipf trace.
    #[arg(long, requires = "zipf")]
    requests: Option<u64>,
    /// Seed of the Zipf trace.
    #[arg(long, default_value_t = 42, requires = "zipf")]
    seed: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the report as CSV to this file.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also draw hit ratio against L1 size, one line per policy, as SVG to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Replays run at once (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress on stderr (it is also off when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// Runs the replay and prints its report.
pub(crate) fn run(args: SimulateArgs) -> ExitCode {
    match simulate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vorte-cache simulate: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// A progress bar on stderr, or a hidden one.
fn progress(args: &SimulateArgs, length: Option<u64>, template: &str) -> ProgressBar {
    if args.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match length {
        Some(length) => ProgressBar::new(length),
        None => {
            let spinner = ProgressBar::new_spinner();
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            spinner
        }
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The trace's keys, times, and what the report calls it.
struct Loaded {
    keys: Vec<u64>,
    times: Option<Vec<f64>>,
    source: String,
    format: String,
}

fn load(args: &SimulateArgs) -> Result<Loaded, SimulateError> {
    if let (Some(exponent), Some(keys), Some(requests)) = (args.zipf, args.keys, args.requests) {
        return Ok(Loaded {
            keys: zipf::generate(exponent, keys, requests, args.seed)?,
            times: None,
            source: format!("zipf s={exponent} keys={keys} seed={}", args.seed),
            format: "synthetic".into(),
        });
    }
    let Some(path) = &args.trace else {
        return Err(SimulateError::Argument(
            "give a trace file, or --zipf S --keys N --requests M".into(),
        ));
    };
    let format = args.format.unwrap_or_else(|| TraceFormat::from_path(path));
    let bar = progress(args, None, "{spinner} reading {msg}: {pos} requests");
    bar.set_message(path.display().to_string());
    let trace = trace::read(path, format, &bar);
    bar.finish_and_clear();
    let trace = trace?;
    Ok(Loaded {
        keys: trace.keys,
        times: trace.times,
        source: path.display().to_string(),
        format: format!("{format:?}").to_lowercase(),
    })
}

fn unique_keys(keys: &[u64]) -> usize {
    keys.iter().collect::<HashSet<_>>().len()
}

fn simulate(args: &SimulateArgs) -> Result<(), SimulateError> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(SimulateError::Argument(format!(
            "--rate {}: requests a second is a number > 0",
            args.rate
        )));
    }
    let loaded = load(args)?;
    let keys = &loaded.keys;
    let unique = unique_keys(keys);
    let mut policies = Vec::new();
    for policy in &args.policies {
        if !policies.contains(policy) {
            policies.push(*policy);
        }
    }
    let mut sizes: Vec<(usize, String)> = Vec::new();
    for spec in &args.sizes {
        let size = spec.resolve(unique);
        if !sizes.iter().any(|(s, _)| *s == size) {
            sizes.push((size, spec.to_string()));
        }
    }
    let mut ttls = Vec::new();
    for ttl in &args.ttls {
        if !ttls.contains(ttl) {
            ttls.push(*ttl);
        }
    }
    let mut scenarios = Vec::new();
    for &policy in &policies {
        for ttl in &ttls {
            for &(size, _) in &sizes {
                scenarios.push(Scenario {
                    policy,
                    size,
                    ttl: ttl.0,
                });
            }
        }
    }
    let layers = Layers {
        l2: args.l2_size.map(|s| s.resolve(unique)),
        l3: args.l3_size.map(|s| s.resolve(unique)),
    };
    let next_use = policies
        .contains(&PolicyKind::Belady)
        .then(|| NextUse::of(keys));
    let clock = match &loaded.times {
        Some(times) => Clock::Timestamps(times),
        None => Clock::Rate(args.rate),
    };
    let shared = Shared {
        keys,
        clock,
        next_use: next_use.as_ref(),
        layers,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = progress(
        args,
        Some(keys.len() as u64 * scenarios.len() as u64),
        "{elapsed_precise} [{bar:40}] {percent}% replaying ({eta} left)",
    );
    let outcomes = replay::run_all(shared, &scenarios, threads, &bar);
    bar.finish_and_clear();

    let layered = layers.l2.is_some();
    let latencies = (layered || args.latency.is_some()).then(|| args.latency.unwrap_or_default());
    let rows: Vec<Row> = outcomes
        .iter()
        .map(|outcome| {
            let given = sizes
                .iter()
                .find(|(size, _)| *size == outcome.size)
                .map_or_else(|| outcome.size.to_string(), |(_, given)| given.clone());
            Row::new(outcome, given, layered, latencies)
        })
        .collect();
    let summary = TraceSummary {
        source: loaded.source.clone(),
        format: loaded.format.clone(),
        requests: keys.len() as u64,
        unique_keys: unique as u64,
    };
    let stdout_failed = |source| SimulateError::Io {
        path: PathBuf::from("<stdout>"),
        line: None,
        source,
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        report::json(&summary, &rows, &mut stdout).map_err(stdout_failed)?;
    } else {
        report::table(&summary, &rows, &mut stdout).map_err(stdout_failed)?;
    }
    if let Some(path) = &args.csv {
        report::csv(&rows, path)?;
    }
    if let Some(path) = &args.plot {
        let name = Path::new(&loaded.source).file_name().map_or_else(
            || loaded.source.clone(),
            |n| n.to_string_lossy().into_owned(),
        );
        plot::svg(&rows, &format!("L1 hit ratio: {name}"), path)?;
    }
    Ok(())
}
