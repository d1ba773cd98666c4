//! Lifecycle stages as of a date: new, active, at risk, dormant, churned.
//!
//! Checked in this order, the first that holds wins:
//! 1. **new**: enrolled at most `new_days` ago;
//! 2. **churned**: the lifetime model's P(alive) is below `churn_p_alive` (when P(alive) is given);
//! 3. **dormant**: at least `dormant_days` since the last purchase (or since enrolment, for a
//!    member who never bought);
//! 4. **active**: at least `active_purchases` purchases in the `active_window_days` up to and
//!    including the as-of date;
//! 5. **at risk**: everyone else — bought within the dormancy period, but not often enough lately.
//!
//! A member enrolled after the as-of date has no stage.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::{AnalyticsError, Transactions};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LifecycleRules {
    pub new_days: i64,
    pub active_window_days: i64,
    pub active_purchases: u32,
    pub dormant_days: i64,
    pub churn_p_alive: f64,
}

impl Default for LifecycleRules {
    /// The SPEC's: new ≤ 30 days, active ≥ 3 purchases in the last month, dormant ≥ 90 days
    /// without a purchase, churned below P(alive) 0.1.
    fn default() -> Self {
        LifecycleRules {
            new_days: 30,
            active_window_days: 30,
            active_purchases: 3,
            dormant_days: 90,
            churn_p_alive: 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    New,
    Active,
    AtRisk,
    Dormant,
    Churned,
}

/// Each member's stage (by index; `None` before they joined). `enrolled[m]` is the member's
/// enrolment date (default: their first purchase); `p_alive[m]` comes from BG/NBD when known.
pub fn lifecycle(
    tx: &Transactions<'_>,
    enrolled: Option<&[Option<Date>]>,
    p_alive: Option<&[Option<f64>]>,
    as_of: Date,
    rules: &LifecycleRules,
) -> Result<Vec<Option<Stage>>, AnalyticsError> {
    if rules.new_days < 0 || rules.active_window_days < 1 || rules.dormant_days < 1 {
        return Err(AnalyticsError::Input(
            "lifecycle thresholds must be positive day counts".into(),
        ));
    }
    if !(0.0..=1.0).contains(&rules.churn_p_alive) {
        return Err(AnalyticsError::Input(
            "churn_p_alive must be between 0 and 1".into(),
        ));
    }
    let mut n = tx.validate()?;
    n = n
        .max(enrolled.map_or(0, <[_]>::len))
        .max(p_alive.map_or(0, <[_]>::len));
    let mut first: Vec<Option<Date>> = vec![None; n];
    let mut last: Vec<Option<Date>> = vec![None; n];
    let mut recent = vec![0u32; n];
    let window_start = as_of - time::Duration::days(rules.active_window_days);
    for i in 0..tx.len() {
        let (m, d) = (tx.member[i] as usize, tx.date[i]);
        if d > as_of {
            continue;
        }
        if first[m].is_none_or(|f| d < f) {
            first[m] = Some(d);
        }
        if last[m].is_none_or(|l| d > l) {
            last[m] = Some(d);
        }
        if d > window_start {
            recent[m] += 1;
        }
    }
    Ok((0..n)
        .map(|m| {
            let joined = enrolled.and_then(|e| e.get(m).copied().flatten()).or(first[m])?;
            if joined > as_of {
                return None;
            }
            let days = |d: Date| (as_of - d).whole_days();
            Some(if days(joined) <= rules.new_days {
                Stage::New
            } else if p_alive
                .and_then(|p| p.get(m).copied().flatten())
                .is_some_and(|p| p < rules.churn_p_alive)
            {
                Stage::Churned
            } else if days(last[m].unwrap_or(joined)) >= rules.dormant_days {
                Stage::Dormant
            } else if recent[m] >= rules.active_purchases {
                Stage::Active
            } else {
                Stage::AtRisk
            })
        })
        .collect())
}
