//! Cohort retention: members grouped by the month of their first purchase, and how many of each
//! cohort bought again in each later month.

use serde::Serialize;
use time::Date;

use crate::{AnalyticsError, Transactions};

/// A calendar month as `year * 12 + (month - 1)`, so months subtract.
pub fn month_index(d: Date) -> i32 {
    d.year() * 12 + i32::from(u8::from(d.month())) - 1
}

fn month_label(index: i32) -> String {
    format!("{:04}-{:02}", index.div_euclid(12), index.rem_euclid(12) + 1)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// First-purchase month, `YYYY-MM`.
    pub month: String,
    /// Members whose first purchase fell in that month.
    pub size: u64,
    /// `active[k]`: members of the cohort who bought in the k-th month after it (0: the first
    /// month itself, always `size`), up to the `as_of` month.
    pub active: Vec<u64>,
    /// `active[k] / size`.
    pub rate: Vec<f64>,
}

/// Cohorts by first-purchase month, oldest first; transactions after `as_of` are ignored.
pub fn cohort_retention(tx: &Transactions<'_>, as_of: Date) -> Result<Vec<Cohort>, AnalyticsError> {
    let n_members = tx.validate()?;
    let end = month_index(as_of);
    // Each member's months with a purchase, as a sorted, deduplicated list.
    let mut months: Vec<Vec<i32>> = vec![Vec::new(); n_members];
    for i in 0..tx.len() {
        if tx.date[i] <= as_of {
            months[tx.member[i] as usize].push(month_index(tx.date[i]));
        }
    }
    let Some(first) = months.iter().filter_map(|m| m.iter().min()).min().copied() else {
        return Ok(Vec::new());
    };
    let span = (end - first + 1) as usize;
    let mut size = vec![0u64; span];
    let mut active = vec![vec![0u64; span]; span];
    for m in &mut months {
        if m.is_empty() {
            continue;
        }
        m.sort_unstable();
        m.dedup();
        let c = (m[0] - first) as usize;
        size[c] += 1;
        for month in m.iter() {
            active[c][(month - m[0]) as usize] += 1;
        }
    }
    Ok((0..span)
        .filter(|&c| size[c] > 0)
        .map(|c| {
            let width = span - c;
            let counts = active[c][..width].to_vec();
            Cohort {
                month: month_label(first + c as i32),
                size: size[c],
                rate: counts.iter().map(|&a| a as f64 / size[c] as f64).collect(),
                active: counts,
            }
        })
        .collect())
}
