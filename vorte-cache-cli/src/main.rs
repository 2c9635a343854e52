//! `vorte-cache`: inspect and operate a live cache through the library, and size one by replaying
//! a trace (`docs/cli.md`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config_file;
mod context;
mod exit;
mod live;
mod ops;
mod output;
mod probe;
mod simulate;

use context::{Context, GlobalArgs};
use exit::{CliError, CliResult, Exit};
use output::Output;

/// Inspect and operate a vorte-cache, or size one from a trace.
#[derive(Debug, Parser)]
#[command(name = "vorte-cache", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Per-layer figures: hits, misses, errors, circuits, keys and bytes.
    Stats(live::StatsArgs),
    /// The live keys matching a glob (`*`, `?`, `[...]`).
    Keys(ops::KeysArgs),
    /// One entry: its value as JSON, the layer it came from, TTL left, tags and their validity.
    Get(ops::GetArgs),
    /// The TTL left of one entry (fresh and stale windows).
    Ttl(ops::TtlArgs),
    /// Deletes keys from every layer.
    Del(ops::DelArgs),
    /// Invalidates every entry written with each tag.
    InvalidateTag(ops::InvalidateTagArgs),
    /// Removes every entry under the cache's key prefix, in every layer.
    Flush(ops::FlushArgs),
    /// Emits an event with a JSON payload to every process on the bus.
    Emit(ops::EmitArgs),
    /// Follows the bus: invalidations and events as they happen.
    Tail(live::TailArgs),
    /// A live terminal view of the cache.
    Top(live::TopArgs),
    /// Replay a trace against candidate L1 sizes and policies, and report what each achieves.
    Simulate(Box<simulate::SimulateArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output {
        json: cli.global.json,
    };
    let command = match cli.command {
        // No configuration, no runtime: a replay is plain computation.
        Command::Simulate(args) => return simulate::run(*args),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            out.report(&CliError::new(
                Exit::Failure,
                format!("cannot start the async runtime: {e}"),
            ));
            return ExitCode::from(Exit::Failure.code());
        }
    };
    let result = runtime.block_on(run(&cli.global, command));
    // Background tasks (bus receivers, reconnections) must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.report(&e);
            e.exit_code()
        }
    }
}

async fn run(global: &GlobalArgs, command: Command) -> CliResult {
    match command {
        // The live commands build a cache of their own, observed (`live::local`): opening the
        // context's too would connect twice.
        Command::Stats(args) => live::stats(global, args).await,
        Command::Tail(args) => live::tail(global, args).await,
        Command::Top(args) => live::top(global, args).await,
        operation => operate(&Context::open(global).await?, operation).await,
    }
}

/// The commands that work on the context's cache.
async fn operate(ctx: &Context, command: Command) -> CliResult {
    match command {
        Command::Keys(args) => ops::keys(ctx, args).await,
        Command::Get(args) => ops::get(ctx, args).await,
        Command::Ttl(args) => ops::ttl(ctx, args).await,
        Command::Del(args) => ops::del(ctx, args).await,
        Command::InvalidateTag(args) => ops::invalidate_tag(ctx, args).await,
        Command::Flush(args) => ops::flush(ctx, args).await,
        Command::Emit(args) => ops::emit(ctx, args).await,
        Command::Stats(_) | Command::Tail(_) | Command::Top(_) | Command::Simulate(_) => {
            Err(CliError::new(
                Exit::Failure,
                "this command runs without the context's cache",
            ))
        }
    }
}
