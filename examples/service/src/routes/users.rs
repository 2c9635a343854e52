//! `/users/{id}`: a `#[cached]` read and a write-through update that emits `user.updated`; and
//! `/db/users/{id}`, the same read with no cache at all (the "without cache" side of the load test).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use vorte_cache::Cache;

use crate::db::{Db, User};
use crate::error::ApiError;
use crate::events::USER_UPDATED;
use crate::reads::{USER_TTL, user_tag};

/// The longest name or email `PUT /users/{id}` takes, in bytes.
const MAX_FIELD_BYTES: usize = 200;

/// The body of `PUT /users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    name: String,
    email: Option<String>,
}

/// `GET /users/{id}`: through `#[cached]` (`reads.rs`), so SQLite is read only on a miss.
pub(crate) async fn get_user(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<Json<User>, ApiError> {
    match db.cached_user(id).await? {
        Some(user) => Ok(Json(user)),
        None => Err(ApiError::NotFound(format!("user {id}"))),
    }
}

/// `GET /db/users/{id}`: reads SQLite on every request and never touches the cache.
pub(crate) async fn get_user_uncached(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<Json<User>, ApiError> {
    match db.user(id).await? {
        Some(user) => Ok(Json(user)),
        None => Err(ApiError::NotFound(format!("user {id}"))),
    }
}

/// `PUT /users/{id}` with `{"name": "...", "email": "..."}` (`email` optional): writes SQLite,
/// then emits `user.updated`, whose handler (`events.rs`) runs here before `emit` returns (and in
/// every instance on the bus) and drops the user's entry and everything tagged with them, then
/// writes the new user through to the cache under the key `#[cached]` reads.
///
/// The order matters: the handler deletes `user:{id}`, so a write-through made before the event
/// would be deleted at once by this instance's own handler, and the next read would load again.
/// Written after it, the new value stays, and this instance's next read of the user is an L1 hit;
/// the `set` itself tells the other instances on the bus to drop their L1 copies. (Those instances
/// run the handler too when they read the event; landing around the `set`, it can drop the written
/// value again, and the next read here then comes from the shared layer or SQLite: the same new
/// user either way.)
///
/// The database is the truth: once it is written the request succeeds, and a failure of the
/// event or of the cache write is logged. When the event's handler fails, the write-through still
/// replaces the user's entry; only when both fail can an old copy live on, for at most its TTL.
pub(crate) async fn put_user(
    State(db): State<Db>,
    Path(id): Path<i64>,
    Json(body): Json<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > MAX_FIELD_BYTES {
        return Err(ApiError::Invalid(format!(
            "name must be 1 to {MAX_FIELD_BYTES} bytes"
        )));
    }
    let email = body.email.as_deref().map(str::trim);
    if email.is_some_and(|e| e.is_empty() || e.len() > MAX_FIELD_BYTES || !e.contains('@')) {
        return Err(ApiError::Invalid(format!(
            "email must be an address of at most {MAX_FIELD_BYTES} bytes"
        )));
    }
    let Some(user) = db.update_user(id, name, email).await? else {
        return Err(ApiError::NotFound(format!("user {id}")));
    };

    // First the invalidation (here and, through the bus, everywhere), then the write-through:
    // the other way round, this instance's own handler would delete the value just written.
    match vorte_cache::emit(USER_UPDATED, &serde_json::json!({ "user_id": id })).await {
        Ok(ran) => tracing::debug!(user_id = id, handlers = ran, "user.updated emitted"),
        Err(e) => tracing::warn!(user_id = id, error = %e, "user.updated: a handler failed"),
    }
    // Write-through: the value `#[cached]` stores for `Result<Option<User>, _>` is `Option<User>`.
    // Under the key `Db::cached_user` reads, from its companion.
    let written = match Db::cached_user_key(id) {
        Ok(key) => {
            Cache::global()
                .set(&key, &Some(user.clone()))
                .ttl(USER_TTL)
                .tags(["users".to_owned(), user_tag(id)])
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::warn!(user_id = id, error = %e, "write-through of the updated user failed");
    }
    Ok(Json(user))
}
