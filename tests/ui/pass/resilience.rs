//! Every resilience argument, in each of its forms, on each return shape that takes it.
use std::time::Duration;

use vorte_cache::cached;

#[derive(Debug)]
enum DbError {
    Cache(vorte_cache::Error),
}

impl From<vorte_cache::Error> for DbError {
    fn from(e: vorte_cache::Error) -> Self {
        DbError::Cache(e)
    }
}

#[cached(
    ttl = "5m",
    fail_safe = "1h",
    fail_safe_throttle = 30,
    soft_timeout = 100ms,
    hard_timeout = Duration::from_secs(2),
    early_refresh = 0.8,
    xfetch = 1.0,
    distributed_lock = true
)]
async fn every_argument(id: u32) -> Result<String, DbError> {
    Ok(id.to_string())
}

#[cached(ttl = 60, negative_ttl = 10, fail_safe = 1h, hard_timeout = "2s", soft_timeout = "1s")]
async fn result_option(id: u32, name: String) -> Result<Option<String>, DbError> {
    Ok(Some(format!("{id}{name}")))
}

/// Neither a timeout answer nor a detached body: a borrowed argument and a plain value take
/// fail-safe and the lock.
#[cached(ttl = 60, fail_safe = "10m", distributed_lock = false)]
async fn borrowed(name: &str) -> String {
    name.to_owned()
}

/// `&'static` and a `Cow` with its lifetime written are owned.
#[cached(ttl = 60, early_refresh = 0.5, key = "static:{name}:{text}")]
async fn statics(name: &'static str, text: std::borrow::Cow<'static, str>) -> Option<String> {
    Some(format!("{name}{text}"))
}

/// A zero duration turns a timeout off, so this borrowed fn may name it.
#[cached(ttl = 60, soft_timeout = 0)]
async fn soft_off(name: &str) -> Result<String, std::io::Error> {
    Ok(name.to_owned())
}

struct Service<T>(T);

impl<T: Send + Sync> Service<T> {
    /// A receiver may carry the impl's type parameters: no detached body either.
    #[cached(ttl = 60, key = "service:{id}", hard_timeout = "1s")]
    async fn find(self: std::sync::Arc<Self>, id: u32) -> Result<u32, DbError> {
        Ok(id)
    }
}

fn main() {
    let _ = every_argument(1);
    let _ = result_option(1, String::new());
    let _ = borrowed("a");
    let _ = statics("a", "b".into());
    let _ = soft_off("a");
    let _ = std::sync::Arc::new(Service(&1)).find(1);
}
