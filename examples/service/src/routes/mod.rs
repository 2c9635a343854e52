//! The HTTP routes.

mod products;
mod users;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

use crate::db::Db;

/// Every route of the service.
pub(crate) fn router(db: Db) -> Router {
    Router::new()
        .route("/users/{id}", get(users::get_user).put(users::put_user))
        .route("/db/users/{id}", get(users::get_user_uncached))
        .route(
            "/products/{id}",
            get(products::get_product).put(products::put_product),
        )
        .route("/categories/{name}/products", get(products::list_category))
        .route("/cache/stats", get(crate::stats::cache_stats))
        .route("/health", get(|| async { "ok" }))
        // The cache's own health, stats and live dashboard (vorte-cache-axum, docs/web.md).
        .nest(
            "/ops/cache",
            vorte_cache_axum::health::routes(vorte_cache::Cache::global()),
        )
        .nest(
            "/ops/cache/dashboard",
            vorte_cache_axum::dashboard::routes(vorte_cache::Cache::global()),
        )
        // A router nested at a path answers that path, not the path with a slash after it
        // (axum 0.8): send `/ops/cache/dashboard/` to the page.
        .route(
            "/ops/cache/dashboard/",
            get(|| async { Redirect::permanent("/ops/cache/dashboard") }),
        )
        .with_state(db)
}
