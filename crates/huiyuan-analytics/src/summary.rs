//! From transactions to the per-customer summary the lifetime models take (the lifetimes
//! convention): purchases are counted by distinct period, so several on one day (or week) are
//! one purchase of their summed value.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::bgnbd::Customers;
use crate::cohort::month_index;
use crate::{AnalyticsError, Transactions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    /// Weeks start on Monday.
    Week,
    Month,
}

impl Period {
    pub fn index(self, d: Date) -> i64 {
        let day = i64::from(d.to_julian_day());
        match self {
            Period::Day => day,
            // Julian day 0 was a Monday, so whole weeks since then start on Mondays.
            Period::Week => day.div_euclid(7),
            Period::Month => i64::from(month_index(d)),
        }
    }

    /// Periods in a month, as lifetimes converts them for lifetime value.
    pub fn per_month(self) -> f64 {
        match self {
            Period::Day => 30.0,
            Period::Week => 4.345,
            Period::Month => 1.0,
        }
    }
}

/// One row per customer who bought by the end of calibration, in member order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub member: Vec<u32>,
    /// Repeat purchases: distinct periods with a purchase, minus the first.
    pub frequency: Vec<u32>,
    /// Periods from the first purchase to the last.
    pub recency: Vec<f64>,
    /// Periods from the first purchase to the end of calibration (T).
    pub age: Vec<f64>,
    /// Mean value of the repeat purchases (minor units); 0 without any.
    pub mean_spend: Vec<f64>,
}

impl Summary {
    pub fn customers(&self) -> Customers<'_> {
        Customers {
            frequency: &self.frequency,
            recency: &self.recency,
            age: &self.age,
        }
    }

    pub fn len(&self) -> usize {
        self.member.len()
    }

    pub fn is_empty(&self) -> bool {
        self.member.is_empty()
    }
}

/// Summarises transactions up to and including `calibration_end`.
pub fn summarise(
    tx: &Transactions<'_>,
    period: Period,
    calibration_end: Date,
) -> Result<Summary, AnalyticsError> {
    let n_members = tx.validate()?;
    // Bucket the rows by member (a counting sort: linear, whatever the input order).
    let mut start = vec![0usize; n_members + 1];
    for i in 0..tx.len() {
        if tx.date[i] <= calibration_end {
            start[tx.member[i] as usize + 1] += 1;
        }
    }
    for m in 0..n_members {
        start[m + 1] += start[m];
    }
    let mut next = start.clone();
    let mut rows: Vec<(i64, i64)> = vec![(0, 0); start[n_members]];
    for i in 0..tx.len() {
        if tx.date[i] <= calibration_end {
            let m = tx.member[i] as usize;
            rows[next[m]] = (period.index(tx.date[i]), tx.amount[i]);
            next[m] += 1;
        }
    }
    let end = period.index(calibration_end);
    let mut out = Summary::default();
    for m in 0..n_members {
        let bucket = &mut rows[start[m]..start[m + 1]];
        if bucket.is_empty() {
            continue;
        }
        bucket.sort_unstable_by_key(|r| r.0);
        let first = bucket[0].0;
        let (mut periods, mut last, mut repeat_sum) = (0u32, first, 0i64);
        let mut current = None;
        for &(p, amount) in bucket.iter() {
            if current != Some(p) {
                periods += 1;
                current = Some(p);
                last = p;
            }
            if p != first {
                repeat_sum = repeat_sum.saturating_add(amount);
            }
        }
        let frequency = periods - 1;
        out.member.push(m as u32);
        out.frequency.push(frequency);
        out.recency.push((last - first) as f64);
        out.age.push((end - first) as f64);
        out.mean_spend.push(if frequency == 0 {
            0.0
        } else {
            repeat_sum as f64 / f64::from(frequency)
        });
    }
    Ok(out)
}
