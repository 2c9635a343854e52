//! `vorte-cache tail`: follows the bus and prints each invalidation and event as this process
//! reads it, with the bus id of the cache that sent it and its lag (`docs/cli.md#tail`).

use serde::Serialize;
use tokio::sync::mpsc;
use vorte_cache::observe::{Activity, ActivityKind};

use super::local::Local;
use crate::context::{GlobalArgs, load_config};
use crate::exit::{CliError, CliResult, Exit};

/// `vorte-cache tail`: follows the bus and prints invalidations and events as they happen.
#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {}

/// One line of `tail --json`.
#[derive(Debug, Serialize)]
struct Line<'a> {
    /// When this process read it, UTC, RFC 3339 with milliseconds.
    at: String,
    kind: &'static str,
    /// The key (the first of several), the tag, or the event's name; none for a flush.
    subject: Option<&'a str>,
    /// Every key of a `keys` notice (at most 100 are carried; `key_count` is the total).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    keys: &'a [String],
    #[serde(skip_serializing_if = "is_zero")]
    key_count: u64,
    /// The bus id of the cache that sent it (`Cache::bus_origin` in that process).
    origin: Option<&'a str>,
    /// From its publication (the stream id's time, on the Redis server's clock) to this process
    /// reading it (this host's clock).
    lag_ms: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Follows the bus until Ctrl-C (exit 0). A configuration without a bus is exit 3.
pub(crate) async fn tail(global: &GlobalArgs, _args: TailArgs) -> CliResult {
    let config = load_config(global)?;
    let out = global.output();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let local = Local::open(&config.cache, Some(tx)).await?;
    if !local.cache.has_bus() {
        return Err(CliError::new(
            Exit::Config,
            "the configuration has no invalidation bus to follow: the bus rides on L2's Redis, \
             L3's Redis Cluster, or a [cache.bus] of its own (memcached and object-store layers \
             carry none)",
        ));
    }
    // On stderr, so that stdout holds only what was read: a script (or a test) can wait for it.
    eprintln!(
        "vorte-cache tail: following the bus of key prefix {:?} as origin {}; Ctrl-C to stop",
        config.cache.key_prefix,
        local.cache.bus_origin().unwrap_or_default()
    );
    let prefix = &config.cache.key_prefix;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            activity = rx.recv() => {
                // The sender lives in the cache's observer: it ends only with the cache.
                let Some(activity) = activity else { return Ok(()) };
                if !activity.received {
                    continue;
                }
                if out.json {
                    let line = serde_json::to_string(&line(&activity)).map_err(|e| {
                        CliError::new(Exit::Failure, format!("cannot render JSON: {e}"))
                    })?;
                    out.print_text(&line)?;
                } else {
                    out.print_text(&text(&activity, prefix))?;
                }
            }
            result = &mut interrupted => {
                return result.map_err(|e| {
                    CliError::new(Exit::Failure, format!("cannot wait for Ctrl-C: {e}"))
                });
            }
        }
    }
}

fn line(activity: &Activity) -> Line<'_> {
    Line {
        at: rfc3339_ms(activity.at_ms),
        kind: activity.kind.name(),
        subject: activity.subject.as_deref(),
        keys: &activity.keys,
        key_count: activity.key_count,
        origin: activity.origin.as_deref(),
        lag_ms: activity.lag.map(|l| l.as_secs_f64() * 1000.0),
    }
}

/// `22:41:07.118  keys   user:1, user:2  from 5f0c…  lag 0.8 ms`
fn text(activity: &Activity, prefix: &str) -> String {
    let subject = match activity.kind {
        ActivityKind::Flush => format!("everything under {prefix:?}"),
        ActivityKind::Keys if activity.keys.len() > 1 => {
            let more = activity
                .key_count
                .saturating_sub(activity.keys.len() as u64);
            let listed = activity.keys.join(", ");
            if more > 0 {
                format!("{listed} (+{more} more)")
            } else {
                listed
            }
        }
        _ => activity.subject.clone().unwrap_or_else(|| "-".to_owned()),
    };
    let lag = activity
        .lag
        .map_or_else(|| "-".to_owned(), |l| format!("{} ms", l.as_millis()));
    format!(
        "{}  {:<5}  {}  origin {}  lag {}",
        rfc3339_ms(activity.at_ms),
        activity.kind.name(),
        subject,
        activity.origin.as_deref().unwrap_or("-"),
        lag
    )
}

/// `2026-12-04T22:41:07.118Z` from ms since the Unix epoch.
fn rfc3339_ms(at_ms: u64) -> String {
    let (secs, ms) = (at_ms / 1000, at_ms % 1000);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: the calendar's 400-year cycle of
/// 146,097 days, counted from a year that starts in March so that February's leap day comes last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of the era, 0..146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year, from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn times_are_utc_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century year), and the last ms of 2024.
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }
}
