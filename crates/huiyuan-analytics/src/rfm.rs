//! RFM: recency, frequency, monetary value per member, scored 1–5 by quintile, and the eight
//! classic segments (重要價值 … 一般挽留).
//!
//! **Scores.** A member's score is `1 + ⌊5 · w / n⌋`, where `n` is the number of members and
//! `w` the number of members with a strictly *worse* value (for recency: more days since the
//! last purchase; for frequency and monetary: less). Equal values therefore always get equal
//! scores, and a tie never straddles two quintiles; with many ties a quintile can be empty.
//!
//! **Segments.** Each of R, F and M is *high* when the member's value is at least as good as
//! the mean over members (recency ≤ mean days; frequency and monetary ≥ mean). The eight
//! combinations are the classic segments.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::{AnalyticsError, Transactions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// R, F, M all high: 重要價值.
    ImportantValue,
    /// R high, F low, M high: 重要發展.
    ImportantDevelopment,
    /// R low, F high, M high: 重要保持.
    ImportantRetain,
    /// R low, F low, M high: 重要挽留.
    ImportantWinBack,
    /// R high, F high, M low: 一般價值.
    GeneralValue,
    /// R high, F low, M low: 一般發展.
    GeneralDevelopment,
    /// R low, F high, M low: 一般保持.
    GeneralRetain,
    /// R low, F low, M low: 一般挽留.
    GeneralWinBack,
}

impl Segment {
    pub const ALL: [Segment; 8] = [
        Segment::ImportantValue,
        Segment::ImportantDevelopment,
        Segment::ImportantRetain,
        Segment::ImportantWinBack,
        Segment::GeneralValue,
        Segment::GeneralDevelopment,
        Segment::GeneralRetain,
        Segment::GeneralWinBack,
    ];

    pub fn of(r_high: bool, f_high: bool, m_high: bool) -> Segment {
        match (m_high, r_high, f_high) {
            (true, true, true) => Segment::ImportantValue,
            (true, true, false) => Segment::ImportantDevelopment,
            (true, false, true) => Segment::ImportantRetain,
            (true, false, false) => Segment::ImportantWinBack,
            (false, true, true) => Segment::GeneralValue,
            (false, true, false) => Segment::GeneralDevelopment,
            (false, false, true) => Segment::GeneralRetain,
            (false, false, false) => Segment::GeneralWinBack,
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Segment::ImportantValue => "重要價值",
            Segment::ImportantDevelopment => "重要發展",
            Segment::ImportantRetain => "重要保持",
            Segment::ImportantWinBack => "重要挽留",
            Segment::GeneralValue => "一般價值",
            Segment::GeneralDevelopment => "一般發展",
            Segment::GeneralRetain => "一般保持",
            Segment::GeneralWinBack => "一般挽留",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Segment::ImportantValue => "Important value",
            Segment::ImportantDevelopment => "Important to develop",
            Segment::ImportantRetain => "Important to retain",
            Segment::ImportantWinBack => "Important to win back",
            Segment::GeneralValue => "General value",
            Segment::GeneralDevelopment => "General to develop",
            Segment::GeneralRetain => "General to retain",
            Segment::GeneralWinBack => "General to win back",
        }
    }
}

/// One member's RFM values and scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberRfm {
    /// The member's index in the input.
    pub member: u32,
    pub recency_days: i64,
    pub frequency: u64,
    /// Sum of amounts, minor units (refunds, as negative amounts, net out).
    pub monetary: i64,
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub segment: Segment,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentTotal {
    pub segment: Segment,
    pub name_zh: &'static str,
    pub name_en: &'static str,
    pub members: u64,
    pub revenue: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RfmReport {
    pub as_of: Date,
    /// Members with a purchase on or before `as_of`, by index.
    pub members: Vec<MemberRfm>,
    /// All eight segments, in [`Segment::ALL`] order, empty ones included.
    pub segments: Vec<SegmentTotal>,
    pub mean_recency_days: f64,
    pub mean_frequency: f64,
    pub mean_monetary: f64,
}

/// Scores `values` 1–5 (see the module docs) without sorting them. With `w(v)` the number of
/// values worse than `v`, the score `1 + ⌊5·w/n⌋` counts the cut points `t_k = ⌈k·n/5⌉`
/// (k = 1…4) with `w(v) ≥ t_k`; and `w(v) ≥ t` exactly when `v` is better than the `t`-th
/// worst value. So four order statistics, found by selection in linear time, score everyone.
fn quintile_scores(values: &[i64], higher_is_better: bool) -> Vec<u8> {
    let n = values.len();
    // Oriented so that greater is better; `!v` reverses the order without overflow.
    let orient = |v: i64| if higher_is_better { v } else { !v };
    let mut scratch: Vec<i64> = values.iter().map(|&v| orient(v)).collect();
    let mut cuts = [i64::MAX; 4];
    let mut from = 0;
    for (k, cut) in (1..=4).zip(cuts.iter_mut()) {
        let Some(at) = (k * n).div_ceil(5).checked_sub(1) else {
            break; // no values
        };
        // The cut points grow with k: each is found among the values above the last.
        let (_, nth, _) = scratch[from..].select_nth_unstable(at - from);
        *cut = *nth;
        from = at;
    }
    values
        .iter()
        .map(|&v| {
            let v = orient(v);
            1 + cuts.iter().filter(|&&c| v > c).count() as u8
        })
        .collect()
}

/// Each member's purchases up to the as-of date, however they were gathered: `rfm` sums
/// transaction columns; a reader may instead sum while it parses and hand over only these.
/// Index `i` is member `i`; members with `count[i] == 0` have no purchase and are left out.
#[derive(Debug, Clone, Copy)]
pub struct PurchaseTotals<'a> {
    /// The latest purchase date (ignored where the count is zero).
    pub last: &'a [Date],
    pub count: &'a [u64],
    /// Sum of amounts, minor units.
    pub sum: &'a [i64],
}

/// RFM as of a date; transactions after it are ignored. Empty input gives an empty report.
pub fn rfm(tx: &Transactions<'_>, as_of: Date) -> Result<RfmReport, AnalyticsError> {
    let n_members = tx.validate()?;
    let mut last = vec![Date::MIN; n_members];
    let mut count = vec![0u64; n_members];
    let mut sum = vec![0i64; n_members];
    for i in 0..tx.len() {
        let (m, d) = (tx.member[i] as usize, tx.date[i]);
        if d > as_of {
            continue;
        }
        count[m] += 1;
        sum[m] = sum[m].saturating_add(tx.amount[i]);
        last[m] = last[m].max(d);
    }
    rfm_of_totals(
        &PurchaseTotals {
            last: &last,
            count: &count,
            sum: &sum,
        },
        as_of,
    )
}

/// RFM from per-member totals (see [`PurchaseTotals`]). The three scores are computed on
/// separate threads: on a million members each is a pass over the whole population.
pub fn rfm_of_totals(totals: &PurchaseTotals<'_>, as_of: Date) -> Result<RfmReport, AnalyticsError> {
    let PurchaseTotals { last, count, sum } = *totals;
    if last.len() != count.len() || sum.len() != count.len() {
        return Err(AnalyticsError::Input(format!(
            "totals differ in length: {} dates, {} counts, {} sums",
            last.len(),
            count.len(),
            sum.len()
        )));
    }
    let buyers: Vec<u32> = (0..count.len() as u32)
        .filter(|&m| count[m as usize] > 0)
        .collect();
    let mut recency = Vec::with_capacity(buyers.len());
    for &m in &buyers {
        let days = (as_of - last[m as usize]).whole_days();
        if days < 0 {
            return Err(AnalyticsError::Row {
                row: m as usize,
                reason: format!(
                    "last purchase {} is after the as-of date {as_of}",
                    last[m as usize]
                ),
            });
        }
        recency.push(days);
    }
    let frequency: Vec<i64> = buyers
        .iter()
        .map(|&m| i64::try_from(count[m as usize]).unwrap_or(i64::MAX))
        .collect();
    let monetary: Vec<i64> = buyers.iter().map(|&m| sum[m as usize]).collect();
    let n = buyers.len();
    let mean = |values: &[i64]| {
        if n == 0 {
            0.0
        } else {
            values.iter().map(|&v| v as f64).sum::<f64>() / n as f64
        }
    };
    let (mean_r, mean_f, mean_m) = (mean(&recency), mean(&frequency), mean(&monetary));
    let (rs, fs, ms) = std::thread::scope(|scope| {
        let r = scope.spawn(|| quintile_scores(&recency, false));
        let f = scope.spawn(|| quintile_scores(&frequency, true));
        let m = quintile_scores(&monetary, true);
        let join = |h: std::thread::ScopedJoinHandle<'_, Vec<u8>>| h.join().unwrap_or_default();
        (join(r), join(f), m)
    });
    if rs.len() != n || fs.len() != n {
        return Err(AnalyticsError::Numerical("a scoring thread failed".into()));
    }
    let mut members = Vec::with_capacity(n);
    let mut totals: Vec<SegmentTotal> = Segment::ALL
        .iter()
        .map(|&s| SegmentTotal {
            segment: s,
            name_zh: s.name_zh(),
            name_en: s.name_en(),
            members: 0,
            revenue: 0,
        })
        .collect();
    for i in 0..n {
        let segment = Segment::of(
            recency[i] as f64 <= mean_r,
            frequency[i] as f64 >= mean_f,
            monetary[i] as f64 >= mean_m,
        );
        let slot = &mut totals[segment as usize];
        slot.members += 1;
        slot.revenue = slot.revenue.saturating_add(monetary[i]);
        members.push(MemberRfm {
            member: buyers[i],
            recency_days: recency[i],
            frequency: frequency[i] as u64,
            monetary: monetary[i],
            r: rs[i],
            f: fs[i],
            m: ms[i],
            segment,
        });
    }
    Ok(RfmReport {
        as_of,
        members,
        segments: totals,
        mean_recency_days: mean_r,
        mean_frequency: mean_f,
        mean_monetary: mean_m,
    })
}

#[cfg(test)]
mod tests {
    use super::quintile_scores;
    use proptest::prelude::*;

    /// The definition, counted by brute force: 1 + ⌊5 · (values strictly worse) / n⌋.
    fn by_definition(values: &[i64], higher_is_better: bool) -> Vec<u8> {
        let n = values.len();
        values
            .iter()
            .map(|v| {
                let worse = values
                    .iter()
                    .filter(|x| if higher_is_better { *x < v } else { *x > v })
                    .count();
                (1 + 5 * worse / n) as u8
            })
            .collect()
    }

    proptest! {
        #[test]
        fn selection_scores_equal_the_definition(
            // Few distinct values make ties; the extremes check the orientation's arithmetic.
            values in prop::collection::vec(
                prop_oneof![-3i64..4, Just(i64::MIN), Just(i64::MAX), any::<i64>()],
                0..60,
            ),
            higher_is_better: bool,
        ) {
            prop_assert_eq!(
                quintile_scores(&values, higher_is_better),
                by_definition(&values, higher_is_better)
            );
        }
    }

    #[test]
    fn ten_distinct_values_fill_each_quintile_twice() {
        let values: Vec<i64> = (1..=10).collect();
        assert_eq!(quintile_scores(&values, true), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(quintile_scores(&values, false), [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
        assert!(quintile_scores(&[], true).is_empty());
    }
}
