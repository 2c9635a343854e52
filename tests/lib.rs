//! Shared helpers for the integration tests: building caches for each layer combination.
#![allow(clippy::expect_used, reason = "test helpers fail the test loudly")]

use std::path::Path;

use vorte_cache::{Cache, Config};

/// The layer combinations the API suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// L1 alone.
    L1,
    /// L1 + L4 `file`.
    L1File,
}

/// A cache for `stack`, with its files (if any) under `dir`, and extra TOML lines appended to the
/// `[cache]` table.
pub async fn build(stack: Stack, dir: &Path, cache_toml: &str) -> Cache {
    let config = config(stack, dir, cache_toml, "");
    Cache::from_config(&config.cache)
        .await
        .expect("cache builds")
}

/// The configuration `build` uses; `l1_toml` is appended to `[cache.layers.l1]`.
pub fn config(stack: Stack, dir: &Path, cache_toml: &str, l1_toml: &str) -> Config {
    let mut toml =
        format!("[cache]\n{cache_toml}\n[cache.layers.l1]\nmax_size = 10000\n{l1_toml}\n");
    if stack == Stack::L1File {
        toml.push_str(&format!(
            "[cache.layers.l4]\nbackend = \"file\"\npath = {:?}\n",
            dir.display().to_string()
        ));
    }
    Config::from_toml_str(&toml).expect("config parses")
}

/// Runs an `async fn(Stack)` test once per stack.
#[macro_export]
macro_rules! on_every_stack {
    ($($name:ident),* $(,)?) => {
        mod l1 { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Stack::L1).await }
        )* }
        mod l1_file { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Stack::L1File).await }
        )* }
    };
}
