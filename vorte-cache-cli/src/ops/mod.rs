//! The operate commands: `keys`, `get`, `ttl`, `del`, `invalidate-tag`, `flush`, `emit`
//! (`docs/cli.md`), every one through the library's public API.

mod confirm;
mod entry;

use vorte_cache::Layer;
use vorte_cache::config::Backend;

use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};

/// `vorte-cache keys PATTERN [--limit N]`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeysArgs {
    /// A Redis-style glob: `*`, `?`, `[...]`, `\` escapes.
    pub(crate) pattern: String,
    /// Print at most this many keys (the first ones in sorted order).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub(crate) limit: usize,
}

/// `vorte-cache get KEY`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The key, as the application passes it (without the key prefix).
    pub(crate) key: String,
}

/// `vorte-cache ttl KEY`.
#[derive(Debug, clap::Args)]
pub(crate) struct TtlArgs {
    /// The key.
    pub(crate) key: String,
}

/// `vorte-cache del KEY...`.
#[derive(Debug, clap::Args)]
pub(crate) struct DelArgs {
    /// The keys to delete.
    #[arg(required = true)]
    pub(crate) keys: Vec<String>,
}

/// `vorte-cache invalidate-tag TAG...`.
#[derive(Debug, clap::Args)]
pub(crate) struct InvalidateTagArgs {
    /// The tags to invalidate.
    #[arg(required = true)]
    pub(crate) tags: Vec<String>,
}

/// `vorte-cache flush [--yes]`.
#[derive(Debug, clap::Args)]
pub(crate) struct FlushArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

/// `vorte-cache emit EVENT JSON`.
#[derive(Debug, clap::Args)]
pub(crate) struct EmitArgs {
    /// The event name, as `#[on_event("...")]` handlers name it.
    pub(crate) event: String,
    /// The payload, a JSON document (usually an object whose fields bind the handlers' parameters).
    pub(crate) payload: String,
}

/// Lists keys.
pub(crate) async fn keys(ctx: &Context, args: KeysArgs) -> CliResult {
    ctx.check_reachable().await?;
    let all = ctx.cache.keys(&args.pattern).await?;
    let total = all.len();
    let shown: Vec<&String> = all.iter().take(args.limit).collect();
    // Memcached has no listing: keys held only there cannot be shown, and the user must know.
    let unlisted: Vec<String> = unlisted_layers(ctx);
    if ctx.out.json {
        ctx.out.print_json(&serde_json::json!({
            "pattern": args.pattern,
            "keys": shown,
            "total": total,
            "truncated": total > shown.len(),
            "unlisted_layers": unlisted,
        }))?;
    } else {
        for key in &shown {
            ctx.out.print_text(key)?;
        }
        if total > shown.len() {
            let more = total - shown.len();
            let (noun, verb) = if more == 1 {
                ("key", "matches")
            } else {
                ("keys", "match")
            };
            note(&format!(
                "{more} more {noun} {verb} (--limit {})",
                args.limit
            ));
        }
        for layer in &unlisted {
            note(&format!(
                "{layer} cannot list its keys: keys held only there are not shown"
            ));
        }
    }
    if total == 0 {
        return Err(CliError::not_found(format!(
            "no key matches {:?}",
            args.pattern
        )));
    }
    Ok(())
}

/// The layers that cannot list their keys (memcached), described for a note.
fn unlisted_layers(ctx: &Context) -> Vec<String> {
    let layers = &ctx.cache.config().layers;
    [(Layer::L2, &layers.l2), (Layer::L3, &layers.l3)]
        .into_iter()
        .filter(|(_, config)| {
            config
                .as_ref()
                .is_some_and(|c| c.kind() == Backend::Memcached)
        })
        .map(|(layer, _)| ctx.describe(layer))
        .collect()
}

/// Shows one entry.
pub(crate) async fn get(ctx: &Context, args: GetArgs) -> CliResult {
    entry::get(ctx, &args.key).await
}

/// Shows one entry's TTL.
pub(crate) async fn ttl(ctx: &Context, args: TtlArgs) -> CliResult {
    entry::ttl(ctx, &args.key).await
}

/// Deletes keys, one by one so that the answer says which existed.
pub(crate) async fn del(ctx: &Context, args: DelArgs) -> CliResult {
    ctx.check_reachable().await?;
    let bus = ctx.bus_mark();
    let mut results = Vec::with_capacity(args.keys.len());
    for key in &args.keys {
        let existed = ctx.cache.delete(key).await?;
        results.push((key.as_str(), existed));
    }
    ctx.settle_bus(bus, results.len()).await?;
    let deleted = results.iter().filter(|(_, existed)| *existed).count();
    if ctx.out.json {
        let keys: Vec<serde_json::Value> = results
            .iter()
            .map(|(key, existed)| serde_json::json!({ "key": key, "existed": existed }))
            .collect();
        ctx.out
            .print_json(&serde_json::json!({ "deleted": deleted, "keys": keys }))?;
    } else {
        for (key, existed) in &results {
            let what = if *existed { "deleted" } else { "not found" };
            ctx.out.print_text(&format!("{what}\t{key}"))?;
        }
    }
    if deleted == 0 {
        return Err(CliError::not_found("none of the keys existed"));
    }
    Ok(())
}

/// Invalidates tags: one write each, whatever the number of tagged entries.
pub(crate) async fn invalidate_tag(ctx: &Context, args: InvalidateTagArgs) -> CliResult {
    ctx.check_reachable().await?;
    let bus = ctx.bus_mark();
    for tag in &args.tags {
        ctx.cache.invalidate_tag(tag).await?;
    }
    ctx.settle_bus(bus, args.tags.len()).await?;
    if ctx.out.json {
        ctx.out
            .print_json(&serde_json::json!({ "invalidated": args.tags }))?;
    } else {
        for tag in &args.tags {
            ctx.out.print_text(&format!("invalidated\t{tag}"))?;
        }
    }
    Ok(())
}

/// Flushes the cache, after a confirmation unless `--yes`.
pub(crate) async fn flush(ctx: &Context, args: FlushArgs) -> CliResult {
    ctx.check_reachable().await?;
    let prefix = &ctx.cache.config().key_prefix;
    if !args.yes {
        confirm::flush(&format!(
            "remove every entry under key prefix {prefix:?} in {}?",
            ctx.layers_described().join(", ")
        ))?;
    }
    let bus = ctx.bus_mark();
    ctx.cache.flush().await?;
    ctx.settle_bus(bus, 1).await?;
    if ctx.out.json {
        ctx.out
            .print_json(&serde_json::json!({ "flushed": true, "key_prefix": prefix }))?;
    } else {
        ctx.out
            .print_text(&format!("flushed every entry under {prefix:?}"))?;
    }
    Ok(())
}

/// Emits an event on the bus, for the `#[on_event]` handlers of every application process.
pub(crate) async fn emit(ctx: &Context, args: EmitArgs) -> CliResult {
    let payload: serde_json::Value = serde_json::from_str(&args.payload)
        .map_err(|e| CliError::usage(format!("the payload is not valid JSON: {e}")))?;
    if args.event.is_empty() {
        return Err(CliError::usage("the event name is empty"));
    }
    if !ctx.cache.has_bus() {
        return Err(CliError::new(
            Exit::Config,
            "the configuration has no bus (no Redis in L2 or L3 and no [cache.bus]): an event \
             would reach no other process",
        ));
    }
    ctx.check_reachable().await?;
    let bus = ctx.bus_mark();
    // This process wires no handler (`Context::open`), so none runs here: the event is only
    // published, through the cache `Context::open` installed as the global one.
    vorte_cache::emit(&args.event, &payload).await?;
    ctx.settle_bus(bus, 1).await?;
    if ctx.out.json {
        ctx.out.print_json(&serde_json::json!({
            "event": args.event,
            "payload": payload,
            "published": true,
        }))?;
    } else {
        ctx.out.print_text(&format!("published\t{}", args.event))?;
    }
    Ok(())
}

/// A note for the user on stderr (text mode), next to the answer on stdout.
fn note(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "note: {text}");
}
