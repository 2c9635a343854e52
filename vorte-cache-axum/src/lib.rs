//! vorte-cache in an axum/tower service.
//!
//! - the cache as application state and as an extractor ([`extract`]);
//! - a tower layer that caches whole HTTP responses ([`response`]);
//! - routes that report the cache's health and stats as JSON ([`health`]);
//! - with the `dashboard` feature, a live dashboard page ([`dashboard`]).

#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod extract;
pub mod health;
pub mod response;

pub use extract::{AppCache, CacheHandle, MissingCache};
pub use response::{ResponseCache, ResponseCacheLayer, X_CACHE};
