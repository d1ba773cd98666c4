//! Health, readiness and metrics for operators of the installation.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, ApiResult};
use crate::AppState;
use huiyuan_core::{ErrorCode, Readiness};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub backend: &'static str,
    pub version: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        backend: s.core.backend(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The database is reachable and every migration this binary knows is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = crate::problem::Problem)))]
pub async fn readyz(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    match s.core.readiness().await {
        Readiness::Ready => Ok(Json(Health {
            status: "ready",
            backend: s.core.backend(),
            version: env!("CARGO_PKG_VERSION"),
        })),
        Readiness::MigrationsPending => Err(ApiError::new(
            ErrorCode::MigrationsPending,
            "the database needs migrating: run `huiyuan migrate`",
        )),
        Readiness::Unreachable(why) => {
            tracing::warn!(%why, "readiness: the database is unreachable");
            Err(ApiError::new(
                ErrorCode::DatabaseUnreachable,
                "the database is unreachable",
            ))
        }
    }
}

/// Prometheus metrics: `http_requests_total` and `http_request_duration_seconds` per route.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
