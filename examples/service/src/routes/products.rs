//! `/products/{id}` (cache-aside, and an update that invalidates its category's tag) and
//! `/categories/{name}/products` (a `#[cached]` listing tagged with its category).

use axum::Json;
use axum::extract::{Path, State};
use vorte_cache::Cache;

use crate::db::{Db, Product, ProductChange};
use crate::error::ApiError;
use crate::reads::{PRODUCT_TTL, category_tag, product_key};

/// The longest category name taken, in bytes.
const MAX_CATEGORY_BYTES: usize = 64;
/// The longest product name taken, in bytes.
const MAX_NAME_BYTES: usize = 200;

/// `GET /products/{id}`, cache-aside written out by hand: `cache.get`, and on a miss read SQLite
/// and `cache.set`. The entry carries its category's tag, so `PUT /products/{id}` drops it with
/// the listing.
///
/// A cache failure is logged and the request goes to the database. (`Cache::get_or_set` is the
/// same pattern in one call, with single-flight and the guarantee that a load which began before
/// an invalidation never writes back: `docs/guarantees.md#g3-no-resurrection`. The hand-written
/// form is shown because it is the seed's.)
pub(crate) async fn get_product(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<Json<Product>, ApiError> {
    let cache = Cache::global();
    let key = product_key(id);
    match cache.get::<Product>(&key).await {
        Ok(Some(product)) => return Ok(Json(product)),
        Ok(None) => {}
        Err(e) => tracing::warn!(product_id = id, error = %e, "cache read failed; reading SQLite"),
    }
    let Some(product) = db.product(id).await? else {
        return Err(ApiError::NotFound(format!("product {id}")));
    };
    let stored = cache
        .set(&key, &product)
        .ttl(PRODUCT_TTL)
        .tags(["products".to_owned(), category_tag(&product.category)])
        .await;
    if let Err(e) = stored {
        tracing::warn!(product_id = id, error = %e, "cache write failed");
    }
    Ok(Json(product))
}

/// `GET /categories/{name}/products`: through `#[cached]` (`reads.rs`), tagged `category:{name}`.
pub(crate) async fn list_category(
    State(db): State<Db>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Product>>, ApiError> {
    check_category(&name)?;
    Ok(Json(db.cached_products_in(&name).await?))
}

/// `PUT /products/{id}` with any of `{"name", "category", "price_cents"}`: writes SQLite, then
/// invalidates the tag of the product's category (both categories when it moved), which drops
/// the cached listings and the cache-aside entry of the product in every instance.
pub(crate) async fn put_product(
    State(db): State<Db>,
    Path(id): Path<i64>,
    Json(change): Json<ProductChange>,
) -> Result<Json<Product>, ApiError> {
    if let Some(name) = &change.name
        && (name.trim().is_empty() || name.len() > MAX_NAME_BYTES)
    {
        return Err(ApiError::Invalid(format!(
            "name must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    if let Some(category) = &change.category {
        check_category(category)?;
    }
    if change.price_cents.is_some_and(|p| p < 0) {
        return Err(ApiError::Invalid("price_cents must be >= 0".to_owned()));
    }
    let Some((before, after)) = db.update_product(id, &change).await? else {
        return Err(ApiError::NotFound(format!("product {id}")));
    };
    let cache = Cache::global();
    let mut categories = vec![before.category.as_str()];
    if after.category != before.category {
        categories.push(after.category.as_str());
    }
    for category in categories {
        if let Err(e) = cache.invalidate_tag(&category_tag(category)).await {
            tracing::warn!(product_id = id, category, error = %e, "tag invalidation failed");
        }
    }
    Ok(Json(after))
}

/// A category name is 1 to 64 bytes of lowercase ASCII letters, digits, `-` and `_`: it becomes
/// part of a cache key and a tag, and a listing of any other string would only fill the cache
/// with empty lists.
fn check_category(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_CATEGORY_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "a category is 1 to {MAX_CATEGORY_BYTES} bytes of a-z, 0-9, '-' and '_'"
        )))
    }
}
