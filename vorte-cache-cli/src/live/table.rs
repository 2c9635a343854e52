//! The views as rows of text cells: the same cells make `stats`' plain table and `top`'s
//! terminal table, so both show a figure the same way.

use super::view::{BusView, LayerView, SourceView};

/// A header and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rows {
    pub(crate) header: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Rows {
    /// Each column's width in characters: its widest cell, header included (a cell past the
    /// header's columns counts for none).
    pub(crate) fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }

    /// Left-aligned columns, two spaces apart, no trailing blanks.
    pub(crate) fn render(&self) -> String {
        let widths = self.widths();
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (cell, width) in cells.zip(&widths) {
                text.push_str(&format!("{cell:<width$}  "));
            }
            text.trim_end().to_owned()
        };
        let mut out = line(&mut self.header.iter().copied());
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        out
    }
}

/// A service's layers: what its traffic did.
pub(crate) fn service_rows(view: &SourceView) -> Rows {
    Rows {
        header: vec![
            "layer", "backend", "hit rate", "hits", "misses", "errors", "p50 ms", "p99 ms", "keys",
            "circuits",
        ],
        rows: view
            .layers
            .iter()
            .map(|l| {
                vec![
                    l.layer.clone(),
                    l.backend.clone(),
                    percent(l.hit_rate),
                    l.hits.to_string(),
                    l.misses.to_string(),
                    l.errors.to_string(),
                    ms(l.p50_ms),
                    ms(l.p99_ms),
                    count(l.keys),
                    circuits(l),
                ]
            })
            .collect(),
    }
}

/// This process's layers: what they hold and how they answer.
pub(crate) fn process_rows(view: &SourceView) -> Rows {
    Rows {
        header: vec![
            "layer", "backend", "keys", "bytes", "probe", "errors", "circuits",
        ],
        rows: view
            .layers
            .iter()
            .map(|l| {
                let probe = match &l.probe {
                    Some(p) if p.reachable => format!("ok {:.2} ms", p.latency_ms),
                    Some(p) => format!("FAILED {:.2} ms", p.latency_ms),
                    None if l.layer == "l1" => "in process".to_owned(),
                    None => "-".to_owned(),
                };
                vec![
                    l.layer.clone(),
                    l.backend.clone(),
                    count(l.keys),
                    bytes(l.bytes),
                    probe,
                    l.errors.to_string(),
                    circuits(l),
                ]
            })
            .collect(),
    }
}

/// `hit rate 75.0 % (3 of 4 reads)`, or the source's error.
pub(crate) fn headline(view: &SourceView) -> String {
    match &view.error {
        Some(e) => format!("{}: UNREACHABLE: {e}", view.source),
        None => format!(
            "{}: hit rate {} ({} of {} reads)",
            view.source,
            percent(view.hit_rate),
            view.hits,
            view.reads
        ),
    }
}

/// The bus in one line.
pub(crate) fn bus_line(bus: Option<&BusView>) -> String {
    match bus {
        None => "bus: none".to_owned(),
        Some(b) => format!(
            "bus: lag p50 {} ms, p99 {} ms; received {}, published {}; gaps {}, receiver errors {}, suspensions {}",
            ms(b.lag_p50_ms),
            ms(b.lag_p99_ms),
            b.received,
            b.published,
            b.gaps,
            b.receiver_errors,
            b.suspensions
        ),
    }
}

fn circuits(layer: &LayerView) -> String {
    if layer.circuits.is_empty() {
        return "-".to_owned();
    }
    // One state when all agree (the usual case), else each circuit that is not closed.
    let first = &layer.circuits[0].state;
    if layer.circuits.iter().all(|c| &c.state == first) {
        return format!("{} x{}", first, layer.circuits.len());
    }
    layer
        .circuits
        .iter()
        .filter(|c| c.state != "closed")
        .map(|c| format!("{}: {}", c.name, c.state))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `75.0 %`, `-` when there is nothing to divide.
pub(crate) fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `812 B`, `4.1 KiB`, `3.2 MiB`, `1.1 GiB`.
fn bytes(value: Option<u64>) -> String {
    let Some(b) = value else {
        return "-".to_owned();
    };
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = b as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_figures_read_well() {
        let rows = Rows {
            header: vec!["layer", "keys"],
            rows: vec![
                vec!["l1".into(), "12".into()],
                vec!["l2".into(), "3".into()],
            ],
        };
        assert_eq!(rows.render(), "layer  keys\nl1     12\nl2     3");
        assert_eq!(bytes(Some(812)), "812 B");
        assert_eq!(bytes(Some(4198)), "4.1 KiB");
        assert_eq!(percent(Some(0.75)), "75.0 %");
        assert_eq!(percent(None), "-");
    }
}
