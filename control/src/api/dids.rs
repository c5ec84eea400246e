//! DIDs: CRUD by E.164 number, search, and the streamed CSV import.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Actor, ApiError, ApiJson, ApiQuery, AppState, MAX_CSV_BODY_BYTES, typed, with_path_key};
use crate::config::Did;
use crate::store::{CsvImport, DidQuery, Listing, Page, WriteMode};

type ApiResult<T> = Result<T, ApiError>;

/// `GET /v1/dids` parameters: the filters and the page, unknown ones refused (a misspelt filter
/// must not silently list everything).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Search {
    number: Option<String>,
    prefix: Option<String>,
    customer: Option<String>,
    group: Option<String>,
    status: Option<String>,
    target: Option<String>,
    vanity: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

pub(super) async fn search(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<Search>,
) -> ApiResult<Json<Listing<Did>>> {
    let query = DidQuery {
        number: q.number,
        prefix: q.prefix,
        customer: q.customer,
        group: q.group,
        status: q.status,
        target: q.target,
        vanity: q.vanity,
    };
    let page = Page { limit: q.limit, after: q.after };
    s.read(move |st| st.search_dids(&query, &page)).await.map(Json)
}

/// `GET /v1/dids/{number}`: the DID, and its calls in progress when the data plane runs.
#[derive(Debug, serde::Serialize)]
pub(super) struct DidView {
    #[serde(flatten)]
    did: Did,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_calls: Option<u32>,
}

pub(super) async fn get_one(
    State(s): State<AppState>,
    Path(number): Path<String>,
) -> ApiResult<Json<DidView>> {
    let live = s.plane.live_calls().and_then(|l| l.did_active_calls(&number));
    let did = s.read(move |st| st.did(&number)).await?;
    Ok(Json(DidView { did, active_calls: live }))
}

pub(super) async fn create(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(did): ApiJson<Did>,
) -> ApiResult<(StatusCode, Json<Did>)> {
    let stored = s.write(move |st| st.put_did(&actor, &did, WriteMode::Create)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub(super) async fn put(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(number): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<Did>> {
    let did: Did = typed(with_path_key(body, "number", &number)?)?;
    s.write(move |st| st.put_did(&actor, &did, WriteMode::Upsert)).await.map(Json)
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(number): Path<String>,
) -> ApiResult<StatusCode> {
    s.write_only(move |st| st.delete_did(&actor, &number)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The outcome of a CSV import and the policy version that carries it.
#[derive(Debug, Serialize)]
pub(super) struct Imported {
    #[serde(flatten)]
    report: CsvImport,
    version: u64,
}

/// `POST /v1/dids/import`: the body is CSV, read as it arrives and inserted in one transaction.
pub(super) async fn import_csv(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    body: Body,
) -> ApiResult<Json<Imported>> {
    let too_large = Arc::new(AtomicBool::new(false));
    let flag = too_large.clone();
    let mut seen = 0usize;
    let stream = body.into_data_stream().map_err(io::Error::other).and_then(move |chunk| {
        seen = seen.saturating_add(chunk.len());
        let result = if seen > MAX_CSV_BODY_BYTES {
            flag.store(true, Ordering::Relaxed);
            Err(io::Error::other(format!("larger than {MAX_CSV_BODY_BYTES} bytes")))
        } else {
            Ok(chunk)
        };
        std::future::ready(result)
    });
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let result = s
        .write(move |st| {
            st.import_dids_csv(&actor, reader).map(|(report, c)| (Imported { report, version: c.version }, c))
        })
        .await;
    if too_large.load(Ordering::Relaxed) {
        return Err(ApiError::TooLarge(MAX_CSV_BODY_BYTES));
    }
    result.map(Json)
}
