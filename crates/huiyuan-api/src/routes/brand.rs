use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use huiyuan_core::brands::{BrandChanges, NewStore, StoreChanges};
use huiyuan_core::views::{BrandView, StoreView};

use super::{list, page, List, PageQuery};
use crate::extract::{path_id, ApiJson, ApiQuery, Auth};
use crate::problem::{ApiResult, Problem};
use crate::AppState;

/// The caller's brand, with the public key that verifies its member codes offline.
#[utoipa::path(get, path = "/v1/brand", tag = "brand", responses((status = 200, body = BrandView)))]
pub async fn get_brand(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<BrandView>> {
    Ok(Json(s.core.get_brand(&actor).await?))
}

#[utoipa::path(patch, path = "/v1/brand", tag = "brand", request_body = BrandChanges,
    responses((status = 200, body = BrandView), (status = 422, body = Problem)))]
pub async fn update_brand(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<BrandChanges>,
) -> ApiResult<Json<BrandView>> {
    Ok(Json(s.core.update_brand(&actor, input).await?))
}

#[utoipa::path(get, path = "/v1/stores", tag = "stores", params(PageQuery),
    responses((status = 200, body = List<StoreView>)))]
pub async fn list_stores(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<StoreView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(s.core.list_stores(&actor, &p).await?, limit)))
}

#[utoipa::path(post, path = "/v1/stores", tag = "stores", request_body = NewStore,
    responses((status = 201, body = StoreView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_store(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<NewStore>,
) -> ApiResult<(StatusCode, Json<StoreView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.core.create_store(&actor, input).await?),
    ))
}

#[utoipa::path(get, path = "/v1/stores/{id}", tag = "stores", params(("id" = String, Path, description = "Store ID")),
    responses((status = 200, body = StoreView), (status = 404, body = Problem)))]
pub async fn get_store(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<StoreView>> {
    Ok(Json(s.core.get_store(&actor, &path_id(&id, "store")?).await?))
}

#[utoipa::path(patch, path = "/v1/stores/{id}", tag = "stores", params(("id" = String, Path, description = "Store ID")),
    request_body = StoreChanges, responses((status = 200, body = StoreView), (status = 404, body = Problem)))]
pub async fn update_store(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<StoreChanges>,
) -> ApiResult<Json<StoreView>> {
    Ok(Json(
        s.core
            .update_store(&actor, &path_id(&id, "store")?, input)
            .await?,
    ))
}
