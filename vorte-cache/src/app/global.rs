//! The process globals, and the only module that holds any: the installed application, the
//! embedded default cache, the handlers `emit` runs before any application is built, and this
//! process's id on the bus. Nothing below the application layer reaches them.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use super::AppHandlers;
use crate::cache::Cache;
use crate::engine::Engine;
use crate::events::Handlers;

/// The installed application: its cache, and what it shares with its bus receivers.
#[derive(Debug)]
pub(super) struct Installed {
    pub(super) cache: Cache,
    pub(super) shared: Arc<AppHandlers>,
}

static INSTALLED: ArcSwapOption<Installed> = ArcSwapOption::const_empty();

fn embedded_default() -> &'static Cache {
    static DEFAULT: OnceLock<Cache> = OnceLock::new();
    DEFAULT.get_or_init(|| Cache::from_engine(Arc::new(Engine::embedded_default())))
}

/// Makes `installed` the application of this process; the one it replaces stops running other
/// processes' events.
pub(super) fn install(installed: Installed) {
    if let Some(previous) = INSTALLED.swap(Some(Arc::new(installed))) {
        previous.shared.retire();
    }
}

impl Cache {
    /// The application's cache: the one installed by
    /// [`VorteBuilder::build`](crate::VorteBuilder::build), or before any build the embedded
    /// default (L1 only, nothing to run).
    pub fn global() -> Cache {
        with_global(Cache::clone)
    }
}

/// Runs `f` on the global cache without cloning its handle.
#[inline]
pub(crate) fn with_global<R>(f: impl FnOnce(&Cache) -> R) -> R {
    match &*INSTALLED.load() {
        Some(installed) => f(&installed.cache),
        None => f(embedded_default()),
    }
}

/// The handlers `emit` runs: the installed application's, else every registered handler (the
/// embedded default application has all of them wired, as with `auto_load(true)`).
pub(super) fn installed_handlers() -> Arc<AppHandlers> {
    static DEFAULT: OnceLock<Arc<AppHandlers>> = OnceLock::new();
    match &*INSTALLED.load() {
        Some(installed) => installed.shared.clone(),
        None => DEFAULT
            .get_or_init(|| Arc::new(AppHandlers::new(Handlers::auto_loaded())))
            .clone(),
    }
}

/// This process's id on the bus: random, so that two processes never share one.
pub(super) fn process_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(rand::random)
}
