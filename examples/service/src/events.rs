//! Event-driven invalidation: what every instance does when a user changes.
//!
//! `PUT /users/{id}` emits `user.updated` after it wrote the database, and writes the new user
//! through to the cache only once `emit` has returned. `emit` runs this handler in the emitting
//! instance before it returns, and publishes the event on the invalidation bus (the Redis of L2,
//! when `REDIS_URL` is set), so every other instance runs it too when it reads the event.

use vorte_cache::{Cache, on_event};

use crate::db::Db;
use crate::reads::user_tag;

/// The name of the event `PUT /users/{id}` emits.
pub(crate) const USER_UPDATED: &str = "user.updated";

/// Drops user `user_id`'s entry and every entry tagged with them (`user:{id}`), in this process's
/// L1 and in the shared layers. The payload is `{"user_id": 7}`.
#[on_event("user.updated")]
async fn invalidate_user(user_id: i64) -> vorte_cache::Result<()> {
    // The entry of `Db::cached_user`, by its companion: no copy of its key template here.
    Db::invalidate_cached_user(user_id).await?;
    Cache::global().invalidate_tag(&user_tag(user_id)).await
}
