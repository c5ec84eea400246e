//! API errors and the extractors that turn bad input into them.
//!
//! Bad input is `400` with `{"errors": [{"field": …, "reason": …}]}` naming every offending
//! field; other failures are `{"error": "…"}` with 401, 404, 409, 413 or 500.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::config::FieldError;
use crate::store::StoreError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Bad input: the fields and why; nothing was applied.
    #[error("bad request")]
    BadRequest(Vec<FieldError>),
    /// Missing or wrong bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The body exceeds the route's limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// A store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task failed (panicked or was cancelled).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A single-field 400.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadRequest(vec![FieldError::new(field, reason)])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::BadRequest(errors) | Self::Store(StoreError::Invalid(errors)) => {
                (StatusCode::BAD_REQUEST, serde_json::json!({ "errors": errors }))
            }
            Self::Store(StoreError::Read(why)) => {
                (StatusCode::BAD_REQUEST, serde_json::json!({ "errors": [FieldError::new("body", why)] }))
            }
            Self::Unauthorized => {
                let mut r =
                    (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({ "error": self.to_string() })))
                        .into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            Self::TooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, serde_json::json!({ "error": self.to_string() }))
            }
            Self::Store(e @ StoreError::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, serde_json::json!({ "error": e.to_string() }))
            }
            Self::Store(e @ (StoreError::Exists { .. } | StoreError::Conflict(_))) => {
                (StatusCode::CONFLICT, serde_json::json!({ "error": e.to_string() }))
            }
            other => {
                tracing::error!(error = %other, "API request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({ "error": other.to_string() }))
            }
        };
        (status, axum::Json(body)).into_response()
    }
}

/// The field a serde error is about: its path, or the name in "missing field `x`".
fn serde_field(path: &str, message: &str) -> String {
    if path != "." && path != "?" && !path.is_empty() {
        return path.to_owned();
    }
    let quoted = message.split('`').nth(1);
    match quoted {
        Some(name) if message.starts_with("missing field") || message.starts_with("unknown field") => {
            name.to_owned()
        }
        _ => "body".to_owned(),
    }
}

/// Strips serde_json's " at line 1 column 12" tail.
fn serde_reason(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

/// A JSON body, refused with field errors.
#[derive(Debug)]
pub(super) struct ApiJson<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(super::MAX_JSON_BODY_BYTES)
            } else {
                ApiError::field("body", e.body_text())
            }
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(ApiJson).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            ApiError::field(serde_field(&path, &message), serde_reason(&message))
        })
    }
}

/// Query parameters, refused with field errors.
#[derive(Debug)]
pub(super) struct ApiQuery<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            ApiError::field(serde_field(&path, &message), message)
        })
    }
}
