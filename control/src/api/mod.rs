//! The REST API (axum over HTTP/1.1): JSON resources under `/v1`, `/metrics`, `/openapi.json`,
//! and `/healthz`, the only route without a bearer token.
//!
//! Every list takes `?limit=` (default 100, at most 10 000) and `?after=` (the `next` value of the
//! previous page). Bad input is 400 with every offending field named, and nothing is applied.
//! Bodies are limited: JSON to [`MAX_JSON_BODY_BYTES`], TOML imports to
//! [`MAX_TOML_BODY_BYTES`], CSV imports (streamed, never held whole) to [`MAX_CSV_BODY_BYTES`].

mod admin;
mod dids;
mod error;
mod resources;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};

pub use error::ApiError;
use error::{ApiJson, ApiQuery};

use crate::plane::ControlPlane;
use crate::store::{Committed, Store, StoreError};

/// Largest JSON request body, in bytes.
pub const MAX_JSON_BODY_BYTES: usize = 1024 * 1024;
/// Largest TOML import body, in bytes.
pub const MAX_TOML_BODY_BYTES: usize = 512 * 1024 * 1024;
/// Largest CSV import body, in bytes (streamed into the import, never buffered whole).
pub const MAX_CSV_BODY_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// The OpenAPI document served on `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    plane: Arc<ControlPlane>,
    started: Instant,
}

/// The authenticated caller (the token's name), recorded in the audit log.
#[derive(Debug, Clone)]
struct Actor(String);

impl AppState {
    /// State over a control plane.
    pub fn new(plane: Arc<ControlPlane>) -> Self {
        Self { plane, started: Instant::now() }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let plane = self.plane.clone();
        tokio::task::spawn_blocking(move || plane.read(f))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(Into::into)
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<(T, Committed), StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let plane = self.plane.clone();
        tokio::task::spawn_blocking(move || plane.write(f))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(Into::into)
    }

    async fn write_only(
        &self,
        f: impl FnOnce(&mut Store) -> Result<Committed, StoreError> + Send + 'static,
    ) -> Result<u64, ApiError> {
        self.write(|s| f(s).map(|c| (c.version, c))).await
    }
}

/// Every authenticated route: path and methods. The router is built from this table and the
/// OpenAPI test checks it against the document (and the methods against the live router).
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/metrics", get(admin::metrics)),
        ("/openapi.json", get(admin::openapi)),
        ("/v1/stats", get(admin::stats)),
        ("/v1/audit", get(admin::audit)),
        ("/v1/export", get(admin::export)),
        ("/v1/tokens", get(admin::list_tokens).post(admin::create_token)),
        ("/v1/import", post(admin::import).layer(DefaultBodyLimit::max(MAX_TOML_BODY_BYTES))),
        ("/v1/trunks", get(resources::list_trunks).post(resources::create_trunk)),
        (
            "/v1/trunks/{name}",
            get(resources::get_trunk).put(resources::put_trunk).delete(resources::delete_trunk),
        ),
        ("/v1/targets", get(resources::list_targets).post(resources::create_target)),
        (
            "/v1/targets/{name}",
            get(resources::get_target).put(resources::put_target).delete(resources::delete_target),
        ),
        ("/v1/dids", get(dids::search).post(dids::create)),
        ("/v1/dids/import", post(dids::import_csv).layer(DefaultBodyLimit::disable())),
        ("/v1/dids/{number}", get(dids::get_one).put(dids::put).delete(dids::delete)),
        ("/v1/blocks", get(resources::list_blocks).post(resources::create_block)),
        ("/v1/blocks/{id}", get(resources::get_block).delete(resources::delete_block)),
        ("/v1/acl", get(resources::list_acl).post(resources::create_acl)),
        ("/v1/acl/{cidr}", get(resources::get_acl).delete(resources::delete_acl)),
        ("/v1/blocklist", get(resources::list_blocklist).post(resources::create_blocklist)),
        ("/v1/blocklist/{cidr}", axum::routing::delete(resources::delete_blocklist)),
        ("/v1/limits", get(resources::list_limits)),
        ("/v1/limits/{trunk}", get(resources::get_limits).put(resources::put_limits)),
    ]
}

/// The application: `/healthz` open, everything else behind the bearer token.
pub fn router(state: AppState) -> Router {
    let mut protected = Router::new();
    for (path, route) in routes() {
        protected = protected.route(path, route);
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .with_state(state)
}

/// Checks `Authorization: Bearer TOKEN` and records the caller.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token.and_then(|t| state.plane.authenticate(t)) {
        Some(name) => {
            req.extensions_mut().insert(Actor(name));
            next.run(req).await
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

/// Replaces `key` in a JSON object body with the path's value when absent; refuses a mismatch.
fn with_path_key(
    mut body: serde_json::Value,
    key: &str,
    path_value: &str,
) -> Result<serde_json::Value, ApiError> {
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::field("body", "expected a JSON object"));
    };
    match object.get(key) {
        None => {
            object.insert(key.to_owned(), serde_json::Value::String(path_value.to_owned()));
        }
        Some(serde_json::Value::String(v)) if v == path_value => {}
        Some(_) => return Err(ApiError::field(key, format!("must match the path ({path_value})"))),
    }
    Ok(body)
}

/// Deserializes a JSON value, naming the offending field on failure.
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let field = if path == "." || path == "?" {
            message.split('`').nth(1).filter(|_| message.contains("field")).unwrap_or("body").to_owned()
        } else {
            path
        };
        ApiError::field(field, message)
    })
}

#[cfg(test)]
mod tests;
