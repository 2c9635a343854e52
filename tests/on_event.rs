//! Behaviour of `#[on_event]` handlers, through `vorte_cache::emit`.
//!
//! Every test emits its own event names: the handlers of a binary are all registered at once, and
//! `emit` returns how many of them ran.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use serde_json::json;
use vorte_cache::{Cache, ErrorKind, cached, emit, on_event};

// ===== binding =====

static BOUND: Mutex<Vec<(i64, String)>> = Mutex::new(Vec::new());

#[on_event("test.bind")]
async fn record(user_id: i64, name: &str) {
    BOUND
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((user_id, name.to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_fields_bind_to_parameters_by_name() -> vorte_cache::Result<()> {
    // Field order does not matter, and extra fields are ignored.
    let ran = emit(
        "test.bind",
        &json!({ "name": "ann", "extra": true, "user_id": 7 }),
    )
    .await?;
    assert_eq!(ran, 1);
    assert_eq!(*BOUND.lock().expect("lock"), vec![(7, "ann".to_owned())]);
    Ok(())
}

#[derive(Debug, Deserialize, PartialEq)]
struct Profile {
    email: String,
}

static PROFILES: Mutex<Vec<(String, Option<u32>)>> = Mutex::new(Vec::new());

#[on_event("test.by_ref")]
async fn record_profile(profile: &Profile, age: Option<u32>) -> Result<(), std::io::Error> {
    PROFILES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((profile.email.clone(), age));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reference_and_option_parameters_bind() -> vorte_cache::Result<()> {
    #[derive(serde::Serialize)]
    struct Payload {
        profile: serde_json::Value,
    }
    // Any `Serialize` payload; a missing `Option` field binds to `None`.
    let payload = Payload {
        profile: json!({ "email": "a@example.com" }),
    };
    assert_eq!(emit("test.by_ref", &payload).await?, 1);
    assert_eq!(
        emit(
            "test.by_ref",
            &json!({ "profile": { "email": "b@x" }, "age": 40 })
        )
        .await?,
        1
    );
    assert_eq!(
        *PROFILES.lock().expect("lock"),
        vec![
            ("a@example.com".to_owned(), None),
            ("b@x".to_owned(), Some(40))
        ]
    );
    Ok(())
}

// ===== errors =====

#[on_event("test.missing")]
async fn needs_id(id: i64) {
    let _ = id;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_field_is_a_handler_error() {
    let error = emit("test.missing", &json!({ "other": 1 }))
        .await
        .expect_err("id is missing");
    assert_eq!(error.kind(), ErrorKind::Handler);
    assert!(
        error.to_string().contains("`id`"),
        "the message names the field: {error}"
    );

    let error = emit("test.missing", &json!({ "id": "seven" }))
        .await
        .expect_err("wrong type");
    assert_eq!(error.kind(), ErrorKind::Handler);
}

static AFTER_FAILURE: AtomicUsize = AtomicUsize::new(0);

#[on_event("test.failing")]
async fn fails(code: u32) -> Result<(), std::io::Error> {
    Err(std::io::Error::other(format!("handler failed with {code}")))
}

#[on_event("test.failing")]
async fn still_runs(code: u32) {
    let _ = code;
    AFTER_FAILURE.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_handler_fails_emit_and_the_others_still_run() {
    let error = emit("test.failing", &json!({ "code": 3 }))
        .await
        .expect_err("a handler failed");
    assert_eq!(error.kind(), ErrorKind::Handler);
    assert!(
        error.to_string().contains("handler failed with 3"),
        "{error}"
    );
    assert_eq!(AFTER_FAILURE.load(Ordering::SeqCst), 1);
}

// ===== counting =====

static COUNTED: AtomicUsize = AtomicUsize::new(0);

#[on_event("test.count")]
async fn count_one() {
    COUNTED.fetch_add(1, Ordering::SeqCst);
}

#[on_event("test.count")]
async fn count_two() -> vorte_cache::Result<()> {
    COUNTED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_returns_how_many_handlers_ran() -> vorte_cache::Result<()> {
    assert_eq!(emit("test.count", &json!({})).await?, 2);
    assert_eq!(COUNTED.load(Ordering::SeqCst), 2);
    assert_eq!(emit("test.nobody-listens", &json!({ "id": 1 })).await?, 0);
    Ok(())
}

// ===== invalidation, the point of it all =====

static PROFILE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 300, key = "event-user:{user_id}")]
async fn user_name(user_id: i64) -> Option<String> {
    PROFILE_CALLS.fetch_add(1, Ordering::SeqCst);
    Some(format!("user {user_id}"))
}

#[on_event("test.user.updated")]
async fn invalidate_user(user_id: i64) -> vorte_cache::Result<()> {
    Cache::global()
        .delete(&format!("event-user:{user_id}"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_invalidates_a_cached_fn() -> vorte_cache::Result<()> {
    user_name(5).await;
    user_name(5).await;
    assert_eq!(PROFILE_CALLS.load(Ordering::SeqCst), 1);

    assert_eq!(
        emit("test.user.updated", &json!({ "user_id": 5 })).await?,
        1
    );
    user_name(5).await;
    assert_eq!(
        PROFILE_CALLS.load(Ordering::SeqCst),
        2,
        "the event dropped the entry"
    );
    Ok(())
}
