//! What a loader decides about the entry it produces: adaptive caching
//! (`docs/architecture.md#adaptive-loads`) and conditional refresh
//! (`docs/architecture.md#conditional-refresh`).
//!
//! Inside a loader — the closure of [`Cache::get_or_set`](crate::Cache::get_or_set) or the body of
//! a [`#[cached]`](macro@crate::cached) function — these functions change how the value it is
//! producing is cached, from the value itself: its TTL, its tags, the layers that take it, or
//! not to cache it at all. A loader that does not call them is cached as the call says.
//!
//! ```
//! use std::time::Duration;
//! use vorte_cache::{load, Cache};
//!
//! # async fn demo(cache: &Cache) -> vorte_cache::Result<()> {
//! let hits: Vec<String> = cache
//!     .get_or_set("search:rust", || async {
//!         let hits: Vec<String> = Vec::new(); // the search
//!         if hits.is_empty() {
//!             load::skip(); // an empty result is answered, not cached
//!         }
//!         Ok::<_, std::io::Error>(hits)
//!     })
//!     .ttl(Duration::from_secs(300))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! A loader replacing an expired entry can also see it, with the validator stored with it (an
//! ETag, a last-modified time), and answer that its source has not changed:
//!
//! ```
//! use std::time::Duration;
//! use vorte_cache::{load, Cache};
//!
//! # async fn changed_since(etag: &str) -> std::io::Result<bool> { Ok(false) }
//! # async fn fetch() -> std::io::Result<(String, String)> { Ok(("page".into(), "\"v1\"".into())) }
//! # async fn demo(cache: &Cache) -> vorte_cache::Result<()> {
//! let page: String = cache
//!     .get_or_set("page:/", || async {
//!         if let Some(etag) = load::validator() {
//!             // A conditional request: `If-None-Match: <etag>`, answered 304 Not Modified.
//!             if !changed_since(&etag).await? {
//!                 if let Some(stale) = load::not_modified::<String>() {
//!                     return Ok(stale); // cached again with a fresh TTL, not produced again
//!                 }
//!             }
//!         }
//!         let (page, etag) = fetch().await?;
//!         load::set_validator(etag);
//!         Ok::<_, std::io::Error>(page)
//!     })
//!     .ttl(Duration::from_secs(60))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The decisions live with the load's future (a task-local the cache scopes around it), so they
//! hold in a `#[cached]` body as written, in a load that a soft timeout left running in the
//! background, and in an early refresh. Outside a load the functions do nothing and answer
//! `false`. A load nested in a loader (a `get_or_set` inside another's closure) has its own.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{MAX_VALIDATOR_LEN, Validator};
use crate::layer::{Layer, LayerSet};

/// What the cache gives a load: the entry it replaces, if it is still kept (stale, or in an
/// early refresh the entry still fresh), and its validator.
#[derive(Clone, Default)]
pub(crate) struct Given {
    /// The entry's value, of the type the cache stores for the load.
    pub(crate) stale: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) validator: Option<Validator>,
}

/// A load's scope: what it was given and what it decided.
struct Context {
    given: Given,
    adapted: Adapted,
}

/// What a loader decided about its entry; the default is what the call says.
#[derive(Debug, Default, Clone)]
pub(crate) struct Adapted {
    /// The entry's TTL in place of the call's (and of a `#[cached]` negative TTL).
    pub(crate) ttl: Option<Duration>,
    /// Tags added to the call's.
    pub(crate) tags: Vec<String>,
    /// The layers that take the entry, in place of the call's.
    pub(crate) layers: Option<LayerSet>,
    /// The value is answered (and handed to the load's waiters) but not cached.
    pub(crate) skip: bool,
    /// The validator stored with the value: the loader's, or after a not-modified answer the
    /// one the entry had.
    pub(crate) validator: Option<Validator>,
    /// The loader answered that the entry it was given is still current, and returned it.
    pub(crate) not_modified: bool,
}

impl Adapted {
    /// Whether the loader changed nothing: the call's options stand as they are.
    pub(crate) fn is_plain(&self) -> bool {
        self.ttl.is_none()
            && self.tags.is_empty()
            && self.layers.is_none()
            && !self.skip
            && self.validator.is_none()
            && !self.not_modified
    }
}

tokio::task_local! {
    /// The decisions of the load whose future is being polled.
    static LOAD: RefCell<Context>;
}

/// Runs `load` with what it is `given` and a fresh set of decisions in scope, and returns them
/// with its output.
pub(crate) async fn scoped<F: Future>(given: Given, load: F) -> (F::Output, Adapted) {
    let context = Context {
        given,
        adapted: Adapted::default(),
    };
    let mut scoped = std::pin::pin!(LOAD.scope(RefCell::new(context), load));
    let output = (&mut scoped).await;
    let adapted = scoped
        .as_mut()
        .take_value()
        .map(|context| context.into_inner().adapted)
        .unwrap_or_default();
    (output, adapted)
}

/// Changes the current load's decisions; false outside a load.
fn decide(change: impl FnOnce(&mut Adapted)) -> bool {
    LOAD.try_with(|cell| change(&mut cell.borrow_mut().adapted))
        .is_ok()
}

/// Caches the value being loaded for `ttl` instead of the call's TTL (or a `#[cached]`
/// function's `negative_ttl`). Layer caps (`ttl` of a layer) and jitter still apply, and the
/// fail-safe window comes after it as usual. False outside a load.
pub fn ttl(ttl: Duration) -> bool {
    decide(|a| a.ttl = Some(ttl))
}

/// Adds tags to the value being loaded, besides the call's: `invalidate_tag` of any of them
/// removes it. Stamped when the load ends; if a tag invalidation reached this process while the
/// load ran, the value is answered but not cached, since it may predate that invalidation.
/// Another process's invalidation reaches it with its bus notice, so one whose notice is still
/// on its way when the load ends is not seen (`docs/architecture.md#adaptive-loads`): tags known
/// before the load belong on the call, which stamps them before it. False outside a load.
pub fn tags<I, S>(tags: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
    decide(|a| a.tags.extend(tags))
}

/// Stores the value being loaded only in these layers (those of them that are enabled), in
/// place of the call's: as [`GetOrSet::layer`](crate::GetOrSet::layer) would. No enabled layer
/// among them: the value is not cached. False outside a load.
pub fn layers<I>(layers: I) -> bool
where
    I: IntoIterator<Item = Layer>,
{
    let layers: Vec<Layer> = layers.into_iter().collect();
    decide(|a| a.layers = Some(LayerSet::of(&layers)))
}

/// Does not cache the value being loaded: the caller (and any caller waiting on the same load)
/// gets it, nothing is written and nothing already cached is removed. False outside a load.
pub fn skip() -> bool {
    decide(|a| a.skip = true)
}

/// The validator stored with the entry this load replaces (see [`set_validator`]): an expired
/// entry kept for revalidation or fail-safe, or in an early refresh the entry still fresh.
/// `None` outside a load, without such an entry, or when it has no validator.
pub fn validator() -> Option<String> {
    LOAD.try_with(|cell| cell.borrow().given.validator.as_deref().cloned())
        .ok()
        .flatten()
}

/// Stores `validator` (an ETag, a last-modified time: up to 1024 bytes) with the value being
/// loaded, in every layer that takes it. The entry is then kept past its TTL, stale, for as
/// long again as its TTL (or its fail-safe window, if longer), so that the load that replaces
/// it can revalidate it ([`validator`], [`not_modified`]). False outside a load, or when the
/// validator is too long (it is not stored).
pub fn set_validator(validator: impl Into<String>) -> bool {
    let validator: String = validator.into();
    if validator.len() > MAX_VALIDATOR_LEN {
        tracing::warn!(
            len = validator.len(),
            max = MAX_VALIDATOR_LEN,
            "validator too long; not stored"
        );
        return false;
    }
    decide(|a| a.validator = Some(Validator::new(validator)))
}

/// The source says the entry this load replaces is still current: answers its value, for the
/// loader to return, and marks the load *not modified*. The value is then cached again with a
/// fresh TTL (and the call's or the loader's other options), keeping its validator unless the
/// loader sets another, like any loaded value: single flight, write-through to every layer, and
/// the fence (an invalidation since the load began drops it, `docs/guarantees.md#g3-no-resurrection`)
/// apply; it is counted in `LoadStats::not_modified`.
///
/// `T` is the type the cache stores: the loader's value type (for a `#[cached]` function, the `T`
/// of its `Result<T, E>` or `T`, and `Option<T>` for an `Option<T>` or `Result<Option<T>, E>`).
/// `None` (and nothing marked) outside a load, without such an entry, or for another `T`: the
/// loader must then produce the value.
pub fn not_modified<T: Clone + 'static>() -> Option<T> {
    LOAD.try_with(|cell| {
        let mut context = cell.borrow_mut();
        let value = context
            .given
            .stale
            .as_ref()
            .and_then(|stale| stale.downcast_ref::<T>())
            .cloned()?;
        if context.adapted.validator.is_none() {
            context.adapted.validator = context.given.validator.clone();
        }
        context.adapted.not_modified = true;
        Some(value)
    })
    .ok()
    .flatten()
}
