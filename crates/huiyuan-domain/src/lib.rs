//! Huiyuan's domain: the types and rules of a membership programme, with no I/O.
//!
//! Everything here is deterministic: clocks, randomness and keys are passed in by the caller,
//! which keeps the rules testable with property tests and identical on every storage backend.

pub mod access;
pub mod chain;
pub mod check_digit;
pub mod coded;
pub mod commerce;
pub mod error;
pub mod error_code;
pub mod ids;
pub mod jobs;
pub mod loyalty;
pub mod member;
pub mod money;
pub mod pii;

pub use error::{FieldError, ValidationError};
pub use error_code::ErrorCode;
