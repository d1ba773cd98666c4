//! Errors of the use cases; the HTTP layer maps each to one status and problem type.

use huiyuan_domain::access::{Permission, Role};
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::{FieldError, ValidationError};
use huiyuan_store::StoreError;
use time::OffsetDateTime;

pub use huiyuan_domain::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The record does not exist in the caller's brand (another brand's records included).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    #[error("the role `{}` may not do `{}`", role.as_str(), permission.as_str())]
    Forbidden { role: Role, permission: Permission },
    /// A rule of the current state refuses the request; `code` is stable for clients.
    #[error("{message}")]
    Conflict {
        code: ErrorCode,
        message: String,
        errors: Vec<FieldError>,
    },
    /// The member was merged; requests must use the surviving ID.
    #[error("member {from} was merged into {into}")]
    Merged { from: MemberId, into: MemberId },
    #[error("{}", .0.message())]
    CodeRejected(CodeRejection),
    /// Too many sign-in attempts from this address or on this account; the same answer for
    /// either, and whether or not the account exists.
    #[error("too many sign-in attempts; try again in {retry_after_seconds} seconds")]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    /// The database refused or failed; the edges see this, never the store's own error type.
    #[error(transparent)]
    Storage(#[from] StorageFailure),
}

/// What went wrong below the use cases, as the edges may know it.
#[derive(Debug, thiserror::Error)]
pub enum StorageFailure {
    /// A concurrent request took the same unique value (an identity, an order) first.
    #[error("conflict: {0}")]
    Taken(String),
    /// The record changed since it was read (an optimistic version check failed).
    #[error("the record was changed by someone else; retry")]
    Stale,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => StorageFailure::Taken(what).into(),
            StoreError::Stale => StorageFailure::Stale.into(),
            StoreError::Unavailable(why) => StorageFailure::Unavailable(why).into(),
            StoreError::Database(why) => StorageFailure::Database(why).into(),
            StoreError::Corrupt(what) => CoreError::Corrupt(format!("corrupt data in {what}")),
        }
    }
}

impl CoreError {
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        CoreError::Conflict {
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }
}

/// Why a member code was refused, in words a clerk can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRejection {
    Malformed,
    Forged,
    Unknown,
    Expired { at: OffsetDateTime },
    AlreadyUsed { at: OffsetDateTime, by: String },
}

impl CodeRejection {
    pub fn code(&self) -> ErrorCode {
        match self {
            CodeRejection::Malformed => ErrorCode::CodeMalformed,
            CodeRejection::Forged => ErrorCode::CodeForged,
            CodeRejection::Unknown => ErrorCode::CodeUnknown,
            CodeRejection::Expired { .. } => ErrorCode::CodeExpired,
            CodeRejection::AlreadyUsed { .. } => ErrorCode::CodeAlreadyUsed,
        }
    }

    pub fn message(&self) -> String {
        let fmt = |t: &OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string())
        };
        match self {
            CodeRejection::Malformed => "this is not a member code (check the digits or scan again)".into(),
            CodeRejection::Forged => "the code's signature is not valid for this brand".into(),
            CodeRejection::Unknown => "no such member code; ask the member to refresh it".into(),
            CodeRejection::Expired { at } => {
                format!("the code expired at {}; ask the member to refresh it", fmt(at))
            }
            CodeRejection::AlreadyUsed { at, by } => {
                format!("the code was already used at {} by {by}", fmt(at))
            }
        }
    }
}

impl From<crate::crypto::CryptoError> for CoreError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        CoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
