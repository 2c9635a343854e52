//! `--plot FILE.svg`: hit ratio against L1 size, one line per policy (and TTL)
//! (`docs/simulate.md#output`). plotters' SVG backend writes text as SVG `<text>`, so no font
//! is read from the system.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::error::SimulateError;
use super::report::Row;

/// One colour per line, distinct on white.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws `rows` to `path` as SVG, titled `title`.
pub(crate) fn svg(rows: &[Row], title: &str, path: &Path) -> Result<(), SimulateError> {
    let failed = |reason: String| SimulateError::Output {
        path: path.to_path_buf(),
        reason,
    };
    // Lines in the order their policy first appears, points by size.
    let mut order: Vec<String> = Vec::new();
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows {
        let name = if row.ttl == "none" {
            row.policy.clone()
        } else {
            format!("{} ttl {}", row.policy, row.ttl)
        };
        if !lines.contains_key(&name) {
            order.push(name.clone());
        }
        lines
            .entry(name)
            .or_default()
            .push((row.size as f64, row.hit_ratio));
    }
    for points in lines.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut sizes: Vec<f64> = rows.iter().map(|r| r.size.max(1) as f64).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let min_x = rows.iter().map(|r| r.size).min().unwrap_or(1).max(1) as f64;
    let max_x = rows.iter().map(|r| r.size).max().unwrap_or(1).max(1) as f64;
    let max_y = rows.iter().map(|r| r.hit_ratio).fold(0.0, f64::max);
    let y_top = ((max_y / 10.0).ceil() * 10.0).clamp(10.0, 100.0);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64);
        let x_range = if max_x > min_x {
            min_x..max_x
        } else {
            min_x * 0.5..max_x * 2.0
        };
        // Labels at the sizes replayed, no minor grid: a log axis's own key points crowd.
        let x_axis = x_range.log_scale().with_key_points(sizes.clone());
        let mut chart = builder.build_cartesian_2d(x_axis, 0.0..y_top)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("L1 size (entries, log scale)")
            .y_desc("hit ratio (%)")
            .x_label_formatter(&|x| format!("{}", x.round()))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        // vorte's lines last and wider: the policy under study stays visible where a peer's
        // line runs over it (quick_cache's often does).
        let mut drawing: Vec<(usize, &String)> = order.iter().enumerate().collect();
        drawing.sort_by_key(|(_, name)| name.starts_with("vorte"));
        for (i, name) in drawing {
            let color = PALETTE[i % PALETTE.len()];
            let width = if name.starts_with("vorte") { 3 } else { 2 };
            let points = lines.get(name).cloned().unwrap_or_default();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| failed(e.to_string()))
}
