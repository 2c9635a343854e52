//! `vorte-cache top`: the live terminal view, redrawn each second (`docs/cli.md#top`).
//!
//! The services given with `--url` come first (their hit rates, latencies, errors, circuits and
//! bus lag; summed in `all services` when there are several), then this process's own view (keys and bytes from a usage scan every
//! `--usage-every` seconds, a probe of each layer every second, the bus). The terminal is put
//! back as it was on every way out: `q`, Esc, Ctrl-C, an error, and a panic.

use std::collections::HashMap;
use std::io::Stdout;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use tokio::sync::mpsc;

use super::local::Local;
use super::stats::Report;
use super::table;
use super::view::SourceView;
use crate::context::GlobalArgs;
use crate::exit::{CliError, CliResult, Exit};

/// How often the view is redrawn with fresh figures.
const REFRESH: Duration = Duration::from_secs(1);

/// `vorte-cache top`: a live terminal view of the cache.
#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// A running service's stats endpoint (`vorte-cache-axum`'s `/stats`); repeatable. Plain
    /// `http://` only.
    #[arg(long = "url", value_name = "URL")]
    pub(crate) urls: Vec<String>,
    /// Seconds between two scans of what each layer holds (a listing and a read of every key:
    /// not every second on a big cache).
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) usage_every: u64,
}

/// Shows the live view until `q`, Esc or Ctrl-C (exit 0).
pub(crate) async fn top(global: &GlobalArgs, args: TopArgs) -> CliResult {
    let local = Local::open_unless_services_alone(global, &args.urls).await?;
    let mut screen = Screen::enter()?;
    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    let reader = tokio::task::spawn_blocking(move || read_keys(&keys_tx));
    let result = run(local.as_ref(), &args, &mut screen, &mut keys).await;
    // The key reader quits once nobody listens.
    drop(keys);
    let _ = reader.await;
    screen.leave();
    result
}

async fn run(
    local: Option<&Local>,
    args: &TopArgs,
    screen: &mut Screen,
    keys: &mut mpsc::UnboundedReceiver<KeyEvent>,
) -> CliResult {
    let usage_every = Duration::from_secs(args.usage_every);
    let mut usage = None;
    let mut scanned: Option<Instant> = None;
    let mut tick = tokio::time::interval(REFRESH);
    let mut since = Since::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let process = match local {
                    Some(local) => {
                        if scanned.is_none_or(|at| at.elapsed() >= usage_every) {
                            usage = local.cache.usage().await.ok();
                            scanned = Some(Instant::now());
                        }
                        Some(local.snapshot(usage.as_ref()).await)
                    }
                    None => None,
                };
                let report = Report::new(process, super::remote::read_all(&args.urls).await);
                let recent = since.update(report.services_and_total());
                screen.draw(&report, &recent, args.usage_every)?;
            }
            key = keys.recv() => match key {
                Some(key) if quits(&key) => return Ok(()),
                Some(_) => {}
                None => return Err(CliError::new(Exit::Failure, "the terminal's input closed")),
            }
        }
    }
}

/// `q`, Esc, or Ctrl-C (which a terminal in raw mode sends as a key, not a signal).
fn quits(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Reads key presses on a thread of its own (crossterm's reads block) until `to` is closed.
fn read_keys(to: &mpsc::UnboundedSender<KeyEvent>) {
    while !to.is_closed() {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) => {
                    if to.send(key).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // No terminal input left: the receiver sees the channel close.
                Err(_) => return,
            },
            Err(_) => return,
        }
    }
}

/// The terminal in raw mode on the alternate screen; [`Screen::leave`] (or dropping it, or a
/// panic) puts it back.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    left: bool,
}

impl Screen {
    fn enter() -> CliResult<Screen> {
        let failed = |e: std::io::Error| {
            restore();
            CliError::new(Exit::Failure, format!("cannot take the terminal: {e}"))
        };
        terminal::enable_raw_mode().map_err(failed)?;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen).map_err(failed)?;
        // A panic prints its message on a terminal that is put back first.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(failed)?;
        Ok(Screen {
            terminal,
            left: false,
        })
    }

    /// Draws `report`; `recent` is what [`Since::update`] says of each service.
    fn draw(
        &mut self,
        report: &Report,
        recent: &HashMap<String, String>,
        usage_every: u64,
    ) -> CliResult {
        self.terminal
            .draw(|frame| {
                let sources: Vec<&SourceView> =
                    report.services_and_total().chain(&report.process).collect();
                let mut heights = vec![Constraint::Length(1)];
                for source in &sources {
                    // The top border (the headline), the header, a row per layer, and the bottom
                    // border (the bus).
                    let rows = u16::try_from(source.layers.len()).unwrap_or(u16::MAX);
                    heights.push(Constraint::Length(rows.saturating_add(3)));
                }
                heights.push(Constraint::Min(0));
                let areas = Layout::vertical(heights).split(frame.area());
                let title = format!(
                    "vorte-cache top  refresh 1 s, usage scan every {usage_every} s  (q, Esc or Ctrl-C: quit)"
                );
                frame.render_widget(
                    Paragraph::new(title).style(Style::new().add_modifier(Modifier::BOLD)),
                    areas[0],
                );
                for (source, area) in sources.iter().zip(areas.iter().skip(1)) {
                    let is_process =
                        report.process.as_ref().is_some_and(|p| std::ptr::eq(*source, p));
                    let recent = recent.get(&source.source).map(String::as_str);
                    frame.render_widget(source_table(source, is_process, recent), *area);
                }
            })
            .map(|_| ())
            .map_err(|e| CliError::new(Exit::Failure, format!("cannot draw: {e}")))
    }

    fn leave(mut self) {
        self.left = true;
        restore();
        let _ = self.terminal.show_cursor();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if !self.left {
            restore();
        }
    }
}

/// Leaves raw mode and the alternate screen: safe to call more than once.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// One source's block: its headline (and `recent`, its last interval) as the title, its layers,
/// its bus on the last line.
fn source_table(source: &SourceView, is_process: bool, recent: Option<&str>) -> Table<'static> {
    let rows = if is_process {
        table::process_rows(source)
    } else {
        table::service_rows(source)
    };
    let title = if is_process {
        format!("{} (probes, usage scan)", source.source)
    } else {
        format!("{}{}", table::headline(source), recent.unwrap_or_default())
    };
    let bus = if source.error.is_some() {
        String::new()
    } else {
        table::bus_line(source.bus.as_ref())
    };
    let widths = rows
        .widths()
        .into_iter()
        .map(|w| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)));
    let header = Row::new(rows.header.clone()).style(Style::new().add_modifier(Modifier::BOLD));
    let body: Vec<Row<'static>> = rows.rows.into_iter().map(Row::new).collect();
    Table::new(body, widths)
        .header(header)
        .column_spacing(2)
        .block(
            Block::bordered()
                .title(Line::from(title))
                .title_bottom(Line::from(bus)),
        )
}

/// Each service's hits and reads at the previous refresh: the title shows, beside the rate since
/// the service started, the rate of the last interval (what an operator watches during a deploy).
#[derive(Debug, Default)]
struct Since {
    at: Option<Instant>,
    counts: HashMap<String, (u64, u64)>,
}

impl Since {
    /// For each service read now and at the previous refresh, `; last 1.0 s: 80.0 % of 400 reads`
    /// (or `no reads`), by source; then remembers these counts. Nothing for a service whose counts
    /// went down (it restarted) or that could not be read.
    fn update<'a>(
        &mut self,
        services: impl Iterator<Item = &'a SourceView>,
    ) -> HashMap<String, String> {
        let now = Instant::now();
        let seconds = self.at.map(|at| now.duration_since(at).as_secs_f64());
        let mut recent = HashMap::new();
        let mut counts = HashMap::new();
        for service in services.filter(|s| s.error.is_none()) {
            let (hits, reads) = (service.hits, service.reads);
            if let (Some(seconds), Some(&(hits_before, reads_before))) =
                (seconds, self.counts.get(&service.source))
                && hits >= hits_before
                && reads >= reads_before
            {
                let (hits, reads) = (hits - hits_before, reads - reads_before);
                let rate = if reads == 0 {
                    "no reads".to_owned()
                } else {
                    format!(
                        "{} of {reads} reads",
                        table::percent(Some(hits as f64 / reads as f64))
                    )
                };
                recent.insert(
                    service.source.clone(),
                    format!("; last {seconds:.1} s: {rate}"),
                );
            }
            counts.insert(service.source.clone(), (hits, reads));
        }
        self.at = Some(now);
        self.counts = counts;
        recent
    }
}
