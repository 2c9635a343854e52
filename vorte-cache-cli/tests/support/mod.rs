//! Running the `vorte-cache` binary against real servers, from a test that writes and checks the
//! data through the library (the binary is a second process's view of the same cache).
#![allow(dead_code, reason = "each test binary uses its part of the helpers")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vorte_cache::Cache;
use vorte_cache_tests::{Env, Stack};

/// One run of the binary: its exit code and what it printed.
#[derive(Debug)]
pub(crate) struct Run {
    /// The exit code (`-1` if killed by a signal).
    pub(crate) code: i32,
    /// Stdout.
    pub(crate) stdout: String,
    /// Stderr.
    pub(crate) stderr: String,
}

impl Run {
    /// Stdout parsed as one JSON document.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code, showing the whole run when it differs.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code of {self:#?}");
        self
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The binary under test: cargo's build of it, or the copy `VORTE_CACHE_TEST_BIN` names. Several
/// worktrees may share one target directory (`CARGO_TARGET_DIR`), where another branch's build
/// can replace `vorte-cache` between this build and this run; a copy taken right after the build
/// cannot be replaced.
pub(crate) fn binary() -> String {
    std::env::var("VORTE_CACHE_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_vorte-cache").to_owned())
}

/// The binary as a command to be given its arguments: stdin closed (not a terminal), no `VORTE…`
/// variables inherited.
pub(crate) fn base_command() -> Command {
    let mut command = Command::new(binary());
    command.stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("VORTE") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs the binary with `args`, stdin closed (not a terminal), no `VORTE…` variables inherited.
/// Blocking: call it through [`run`] from async tests.
pub(crate) fn run_sync(args: &[&str], env: &[(&str, &str)]) -> Run {
    let binary = binary();
    let mut command = base_command();
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"))
        .into()
}

/// [`run_sync`] off the async runtime's workers (the test's own caches keep reading their bus).
pub(crate) async fn run(args: &[&str]) -> Run {
    run_env(args, &[]).await
}

/// [`run`] with environment variables.
pub(crate) async fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        run_sync(&args, &env)
    })
    .await
    .expect("the run's thread")
}

/// A stack's servers, its configuration written to a file for the binary, and a cache on it for
/// the test.
pub(crate) struct Setup {
    pub(crate) env: Env,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    /// The configuration as the test's caches read it.
    pub(crate) toml: String,
}

impl Setup {
    /// Starts (or reuses) `stack`'s servers and writes its configuration (`cache_toml` in
    /// `[cache]`) as `cache.toml`.
    pub(crate) fn new(stack: Stack, cache_toml: &str) -> Setup {
        let env = Env::new(stack);
        let toml = env.toml(cache_toml, "");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("cache.toml");
        std::fs::write(&config, &toml).expect("write the config");
        Setup {
            env,
            dir,
            config,
            toml,
        }
    }

    /// The config file's path.
    pub(crate) fn config(&self) -> &str {
        self.config.to_str().expect("a UTF-8 temp path")
    }

    /// A cache of the test on the same servers and prefix: another process than the binary.
    pub(crate) async fn cache(&self) -> Cache {
        let config = vorte_cache::Config::from_toml_str(&self.toml).expect("config parses");
        Cache::from_config(&config.cache)
            .await
            .expect("cache builds")
    }

    /// Runs the binary with `--config <file>` and `args`.
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config", self.config()];
        all.extend_from_slice(args);
        run(&all).await
    }

    /// A file in the setup's directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The layer name (`"l2"`, …) a second process finds a key in on `stack`.
pub(crate) fn first_layer(stack: Stack) -> &'static str {
    stack.first_shared_layer().name()
}

/// Writes `contents` to `name` in `dir`; its path.
pub(crate) fn write(
    dir: &tempfile::TempDir,
    name: &str,
    contents: &(impl AsRef<[u8]> + ?Sized),
) -> String {
    let path = dir.path().join(name);
    if let Err(e) = std::fs::write(&path, contents.as_ref()) {
        panic!("cannot write {}: {e}", path.display());
    }
    path.display().to_string()
}

/// Polls `check` until it holds or `within` passes; whether it held.
pub(crate) async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs each `async fn name(stack: Stack)` on the five stacks the command must work on:
/// L1 + L2 redis, L1 + L3 redis-cluster (3 masters), L1 + L2 memcached with the bus on a Redis,
/// L1 + L4 file, L1 + L4 S3 (moto); through the `tests` crate's `on_every_stack!`.
#[macro_export]
macro_rules! on_cli_stacks {
    ($($name:ident),* $(,)?) => {
        vorte_cache_tests::on_every_stack!(@stack l1_redis, L1Redis, $($name),*);
        vorte_cache_tests::on_every_stack!(@stack l1_cluster, L1Cluster, $($name),*);
        vorte_cache_tests::on_every_stack!(@stack l1_memcached, L1Memcached, $($name),*);
        vorte_cache_tests::on_every_stack!(@stack l1_file, L1File, $($name),*);
        vorte_cache_tests::on_every_stack!(@stack l1_s3, L1S3, $($name),*);
    };
}
