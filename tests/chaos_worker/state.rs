//! What the worker's tasks, its loader and its `#[cached]` functions share: the database, the
//! clock corrected to the database's, and the loader's counts by bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use vorte_cache_tests::chaos_kit::truth::Truth;
use vorte_cache_tests::chaos_kit::{now_us, value_of};

use crate::args::Args;

/// The loader's own error (the fail-safe row makes it fail on purpose).
#[derive(Debug)]
pub(crate) struct LoadError(pub(crate) String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// Shared by every task of the worker.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) args: Args,
    /// This process's clock minus the database's, µs.
    pub(crate) skew_us: i64,
    /// When the run began, on the database's clock, µs.
    pub(crate) start_us: u64,
    /// Loader runs by the bucket they began in.
    pub(crate) loads: Vec<AtomicU64>,
    pub(crate) loader_calls: AtomicU64,
    pub(crate) loader_failures: AtomicU64,
    pool: tokio::sync::Mutex<Vec<Truth>>,
}

static STATE: OnceLock<Arc<State>> = OnceLock::new();

/// The worker's state, for the `#[cached]` functions (set once in `main`).
pub(crate) fn state() -> &'static Arc<State> {
    STATE
        .get()
        .unwrap_or_else(|| panic!("the state is set before any call"))
}

impl State {
    /// Measures the clock skew against the database and installs the state; the run begins now.
    pub(crate) async fn install(args: Args) -> &'static Arc<State> {
        let mut truth = Truth::connect(args.db_port, &args.db_prefix)
            .await
            .unwrap_or_else(|e| panic!("the database: {e}"));
        // The median of a few round trips: the local clock read at the middle of each.
        let mut skews = Vec::new();
        for _ in 0..5 {
            let before = now_us();
            let db = truth
                .time_us()
                .await
                .unwrap_or_else(|e| panic!("TIME: {e}"));
            let after = now_us();
            skews.push((before / 2 + after / 2) as i64 - db as i64);
        }
        skews.sort_unstable();
        let skew_us = skews[skews.len() / 2];
        let buckets = (args.duration.as_millis() / args.bucket.as_millis().max(1)) as usize + 2;
        let state = State {
            args,
            skew_us,
            start_us: u64::try_from(now_us() as i64 - skew_us).unwrap_or(0),
            loads: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            loader_calls: AtomicU64::new(0),
            loader_failures: AtomicU64::new(0),
            pool: tokio::sync::Mutex::new(vec![truth]),
        };
        let _ = STATE.set(Arc::new(state));
        crate::state::state()
    }

    /// Now on the database's clock, µs.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(now_us() as i64 - self.skew_us).unwrap_or(0)
    }

    /// The bucket a moment (database clock, µs) falls in, if in the run.
    pub(crate) fn bucket_of(&self, at_us: u64) -> Option<usize> {
        let since = at_us.checked_sub(self.start_us)?;
        let i = usize::try_from(since / self.args.bucket.as_micros() as u64).ok()?;
        (i < self.loads.len()).then_some(i)
    }

    /// A database connection of the pool (a new one when all are in use).
    pub(crate) async fn truth(&self) -> Truth {
        if let Some(t) = self.pool.lock().await.pop() {
            return t;
        }
        Truth::connect(self.args.db_port, &self.args.db_prefix)
            .await
            .unwrap_or_else(|e| panic!("the database: {e}"))
    }

    pub(crate) async fn give_back(&self, truth: Truth) {
        self.pool.lock().await.push(truth);
    }

    /// The loader: reads `key`'s version from the database, takes `loader_time`, and returns
    /// `KEY@VERSION`; fails while the database's switch says so.
    pub(crate) async fn load(&self, key: &str) -> Result<String, LoadError> {
        let begun = self.now();
        self.loader_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = self.bucket_of(begun) {
            self.loads[i].fetch_add(1, Ordering::Relaxed);
        }
        let mut truth = self.truth().await;
        let failing = truth.failing().await;
        let version = truth.version(key).await;
        self.give_back(truth).await;
        let version = version.map_err(|e| LoadError(format!("the database: {e}")))?;
        tokio::time::sleep(self.args.loader_time).await;
        if failing.unwrap_or(false) {
            self.loader_failures.fetch_add(1, Ordering::Relaxed);
            return Err(LoadError("the source is failing (on purpose)".to_owned()));
        }
        Ok(value_of(key, version))
    }
}
