//! RFC 7807 problem details: every error the API returns, mapped from the use cases' errors
//! in exactly one place ([`From<CoreError>`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use huiyuan_core::{CoreError, ErrorCode, StorageFailure};
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error response (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:huiyuan:problem:<code>`
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable reason, e.g. `validation_failed`, `identity_conflict`.
    pub code: String,
    /// The fields that were wrong and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For `member_merged`: the member to use instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<MemberId>,
}

/// Marks an error response whose request may well succeed if simply sent again: a lost race
/// with a concurrent request, a rate limit, a server-side failure. The idempotency layer does
/// not keep such a response as the key's final answer.
#[derive(Debug, Clone, Copy)]
pub struct Transient;

/// Marks a response that carries a secret shown once (a new API key, a member code). The
/// idempotency layer keeps no copy of it: a replay of its key answers `secret_shown_once`.
#[derive(Debug, Clone, Copy)]
pub struct ShownOnce;

impl ApiError {
    fn is_transient(&self) -> bool {
        let status = self.status();
        status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || [ErrorCode::Conflict, ErrorCode::ConcurrentUpdate]
                .iter()
                .any(|c| c.as_str() == self.problem.code)
    }
}

/// A problem plus the headers that go with it.
#[derive(Debug)]
pub struct ApiError {
    /// Boxed: errors travel in `Result`s on every path, so they should be small.
    pub problem: Box<Problem>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A problem with `code`, sent with the status the code table gives it.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            problem: Box::new(Problem {
                type_uri: format!("urn:huiyuan:problem:{code}"),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                code: code.as_str().to_owned(),
                errors: Vec::new(),
                merged_into: None,
            }),
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.problem.errors = errors;
        self
    }

    pub fn field(code: ErrorCode, field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(code, format!("{field}: {reason}")).with_errors(vec![FieldError {
            field: field.to_owned(),
            reason,
        }])
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Validation(v) => {
                ApiError::new(ErrorCode::ValidationFailed, v.to_string()).with_errors(v.errors)
            }
            CoreError::NotFound(what) => ApiError::new(ErrorCode::NotFound, format!("{what} not found")),
            CoreError::Unauthenticated(why) => ApiError::new(ErrorCode::Unauthenticated, why),
            e @ CoreError::Forbidden { .. } => ApiError::new(ErrorCode::Forbidden, e.to_string()),
            CoreError::Conflict {
                code,
                message,
                errors,
            } => ApiError::new(code, message).with_errors(errors),
            CoreError::Merged { from, into } => {
                let mut err = ApiError::new(
                    ErrorCode::MemberMerged,
                    format!("member {from} was merged into {into}; use that ID"),
                );
                err.problem.merged_into = Some(into);
                err
            }
            CoreError::CodeRejected(r) => ApiError::new(r.code(), r.message()),
            e @ CoreError::TooManyAttempts { retry_after_seconds } => {
                let mut err = ApiError::new(ErrorCode::RateLimited, e.to_string());
                err.retry_after = Some(retry_after_seconds);
                err
            }
            CoreError::Storage(StorageFailure::Taken(_)) => ApiError::new(
                ErrorCode::Conflict,
                "a concurrent request changed the same record; retry",
            ),
            CoreError::Storage(StorageFailure::Stale) => ApiError::new(
                ErrorCode::ConcurrentUpdate,
                "the record changed while updating; retry",
            ),
            CoreError::Storage(StorageFailure::Unavailable(detail)) => {
                tracing::error!(%detail, "database unavailable");
                let mut err = ApiError::new(ErrorCode::Unavailable, "the database is unavailable");
                err.retry_after = Some(1);
                err
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(ErrorCode::Internal, "an internal error occurred")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut res = (status, body).into_response();
        if self.is_transient() {
            res.extensions_mut().insert(Transient);
        }
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(e: CoreError) -> bool {
        ApiError::from(e)
            .into_response()
            .extensions()
            .get::<Transient>()
            .is_some()
    }

    #[test]
    fn lost_races_and_outages_are_transient_final_answers_are_not() {
        assert!(transient(CoreError::Storage(StorageFailure::Stale)));
        assert!(transient(CoreError::Storage(StorageFailure::Taken("x".into()))));
        assert!(transient(CoreError::Storage(StorageFailure::Unavailable(
            "down".into()
        ))));
        assert!(transient(CoreError::Storage(StorageFailure::Database(
            "boom".into()
        ))));
        assert!(!transient(CoreError::conflict(
            ErrorCode::IdentityConflict,
            "taken"
        )));
        assert!(!transient(CoreError::NotFound("member")));
        assert!(!transient(CoreError::Validation(
            huiyuan_domain::ValidationError::field("phone", "bad")
        )));
    }
}
