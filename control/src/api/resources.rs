//! Trunks, targets, the allow-list, limits, number blocks and the blocklist.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ipnet::IpNet;

use super::{Actor, ApiError, ApiJson, ApiQuery, AppState, typed, with_path_key};
use crate::config::{Target, Trunk};
use crate::store::{AclEntry, BlockRequest, BlockedRow, Limits, Listing, NumberBlock, Page, WriteMode};

type ApiResult<T> = Result<T, ApiError>;

fn parse_cidr(field: &str, s: &str) -> ApiResult<IpNet> {
    s.parse().map_err(|_| {
        ApiError::field(field, format!("{s:?} is not a CIDR (ADDR/LEN, with / as %2F in a path)"))
    })
}

pub(super) async fn list_trunks(
    State(s): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Listing<Trunk>>> {
    s.read(move |st| st.list_trunks(&page)).await.map(Json)
}

pub(super) async fn get_trunk(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Trunk>> {
    s.read(move |st| st.trunk(&name)).await.map(Json)
}

pub(super) async fn create_trunk(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(trunk): ApiJson<Trunk>,
) -> ApiResult<(StatusCode, Json<Trunk>)> {
    let stored = trunk.clone();
    s.write_only(move |st| st.put_trunk(&actor, &trunk, WriteMode::Create)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub(super) async fn put_trunk(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<Trunk>> {
    let trunk: Trunk = typed(with_path_key(body, "name", &name)?)?;
    let stored = trunk.clone();
    s.write_only(move |st| st.put_trunk(&actor, &trunk, WriteMode::Upsert)).await?;
    Ok(Json(stored))
}

pub(super) async fn delete_trunk(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let forget = name.clone();
    s.write_only(move |st| st.delete_trunk(&actor, &name)).await?;
    s.plane.metrics().forget_trunk(&forget);
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_targets(
    State(s): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Listing<Target>>> {
    s.read(move |st| st.list_targets(&page)).await.map(Json)
}

pub(super) async fn get_target(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Target>> {
    s.read(move |st| st.target(&name)).await.map(Json)
}

pub(super) async fn create_target(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(target): ApiJson<Target>,
) -> ApiResult<(StatusCode, Json<Target>)> {
    let stored = target.clone();
    s.write_only(move |st| st.put_target(&actor, &target, WriteMode::Create)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub(super) async fn put_target(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<Target>> {
    let target: Target = typed(with_path_key(body, "name", &name)?)?;
    let stored = target.clone();
    s.write_only(move |st| st.put_target(&actor, &target, WriteMode::Upsert)).await?;
    Ok(Json(stored))
}

pub(super) async fn delete_target(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let forget = name.clone();
    s.write_only(move |st| st.delete_target(&actor, &name)).await?;
    s.plane.metrics().forget_target(&forget);
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_acl(
    State(s): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Listing<AclEntry>>> {
    s.read(move |st| st.list_acl(&page)).await.map(Json)
}

pub(super) async fn get_acl(
    State(s): State<AppState>,
    Path(cidr): Path<String>,
) -> ApiResult<Json<AclEntry>> {
    let cidr = parse_cidr("cidr", &cidr)?;
    s.read(move |st| st.acl_entry(&cidr)).await.map(Json)
}

pub(super) async fn create_acl(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(entry): ApiJson<AclEntry>,
) -> ApiResult<(StatusCode, Json<AclEntry>)> {
    let stored = entry.clone();
    s.write_only(move |st| st.add_acl(&actor, &entry)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub(super) async fn delete_acl(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(cidr): Path<String>,
) -> ApiResult<StatusCode> {
    let cidr = parse_cidr("cidr", &cidr)?;
    s.write_only(move |st| st.delete_acl(&actor, &cidr)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_limits(
    State(s): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Listing<Limits>>> {
    s.read(move |st| st.list_limits(&page)).await.map(Json)
}

pub(super) async fn get_limits(
    State(s): State<AppState>,
    Path(trunk): Path<String>,
) -> ApiResult<Json<Limits>> {
    s.read(move |st| st.limits(&trunk)).await.map(Json)
}

pub(super) async fn put_limits(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(trunk): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<Limits>> {
    let limits: Limits = typed(with_path_key(body, "trunk", &trunk)?)?;
    let stored = limits.clone();
    s.write_only(move |st| st.put_limits(&actor, &limits)).await?;
    Ok(Json(stored))
}

pub(super) async fn list_blocks(
    State(s): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Listing<NumberBlock>>> {
    s.read(move |st| st.list_blocks(&page)).await.map(Json)
}

fn parse_id(id: &str) -> ApiResult<i64> {
    id.parse().map_err(|_| ApiError::field("id", format!("{id:?} is not a block id")))
}

pub(super) async fn get_block(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NumberBlock>> {
    let id = parse_id(&id)?;
    s.read(move |st| st.block(id)).await.map(Json)
}

pub(super) async fn create_block(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(block): ApiJson<NumberBlock>,
) -> ApiResult<(StatusCode, Json<NumberBlock>)> {
    let stored = s.write(move |st| st.add_block(&actor, &block)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub(super) async fn delete_block(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id)?;
    s.write_only(move |st| st.delete_block(&actor, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_blocklist(
    State(s): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Listing<BlockedRow>>> {
    s.read(move |st| st.list_blocklist(&page)).await.map(Json)
}

pub(super) async fn create_blocklist(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(req): ApiJson<BlockRequest>,
) -> ApiResult<(StatusCode, Json<BlockedRow>)> {
    let stored = s.write(move |st| st.block_source(&actor, &req)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub(super) async fn delete_blocklist(
    State(s): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(cidr): Path<String>,
) -> ApiResult<StatusCode> {
    let cidr = parse_cidr("cidr", &cidr)?;
    s.write_only(move |st| st.unblock_source(&actor, &cidr)).await?;
    Ok(StatusCode::NO_CONTENT)
}
