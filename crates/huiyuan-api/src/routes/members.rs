//! Members, member codes and the till's identify step.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use huiyuan_core::codes::{MemberCode, VerifiedCode, VerifyCodeInput};
use huiyuan_core::members::{Enrolment, MemberQuery, TillIdentifyInput, TillIdentity};
use huiyuan_core::views::{MemberExport, MemberView};
use huiyuan_core::CoreError;
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::member::{EnrolInput, MemberStatus, UpdateInput};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{list, page, List};
use crate::extract::{path_id, ApiJson, ApiQuery, Auth};
use crate::problem::{ApiError, ApiResult, Problem, ShownOnce};
use crate::AppState;

/// Enrols a member — or, when any of the identities (phone, email, card, external ID) is
/// already a member's, returns that member with 200 and changes nothing.
#[utoipa::path(post, path = "/v1/members", tag = "members", request_body = EnrolInput,
    responses(
        (status = 201, body = MemberView, description = "Enrolled"),
        (status = 200, body = MemberView, description = "Already a member"),
        (status = 409, body = Problem, description = "The identities belong to different members"),
        (status = 422, body = Problem)))]
pub async fn enrol(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<EnrolInput>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    Ok(match s.core.enrol(&actor, input).await? {
        Enrolment::Created(m) => (StatusCode::CREATED, Json(m)),
        Enrolment::Existing(m) => (StatusCode::OK, Json(m)),
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub tag: Option<String>,
    pub status: Option<MemberStatus>,
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
}

/// Lists members, newest first. To find someone by phone, email or name, use
/// `POST /v1/members/search`, which keeps personal data out of URLs and access logs.
#[utoipa::path(get, path = "/v1/members", tag = "members", params(ListQuery),
    responses((status = 200, body = List<MemberView>)))]
pub async fn list_members(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<List<MemberView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    let query = MemberQuery {
        tag: q.tag,
        status: q.status,
        ..Default::default()
    };
    Ok(Json(list(
        s.core.search_members(&actor, &query, &p).await?,
        limit,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Criteria combine; of phone, email, card number and external ID only the first given is used.
    #[serde(default)]
    pub filter: MemberQuery,
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
}

/// Finds members by phone (any format), email, card number, external ID, name prefix or tag.
#[utoipa::path(post, path = "/v1/members/search", tag = "members", request_body = SearchRequest,
    responses((status = 200, body = List<MemberView>), (status = 422, body = Problem)))]
pub async fn search_members(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(req): ApiJson<SearchRequest>,
) -> ApiResult<Json<List<MemberView>>> {
    let (p, limit) = page(req.limit, req.starting_after)?;
    Ok(Json(list(
        s.core.search_members(&actor, &req.filter, &p).await?,
        limit,
    )))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevealQuery {
    /// Show personal data in clear (needs `pii.reveal`; audited).
    pub reveal: Option<bool>,
}

/// Reads a member. A merged-away ID answers `308` with `Location` set to the surviving member.
#[utoipa::path(get, path = "/v1/members/{id}", tag = "members",
    params(("id" = String, Path, description = "Member ID"), RevealQuery),
    responses(
        (status = 200, body = MemberView),
        (status = 308, body = Problem, description = "Merged: follow `Location`"),
        (status = 404, body = Problem)))]
pub async fn get_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RevealQuery>,
) -> ApiResult<Response> {
    let id: MemberId = path_id(&id, "member")?;
    match s.core.get_member(&actor, &id, q.reveal.unwrap_or(false)).await {
        Ok(m) => Ok(Json(m).into_response()),
        Err(CoreError::Merged { from, into }) => {
            let location = format!("/v1/members/{into}");
            let mut res = ApiError::from(CoreError::Merged { from, into }).into_response();
            *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
            if let Ok(v) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            Ok(res)
        }
        Err(e) => Err(e.into()),
    }
}

/// Changes a member: absent fields stay, `null` clears. Changing the phone or email re-checks
/// that no other member holds it.
#[utoipa::path(patch, path = "/v1/members/{id}", tag = "members",
    params(("id" = String, Path, description = "Member ID")), request_body = UpdateInput,
    responses((status = 200, body = MemberView), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
pub async fn update_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdateInput>,
) -> ApiResult<Json<MemberView>> {
    Ok(Json(
        s.core
            .update_member(&actor, &path_id(&id, "member")?, input)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The member to fold into the one in the path; its ID redirects there afterwards.
    pub merge_from: MemberId,
}

/// Merges another member into this one: identities, tags and missing profile fields move.
#[utoipa::path(post, path = "/v1/members/{id}/merge", tag = "members",
    params(("id" = String, Path, description = "The member that remains")), request_body = MergeRequest,
    responses((status = 200, body = MemberView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn merge_members(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MergeRequest>,
) -> ApiResult<Json<MemberView>> {
    Ok(Json(
        s.core
            .merge_members(&actor, &path_id(&id, "member")?, &req.merge_from)
            .await?,
    ))
}

/// Erases the member's personal data (PIPL / GDPR); the record and its aggregates remain.
#[utoipa::path(post, path = "/v1/members/{id}/erase", tag = "members",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = MemberView), (status = 404, body = Problem)))]
pub async fn erase_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MemberView>> {
    Ok(Json(s.core.erase_member(&actor, &path_id(&id, "member")?).await?))
}

/// Everything held about the member, in clear (admin; audited).
#[utoipa::path(get, path = "/v1/members/{id}/export", tag = "members",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = MemberExport), (status = 404, body = Problem)))]
pub async fn export_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MemberExport>> {
    Ok(Json(
        s.core.export_member(&actor, &path_id(&id, "member")?).await?,
    ))
}

/// Issues a dynamic member code: 18 digits and a signed QR payload, valid 60 seconds, usable
/// once. The code is not kept for an `Idempotency-Key` replay (`409 secret_shown_once`): ask
/// for a new one.
#[utoipa::path(post, path = "/v1/members/{id}/code", tag = "member codes",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 201, body = MemberCode), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "A replay: the code was shown once")))]
pub async fn issue_code(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Extension<ShownOnce>, Json<MemberCode>)> {
    Ok((
        StatusCode::CREATED,
        Extension(ShownOnce),
        Json(s.core.issue_code(&actor, &path_id(&id, "member")?).await?),
    ))
}

/// Resolves a member code (typed or scanned) to its member, once.
#[utoipa::path(post, path = "/v1/codes/verify", tag = "member codes", request_body = VerifyCodeInput,
    responses(
        (status = 200, body = VerifiedCode),
        (status = 404, body = Problem, description = "No such code"),
        (status = 409, body = Problem, description = "Already used"),
        (status = 410, body = Problem, description = "Expired"),
        (status = 422, body = Problem, description = "Malformed or forged")))]
pub async fn verify_code(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<VerifyCodeInput>,
) -> ApiResult<Json<VerifiedCode>> {
    Ok(Json(s.core.verify_code(&actor, &input.code).await?))
}

/// Till step 1: identify the member by code, phone or card. An unknown phone is enrolled on
/// the spot ("pay and you are a member") and answered with 201.
#[utoipa::path(post, path = "/v1/till/identify", tag = "till", request_body = TillIdentifyInput,
    responses((status = 200, body = TillIdentity), (status = 201, body = TillIdentity, description = "Enrolled now"),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn till_identify(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<TillIdentifyInput>,
) -> ApiResult<(StatusCode, Json<TillIdentity>)> {
    let found = s.core.till_identify(&actor, input).await?;
    let status = if found.enrolled {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(found)))
}
