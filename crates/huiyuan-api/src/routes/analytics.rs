//! Analytics over the brand's data: RFM segments, cohorts, lifecycle stages, lifetime value,
//! the dashboard's KPIs, and per member their insights and recommendations.

use axum::extract::{Path, State};
use axum::Json;
use huiyuan_analytics::kpi::Granularity;
use huiyuan_core::analytics::insights::{ClvView, LifecycleView, MemberInsightsView, RecommendationsView};
use huiyuan_core::analytics::{CohortView, KpiQuery, KpiView, RfmView};
use huiyuan_core::segments::{SegmentFilter, SegmentPreview};
use huiyuan_core::CoreError;
use huiyuan_domain::ids::{MemberId, StoreId};
use huiyuan_domain::member::Channel;
use huiyuan_domain::ValidationError;
use serde::Deserialize;
use time::Date;

use crate::extract::{path_id, ApiJson, ApiQuery, Auth};
use crate::problem::{ApiResult, Problem};
use crate::AppState;

pub(crate) fn date_param(field: &'static str, value: Option<&str>) -> Result<Option<Date>, CoreError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    value
        .map(|s| {
            Date::parse(s, format)
                .map_err(|_| ValidationError::field(field, "is not a date YYYY-MM-DD").into())
        })
        .transpose()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    /// A date in the brand's time zone, `YYYY-MM-DD`; default today.
    pub as_of: Option<String>,
}

impl AsOfQuery {
    fn date(&self) -> Result<Option<Date>, CoreError> {
        date_param("as_of", self.as_of.as_deref())
    }
}

/// RFM: members scored 1–5 on recency, frequency and monetary value, and counted in the eight
/// classic segments (重要價值 … 一般挽留), with their revenue. Fully refunded purchases are left
/// out; partial refunds net out.
#[utoipa::path(get, path = "/v1/analytics/rfm", tag = "analytics", params(AsOfQuery),
    responses((status = 200, body = RfmView), (status = 422, body = Problem)))]
pub async fn rfm(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<AsOfQuery>,
) -> ApiResult<Json<RfmView>> {
    Ok(Json(s.core.rfm_report(&actor, q.date()?).await?))
}

/// Retention by first-purchase month: how many of each month's new buyers bought again in each
/// later month.
#[utoipa::path(get, path = "/v1/analytics/cohorts", tag = "analytics", params(AsOfQuery),
    responses((status = 200, body = Vec<CohortView>), (status = 422, body = Problem)))]
pub async fn cohorts(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<AsOfQuery>,
) -> ApiResult<Json<Vec<CohortView>>> {
    Ok(Json(s.core.cohort_report(&actor, q.date()?).await?))
}

/// Members in each lifecycle stage (new, active, at risk, dormant, churned) as of a date; churn
/// is a BG/NBD P(alive) below 0.1, so it needs enough repeat purchases to fit.
#[utoipa::path(get, path = "/v1/analytics/lifecycle", tag = "analytics", params(AsOfQuery),
    responses((status = 200, body = LifecycleView), (status = 422, body = Problem)))]
pub async fn lifecycle(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<AsOfQuery>,
) -> ApiResult<Json<LifecycleView>> {
    Ok(Json(s.core.lifecycle_report(&actor, q.date()?).await?))
}

/// The lifetime-value models (BG/NBD, Gamma-Gamma) fitted on weekly purchases up to a date, and
/// what they project over the next twelve months for the brand's customers.
#[utoipa::path(get, path = "/v1/analytics/clv", tag = "analytics", params(AsOfQuery),
    responses((status = 200, body = ClvView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn clv(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<AsOfQuery>,
) -> ApiResult<Json<ClvView>> {
    Ok(Json(s.core.clv_report(&actor, q.date()?).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KpiParams {
    /// First local date, `YYYY-MM-DD`; default 29 days before `to`.
    pub from: Option<String>,
    /// Last local date, included; default today.
    pub to: Option<String>,
    /// `day` (default), `week` (Monday to Sunday) or `month`.
    pub granularity: Option<Granularity>,
    /// Only this store's purchases and enrolments.
    pub store_id: Option<String>,
    /// Only this channel's purchases and enrolments.
    pub channel: Option<Channel>,
}

/// The dashboard: member growth, active members, new and returning buyers, repurchase rate,
/// average order value, ARPU, points issued / redeemed / expired and the outstanding liability,
/// per day, week or month, and the tier distribution. Buckets are whole calendar units; `total`
/// covers exactly `from`..`to`.
#[utoipa::path(get, path = "/v1/analytics/kpis", tag = "analytics", params(KpiParams),
    responses((status = 200, body = KpiView), (status = 422, body = Problem)))]
pub async fn kpis(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<KpiParams>,
) -> ApiResult<Json<KpiView>> {
    let store_id = q
        .store_id
        .as_deref()
        .map(|raw| {
            raw.parse::<StoreId>()
                .map_err(|_| CoreError::from(ValidationError::field("store_id", "is not a store ID")))
        })
        .transpose()?;
    let query = KpiQuery {
        from: date_param("from", q.from.as_deref())?,
        to: date_param("to", q.to.as_deref())?,
        granularity: q.granularity.unwrap_or(Granularity::Day),
        store_id,
        channel: q.channel,
    };
    Ok(Json(s.core.kpi_report(&actor, query).await?))
}

/// What the models say about one member: RFM scores and segment, lifecycle stage, P(alive),
/// expected purchases and lifetime value over twelve months. From a model of the brand that is
/// rebuilt every few minutes (`computed_at`).
#[utoipa::path(get, path = "/v1/members/{id}/insights", tag = "analytics",
    params(("id" = String, Path, description = "Member ID")),
    responses((status = 200, body = MemberInsightsView), (status = 404, body = Problem)))]
pub async fn member_insights(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MemberInsightsView>> {
    let member: MemberId = path_id(&id, "member")?;
    Ok(Json(s.core.member_insights(&actor, &member).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecommendationParams {
    /// How many, 1 to 50; default 10.
    pub limit: Option<usize>,
}

/// "You may also like" (猜你喜歡): SKUs the member has not bought, from what members who bought
/// the same things also bought, blended with what sells best in the categories they buy from;
/// each with the reason.
#[utoipa::path(get, path = "/v1/members/{id}/recommendations", tag = "analytics",
    params(("id" = String, Path, description = "Member ID"), RecommendationParams),
    responses((status = 200, body = RecommendationsView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn recommendations(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RecommendationParams>,
) -> ApiResult<Json<RecommendationsView>> {
    let member: MemberId = path_id(&id, "member")?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(CoreError::from(ValidationError::field("limit", "must be between 1 and 50")).into());
    }
    Ok(Json(s.core.recommendations(&actor, &member, limit).await?))
}

/// How many active members a segment holds now, and the first of them: what a bulk issue to
/// the same segment would reach. Tier, tags, plan and channel are read fresh; RFM segments and
/// lifecycle stages come from the brand's model, rebuilt every few minutes.
#[utoipa::path(post, path = "/v1/segments/preview", tag = "analytics", request_body = SegmentFilter,
    responses((status = 200, body = SegmentPreview), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn preview_segment(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(filter): ApiJson<SegmentFilter>,
) -> ApiResult<Json<SegmentPreview>> {
    Ok(Json(s.core.preview_segment(&actor, &filter).await?))
}
