//! `vorte-cache stats`: per layer, what this process sees (keys and bytes, a probe, circuits,
//! the bus), and what each `--url` service reports, as a table or JSON (`docs/cli.md#stats`).

use serde::Serialize;

use super::local::Local;
use super::view::SourceView;
use super::{remote, table};
use crate::context::GlobalArgs;
use crate::exit::{CliError, CliResult, Exit};

/// `vorte-cache stats`: per-layer figures, as a table or JSON.
#[derive(Debug, clap::Args)]
pub(crate) struct StatsArgs {
    /// A running service's stats endpoint (`vorte-cache-axum`'s `/stats`, e.g.
    /// `http://10.0.0.5:8080/ops/stats`): its hit rates, latencies, errors and circuits. Plain
    /// `http://` only. Repeat for several instances; their sum is shown too.
    #[arg(long = "url", value_name = "URL")]
    pub(crate) urls: Vec<String>,
}

/// Everything `stats` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// This process's cache: keys and bytes per layer (a scan), a probe of each layer, circuits,
    /// the bus. None when the services are shown alone (`--url` and no configuration).
    pub(crate) process: Option<SourceView>,
    /// One per `--url`.
    pub(crate) services: Vec<SourceView>,
    /// The services summed, with two or more.
    pub(crate) total: Option<SourceView>,
}

impl Report {
    /// Scans and probes this process's layers (with a cache of its own) and reads the services.
    pub(crate) async fn gather(local: Option<&Local>, urls: &[String]) -> Report {
        let process = match local {
            Some(local) => {
                // A scan that fails is counted in the layer's errors; the keys are then unknown.
                let usage = local.cache.usage().await.ok();
                Some(local.snapshot(usage.as_ref()).await)
            }
            None => None,
        };
        Report::new(process, remote::read_all(urls).await)
    }

    /// The report of this process's view and the services', summed when there are several.
    pub(crate) fn new(process: Option<SourceView>, services: Vec<SourceView>) -> Report {
        let total = (services.len() > 1).then(|| SourceView::total("all services", &services));
        Report {
            process,
            services,
            total,
        }
    }

    /// What the services say, one by one and summed: the blocks above this process's.
    pub(crate) fn services_and_total(&self) -> impl Iterator<Item = &SourceView> {
        self.services.iter().chain(&self.total)
    }

    /// The plain-text tables: this process's, then each service's, a blank line between two.
    pub(crate) fn render(&self) -> String {
        let mut blocks: Vec<String> = Vec::new();
        if let Some(process) = &self.process {
            blocks.push(format!(
                "{} (keys and bytes: a scan of each layer; probe: a read of a missing key)\n{}\n{}",
                process.source,
                table::process_rows(process).render(),
                table::bus_line(process.bus.as_ref()),
            ));
        }
        for service in self.services_and_total() {
            let mut block = table::headline(service);
            if service.error.is_none() {
                block.push('\n');
                block.push_str(&table::service_rows(service).render());
                block.push('\n');
                block.push_str(&table::bus_line(service.bus.as_ref()));
            }
            blocks.push(block);
        }
        blocks.join("\n\n")
    }

    /// Exit 4 naming what did not answer: a layer's probe, or a service.
    pub(crate) fn unreachable(&self) -> CliResult {
        let mut failed: Vec<String> = self
            .process
            .iter()
            .flat_map(|p| &p.layers)
            .filter(|l| l.probe.as_ref().is_some_and(|p| !p.reachable))
            .map(|l| format!("{} ({})", l.layer, l.backend))
            .collect();
        failed.extend(
            self.services
                .iter()
                .filter(|s| s.error.is_some())
                .map(|s| s.source.clone()),
        );
        if failed.is_empty() {
            Ok(())
        } else {
            Err(CliError::new(
                Exit::Unreachable,
                format!("unreachable: {}", failed.join("; ")),
            ))
        }
    }
}

/// Prints the report, then ends with exit 4 if a layer or a service did not answer.
pub(crate) async fn stats(global: &GlobalArgs, args: StatsArgs) -> CliResult {
    let local = Local::open_unless_services_alone(global, &args.urls).await?;
    let report = Report::gather(local.as_ref(), &args.urls).await;
    let out = global.output();
    if out.json {
        out.print_json(&report)?;
    } else {
        out.print_text(&report.render())?;
    }
    report.unreachable()
}
