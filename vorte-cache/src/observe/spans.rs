//! Spans (feature `tracing`): one per public call, one child per store call, one per bus message
//! applied (`docs/observability.md#spans`).
//!
//! Field names follow the OpenTelemetry semantic conventions where they exist (`db.system.name`,
//! `db.operation.name`, `otel.kind`, `otel.status_code`, `error.type`); the cache's own are under
//! `vorte.`. With no subscriber interested, creating a span is one check of its callsite's
//! interest, and nothing is formatted or allocated.

use std::future::Future;
use std::time::Instant;

use tracing::field::Empty;
use tracing::{Instrument, Span};

use super::{Instruments, StoreOp};
use crate::error::{Error, Result};
use crate::layer::Layer;

/// Whether any subscriber may want the cache's spans: one relaxed load of tracing's global
/// level filter. Every span is behind it, so that with no subscriber (or one at WARN) a call
/// pays one compare and builds nothing.
#[inline(always)]
pub(crate) fn active() -> bool {
    tracing::level_enabled!(tracing::Level::INFO)
}

/// The span of a public call. The key is recorded as `[cache.observe] record_keys` says.
pub(crate) fn call(op: &'static str, key: Option<&str>, instruments: &Instruments) -> Span {
    let span = tracing::info_span!(
        "vorte.call",
        otel.name = op,
        vorte.operation = op,
        vorte.function = Empty,
        vorte.key = Empty,
        vorte.layer = Empty,
        vorte.loaded = Empty,
        vorte.duration_ms = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    );
    if !span.is_disabled()
        && let Some(key) = key.and_then(|k| instruments.render_key(k))
    {
        span.record("vorte.key", key);
    }
    span
}

/// Runs `call` inside the span of a public call `op`, and records its outcome and duration.
pub(crate) async fn in_call<T>(
    op: &'static str,
    key: Option<&str>,
    instruments: &Instruments,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    let span = self::call(op, key, instruments);
    if span.is_disabled() {
        return call.await;
    }
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    finish(&span, started, result.as_ref().err());
    result
}

/// A boxed call wrapped in its span, out of line: the untraced caller stays as small (and as
/// inlinable) as without the feature.
#[cold]
#[inline(never)]
pub(crate) fn boxed_call<'a, T: 'a>(
    op: &'static str,
    key: &'a str,
    instruments: &'a Instruments,
    call: crate::store::BoxFuture<'a, Result<T>>,
) -> crate::store::BoxFuture<'a, Result<T>> {
    Box::pin(in_call(op, Some(key), instruments, call))
}

/// An L1 hit answered without awaiting: a span opened and closed at once. Callers check
/// [`active`] first; this stays out of line so that the hit path they are on stays small.
#[cold]
#[inline(never)]
pub(crate) fn l1_hit(op: &'static str, key: &str, instruments: &Instruments) {
    let span = self::call(op, Some(key), instruments);
    if !span.is_disabled() {
        span.record("vorte.layer", Layer::L1.name());
        span.record("vorte.loaded", false);
        span.record("vorte.duration_ms", 0.0);
    }
}

/// The span of a `#[cached]` function's call that missed L1 (its outcome is the function's).
pub(crate) fn cached(function: &'static str, key: Option<&str>, instruments: &Instruments) -> Span {
    let span = self::call("cached", key, instruments);
    if !span.is_disabled() {
        span.record("otel.name", function);
        span.record("vorte.function", function);
    }
    span
}

/// Records the end of a call's span.
pub(crate) fn finish(span: &Span, started: Instant, error: Option<&Error>) {
    span.record(
        "vorte.duration_ms",
        started.elapsed().as_secs_f64() * 1000.0,
    );
    if let Some(e) = error {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", tracing::field::debug(e.kind()));
    }
}

/// The current call was answered by `layer` (recorded on the call's span, if it is current).
#[inline(always)]
pub(crate) fn answered(layer: Option<Layer>) {
    if active() {
        record_layer(layer);
    }
}

#[cold]
#[inline(never)]
fn record_layer(layer: Option<Layer>) {
    Span::current().record("vorte.layer", layer.map_or("miss", Layer::name));
}

/// The current call ran its loader.
pub(crate) fn loaded() {
    if !active() {
        return;
    }
    Span::current().record("vorte.loaded", true);
}

/// The child span of one store call.
pub(crate) fn store_call(layer: Layer, backend: &'static str, op: StoreOp) -> Span {
    let system = match backend {
        "redis" | "redis-cluster" => Some("redis"),
        "memcached" => Some("memcached"),
        _ => None,
    };
    let span = tracing::info_span!(
        "vorte.store",
        otel.name = Empty,
        otel.kind = "client",
        db.system.name = Empty,
        db.operation.name = Empty,
        rpc.system = Empty,
        rpc.service = Empty,
        rpc.method = Empty,
        vorte.layer = layer.name(),
        vorte.backend = backend,
        vorte.operation = op.name(),
        otel.status_code = Empty,
        error.type = Empty,
    );
    if !span.is_disabled()
        && let Some(system) = system
    {
        // A database client span is named after its operation (the conventions' `{db.operation.name}`).
        let command = db_operation(system, op);
        span.record("otel.name", command);
        span.record("db.system.name", system);
        span.record("db.operation.name", command);
    }
    if !span.is_disabled() && backend == "s3" {
        // The conventions' AWS SDK spans: `rpc.system` `aws-api`, named `S3.<Operation>`.
        let (name, method) = s3_operation(op);
        span.record("otel.name", name);
        span.record("rpc.system", "aws-api");
        span.record("rpc.service", "S3");
        span.record("rpc.method", method);
    }
    span
}

/// The S3 API call a store operation makes (its main one): span name and `rpc.method`.
fn s3_operation(op: StoreOp) -> (&'static str, &'static str) {
    match op {
        StoreOp::Get => ("S3.GetObject", "GetObject"),
        StoreOp::Put | StoreOp::Tombstone | StoreOp::CompareAndSet | StoreOp::Lease => {
            ("S3.PutObject", "PutObject")
        }
        StoreOp::Delete => ("S3.DeleteObject", "DeleteObject"),
        StoreOp::DeleteMany => ("S3.DeleteObjects", "DeleteObjects"),
        StoreOp::List | StoreOp::Clear | StoreOp::Usage | StoreOp::Sweep => {
            ("S3.ListObjectsV2", "ListObjectsV2")
        }
    }
}

/// The command a store operation is, as the server sees it (what the conventions ask for in
/// `db.operation.name`).
fn db_operation(system: &str, op: StoreOp) -> &'static str {
    match (system, op) {
        ("memcached", StoreOp::Get) => "mg",
        ("memcached", StoreOp::Put) => "ms",
        ("memcached", StoreOp::Delete | StoreOp::DeleteMany) => "md",
        ("memcached", _) => "meta",
        (_, StoreOp::Get) => "GET",
        (_, StoreOp::Put) => "SET",
        (_, StoreOp::Delete | StoreOp::DeleteMany) => "DEL",
        (_, StoreOp::List | StoreOp::Clear | StoreOp::Usage | StoreOp::Sweep) => "SCAN",
        (_, StoreOp::Tombstone | StoreOp::CompareAndSet | StoreOp::Lease) => "EVAL",
    }
}

/// Records a store call's error on its span.
pub(crate) fn store_outcome(span: &Span, error: Option<&Error>) {
    if let Some(e) = error {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", tracing::field::debug(e.kind()));
    }
}

/// The span of a bus message this process applies.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn bus_apply(kind: &'static str, lag_ms: Option<f64>) -> Span {
    tracing::info_span!(
        "vorte.bus.apply",
        otel.name = "vorte.bus.apply",
        otel.kind = "consumer",
        messaging.system = "redis-streams",
        vorte.notice = kind,
        vorte.lag_ms = lag_ms,
    )
}
