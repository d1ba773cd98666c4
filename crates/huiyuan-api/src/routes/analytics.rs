//! Analytics over the brand's purchases: RFM segments and cohort retention.

use axum::extract::State;
use axum::Json;
use huiyuan_core::analytics::{CohortView, RfmView};
use huiyuan_core::CoreError;
use huiyuan_domain::ValidationError;
use serde::Deserialize;
use time::Date;

use crate::extract::{ApiQuery, Auth};
use crate::problem::{ApiResult, Problem};
use crate::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    /// A date in the brand's time zone, `YYYY-MM-DD`; default today.
    pub as_of: Option<String>,
}

impl AsOfQuery {
    fn date(&self) -> Result<Option<Date>, CoreError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        self.as_of
            .as_deref()
            .map(|s| {
                Date::parse(s, format)
                    .map_err(|_| ValidationError::field("as_of", "is not a date YYYY-MM-DD").into())
            })
            .transpose()
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
