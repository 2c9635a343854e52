//! A full example web service on vorte-cache: users and products in SQLite behind axum, with
//! every pattern of the cache module's product page made real.
//!
//! - `GET /users/{id}`: a `#[cached]` read (`reads.rs`);
//! - `PUT /users/{id}`: `emit("user.updated")`, whose `#[on_event]` handler (`events.rs`)
//!   invalidates the user in every instance on the bus, then write-through of the new user;
//! - `GET /products/{id}`: cache-aside by hand; `PUT /products/{id}` invalidates a category tag;
//! - `GET /categories/{name}/products`: a `#[cached]` listing tagged `category:{name}`;
//! - `GET /db/users/{id}`: SQLite on every request, no cache (the load test's baseline);
//! - `GET /cache/stats`: the cache's counters as JSON.
//!
//! `cargo run -p vorte-example-service` runs it on L1 + L4 `file`; with `REDIS_URL` set, on
//! L1 + L2 `redis`, shared by every instance pointed at that Redis (`README.md`).

mod db;
mod error;
mod events;
mod reads;
mod routes;
mod settings;
mod stats;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use vorte_cache::Vorte;

use crate::db::Db;
use crate::settings::{Settings, SharedLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colours only on a terminal: a log file or a test's capture gets plain text.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("vorte-example-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    for dir in settings.directories() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }

    let db = Db::open(settings.database.clone())
        .await
        .map_err(|e| format!("{}: {e}", settings.database_name))?;

    // Installs the cache as `Cache::global()` (what `#[cached]`, `emit` and the routes use) and
    // wires every `#[on_event]` handler linked into the binary.
    let app = Vorte::builder()
        .auto_load(true)
        .config(settings.cache_config()?)
        .build()
        .await?;

    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let shared = match &settings.shared {
        SharedLayer::File(dir) => format!("L1 + L4 file at {}", dir.display()),
        SharedLayer::Redis(_) => "L1 + L2 redis (invalidation bus on it)".to_owned(),
    };
    tracing::info!(
        address = %listener.local_addr()?,
        database = %settings.database_name,
        cache = %shared,
        handlers = app.events().handler_count(),
        "vorte-example-service listening"
    );

    axum::serve(listener, routes::router(db))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM; `axum::serve` then stops accepting and finishes the requests
/// in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
