//! A four-layer async cache: in-process (L1), local Redis or Memcached (L2), a Redis Cluster (L3)
//! and object storage (L4). Reads and writes flow through the layers by themselves;
//! [`#[cached]`](macro@cached) caches a function and [`#[on_event]`](macro@on_event) registers an
//! invalidation handler.
//!
//! ```
//! use std::time::Duration;
//! use vorte_cache::{cached, Cache};
//!
//! #[cached(ttl = 300, key = "user:{user_id}")]
//! async fn get_user(user_id: i64) -> Result<String, std::io::Error> {
//!     Ok(format!("user #{user_id}"))             // the database call
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> vorte_cache::Result<()> {
//! assert_eq!(get_user(1).await.expect("loads"), "user #1");
//! // The second call is an L1 hit; the value is also readable by key:
//! let cached: Option<String> = Cache::global().get("user:1").await?;
//! assert_eq!(cached.as_deref(), Some("user #1"));
//! # Ok(()) }
//! ```
//!
//! A loader (a `get_or_set` closure or a `#[cached]` body) can decide how its value is cached,
//! and revalidate an expired entry instead of producing it again: see [`load`].
//!
//! The layers, the read and write paths and the tag design are described in
//! `docs/architecture.md`; the configuration in [`Config`].

mod app;
mod bus;
mod cache;
mod cached;
mod clock;
mod codec;
mod companions;
pub mod config;
mod engine;
mod error;
mod events;
mod fence;
mod flight;
mod glob;
mod histogram;
mod key;
mod l1;
mod layer;
pub mod load;
pub mod observe;
#[cfg(feature = "simulate")]
pub mod simulate;
mod stats;
pub mod store;
mod tags;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use app::{Vorte, VorteBuilder, emit};
pub use bus::BusStats;
pub use cache::{
    Cache, CacheBuilder, Fetched, Freshness, GetOrSet, InspectedEntry, InspectedTag, Inspection,
    Set,
};
pub use config::{CacheConfig, Config};
pub use error::{Error, ErrorKind, Result};
#[allow(deprecated)]
pub use events::EventBus;
pub use events::Handlers;
pub use key::MAX_KEY_LEN;
pub use layer::Layer;
pub use stats::{
    ByteSize, CacheStats, CacheUsage, CircuitState, CircuitStats, LayerStats, LayerUsage, LoadStats,
};
pub use store::{BoxFuture, Slot, Store, Usage};

#[cfg(feature = "macros")]
#[doc = include_str!("docs/cached.md")]
pub use vorte_cache_macros::cached;
#[cfg(feature = "macros")]
#[doc = include_str!("docs/on_event.md")]
pub use vorte_cache_macros::on_event;

// The README's examples run as doc tests, so the README cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
