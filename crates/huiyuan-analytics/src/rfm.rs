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

use serde::Serialize;
use time::Date;

use crate::{AnalyticsError, Transactions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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

/// Scores `values` 1–5 (see the module docs).
fn quintile_scores<T: Copy + Ord>(values: &[T], higher_is_better: bool) -> Vec<u8> {
    let n = values.len();
    let mut sorted: Vec<T> = values.to_vec();
    sorted.sort_unstable();
    values
        .iter()
        .map(|v| {
            let worse = if higher_is_better {
                sorted.partition_point(|x| x < v)
            } else {
                n - sorted.partition_point(|x| x <= v)
            };
            (1 + (5 * worse) / n) as u8
        })
        .collect()
}

/// RFM as of a date; transactions after it are ignored. Empty input gives an empty report.
pub fn rfm(tx: &Transactions<'_>, as_of: Date) -> Result<RfmReport, AnalyticsError> {
    let n_members = tx.validate()?;
    let mut last: Vec<Option<Date>> = vec![None; n_members];
    let mut count = vec![0u64; n_members];
    let mut sum = vec![0i64; n_members];
    for i in 0..tx.len() {
        let (m, d) = (tx.member[i] as usize, tx.date[i]);
        if d > as_of {
            continue;
        }
        count[m] += 1;
        sum[m] = sum[m].saturating_add(tx.amount[i]);
        if last[m].is_none_or(|l| d > l) {
            last[m] = Some(d);
        }
    }
    let buyers: Vec<u32> = (0..n_members as u32).filter(|&m| count[m as usize] > 0).collect();
    let recency: Vec<i64> = buyers
        .iter()
        .map(|&m| last[m as usize].map_or(0, |l| (as_of - l).whole_days()))
        .collect();
    let frequency: Vec<u64> = buyers.iter().map(|&m| count[m as usize]).collect();
    let monetary: Vec<i64> = buyers.iter().map(|&m| sum[m as usize]).collect();
    let n = buyers.len();
    let mean = |total: f64| if n == 0 { 0.0 } else { total / n as f64 };
    let mean_r = mean(recency.iter().map(|&v| v as f64).sum());
    let mean_f = mean(frequency.iter().map(|&v| v as f64).sum());
    let mean_m = mean(monetary.iter().map(|&v| v as f64).sum());
    let (rs, fs, ms) = if n == 0 {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        (
            quintile_scores(&recency, false),
            quintile_scores(&frequency, true),
            quintile_scores(&monetary, true),
        )
    };
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
            frequency: frequency[i],
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
