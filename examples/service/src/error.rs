//! How a route's failure becomes an HTTP answer: a status and a JSON body `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db::DbError;

/// A route's failure.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No such user or product: 404.
    NotFound(String),
    /// The request is well formed but its content is refused (an empty name, a bad category): 422.
    Invalid(String),
    /// The database failed: 500. The cause is logged, not sent.
    Db(DbError),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Db(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ApiError::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, why),
            ApiError::Db(e) => {
                tracing::error!(error = %e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
