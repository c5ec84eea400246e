//! Operations routes: metrics, OpenAPI, stats, audit log, export and import.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Actor, ApiError, ApiJson, ApiQuery, AppState, OPENAPI};
use crate::config::{Config, ConfigError};
use crate::metrics::CONTENT_TYPE;
use crate::store::{AuditEntry, Counts, Diff, Listing, Page, TokenInfo};

type ApiResult<T> = Result<T, ApiError>;

pub(super) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.plane.metrics().encode())
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /v1/stats`.
#[derive(Debug, Serialize)]
pub(super) struct Stats {
    /// Version of the snapshot in force.
    policy_version: u64,
    /// Stored objects.
    counts: Counts,
    /// Seconds since the API started.
    uptime_secs: u64,
    /// Calls in progress, when the data plane runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    active_calls: Option<u64>,
}

pub(super) async fn stats(State(s): State<AppState>) -> ApiResult<Json<Stats>> {
    let counts = s.read(|st| st.counts()).await?;
    Ok(Json(Stats {
        policy_version: s.plane.publisher().current().version,
        counts,
        uptime_secs: s.started.elapsed().as_secs(),
        active_calls: s.plane.live_calls().map(|l| l.active_calls()),
    }))
}

/// Filters and page of `GET /v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    object: Option<String>,
    key: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

pub(super) async fn audit(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Listing<AuditEntry>>> {
    let page = Page { limit: q.limit, after: q.after };
    s.read(move |st| st.audit(q.object.as_deref(), q.key.as_deref(), &page)).await.map(Json)
}

pub(super) async fn export(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let plane = s.plane.clone();
    let config = s.read(move |st| st.export(plane.base())).await?;
    let text = toml::to_string(&config).map_err(|e| ApiError::Internal(format!("TOML: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/toml")], text))
}

/// `POST /v1/import?dry_run=true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

/// The diff of an import, whether it was applied, and the version that carries it.
#[derive(Debug, Serialize)]
pub(super) struct Imported {
    diff: Diff,
    applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

pub(super) async fn import(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<Imported>> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::field("body", "not UTF-8"))?;
    let config = match Config::from_toml(text) {
        Ok(c) => c,
        Err(ConfigError::Invalid(errors)) => return Err(ApiError::BadRequest(errors)),
        Err(e) => return Err(ApiError::field("body", e.to_string())),
    };
    if q.dry_run {
        let diff = s.read(move |st| st.diff_config(&config)).await?;
        return Ok(Json(Imported { diff, applied: false, version: None }));
    }
    s.write(move |st| {
        let (diff, committed) = st.import_config(&actor, &config)?;
        Ok((Imported { diff, applied: true, version: Some(committed.version) }, committed))
    })
    .await
    .map(Json)
}

pub(super) async fn list_tokens(State(s): State<AppState>) -> ApiResult<Json<Listing<TokenInfo>>> {
    let items = s.read(|st| st.list_tokens()).await?;
    Ok(Json(Listing { items, next: None }))
}

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    name: String,
}

/// A created token: shown once, never stored in clear.
#[derive(Debug, Serialize)]
pub(super) struct CreatedToken {
    name: String,
    token: String,
}

pub(super) async fn create_token(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult<(axum::http::StatusCode, Json<CreatedToken>)> {
    let plane = s.plane.clone();
    let name = new.name.clone();
    let token = tokio::task::spawn_blocking(move || plane.create_token(&actor, &new.name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((axum::http::StatusCode::CREATED, Json(CreatedToken { name, token })))
}
