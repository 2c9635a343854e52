//! The cached reads: `#[cached]` in front of the database, with the keys and tags that the writes
//! (`routes/`) and the event handler (`events.rs`) invalidate.
//!
//! The keys are templates, not the default `<path>:<arguments>`, so that they are readable with
//! `Cache::get` and the same in every build: two instances built separately still share them.

use std::time::Duration;

use vorte_cache::cached;

use crate::db::{Db, DbError, Product, User};

/// How long a user stays cached; the write-through of `PUT /users/{id}` uses the same.
pub(crate) const USER_TTL: Duration = Duration::from_secs(300);
/// How long a cache-aside product (`GET /products/{id}`) stays cached.
pub(crate) const PRODUCT_TTL: Duration = Duration::from_secs(300);

/// The tag on everything cached about user `id` (their entry, and anything derived from it).
pub(crate) fn user_tag(id: i64) -> String {
    format!("user:{id}")
}

/// The tag on everything cached about the products of `category`.
pub(crate) fn category_tag(category: &str) -> String {
    format!("category:{category}")
}

/// The cache key of product `id` on the cache-aside route.
pub(crate) fn product_key(id: i64) -> String {
    format!("product:{id}")
}

impl Db {
    /// User `id`, cached for five minutes under `user:{id}`, tagged `users` and `user:{id}`.
    /// `Ok(None)` (no such user) is not cached, so a user created later is found at once.
    ///
    /// With its companions (`companions = true`): `Db::cached_user_key(id)` is the key the
    /// write-through writes and `Db::invalidate_cached_user(id)` is what the `user.updated`
    /// handler does, so the template is written here only.
    #[cached(ttl = 300, key = "user:{id}", tags = ["users", "user:{id}"], companions = true)]
    pub(crate) async fn cached_user(&self, id: i64) -> Result<Option<User>, DbError> {
        self.user(id).await
    }

    /// The products of `category`, cached for an hour, tagged `products` and
    /// `category:{category}`: a product update invalidates the tag of its category.
    #[cached(ttl = 3600, key = "category:{category}:products", tags = ["products", "category:{category}"])]
    pub(crate) async fn cached_products_in(&self, category: &str) -> Result<Vec<Product>, DbError> {
        self.products_in(category).await
    }
}
