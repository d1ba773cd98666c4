//! Validation errors that name the field and the reason, so every edge can report them as is.

use serde::Serialize;

/// One invalid field: a JSON-pointer-like path and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Path of the offending field, e.g. `phone` or `lines[2].amount`.
    pub field: String,
    /// Why it was refused, in words a developer can act on.
    pub reason: String,
}

/// A request that broke one or more rules; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {}", .errors.iter().map(|e| format!("{}: {}", e.field, e.reason)).collect::<Vec<_>>().join("; "))]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError {
                field: field.into(),
                reason: reason.into(),
            }],
        }
    }
}

/// Collects field errors so a request reports every problem at once, not only the first.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Records the error of a fallible step and returns its value when it succeeded.
    pub fn check<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.extend(e.errors);
                None
            }
        }
    }

    /// Whether nothing was refused so far (checks that combine fields run only then).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn finish(self) -> Result<(), ValidationError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { errors: self.errors })
        }
    }
}
