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
    // Flattened: the subcommands are listed in this order, as one list.
    #[command(flatten)]
    Cache(CacheCommand),
    /// Replay a trace against candidate L1 sizes and policies, and report what each achieves.
    Simulate(Box<simulate::SimulateArgs>),
}

/// The commands that run on the async runtime, with a cache.
#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Per-layer figures: hits, misses, errors, circuits, keys and bytes.
    Stats(live::StatsArgs),
    #[command(flatten)]
    Operation(Operation),
    /// Follows the bus: invalidations and events as they happen.
    Tail(live::TailArgs),
    /// A live terminal view of the cache.
    Top(live::TopArgs),
}

/// The commands that work on the context's cache.
#[derive(Debug, Subcommand)]
enum Operation {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output {
        json: cli.global.json,
    };
    let command = match cli.command {
        // No configuration, no runtime: a replay is plain computation.
        Command::Simulate(args) => return simulate::run(*args),
        Command::Cache(command) => command,
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

async fn run(global: &GlobalArgs, command: CacheCommand) -> CliResult {
    match command {
        // The live commands build a cache of their own, observed (`live::local`): opening the
        // context's too would connect twice.
        CacheCommand::Stats(args) => live::stats(global, args).await,
        CacheCommand::Tail(args) => live::tail(global, args).await,
        CacheCommand::Top(args) => live::top(global, args).await,
        CacheCommand::Operation(operation) => {
            operate(&Context::open(global).await?, operation).await
        }
    }
}

/// The commands that work on the context's cache.
async fn operate(ctx: &Context, operation: Operation) -> CliResult {
    match operation {
        Operation::Keys(args) => ops::keys(ctx, args).await,
        Operation::Get(args) => ops::get(ctx, args).await,
        Operation::Ttl(args) => ops::ttl(ctx, args).await,
        Operation::Del(args) => ops::del(ctx, args).await,
        Operation::InvalidateTag(args) => ops::invalidate_tag(ctx, args).await,
        Operation::Flush(args) => ops::flush(ctx, args).await,
        Operation::Emit(args) => ops::emit(ctx, args).await,
    }
}
