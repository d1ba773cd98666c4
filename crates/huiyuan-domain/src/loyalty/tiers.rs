//! Tier qualification and review, and the calendar arithmetic of windows and expiry.

use serde::Serialize;
use time::{Date, Month};

use super::programme::{Expiry, Qualify, QualifyingWindow, Thresholds, Tier, TierProgramme};

/// What a member achieved inside the qualifying window (net of refunds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierMetrics {
    pub points: i64,
    pub spend: i64,
    pub visits: i64,
}

fn meets(t: &Thresholds, m: &TierMetrics, qualify: Qualify) -> bool {
    let checks = [
        t.points.map(|x| m.points >= x),
        t.spend.map(|x| m.spend >= x),
        t.visits.map(|x| m.visits >= x),
    ];
    let mut used = checks.iter().flatten().peekable();
    if used.peek().is_none() {
        return true; // the entry tier
    }
    match qualify {
        Qualify::Any => used.any(|ok| *ok),
        Qualify::All => used.all(|ok| *ok),
    }
}

/// The highest tier whose thresholds the metrics meet (0 at least).
pub fn qualified_level(tiers: &TierProgramme, metrics: &TierMetrics) -> usize {
    tiers
        .levels
        .iter()
        .rposition(|t| meets(&t.thresholds, metrics, tiers.qualify))
        .unwrap_or(0)
}

/// Why a member qualifies for a tier, in words for the tier history.
pub fn qualification_reason(tier: &Tier, metrics: &TierMetrics) -> String {
    let mut parts = Vec::new();
    if let Some(p) = tier.thresholds.points {
        parts.push(format!("points {} / {p}", metrics.points));
    }
    if let Some(s) = tier.thresholds.spend {
        parts.push(format!("spend {} / {s}", metrics.spend));
    }
    if let Some(v) = tier.thresholds.visits {
        parts.push(format!("visits {} / {v}", metrics.visits));
    }
    if parts.is_empty() {
        "entry tier".into()
    } else {
        parts.join(", ")
    }
}

/// The next tier up and what is still missing to reach it, for "progress to next tier".
pub fn progress_to_next<'a>(
    tiers: &'a TierProgramme,
    current: usize,
    metrics: &TierMetrics,
) -> Option<(&'a Tier, TierMetrics)> {
    let next = tiers.levels.get(current + 1)?;
    let gap = |threshold: Option<i64>, have: i64| threshold.map_or(0, |t| (t - have).max(0));
    Some((
        next,
        TierMetrics {
            points: gap(next.thresholds.points, metrics.points),
            spend: gap(next.thresholds.spend, metrics.spend),
            visits: gap(next.thresholds.visits, metrics.visits),
        },
    ))
}

/// What a periodic review decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    /// The member keeps (or, having qualified higher, rises to) this level; next review in a period.
    Confirm { level: usize },
    /// Below their tier for the first time: they keep it until the grace ends.
    StartGrace,
    /// Below their tier after the grace: down to the level they qualify for.
    Downgrade { level: usize },
}

/// A review of a member at `current` who qualifies for `qualified`; `grace_over` tells whether
/// a grace period started by an earlier review has ended.
pub fn review(
    current: usize,
    qualified: usize,
    grace_started: bool,
    grace_over: bool,
    grace_days: u16,
) -> ReviewDecision {
    if qualified >= current {
        ReviewDecision::Confirm { level: qualified }
    } else if grace_days == 0 || (grace_started && grace_over) {
        ReviewDecision::Downgrade { level: qualified }
    } else {
        // Starts the grace, or (already started) keeps waiting for it to end.
        ReviewDecision::StartGrace
    }
}

/// Adds calendar months, clamping the day to the month's length (31 Jan + 1 month = 28/29 Feb).
pub fn add_months(d: Date, months: i32) -> Date {
    let total = d.year() * 12 + (i32::from(u8::from(d.month())) - 1) + months;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::January);
    let day = d.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(d)
}

/// First local date inside the qualifying window that ends on `today`.
pub fn window_start(window: QualifyingWindow, today: Date) -> Date {
    match window {
        QualifyingWindow::RollingMonths { months } => add_months(today, -i32::from(months)),
        QualifyingWindow::CalendarYear => {
            Date::from_calendar_date(today.year(), Month::January, 1).unwrap_or(today)
        }
    }
}

/// The local date at whose start points earned on `earned` expire; `None` when they never do.
pub fn expiry_date(expiry: Expiry, earned: Date) -> Option<Date> {
    match expiry {
        Expiry::RollingMonths { months } => Some(add_months(earned, i32::from(months))),
        Expiry::EndOfYear { years_after } => {
            Date::from_calendar_date(earned.year() + 1 + i32::from(years_after), Month::January, 1).ok()
        }
        Expiry::Never => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loyalty::programme::Programme;
    use time::macros::date;

    #[test]
    fn qualification_uses_any_or_all_thresholds() {
        let p = Programme::demo();
        let m = |points, spend| TierMetrics {
            points,
            spend,
            visits: 0,
        };
        assert_eq!(qualified_level(&p.tiers, &m(0, 0)), 0);
        assert_eq!(qualified_level(&p.tiers, &m(4_999, 0)), 0);
        assert_eq!(qualified_level(&p.tiers, &m(5_000, 0)), 1);
        assert_eq!(
            qualified_level(&p.tiers, &m(0, 1_000_000)),
            2,
            "spend 10,000 yuan → gold"
        );
        assert_eq!(qualified_level(&p.tiers, &m(80_000, 0)), 4);
        let mut all = p.tiers.clone();
        all.qualify = Qualify::All;
        assert_eq!(qualified_level(&all, &m(10_000, 0)), 1, "gold needs spend too");
        assert_eq!(qualified_level(&all, &m(10_000, 1_000_000)), 2);
        let (next, gap) = progress_to_next(&p.tiers, 1, &m(7_000, 200_000)).unwrap();
        assert_eq!(next.code, "gold");
        assert_eq!((gap.points, gap.spend), (3_000, 800_000));
    }

    #[test]
    fn downgrade_waits_for_the_grace() {
        assert_eq!(
            review(2, 2, false, false, 30),
            ReviewDecision::Confirm { level: 2 }
        );
        assert_eq!(
            review(2, 3, false, false, 30),
            ReviewDecision::Confirm { level: 3 }
        );
        assert_eq!(review(2, 0, false, false, 30), ReviewDecision::StartGrace);
        assert_eq!(review(2, 0, true, false, 30), ReviewDecision::StartGrace);
        assert_eq!(
            review(2, 1, true, true, 30),
            ReviewDecision::Downgrade { level: 1 }
        );
        assert_eq!(
            review(2, 1, false, false, 0),
            ReviewDecision::Downgrade { level: 1 }
        );
    }

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(add_months(date!(2026 - 01 - 31), 1), date!(2026 - 02 - 28));
        assert_eq!(add_months(date!(2028 - 01 - 31), 1), date!(2028 - 02 - 29));
        assert_eq!(add_months(date!(2026 - 03 - 15), -12), date!(2025 - 03 - 15));
        assert_eq!(add_months(date!(2026 - 12 - 15), 1), date!(2027 - 01 - 15));
        assert_eq!(
            expiry_date(Expiry::RollingMonths { months: 12 }, date!(2026 - 02 - 28)),
            Some(date!(2027 - 02 - 28))
        );
        assert_eq!(
            expiry_date(Expiry::EndOfYear { years_after: 0 }, date!(2026 - 06 - 01)),
            Some(date!(2027 - 01 - 01))
        );
        assert_eq!(
            window_start(QualifyingWindow::CalendarYear, date!(2026 - 06 - 01)),
            date!(2026 - 01 - 01)
        );
    }
}
