//! Coupons, the wallet and the till's checkout.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use huiyuan_core::commerce::benefits::{BenefitUsageReport, BenefitUseView, PerkUseInput};
use huiyuan_core::commerce::bulk::BulkIssueInput;
use huiyuan_core::commerce::checkout::{Quote, Sale, SaleRefund, SaleRefundInput};
use huiyuan_core::commerce::coupons::{
    ClaimInput, CouponView, IssueInput, RedeemCouponInput, RedeemCouponOutcome, RewardInput, TemplateUsage,
    TemplateView,
};
use huiyuan_core::commerce::partners::{
    HandOutInput, ImportInput, ImportOutcome, PartnerCodeView, PoolInput, PoolView,
};
use huiyuan_core::commerce::plans::{
    BuyPlanInput, MembershipView, PlanRefundInput, PlanRefundOutcome, RenewalLine, TermView,
};
use huiyuan_core::commerce::wallet::{
    TopUpInput, TopUpOutcome, TopUpRefundInput, TopUpRefundOutcome, WalletEntryView, WalletView,
};
use huiyuan_core::jobs::BulkJobView;
use huiyuan_domain::commerce::checkout::CheckoutInput;
use huiyuan_domain::commerce::coupons::TemplateInput;
use huiyuan_domain::ids::MemberId;
use serde::Deserialize;

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

fn member(id: &str) -> Result<MemberId, ApiError> {
    path_id(id, "member")
}

/// Creates a coupon template: the offer (fixed amount, percentage with a cap, threshold
/// [滿100減20], free item, free shipping), its validity, limits, stock, cost and optional claim
/// code and points price (rewards catalogue).
#[utoipa::path(post, path = "/v1/coupon-templates", tag = "coupons", request_body = TemplateInput,
    responses((status = 201, body = TemplateView), (status = 422, body = Problem)))]
pub async fn create_template(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.core.create_coupon_template(&actor, input).await?),
    ))
}

/// The brand's coupon templates, newest first.
#[utoipa::path(get, path = "/v1/coupon-templates", tag = "coupons", params(PageQuery),
    responses((status = 200, body = List<TemplateView>)))]
pub async fn list_templates(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<TemplateView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(s.core.list_coupon_templates(&actor, &p).await?, limit)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RedemptionsQuery {
    /// Only this template's coupons.
    pub template_id: Option<String>,
    /// How many, 1 to 500 (default 100).
    pub limit: Option<u32>,
}

/// The brand's latest coupon redemptions, newest first (refunded sales' coupons are issued again
/// and leave the list).
#[utoipa::path(get, path = "/v1/coupon-redemptions", tag = "coupons", params(RedemptionsQuery),
    responses((status = 200, body = Vec<CouponView>), (status = 422, body = Problem)))]
pub async fn coupon_redemptions(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<RedemptionsQuery>,
) -> ApiResult<Json<Vec<CouponView>>> {
    Ok(Json(
        s.core
            .coupon_redemptions(&actor, q.template_id.as_deref(), q.limit.unwrap_or(100))
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/coupon-templates/{id}", tag = "coupons",
    params(("id" = String, Path, description = "Template ID")),
    responses((status = 200, body = TemplateView), (status = 404, body = Problem)))]
pub async fn get_template(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(s.core.get_coupon_template(&actor, &id).await?))
}

/// Stops a template from issuing; coupons already issued stay usable.
#[utoipa::path(post, path = "/v1/coupon-templates/{id}/archive", tag = "coupons",
    params(("id" = String, Path, description = "Template ID")),
    responses((status = 200, body = TemplateView), (status = 404, body = Problem)))]
pub async fn archive_template(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(s.core.archive_coupon_template(&actor, &id).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Redemption rate under which a template is flagged (0–1); default 0.15.
    pub threshold: Option<f64>,
}

/// The benefit usage report: each template's issued, redeemed and expired coupons, its
/// redemption rate, the discount and cost it gave, flagged when used by fewer than `threshold`.
#[utoipa::path(get, path = "/v1/reports/coupon-usage", tag = "coupons", params(UsageQuery),
    responses((status = 200, body = [TemplateUsage]), (status = 422, body = Problem)))]
pub async fn coupon_usage(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Json<Vec<TemplateUsage>>> {
    Ok(Json(
        s.core.coupon_usage(&actor, q.threshold.unwrap_or(0.15)).await?,
    ))
}

/// Issues a coupon of a template to the member; idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/coupons", tag = "coupons",
    params(("id" = String, Path, description = "Member ID")), request_body = IssueInput,
    responses((status = 201, body = CouponView), (status = 200, body = CouponView, description = "Issued before with this reference"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn issue(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<IssueInput>,
) -> ApiResult<(StatusCode, Json<CouponView>)> {
    let (c, made) = s.core.issue_coupon(&actor, &member(&id)?, input).await?;
    Ok(created(made, c))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CouponsQuery {
    /// `issued`, `redeemed`, `expired` or `void`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
}

/// The member's coupons, newest first.
#[utoipa::path(get, path = "/v1/members/{id}/coupons", tag = "coupons",
    params(("id" = String, Path, description = "Member ID"), CouponsQuery),
    responses((status = 200, body = List<CouponView>), (status = 404, body = Problem)))]
pub async fn member_coupons(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<CouponsQuery>,
) -> ApiResult<Json<List<CouponView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(
        s.core
            .member_coupons(&actor, &member(&id)?, q.status.as_deref(), &p)
            .await?,
        limit,
    )))
}

/// The member claims a coupon with a template's public claim code (線上領券), once.
#[utoipa::path(post, path = "/v1/members/{id}/coupons/claim", tag = "coupons",
    params(("id" = String, Path, description = "Member ID")), request_body = ClaimInput,
    responses((status = 201, body = CouponView), (status = 200, body = CouponView, description = "Claimed before"),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn claim(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ClaimInput>,
) -> ApiResult<(StatusCode, Json<CouponView>)> {
    let (c, made) = s.core.claim_coupon(&actor, &member(&id)?, input).await?;
    Ok(created(made, c))
}

/// Spends points on a template of the rewards catalogue [1,000 points → a 50-yuan coupon]:
/// the points and the coupon in one transaction; idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/rewards", tag = "coupons",
    params(("id" = String, Path, description = "Member ID")), request_body = RewardInput,
    responses((status = 201, body = CouponView), (status = 200, body = CouponView),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn reward(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RewardInput>,
) -> ApiResult<(StatusCode, Json<CouponView>)> {
    let (c, made) = s.core.redeem_reward(&actor, &member(&id)?, input).await?;
    Ok(created(made, c))
}

/// A coupon by its code (dashes and case do not matter; a typo is caught by the check character).
#[utoipa::path(get, path = "/v1/coupons/{code}", tag = "coupons",
    params(("code" = String, Path, description = "Coupon code")),
    responses((status = 200, body = CouponView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn get_coupon(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(code): Path<String>,
) -> ApiResult<Json<CouponView>> {
    Ok(Json(s.core.get_coupon(&actor, &code).await?))
}

/// Redeems a coupon on an order priced elsewhere (an online shop): exactly once, whatever the
/// concurrency; the same order again returns the first answer. Refusals say what to change
/// ("minimum spend 100.00, basket 80.00"; "already used at store … on …").
#[utoipa::path(post, path = "/v1/coupons/{code}/redeem", tag = "coupons",
    params(("code" = String, Path, description = "Coupon code")), request_body = RedeemCouponInput,
    responses((status = 201, body = RedeemCouponOutcome), (status = 200, body = RedeemCouponOutcome),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn redeem_coupon(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(code): Path<String>,
    ApiJson(input): ApiJson<RedeemCouponInput>,
) -> ApiResult<(StatusCode, Json<RedeemCouponOutcome>)> {
    let (o, made) = s.core.redeem_coupon(&actor, &code, input).await?;
    Ok(created(made, o))
}

/// Money into the member's wallet, with the programme's top-up bonus; idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/wallet/top-ups", tag = "wallet",
    params(("id" = String, Path, description = "Member ID")), request_body = TopUpInput,
    responses((status = 201, body = TopUpOutcome), (status = 200, body = TopUpOutcome),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn top_up(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<TopUpInput>,
) -> ApiResult<(StatusCode, Json<TopUpOutcome>)> {
    let (o, made) = s.core.top_up_wallet(&actor, &member(&id)?, input).await?;
    Ok(created(made, o))
}

/// Refunds all or part of a top-up: its principal out, its bonus clawed back in proportion
/// (bonus already spent is kept back from the money returned). Idempotent on `refund_id`.
#[utoipa::path(post, path = "/v1/members/{id}/wallet/top-ups/{reference}/refunds", tag = "wallet",
    params(("id" = String, Path, description = "Member ID"), ("reference" = String, Path, description = "The top-up's reference")),
    request_body = TopUpRefundInput,
    responses((status = 201, body = TopUpRefundOutcome), (status = 200, body = TopUpRefundOutcome),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn refund_top_up(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((id, reference)): Path<(String, String)>,
    ApiJson(input): ApiJson<TopUpRefundInput>,
) -> ApiResult<(StatusCode, Json<TopUpRefundOutcome>)> {
    let (o, made) = s
        .core
        .refund_top_up(&actor, &member(&id)?, &reference, input)
        .await?;
    Ok(created(made, o))
}

/// The wallet's balance: principal (the member's money) and bonus apart.
#[utoipa::path(get, path = "/v1/members/{id}/wallet", tag = "wallet",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = WalletView), (status = 404, body = Problem)))]
pub async fn wallet(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<WalletView>> {
    Ok(Json(s.core.wallet_balance(&actor, &member(&id)?).await?))
}

/// The wallet's statement, newest first; each entry hash-chained to the one before.
#[utoipa::path(get, path = "/v1/members/{id}/wallet/entries", tag = "wallet",
    params(("id" = String, Path, description = "Member ID"), PageQuery),
    responses((status = 200, body = List<WalletEntryView>), (status = 404, body = Problem)))]
pub async fn wallet_entries(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<WalletEntryView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(
        s.core.wallet_statement(&actor, &member(&id)?, &p).await?,
        limit,
    )))
}

/// Prices a basket for a member — tier price, coupons, the most points usable and their value,
/// the wallet — lists the member's coupons it can and cannot use (and why), and the points the
/// sale would earn. Changes nothing.
#[utoipa::path(post, path = "/v1/checkout/quote", tag = "checkout", request_body = CheckoutInput,
    responses((status = 200, body = Quote), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn quote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<CheckoutInput>,
) -> ApiResult<Json<Quote>> {
    Ok(Json(s.core.quote(&actor, input).await?))
}

/// Commits a sale: the coupons, points and wallet it asks for and the points it earns, in one
/// transaction; idempotent on `order_id`. A committed quote pays exactly the quoted totals.
#[utoipa::path(post, path = "/v1/checkout/commit", tag = "checkout", request_body = CheckoutInput,
    responses((status = 201, body = Sale), (status = 200, body = Sale, description = "This order was committed before"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn commit(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<CheckoutInput>,
) -> ApiResult<(StatusCode, Json<Sale>)> {
    let (sale, made) = s.core.commit_sale(&actor, input).await?;
    Ok(created(made, sale))
}

#[utoipa::path(get, path = "/v1/checkout/{order_id}", tag = "checkout",
    params(("order_id" = String, Path, description = "The brand's order number")),
    responses((status = 200, body = Sale), (status = 404, body = Problem)))]
pub async fn get_sale(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(order_id): Path<String>,
) -> ApiResult<Json<Sale>> {
    Ok(Json(s.core.get_sale(&actor, &order_id).await?))
}

/// Refunds a whole till sale: its earned points reversed, its spent points and wallet money
/// given back, its coupons usable again while valid — in one transaction; idempotent on
/// `refund_id`.
#[utoipa::path(post, path = "/v1/checkout/{order_id}/refund", tag = "checkout",
    params(("order_id" = String, Path, description = "The brand's order number")), request_body = SaleRefundInput,
    responses((status = 201, body = SaleRefund), (status = 200, body = SaleRefund),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn refund(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(order_id): Path<String>,
    ApiJson(input): ApiJson<SaleRefundInput>,
) -> ApiResult<(StatusCode, Json<SaleRefund>)> {
    let (o, made) = s.core.refund_sale(&actor, &order_id, input).await?;
    Ok(created(made, o))
}

/// Issues a template's coupons to a list of members in the background (up to 100,000): `202`
/// with the job; follow `/v1/bulk-jobs/{id}` for its progress. Idempotent on `reference`, and
/// each member's coupon on the job's reference, so a resumed job never issues twice.
#[utoipa::path(post, path = "/v1/coupon-templates/{id}/issue-bulk", tag = "coupons",
    params(("id" = String, Path, description = "Template ID")), request_body = BulkIssueInput,
    responses((status = 202, body = BulkJobView), (status = 200, body = BulkJobView, description = "Requested before with this reference"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn issue_bulk(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<BulkIssueInput>,
) -> ApiResult<(
    StatusCode,
    [(axum::http::HeaderName, String); 1],
    Json<BulkJobView>,
)> {
    let (job, made) = s.core.issue_coupons_bulk(&actor, &id, input).await?;
    let status = if made {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(axum::http::header::LOCATION, format!("/v1/bulk-jobs/{}", job.id))],
        Json(job),
    ))
}

/// A background job: status, progress and the first failures.
#[utoipa::path(get, path = "/v1/bulk-jobs/{id}", tag = "coupons",
    params(("id" = String, Path, description = "Job ID")),
    responses((status = 200, body = BulkJobView), (status = 404, body = Problem)))]
pub async fn bulk_job(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BulkJobView>> {
    Ok(Json(s.core.bulk_job(&actor, &id).await?))
}

/// A pool of partner codes (異業聯盟): codes a partner brand gives the brand's members.
#[utoipa::path(post, path = "/v1/partner-pools", tag = "coupons", request_body = PoolInput,
    responses((status = 201, body = PoolView), (status = 422, body = Problem)))]
pub async fn create_pool(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<PoolInput>,
) -> ApiResult<(StatusCode, Json<PoolView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.core.create_partner_pool(&actor, input).await?),
    ))
}

#[utoipa::path(get, path = "/v1/partner-pools", tag = "coupons", params(PageQuery),
    responses((status = 200, body = List<PoolView>)))]
pub async fn list_pools(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<PoolView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    Ok(Json(list(s.core.list_partner_pools(&actor, &p).await?, limit)))
}

/// A pool with its codes counted: in the pool, handed out, left.
#[utoipa::path(get, path = "/v1/partner-pools/{id}", tag = "coupons",
    params(("id" = String, Path, description = "Pool ID")),
    responses((status = 200, body = PoolView), (status = 404, body = Problem)))]
pub async fn get_pool(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PoolView>> {
    Ok(Json(s.core.get_partner_pool(&actor, &id).await?))
}

/// Adds a partner's codes (up to 10,000 a call); codes already in the pool are skipped and counted.
#[utoipa::path(post, path = "/v1/partner-pools/{id}/codes", tag = "coupons",
    params(("id" = String, Path, description = "Pool ID")), request_body = ImportInput,
    responses((status = 200, body = ImportOutcome), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn import_codes(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ImportInput>,
) -> ApiResult<Json<ImportOutcome>> {
    Ok(Json(s.core.import_partner_codes(&actor, &id, input).await?))
}

/// Hands the member the pool's next free code: each code to one member only, whatever the
/// concurrency; idempotent on `reference`; `409 partner_codes_exhausted` when none is left.
#[utoipa::path(post, path = "/v1/members/{id}/partner-codes", tag = "coupons",
    params(("id" = String, Path, description = "Member ID")), request_body = HandOutInput,
    responses((status = 201, body = PartnerCodeView), (status = 200, body = PartnerCodeView),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn hand_out_code(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<HandOutInput>,
) -> ApiResult<(StatusCode, Json<PartnerCodeView>)> {
    let (c, made) = s.core.hand_out_partner_code(&actor, &member(&id)?, input).await?;
    Ok(created(made, c))
}

/// The partner codes the member was given.
#[utoipa::path(get, path = "/v1/members/{id}/partner-codes", tag = "coupons",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = [PartnerCodeView]), (status = 404, body = Problem)))]
pub async fn member_codes(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<PartnerCodeView>>> {
    Ok(Json(s.core.member_partner_codes(&actor, &member(&id)?).await?))
}

/// Buys a term of a paid membership plan (付費會員): starting now, or right after the member's
/// current coverage (a renewal); paid in money or from the wallet. Idempotent on `reference`.
#[utoipa::path(post, path = "/v1/members/{id}/plans", tag = "wallet",
    params(("id" = String, Path, description = "Member ID")), request_body = BuyPlanInput,
    responses((status = 201, body = TermView), (status = 200, body = TermView),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn buy_plan(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<BuyPlanInput>,
) -> ApiResult<(StatusCode, Json<TermView>)> {
    let (t, made) = s.core.buy_plan(&actor, &member(&id)?, input).await?;
    Ok(created(made, t))
}

/// The member's plan terms and the plan running now.
#[utoipa::path(get, path = "/v1/members/{id}/plans", tag = "wallet",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = MembershipView), (status = 404, body = Problem)))]
pub async fn member_plans(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MembershipView>> {
    Ok(Json(s.core.memberships(&actor, &member(&id)?).await?))
}

/// Refunds a term by the plan's rules (all of it within the first days, then the unused
/// share, or nothing); to the wallet when it was paid from it. Idempotent on `refund_id`.
#[utoipa::path(post, path = "/v1/members/{id}/plans/{reference}/refunds", tag = "wallet",
    params(("id" = String, Path, description = "Member ID"), ("reference" = String, Path, description = "The term's reference")),
    request_body = PlanRefundInput,
    responses((status = 201, body = PlanRefundOutcome), (status = 200, body = PlanRefundOutcome),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn refund_plan(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((id, reference)): Path<(String, String)>,
    ApiJson(input): ApiJson<PlanRefundInput>,
) -> ApiResult<(StatusCode, Json<PlanRefundOutcome>)> {
    let (o, made) = s
        .core
        .refund_plan(&actor, &member(&id)?, &reference, input)
        .await?;
    Ok(created(made, o))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// Start of the period (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[param(value_type = String, format = DateTime)]
    pub from: time::OffsetDateTime,
    /// End of the period, excluded (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[param(value_type = String, format = DateTime)]
    pub to: time::OffsetDateTime,
}

/// Per plan, the terms that ended in the period and the share renewed.
#[utoipa::path(get, path = "/v1/reports/plan-renewals", tag = "wallet", params(PeriodQuery),
    responses((status = 200, body = [RenewalLine]), (status = 422, body = Problem)))]
pub async fn plan_renewals(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult<Json<Vec<RenewalLine>>> {
    Ok(Json(s.core.renewal_report(&actor, q.from, q.to).await?))
}

/// A clerk hands the member a perk of their tier or of the plan covering them (free gift
/// wrap, a lounge visit), recorded for the benefit usage report; idempotent on `reference`.
/// `409 perk_not_available` names the tiers and plans that have the perk.
#[utoipa::path(post, path = "/v1/members/{id}/perk-uses", tag = "coupons",
    params(("id" = String, Path, description = "Member ID")), request_body = PerkUseInput,
    responses((status = 201, body = BenefitUseView), (status = 200, body = BenefitUseView, description = "Recorded before with this reference"),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn use_perk(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PerkUseInput>,
) -> ApiResult<(StatusCode, Json<BenefitUseView>)> {
    let (u, made) = s.core.use_perk(&actor, &member(&id)?, input).await?;
    Ok(created(made, u))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BenefitUsageQuery {
    /// First local date (YYYY-MM-DD); default 89 days before `to`.
    pub from: Option<String>,
    /// Last local date, included; default today.
    pub to: Option<String>,
    /// Usage rate under which a benefit is flagged (0–1); default 0.15.
    pub threshold: Option<f64>,
}

/// The benefit usage report (權益使用率): per benefit of every tier and plan — discount,
/// points multiplier, perks, partner codes — the members entitled to it now, those who used
/// it in the period, and a flag on benefits used by fewer than `threshold` of the entitled.
#[utoipa::path(get, path = "/v1/reports/benefit-usage", tag = "coupons", params(BenefitUsageQuery),
    responses((status = 200, body = BenefitUsageReport), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn benefit_usage(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<BenefitUsageQuery>,
) -> ApiResult<Json<BenefitUsageReport>> {
    let from = super::analytics::date_param("from", q.from.as_deref())?;
    let to = super::analytics::date_param("to", q.to.as_deref())?;
    Ok(Json(s.core.benefit_usage(&actor, from, to, q.threshold).await?))
}
