use axum::extract::State;
use axum::Json;
use huiyuan_core::views::AuditView;
use huiyuan_core::AuditFilter;
use serde::Deserialize;

use super::{list, page, List};
use crate::extract::{ApiQuery, Auth};
use crate::problem::ApiResult;
use crate::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events about this record (a member, store, operator or key ID).
    pub target_id: Option<String>,
    /// Only events by this operator or key.
    pub actor_id: Option<String>,
    /// Only this action, e.g. `member.updated`.
    pub action: Option<String>,
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
}

/// The audit log, newest first (admin and auditor).
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(AuditQuery),
    responses((status = 200, body = List<AuditView>), (status = 403, body = crate::problem::Problem)))]
pub async fn list_audit(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<List<AuditView>>> {
    let (p, limit) = page(q.limit, q.starting_after)?;
    let filter = AuditFilter {
        target_id: q.target_id,
        actor_id: q.actor_id,
        action: q.action,
    };
    Ok(Json(list(s.core.list_audit(&actor, &filter, &p).await?, limit)))
}
