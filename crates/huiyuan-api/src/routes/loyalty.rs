//! The loyalty engine: programme, purchases and refunds, points, tiers, ledger verification,
//! events and jobs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use huiyuan_core::ledger::VerifyReport;
use huiyuan_core::loyalty::jobs::JobRun;
use huiyuan_core::loyalty::points::EventView;
use huiyuan_core::loyalty::programme::{EarningPreview, ProgrammeVersion};
use huiyuan_core::loyalty::transfers::TransferOutcome;
use huiyuan_core::loyalty::views::{
    BalanceView, EntryView, PointsOutcome, PurchaseOutcome, PurchaseView, RefundOutcome, TierChangeView,
};
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_domain::loyalty::purchase::{
    ActionInput, AdjustmentInput, EarningPreviewInput, PurchaseInput, RedeemInput, RefundInput, TransferInput,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{list, page, List, PageQuery};
use crate::extract::{path_id, ApiJson, ApiQuery, Auth};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::AppState;

fn created<T>(made: bool, body: T) -> (StatusCode, Json<T>) {
    (
        if made { StatusCode::CREATED } else { StatusCode::OK },
        Json(body),
    )
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// A past version; the current one when absent.
    pub version: Option<i64>,
}

/// The brand's programme: earning rules, multipliers, caps, pending days, expiry, actions, tiers.
#[utoipa::path(get, path = "/v1/programme", tag = "programme", params(VersionQuery),
    responses((status = 200, body = ProgrammeVersion), (status = 404, body = Problem)))]
pub async fn get_programme(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult<Json<ProgrammeVersion>> {
    Ok(Json(s.core.get_programme(&actor, q.version).await?))
}

/// Publishes a new version of the programme. Earlier postings keep the version that made them.
#[utoipa::path(put, path = "/v1/programme", tag = "programme", request_body = Programme,
    responses((status = 201, body = ProgrammeVersion), (status = 422, body = Problem)))]
pub async fn publish_programme(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(programme): ApiJson<Programme>,
) -> ApiResult<(StatusCode, Json<ProgrammeVersion>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.core.publish_programme(&actor, programme).await?),
    ))
}

/// What a basket would earn under the current programme, or under a draft sent along, for an
/// imagined member (tier, birth month, streak, points earned today). Records nothing.
#[utoipa::path(post, path = "/v1/programme/preview", tag = "programme", request_body = EarningPreviewInput,
    responses((status = 200, body = EarningPreview), (status = 409, body = Problem, description = "no_programme"),
        (status = 422, body = Problem)))]
pub async fn preview_programme(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<EarningPreviewInput>,
) -> ApiResult<Json<EarningPreview>> {
    Ok(Json(s.core.preview_earning(&actor, input).await?))
}

/// Every version of the programme, newest first.
#[utoipa::path(get, path = "/v1/programme/versions", tag = "programme",
    responses((status = 200, body = Vec<ProgrammeVersion>)))]
pub async fn list_programme_versions(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<ProgrammeVersion>>> {
    Ok(Json(s.core.list_programmes(&actor, 100).await?))
}

/// Records a purchase and earns its points (rules, multipliers, caps), updating balance and
/// tier in one transaction. `order_id` is the idempotency key: the same order again answers
/// 200 with the first result. An unknown `phone` is enrolled ("pay and you are a member").
#[utoipa::path(post, path = "/v1/transactions", tag = "purchases", request_body = PurchaseInput,
    responses(
        (status = 201, body = PurchaseOutcome, description = "Recorded"),
        (status = 200, body = PurchaseOutcome, description = "This order was recorded before; nothing changed"),
        (status = 409, body = Problem, description = "order_id reused for another sale, member merged or erased, no programme"),
        (status = 422, body = Problem)))]
pub async fn record_purchase(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<PurchaseInput>,
) -> ApiResult<(StatusCode, Json<PurchaseOutcome>)> {
    let outcome = s.core.record_purchase(&actor, input).await?;
    Ok(created(outcome.created, outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to 1,000 purchases, recorded in one transaction.
    pub purchases: Vec<PurchaseInput>,
}

/// The outcome of one purchase of a batch: `status` 201, 200 (seen before) or the problem's.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<PurchaseOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One item per purchase, in the order sent.
    pub results: Vec<BatchItem>,
}

/// Records up to 1,000 purchases at once. Each gets its own status; bad items do not stop
/// good ones. Idempotent per `order_id`, so a failed batch can simply be sent again.
#[utoipa::path(post, path = "/v1/transactions/batch", tag = "purchases", request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 422, body = Problem)))]
pub async fn record_purchases(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<BatchRequest>,
) -> ApiResult<Json<BatchResponse>> {
    let results = s
        .core
        .record_purchases(&actor, input.purchases)
        .await?
        .into_iter()
        .map(|r| match r {
            Ok(o) => BatchItem {
                status: if o.created { 201 } else { 200 },
                result: Some(o),
                problem: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                BatchItem {
                    status: e.problem.status,
                    result: None,
                    problem: Some(*e.problem),
                }
            }
        })
        .collect();
    Ok(Json(BatchResponse { results }))
}

/// A recorded purchase with its itemised points and refunds so far.
#[utoipa::path(get, path = "/v1/transactions/{order_id}", tag = "purchases",
    params(("order_id" = String, Path, description = "The brand's order number")),
    responses((status = 200, body = PurchaseView), (status = 404, body = Problem)))]
pub async fn get_purchase(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(order_id): Path<String>,
) -> ApiResult<Json<PurchaseView>> {
    Ok(Json(s.core.get_purchase(&actor, &order_id).await?))
}

/// Refunds a purchase in full (no `amount`, no `lines`), by amount, or by lines, and reverses
/// its points in proportion. Points already spent become a debt repaid by the next earnings
/// (or are written off, as the programme's refund policy says). Idempotent on `refund_id`.
#[utoipa::path(post, path = "/v1/transactions/{order_id}/refunds", tag = "purchases",
    params(("order_id" = String, Path, description = "The brand's order number")), request_body = RefundInput,
    responses(
        (status = 201, body = RefundOutcome),
        (status = 200, body = RefundOutcome, description = "This refund was recorded before; nothing changed"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn refund_purchase(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(order_id): Path<String>,
    ApiJson(input): ApiJson<RefundInput>,
) -> ApiResult<(StatusCode, Json<RefundOutcome>)> {
    let (outcome, made) = s.core.refund_purchase(&actor, &order_id, input).await?;
    Ok(created(made, outcome))
}

fn member(id: &str) -> Result<MemberId, ApiError> {
    path_id(id, "member")
}

/// Available, pending and debt, points expiring in the next 30 days, the tier with its
/// benefits (for the till) and the progress to the next tier.
#[utoipa::path(get, path = "/v1/members/{id}/points", tag = "points",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = BalanceView), (status = 404, body = Problem)))]
pub async fn balance(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BalanceView>> {
    Ok(Json(s.core.points_balance(&actor, &member(&id)?).await?))
}

/// The member's ledger, newest first: every earning (with the rules that produced it),
/// activation, redemption, expiry, reversal, adjustment and debt.
#[utoipa::path(get, path = "/v1/members/{id}/points/entries", tag = "points",
    params(("id" = String, Path, description = "Member ID"), PageQuery),
    responses((status = 200, body = List<EntryView>), (status = 404, body = Problem)))]
pub async fn statement(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<EntryView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(
        s.core.points_statement(&actor, &member(&id)?, &p).await?,
        limit,
    )))
}

/// Grants (positive) or deducts (negative) points by hand, with a mandatory reason; audited.
/// Idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/points/adjustments", tag = "points",
    params(("id" = String, Path, description = "Member ID")), request_body = AdjustmentInput,
    responses((status = 201, body = PointsOutcome), (status = 200, body = PointsOutcome),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn adjust(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AdjustmentInput>,
) -> ApiResult<(StatusCode, Json<PointsOutcome>)> {
    let (o, made) = s.core.adjust_points(&actor, &member(&id)?, input).await?;
    Ok(created(made, o))
}

/// Spends points, oldest first; refused with `insufficient_points` when too few are available.
/// Idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/points/redemptions", tag = "points",
    params(("id" = String, Path, description = "Member ID")), request_body = RedeemInput,
    responses((status = 201, body = PointsOutcome), (status = 200, body = PointsOutcome),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn redeem(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RedeemInput>,
) -> ApiResult<(StatusCode, Json<PointsOutcome>)> {
    let (o, made) = s.core.redeem_points(&actor, &member(&id)?, input).await?;
    Ok(created(made, o))
}

/// Gives available points to another member of the brand, oldest first; each piece keeps its
/// expiry, and the receiver's debt is repaid first. Idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/points/transfers", tag = "points",
    params(("id" = String, Path, description = "The sending member's ID")), request_body = TransferInput,
    responses((status = 201, body = TransferOutcome), (status = 200, body = TransferOutcome),
        (status = 409, body = Problem, description = "insufficient_points, transfers_disabled, transfer_too_small, transfer_limit_reached, reference_reused"),
        (status = 422, body = Problem)))]
pub async fn transfer(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<TransferInput>,
) -> ApiResult<(StatusCode, Json<TransferOutcome>)> {
    let (o, made) = s.core.transfer_points(&actor, &member(&id)?, input).await?;
    Ok(created(made, o))
}

/// Rewards an action (check-in, review, share, profile completed, referral) within the
/// programme's limits. Idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/points/actions", tag = "points",
    params(("id" = String, Path, description = "Member ID")), request_body = ActionInput,
    responses((status = 201, body = PointsOutcome), (status = 200, body = PointsOutcome),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn action(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ActionInput>,
) -> ApiResult<(StatusCode, Json<PointsOutcome>)> {
    let (o, made) = s.core.reward_action(&actor, &member(&id)?, input).await?;
    Ok(created(made, o))
}

/// Verifies this member's ledger: hash chain, sequence, balances against entries and lots.
#[utoipa::path(get, path = "/v1/members/{id}/points/verify", tag = "points",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = VerifyReport), (status = 404, body = Problem)))]
pub async fn verify_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<VerifyReport>> {
    Ok(Json(
        s.core.verify_brand_ledgers(&actor, Some(&member(&id)?)).await?,
    ))
}

/// The member's tier changes with their reasons, newest first.
#[utoipa::path(get, path = "/v1/members/{id}/tier/history", tag = "points",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = Vec<TierChangeView>), (status = 404, body = Problem)))]
pub async fn tier_history(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<TierChangeView>>> {
    Ok(Json(s.core.tier_history(&actor, &member(&id)?).await?))
}

/// The member's purchases, newest first.
#[utoipa::path(get, path = "/v1/members/{id}/purchases", tag = "purchases",
    params(("id" = String, Path, description = "Member ID"), PageQuery),
    responses((status = 200, body = List<PurchaseView>), (status = 404, body = Problem)))]
pub async fn member_purchases(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<PurchaseView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(
        s.core.list_member_purchases(&actor, &member(&id)?, &p).await?,
        limit,
    )))
}

/// Verifies every ledger of the brand. `problems` is empty when all is well; otherwise each
/// names the member and, where it can, the entry.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "points",
    responses((status = 200, body = VerifyReport)))]
pub async fn verify_brand(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<VerifyReport>> {
    Ok(Json(s.core.verify_brand_ledgers(&actor, None).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// The last event ID already seen; events after it are returned, oldest first.
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// Domain events (earned, redeemed, expired, tier changed, …) oldest first, for webhooks and
/// automation to follow with a cursor.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = Vec<EventView>)))]
pub async fn list_events(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Vec<EventView>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(s.core.list_events(&actor, q.after.as_deref(), limit).await?))
}

/// Runs the maintenance jobs now (maturation, expiry, reminders, birthdays, tier review).
/// They also run on their own schedule; this is for operators and tests.
#[utoipa::path(post, path = "/v1/jobs/run", tag = "events",
    responses((status = 200, body = Vec<JobRun>)))]
pub async fn run_jobs(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Vec<JobRun>>> {
    Ok(Json(s.core.run_jobs_now(&actor).await?))
}
