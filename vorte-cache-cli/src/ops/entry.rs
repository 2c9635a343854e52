//! `get` and `ttl`: one entry, read through [`Cache::inspect`](vorte_cache::Cache::inspect),
//! which copies nothing into the upper layers (`docs/cli.md#get`, `docs/cli.md#ttl`).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use vorte_cache::{InspectedEntry, Inspection};

use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};

/// Inspects `key`; a key no layer keeps is exit 1, or exit 4 when a layer that could hold it did
/// not answer.
async fn inspect(ctx: &Context, key: &str) -> CliResult<InspectedEntry> {
    let Inspection { entry, failed, .. } = ctx.cache.inspect(key).await?;
    if let Some(entry) = entry {
        for (layer, error) in &failed {
            super::note(&format!("{} did not answer: {error}", ctx.describe(*layer)));
        }
        return Ok(entry);
    }
    if failed.is_empty() {
        return Err(CliError::not_found(format!("key {key:?} not found")));
    }
    let failed: Vec<String> = failed
        .iter()
        .map(|(layer, error)| format!("{}: {error}", ctx.describe(*layer)))
        .collect();
    Err(CliError::new(
        Exit::Unreachable,
        format!(
            "key {key:?} not found in the layers that answered; {} did not",
            failed.join("; ")
        ),
    ))
}

/// Prints the entry: its value as JSON, with its layer, TTL left, tags and their validity.
pub(super) async fn get(ctx: &Context, key: &str) -> CliResult {
    ctx.check_reachable().await?;
    let entry = inspect(ctx, key).await?;
    if ctx.out.json {
        let mut doc = lifetime_json(key, &entry);
        doc["tags"] = entry
            .tags
            .iter()
            .map(|t| json!({ "name": t.name, "valid": t.valid }))
            .collect();
        doc["flushed"] = json!(entry.flushed);
        doc["serialization"] = json!(entry.serialization);
        doc["size"] = json!(entry.size);
        doc["created_at_ms"] = json!(unix_ms(entry.created_at));
        match &entry.value {
            Ok(value) => doc["value"] = value.clone(),
            Err(e) => {
                doc["value"] = Value::Null;
                doc["value_error"] = json!(e.to_string());
            }
        }
        return ctx.out.print_json(&doc);
    }
    let tags: Vec<String> = entry
        .tags
        .iter()
        .map(|t| {
            let state = match t.valid {
                Some(true) => "valid",
                Some(false) => "invalidated",
                None => "unknown: the tag authority did not answer",
            };
            format!("{} ({state})", t.name)
        })
        .collect();
    let age = SystemTime::now()
        .duration_since(entry.created_at)
        .unwrap_or_default();
    let lines = [
        format!("key         {key}"),
        format!("layer       {}", ctx.describe(entry.layer)),
        format!("state       {}", state(&entry)),
        format!("ttl         {}", ttl_text(&entry)),
        format!("written     {} ago", human(age)),
        format!(
            "tags        {}",
            if tags.is_empty() {
                "none".to_owned()
            } else {
                tags.join(", ")
            }
        ),
        format!(
            "encoding    {:?}, {} bytes",
            entry.serialization, entry.size
        )
        .to_lowercase(),
    ];
    ctx.out.print_text(&lines.join("\n"))?;
    match &entry.value {
        Ok(value) => {
            let pretty = serde_json::to_string_pretty(value)
                .map_err(|e| CliError::new(Exit::Failure, format!("cannot render JSON: {e}")))?;
            ctx.out.print_text(&format!("value\n{pretty}"))
        }
        Err(e) => ctx.out.print_text(&format!("value       not shown: {e}")),
    }
}

/// Prints the entry's time left: fresh, and until every layer drops it.
pub(super) async fn ttl(ctx: &Context, key: &str) -> CliResult {
    ctx.check_reachable().await?;
    let entry = inspect(ctx, key).await?;
    if ctx.out.json {
        return ctx.out.print_json(&lifetime_json(key, &entry));
    }
    ctx.out.print_text(&ttl_text(&entry))
}

/// The fields `get --json` and `ttl --json` share.
fn lifetime_json(key: &str, entry: &InspectedEntry) -> Value {
    json!({
        "key": key,
        "layer": entry.layer,
        "readable": entry.readable(),
        "state": state(entry),
        "fresh_for_ms": entry.fresh_for.map(millis),
        "expires_in_ms": millis(entry.expires_in),
        "stale_window_ms": millis(entry.stale_window),
    })
}

/// Why a read would or would not return the entry.
fn state(entry: &InspectedEntry) -> &'static str {
    if entry.flushed == Some(true) {
        "flushed"
    } else if entry.tags.iter().any(|t| t.valid == Some(false)) {
        "invalidated"
    } else if entry.fresh_for.is_none() {
        "stale"
    } else if entry.readable() {
        "fresh"
    } else {
        "unknown"
    }
}

fn ttl_text(entry: &InspectedEntry) -> String {
    let fresh = match entry.fresh_for {
        Some(left) => format!("fresh for {}", human(left)),
        None => "stale (past its TTL)".to_owned(),
    };
    format!(
        "{fresh}, gone in {} (stale window {})",
        human(entry.expires_in),
        human(entry.stale_window)
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, millis)
}

/// `2h 3m 4s`, `3m 4s`, `4.250s`, `0s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.is_zero() {
        "0s".to_owned()
    } else if secs >= 3600 {
        format!("{}h {}m {}s", secs / 3600, secs % 3600 / 60, secs % 60)
    } else if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{}.{:03}s", secs, d.subsec_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_millis(4250)), "4.250s");
        assert_eq!(human(Duration::from_secs(184)), "3m 4s");
        assert_eq!(human(Duration::from_secs(7384)), "2h 3m 4s");
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_millis(7)), "0.007s");
    }
}
