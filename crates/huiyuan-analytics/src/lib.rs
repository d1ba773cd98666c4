//! Huiyuan's analytics: pure functions over columns of transactions (no I/O, no async), fed
//! by the store, the CLI's file readers or tests alike.
//!
//! Dates are [`time::Date`]; money is integer minor units until a model needs a real number.

pub mod abtest;
pub mod attribution;
pub mod bgnbd;
pub mod clv;
pub mod cohort;
pub mod gamma_gamma;
pub mod kpi;
pub mod lifecycle;
mod optimise;
pub mod recommend;
pub mod rfm;
pub mod special;
pub mod summary;

use time::Date;

/// Serialises a date as `YYYY-MM-DD` (the `time` crate's own serde form is a tuple).
pub fn iso_date<S: serde::Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(date)
}

/// Why an analysis could not be run; never a NaN in disguise.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnalyticsError {
    #[error("{0}")]
    Input(String),
    /// A row (0-based position in the input columns) that breaks the model's assumptions.
    #[error("row {row}: {reason}")]
    Row { row: usize, reason: String },
    #[error("numerical problem: {0}")]
    Numerical(String),
}

/// Transactions as columns: `member[i]` bought for `amount[i]` minor units on `date[i]`.
/// Members are dense indices (0..n) into the caller's own list of IDs.
#[derive(Debug, Clone, Copy)]
pub struct Transactions<'a> {
    pub member: &'a [u32],
    pub date: &'a [Date],
    pub amount: &'a [i64],
}

impl Transactions<'_> {
    pub fn len(&self) -> usize {
        self.member.len()
    }

    pub fn is_empty(&self) -> bool {
        self.member.is_empty()
    }

    /// Same-length columns; returns the number of members (largest index + 1).
    pub fn validate(&self) -> Result<usize, AnalyticsError> {
        if self.date.len() != self.member.len() || self.amount.len() != self.member.len() {
            return Err(AnalyticsError::Input(
                "member, date and amount columns must have the same length".into(),
            ));
        }
        Ok(self.member.iter().max().map_or(0, |m| *m as usize + 1))
    }
}
