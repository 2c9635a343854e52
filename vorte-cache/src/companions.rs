//! The runtime side of a `#[cached]` function's companions (`get_user::invalidate`,
//! `get_user::refresh`; `get_user::key` needs nothing beyond the key's rendering): what they do
//! to [`Cache::global`](crate::Cache::global) once the macro has built the key from the
//! function's own arguments, by the function's own code (`docs/architecture.md`, the `#[cached]`
//! door).

use std::future::Future;

use crate::cached::{Callsite, Output};
use crate::engine::WriteOptions;
use crate::error::Result;
use crate::layer::LayerSet;
use crate::load::{self, Given};
use crate::store::BoxFuture;

/// `get_user::invalidate(..)`: removes the entry under `key` from every layer (and, through the
/// bus, from the L1 of every other process), as [`Cache::delete`](crate::Cache::delete) does.
///
/// The future owns the key and nothing of the arguments, so it is `Send + 'static` whatever their
/// types: an `#[on_event]` handler or a spawned task can hold it.
pub(crate) fn invalidate(key: Result<String>) -> BoxFuture<'static, Result<bool>> {
    Box::pin(async move {
        let key = key?;
        crate::Cache::global().delete(&key).await
    })
}

/// `get_user::refresh(..)`: runs the body, without reading the cache and without the callsite's
/// timeouts, then stores what it returned as a call that missed would have kept it (the same TTL,
/// negative TTL, tags and layers, fail-safe window and jitter, and what the body decided with
/// [`crate::load`]: `docs/architecture.md#adaptive-loads`), and hands the output back.
///
/// The write is a [`set`](crate::Cache::set), not a load's fill: it is new truth the caller asked
/// for, so a load of the key already in flight does not overwrite it, and other processes drop
/// their L1 copy (`docs/guarantees.md#g1-read-your-writes`). A failure (`Err`) leaves the entry
/// as it was; a fresh answer that is not cached (a `None` without `negative_ttl`, or one the body
/// skipped) removes it. As for the function itself, a cache failure never fails the call: it is
/// logged.
pub(crate) async fn refresh<O, F>(
    callsite: &'static Callsite,
    key: Result<String>,
    tags: Vec<String>,
    body: F,
) -> O
where
    O: Output,
    F: Future<Output = O>,
{
    // Scoped as a load's body is, so that its decisions hold; it is given no entry to revalidate,
    // since a refresh reads nothing.
    let began = std::time::Instant::now();
    let (output, adapted) = load::scoped(Given::default(), body).await;
    if output.is_failure() {
        // An `Err`: the entry stays, as it would for a failed load.
        return output;
    }
    let key = match key {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(function = callsite.path, error = %e, "no valid cache key; refreshed value not stored");
            return output;
        }
    };
    let cache = crate::Cache::global();
    let engine = cache.engine();
    let write = callsite.kept(&output).and_then(|(stored, ttl)| {
        let options = WriteOptions {
            ttl,
            tags,
            layers: callsite.layers.map(LayerSet::of),
        };
        engine
            .adapt_set(&key, &adapted, options)
            .map(|(options, validator)| (stored, options, validator))
    });
    let Some((stored, options, validator)) = write else {
        // A fresh answer that is not cached: the older entry would contradict it, so it goes.
        if let Err(e) = cache.delete(&key).await {
            tracing::warn!(function = callsite.path, key, error = %e, "entry not removed after an uncached refresh");
        }
        return output;
    };
    if let Err(e) = engine
        .set_validated(
            &key,
            &stored,
            options,
            engine.aging_of(&callsite.loads, began),
            validator,
        )
        .await
    {
        tracing::warn!(function = callsite.path, key, error = %e, "refreshed value not stored");
    }
    output
}
