//! The report: one row per replay, as a table on stdout, JSON, or CSV
//! (`docs/simulate.md#output`).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::error::SimulateError;
use super::replay::{LayerCounts, Outcome};
use super::spec::{Latencies, Ttl, duration_text};

/// What was replayed, for the report's heading.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TraceSummary {
    /// The trace file as given, or `zipf(S, N keys, seed X)`.
    pub(crate) source: String,
    /// Its format.
    pub(crate) format: String,
    /// Requests.
    pub(crate) requests: u64,
    /// Unique keys.
    pub(crate) unique_keys: u64,
}

/// One replay's figures, flat (a CSV row).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// Policy name.
    pub(crate) policy: String,
    /// L1 size in entries.
    pub(crate) size: usize,
    /// The size as given (`1000`, `0.1%`).
    pub(crate) size_given: String,
    /// TTL (`none`, `60s`).
    pub(crate) ttl: String,
    /// Requests replayed.
    pub(crate) requests: u64,
    /// L1 hits.
    pub(crate) hits: u64,
    /// L1 hits over requests, in %.
    pub(crate) hit_ratio: f64,
    /// L1 reads that found an expired entry.
    pub(crate) expired: u64,
    /// Requests that reached L2.
    pub(crate) l2_lookups: Option<u64>,
    /// Of those, L2 hits.
    pub(crate) l2_hits: Option<u64>,
    /// L2 hits over L2 lookups, in %.
    pub(crate) l2_hit_ratio: Option<f64>,
    /// Requests that reached L3.
    pub(crate) l3_lookups: Option<u64>,
    /// Of those, L3 hits.
    pub(crate) l3_hits: Option<u64>,
    /// L3 hits over L3 lookups, in %.
    pub(crate) l3_hit_ratio: Option<f64>,
    /// Requests the origin served.
    pub(crate) origin_loads: Option<u64>,
    /// Expected latency per request, in microseconds.
    pub(crate) latency_us: Option<f64>,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

impl Row {
    /// The row for `outcome`; `latencies` when the report shows the expected latency, which is
    /// `l1` for every request, plus `l2` for each L1 miss (when there is an L2), `l3` for each L2
    /// miss (when there is an L3), and `origin` for each request no layer served.
    pub(crate) fn new(
        outcome: &Outcome,
        size_given: String,
        layered: bool,
        latencies: Option<Latencies>,
    ) -> Row {
        let layer = |counts: Option<LayerCounts>| {
            (
                counts.map(|c| c.lookups),
                counts.map(|c| c.hits),
                counts.map(|c| percent(c.hits, c.lookups)),
            )
        };
        let (l2_lookups, l2_hits, l2_hit_ratio) = layer(outcome.l2);
        let (l3_lookups, l3_hits, l3_hit_ratio) = layer(outcome.l3);
        // A layered report has no layer figures for a policy that fed no layer (Belady).
        let measured = !layered || outcome.l2.is_some();
        let latency_us = latencies.filter(|_| measured).map(|lat| {
            let mut total =
                outcome.requests as f64 * lat.l1 + outcome.origin_loads as f64 * lat.origin;
            if let Some(l2) = outcome.l2 {
                total += l2.lookups as f64 * lat.l2;
            }
            if let Some(l3) = outcome.l3 {
                total += l3.lookups as f64 * lat.l3;
            }
            total / outcome.requests.max(1) as f64 * 1e6
        });
        Row {
            policy: outcome.policy.to_string(),
            size: outcome.size,
            size_given,
            ttl: Ttl(outcome.ttl).to_string(),
            requests: outcome.requests,
            hits: outcome.hits,
            hit_ratio: percent(outcome.hits, outcome.requests),
            expired: outcome.expired,
            l2_lookups,
            l2_hits,
            l2_hit_ratio,
            l3_lookups,
            l3_hits,
            l3_hit_ratio,
            origin_loads: layered.then_some(outcome.origin_loads).filter(|_| measured),
            latency_us,
        }
    }
}

/// The table on stdout.
pub(crate) fn table(
    summary: &TraceSummary,
    rows: &[Row],
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "trace: {} ({}), {} requests, {} unique keys",
        summary.source, summary.format, summary.requests, summary.unique_keys
    )?;
    let has = |f: fn(&Row) -> bool| rows.iter().any(f);
    let show_ttl = has(|r| r.ttl != "none");
    let show_l2 = has(|r| r.l2_lookups.is_some());
    let show_l3 = has(|r| r.l3_lookups.is_some());
    let show_latency = has(|r| r.latency_us.is_some());
    let mut header = vec!["policy", "size"];
    if show_ttl {
        header.extend(["ttl", "expired"]);
    }
    header.extend(["requests", "hits", "hit ratio"]);
    if show_l2 {
        header.push("L2 hit ratio");
    }
    if show_l3 {
        header.push("L3 hit ratio");
    }
    if show_l2 || show_l3 {
        header.push("origin");
    }
    if show_latency {
        header.push("latency/req");
    }
    let dash = || "-".to_string();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.policy.clone(), r.size.to_string()];
            if show_ttl {
                cells.extend([r.ttl.clone(), r.expired.to_string()]);
            }
            cells.extend([
                r.requests.to_string(),
                r.hits.to_string(),
                format!("{:.2} %", r.hit_ratio),
            ]);
            if show_l2 {
                cells.push(r.l2_hit_ratio.map_or_else(dash, |p| format!("{p:.2} %")));
            }
            if show_l3 {
                cells.push(r.l3_hit_ratio.map_or_else(dash, |p| format!("{p:.2} %")));
            }
            if show_l2 || show_l3 {
                cells.push(
                    r.origin_loads
                        .map_or_else(dash, |o| format!("{:.2} %", percent(o, r.requests))),
                );
            }
            if show_latency {
                cells.push(
                    r.latency_us
                        .map_or_else(dash, |us| duration_text_rounded(us * 1e-6)),
                );
            }
            cells
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                // Names left, figures right.
                if i == 0 || (show_ttl && i == 2) {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    )?;
    for row in cells {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

/// A latency with three significant figures and the unit that suits it.
fn duration_text_rounded(seconds: f64) -> String {
    let (value, unit) = if seconds >= 1.0 {
        (seconds, "s")
    } else if seconds >= 1e-3 {
        (seconds * 1e3, "ms")
    } else if seconds >= 1e-6 {
        (seconds * 1e6, "us")
    } else {
        return duration_text(seconds);
    };
    format!("{value:.3} {unit}")
}

/// The report as one JSON document: `{"trace": {...}, "results": [rows]}`.
pub(crate) fn json(
    summary: &TraceSummary,
    rows: &[Row],
    out: &mut impl Write,
) -> std::io::Result<()> {
    /// The document, fields in this order.
    #[derive(Serialize)]
    struct Document<'a> {
        trace: &'a TraceSummary,
        results: &'a [Row],
    }
    serde_json::to_writer_pretty(
        &mut *out,
        &Document {
            trace: summary,
            results: rows,
        },
    )?;
    writeln!(out)
}

/// The rows as CSV, with a header, to `path`.
pub(crate) fn csv(rows: &[Row], path: &Path) -> Result<(), SimulateError> {
    let failed = |reason: String| SimulateError::Output {
        path: path.to_path_buf(),
        reason,
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| failed(e.to_string()))?;
    for row in rows {
        writer.serialize(row).map_err(|e| failed(e.to_string()))?;
    }
    writer.flush().map_err(|e| failed(e.to_string()))
}
