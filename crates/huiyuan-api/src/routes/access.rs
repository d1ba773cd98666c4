//! Sign-in, the caller, operators and API keys.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use huiyuan_core::auth::{CreatedApiKey, LoginInput, NewApiKey, NewOperator, OperatorChanges, Session};
use huiyuan_core::views::{ApiKeyView, OperatorView};
use huiyuan_core::ActorKind;
use huiyuan_domain::access::{Permission, Role};
use huiyuan_domain::ids::BrandId;
use serde::Serialize;
use utoipa::ToSchema;

use super::{list, page, List, PageQuery};
use crate::extract::{bearer_token, path_id, request_id, ApiJson, ApiQuery, Auth};

use crate::problem::{ApiResult, Problem, ShownOnce};
use crate::AppState;

/// Signs an operator in and returns a session token (valid 12 hours).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginInput, security(()),
    responses((status = 200, body = Session), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(s): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<LoginInput>,
) -> ApiResult<Json<Session>> {
    let address = client.ip().to_string();
    Ok(Json(
        s.core
            .login(input, request_id(&headers).map(str::to_owned), Some(&address))
            .await?,
    ))
}

/// Ends the session whose token is presented.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204, description = "Signed out")))]
pub async fn logout(
    State(s): State<AppState>,
    Auth(actor): Auth,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    s.core
        .logout(&actor, bearer_token(&headers).unwrap_or_default())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub brand_id: BrandId,
    /// `operator` or `api_key`.
    pub kind: String,
    pub id: String,
    pub role: Role,
    /// What this caller may do.
    pub permissions: Vec<String>,
    pub operator: Option<OperatorView>,
}

/// Who the caller is and what it may do.
#[utoipa::path(get, path = "/v1/me", tag = "auth", responses((status = 200, body = Me)))]
pub async fn me(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Me>> {
    let operator = s.core.current_operator(&actor).await?;
    Ok(Json(Me {
        brand_id: actor.brand_id.clone(),
        kind: match actor.kind {
            ActorKind::Operator => "operator",
            ActorKind::ApiKey => "api_key",
            ActorKind::System => "system",
        }
        .into(),
        id: actor.id.clone(),
        role: actor.role,
        permissions: Permission::ALL
            .iter()
            .filter(|p| actor.may(**p))
            .map(|p| p.as_str().to_owned())
            .collect(),
        operator,
    }))
}

#[utoipa::path(get, path = "/v1/operators", tag = "operators", params(PageQuery),
    responses((status = 200, body = List<OperatorView>), (status = 403, body = Problem)))]
pub async fn list_operators(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<OperatorView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(s.core.list_operators(&actor, &p).await?, limit)))
}

#[utoipa::path(post, path = "/v1/operators", tag = "operators", request_body = NewOperator,
    responses((status = 201, body = OperatorView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_operator(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<NewOperator>,
) -> ApiResult<(StatusCode, Json<OperatorView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.core.create_operator(&actor, input).await?),
    ))
}

/// Changes an operator; disabling, a new password or a new role ends their sessions.
#[utoipa::path(patch, path = "/v1/operators/{id}", tag = "operators",
    params(("id" = String, Path, description = "Operator ID")), request_body = OperatorChanges,
    responses((status = 200, body = OperatorView), (status = 404, body = Problem)))]
pub async fn update_operator(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<OperatorChanges>,
) -> ApiResult<Json<OperatorView>> {
    Ok(Json(
        s.core
            .update_operator(&actor, &path_id(&id, "operator")?, input)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api keys", params(PageQuery),
    responses((status = 200, body = List<ApiKeyView>), (status = 403, body = Problem)))]
pub async fn list_api_keys(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<ApiKeyView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(s.core.list_api_keys(&actor, &p).await?, limit)))
}

/// Creates an API key for a role. The secret is in this response only: it is not kept, not
/// even for an `Idempotency-Key` replay, which answers `409 secret_shown_once`.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "A replay: the secret was shown once")))]
pub async fn create_api_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, Extension<ShownOnce>, Json<CreatedApiKey>)> {
    Ok((
        StatusCode::CREATED,
        Extension(ShownOnce),
        Json(s.core.create_api_key(&actor, input).await?),
    ))
}

/// Revokes a key at once; revoking twice changes nothing.
#[utoipa::path(post, path = "/v1/api-keys/{id}/revoke", tag = "api keys",
    params(("id" = String, Path, description = "API key ID")),
    responses((status = 200, body = ApiKeyView), (status = 404, body = Problem)))]
pub async fn revoke_api_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyView>> {
    Ok(Json(
        s.core.revoke_api_key(&actor, &path_id(&id, "API key")?).await?,
    ))
}
