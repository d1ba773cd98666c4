//! Bulk import (a CSV upload becomes a background job) and bulk export (CSV or Parquet).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::Json;
use huiyuan_core::files::export::ExportKind;
use huiyuan_core::files::import::{rejections_csv, FileEncoding, ImportKind, ImportOptions};
use huiyuan_core::files::table::Format;
use huiyuan_core::jobs::BulkJobView;
use huiyuan_core::CoreError;
use huiyuan_domain::ValidationError;
use serde::Deserialize;

use crate::extract::{ApiQuery, Auth};
use crate::problem::{ApiResult, Problem};
use crate::AppState;

/// Largest upload accepted by the import routes.
pub const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `auto` (default), `utf8` or `gbk`.
    pub encoding: Option<FileEncoding>,
    /// Their header → our field, as a JSON object: `{"Mobile No":"phone"}`; `ignore` silences one.
    pub columns: Option<String>,
    /// The system the file's external IDs come from; default `import`.
    pub source: Option<String>,
    /// Transactions: enrol phone numbers nobody has yet (default false: such lines are rejected).
    pub enrol_unknown_phones: Option<bool>,
    /// Sent again, returns the same job; default the file's SHA-256.
    pub reference: Option<String>,
}

type Accepted = (StatusCode, [(HeaderName, String); 1], Json<BulkJobView>);

async fn queue(
    s: AppState,
    actor: huiyuan_core::Actor,
    kind: ImportKind,
    q: ImportQuery,
    body: Bytes,
) -> ApiResult<Accepted> {
    let columns = match q.columns.as_deref() {
        None => Default::default(),
        Some(json) => serde_json::from_str(json).map_err(|_| {
            CoreError::from(ValidationError::field(
                "columns",
                "must be a JSON object of header → field, e.g. {\"Mobile No\":\"phone\"}",
            ))
        })?,
    };
    let options = ImportOptions {
        encoding: q.encoding.unwrap_or_default(),
        columns,
        source: q.source,
        enrol_unknown_phones: q.enrol_unknown_phones.unwrap_or(false),
    };
    let (job, made) = s
        .core
        .queue_import(&actor, kind, q.reference.as_deref(), options, &body)
        .await?;
    let status = if made {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/v1/bulk-jobs/{}", job.id))],
        Json(job),
    ))
}

/// Imports members from a CSV body (UTF-8 or GBK; headers in English or Chinese, see the API
/// guide) in the background: `202` with the job, whose progress is at `/v1/bulk-jobs/{id}` and
/// rejected lines at `/v1/bulk-jobs/{id}/rejected`. A bad header is refused at once (`422`).
/// Members already present (by external ID, phone or card) are left as they are.
#[utoipa::path(post, path = "/v1/imports/members", tag = "imports", params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 202, body = BulkJobView), (status = 200, body = BulkJobView, description = "Uploaded before"),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn import_members(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Accepted> {
    queue(s, actor, ImportKind::Members, q, body).await
}

/// Imports purchases from a CSV body through the engine (rules, ledger, tiers), as for
/// members. Consecutive lines with one `order_id` are one order; order IDs already recorded
/// change nothing.
#[utoipa::path(post, path = "/v1/imports/transactions", tag = "imports", params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 202, body = BulkJobView), (status = 200, body = BulkJobView, description = "Uploaded before"),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn import_transactions(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Accepted> {
    queue(s, actor, ImportKind::Transactions, q, body).await
}

/// The rejected lines of an import job so far, as CSV: `line,field,reason`.
#[utoipa::path(get, path = "/v1/bulk-jobs/{id}/rejected", tag = "imports",
    params(("id" = String, Path, description = "Job ID")),
    responses((status = 200, body = String, content_type = "text/csv"), (status = 404, body = Problem)))]
pub async fn import_rejected(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> ApiResult<([(HeaderName, &'static str); 1], Vec<u8>)> {
    let rejected = s.core.import_rejections(&actor, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, Format::Csv.content_type())],
        rejections_csv(&rejected)?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` (default) or `parquet`.
    pub format: Option<Format>,
    /// Personal data and coupon codes in clear: needs `pii.reveal`, and is audited.
    pub reveal: Option<bool>,
}

/// The brand's `members`, `transactions`, `transaction_lines`, `ledger`, `coupons` or
/// `insights` (RFM, lifecycle stage, P(alive), lifetime value per member) as one file, in ID
/// order. Personal data is masked unless `reveal=true`.
#[utoipa::path(get, path = "/v1/exports/{kind}", tag = "imports",
    params(("kind" = String, Path, description = "members, transactions, transaction_lines, ledger, coupons or insights"), ExportQuery),
    responses((status = 200, body = Vec<u8>, content_type = "text/csv"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn export(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(kind): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<([(HeaderName, String); 2], Vec<u8>)> {
    let kind = ExportKind::parse(&kind).ok_or(CoreError::NotFound("export"))?;
    let format = q.format.unwrap_or_default();
    let bytes = s
        .core
        .export_file(&actor, kind, format, q.reveal.unwrap_or(false))
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.{}\"",
                    kind.as_str(),
                    format.extension()
                ),
            ),
        ],
        bytes,
    ))
}
