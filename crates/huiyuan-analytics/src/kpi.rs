//! Dashboard KPIs by day, week or month over a date range: member growth, buyers, repurchase
//! rate, average order value, ARPU and the points flows with the outstanding liability.
//!
//! Definitions (each bucket is a run of local dates, both ends included):
//! - **new members** enrolled in the bucket; **members** enrolled by its last day;
//! - **active members**: distinct members with a purchase in the bucket; of them, **new buyers**
//!   made their first purchase ever in it and **returning buyers** had bought before it;
//! - **repurchase rate** (復購率): the share of active members with two or more purchases in the
//!   bucket;
//! - **average order value**: revenue ÷ orders; **ARPU**: revenue ÷ members; both in minor units,
//!   rounded half away from zero, and absent (not zero, not NaN) when there is nothing to divide by;
//! - **points**: issued (purchases and actions), redeemed, expired, reversed by refunds, and
//!   adjusted (operators' net grants), as positive amounts; **outstanding** is every member's
//!   available plus pending points at the bucket's end (all movements since the start, not just
//!   those in the range) and the **liability** their money value.

use serde::Serialize;
use time::{Date, Duration};

use crate::cohort::month_index;
use crate::{AnalyticsError, Transactions};

/// At most this many buckets in one report (three years by day).
pub const MAX_BUCKETS: usize = 1_100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    /// Weeks start on Monday.
    Week,
    Month,
}

impl Granularity {
    /// The first day of the bucket holding `d`.
    pub fn start_of(self, d: Date) -> Date {
        match self {
            Granularity::Day => d,
            Granularity::Week => d - Duration::days(i64::from(d.weekday().number_days_from_monday())),
            Granularity::Month => d.replace_day(1).unwrap_or(d),
        }
    }

    fn next(self, start: Date) -> Option<Date> {
        match self {
            Granularity::Day => start.next_day(),
            Granularity::Week => start.checked_add(Duration::days(7)),
            Granularity::Month => {
                let m = month_index(start) + 1;
                let month = time::Month::try_from((m.rem_euclid(12) + 1) as u8).ok()?;
                Date::from_calendar_date(m.div_euclid(12), month, 1).ok()
            }
        }
    }
}

/// What a points movement was, for the flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointFlow {
    Issued,
    Redeemed,
    Expired,
    Reversed,
    Adjusted,
    /// Moves between members or buckets (transfers, merges, maturation): they change who holds
    /// points, not how many are outstanding.
    Moved,
}

/// Points movements as columns: on `date[i]`, `delta[i]` points (signed: what it did to the
/// available plus pending points) of kind `flow[i]`. Rows may be pre-summed per day and kind.
#[derive(Debug, Clone, Copy)]
pub struct PointMovements<'a> {
    pub date: &'a [Date],
    pub flow: &'a [PointFlow],
    pub delta: &'a [i64],
}

/// Coupons as columns: coupon `i` was issued on `issued[i]` and redeemed on `redeemed[i]`
/// (`None`: not redeemed).
#[derive(Debug, Clone, Copy, Default)]
pub struct CouponDates<'a> {
    pub issued: &'a [Date],
    pub redeemed: &'a [Option<Date>],
}

#[derive(Debug, Clone, Copy)]
pub struct KpiInput<'a> {
    /// Every member's enrolment date.
    pub enrolled: &'a [Date],
    pub purchases: Transactions<'a>,
    pub points: PointMovements<'a>,
    pub coupons: CouponDates<'a>,
    /// Money value of one point, minor units.
    pub point_value_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KpiFigures {
    pub new_members: u64,
    pub members: u64,
    pub active_members: u64,
    pub new_buyers: u64,
    pub returning_buyers: u64,
    pub orders: u64,
    /// Minor units.
    pub revenue: i64,
    pub average_order_value: Option<i64>,
    pub arpu: Option<i64>,
    pub repurchase_rate: Option<f64>,
    pub points_issued: i64,
    pub points_redeemed: i64,
    pub points_expired: i64,
    pub points_reversed: i64,
    pub points_adjusted: i64,
    pub points_outstanding: i64,
    /// Minor units.
    pub liability: i64,
    pub coupons_issued: u64,
    /// Coupons redeemed in the period, whenever they were issued.
    pub coupons_redeemed: u64,
    /// Of the coupons issued in the period, the share redeemed since (核銷率); absent when none
    /// was issued.
    pub coupon_redemption_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KpiBucket {
    #[serde(serialize_with = "crate::iso_date")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub start: Date,
    /// Last day, included.
    #[serde(serialize_with = "crate::iso_date")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub end: Date,
    #[serde(flatten)]
    pub figures: KpiFigures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KpiReport {
    #[serde(serialize_with = "crate::iso_date")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub from: Date,
    #[serde(serialize_with = "crate::iso_date")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub to: Date,
    pub granularity: Granularity,
    pub buckets: Vec<KpiBucket>,
    /// The whole range as one bucket (active members counted once, however many buckets they
    /// bought in).
    pub total: KpiFigures,
}

/// `a / b` rounded half away from zero; `None` when `b` is 0.
fn div_round(a: i64, b: u64) -> Option<i64> {
    if b == 0 {
        return None;
    }
    let (a, b) = (i128::from(a), i128::from(b));
    let q = (2 * a.abs() + b) / (2 * b);
    Some((if a < 0 { -q } else { q }) as i64)
}

/// The figures of each range `[start, end]` in `ranges` (sorted, disjoint).
fn figures(input: &KpiInput<'_>, ranges: &[(Date, Date)]) -> Vec<KpiFigures> {
    let tx = &input.purchases;
    let locate = |d: Date| -> Option<usize> {
        let i = ranges.partition_point(|r| r.1 < d);
        (i < ranges.len() && ranges[i].0 <= d).then_some(i)
    };
    let n_members = tx.member.iter().max().map_or(0, |&m| m as usize + 1);
    let mut first = vec![Date::MAX; n_members];
    for i in 0..tx.len() {
        let m = tx.member[i] as usize;
        first[m] = first[m].min(tx.date[i]);
    }
    let mut out: Vec<KpiFigures> = ranges
        .iter()
        .map(|_| KpiFigures {
            new_members: 0,
            members: 0,
            active_members: 0,
            new_buyers: 0,
            returning_buyers: 0,
            orders: 0,
            revenue: 0,
            average_order_value: None,
            arpu: None,
            repurchase_rate: None,
            points_issued: 0,
            points_redeemed: 0,
            points_expired: 0,
            points_reversed: 0,
            points_adjusted: 0,
            points_outstanding: 0,
            liability: 0,
            coupons_issued: 0,
            coupons_redeemed: 0,
            coupon_redemption_rate: None,
        })
        .collect();

    // Coupons: issued and redeemed per range, and what became of each range's issue.
    let c = &input.coupons;
    let mut issued_redeemed = vec![0u64; ranges.len()];
    for (i, &issued) in c.issued.iter().enumerate() {
        let redeemed = c.redeemed.get(i).copied().flatten();
        if let Some(r) = locate(issued) {
            out[r].coupons_issued += 1;
            issued_redeemed[r] += u64::from(redeemed.is_some());
        }
        if let Some(r) = redeemed.and_then(locate) {
            out[r].coupons_redeemed += 1;
        }
    }
    for (f, used) in out.iter_mut().zip(issued_redeemed) {
        f.coupon_redemption_rate = (f.coupons_issued > 0).then(|| used as f64 / f.coupons_issued as f64);
    }

    // Purchases: orders and revenue per range, then distinct buyers from sorted (range, member).
    let mut keys: Vec<u64> = Vec::with_capacity(tx.len());
    for i in 0..tx.len() {
        if let Some(r) = locate(tx.date[i]) {
            out[r].orders += 1;
            out[r].revenue += tx.amount[i];
            keys.push(((r as u64) << 32) | u64::from(tx.member[i]));
        }
    }
    keys.sort_unstable();
    let mut repeat_buyers = vec![0u64; ranges.len()];
    for run in keys.chunk_by(|a, b| a == b) {
        let (r, m) = ((run[0] >> 32) as usize, (run[0] as u32) as usize);
        let f = &mut out[r];
        f.active_members += 1;
        if first[m] < ranges[r].0 {
            f.returning_buyers += 1;
        } else {
            f.new_buyers += 1;
        }
        repeat_buyers[r] += u64::from(run.len() >= 2);
    }
    for (f, repeat) in out.iter_mut().zip(repeat_buyers) {
        f.repurchase_rate = (f.active_members > 0).then(|| repeat as f64 / f.active_members as f64);
    }

    // Members: new in each range, and enrolled by its end.
    let mut enrolled = input.enrolled.to_vec();
    enrolled.sort_unstable();
    for (f, &(start, end)) in out.iter_mut().zip(ranges) {
        let by_end = enrolled.partition_point(|&d| d <= end);
        let before = enrolled.partition_point(|&d| d < start);
        f.members = by_end as u64;
        f.new_members = (by_end - before) as u64;
        f.average_order_value = div_round(f.revenue, f.orders);
        f.arpu = div_round(f.revenue, f.members);
    }

    // Points: flows within each range; outstanding from every movement up to its end.
    let p = &input.points;
    let mut movements: Vec<(Date, i64)> = Vec::with_capacity(p.date.len());
    for i in 0..p.date.len() {
        movements.push((p.date[i], p.delta[i]));
        if let Some(r) = locate(p.date[i]) {
            let f = &mut out[r];
            let d = p.delta[i];
            match p.flow[i] {
                PointFlow::Issued => f.points_issued += d,
                PointFlow::Redeemed => f.points_redeemed -= d,
                PointFlow::Expired => f.points_expired -= d,
                PointFlow::Reversed => f.points_reversed -= d,
                PointFlow::Adjusted => f.points_adjusted += d,
                PointFlow::Moved => {}
            }
        }
    }
    movements.sort_unstable_by_key(|m| m.0);
    let (mut at, mut outstanding) = (0, 0i64);
    for (f, &(_, end)) in out.iter_mut().zip(ranges) {
        while at < movements.len() && movements[at].0 <= end {
            outstanding += movements[at].1;
            at += 1;
        }
        f.points_outstanding = outstanding;
        f.liability =
            i64::try_from(i128::from(outstanding) * i128::from(input.point_value_minor)).unwrap_or(i64::MAX);
    }
    out
}

/// KPIs for each bucket from the one holding `from` to the one holding `to`, and the totals of
/// `[from, to]`. Buckets are whole (a month bucket runs from the 1st even when `from` is the
/// 15th), so figures of one bucket never change with the range asked for.
pub fn kpis(
    input: &KpiInput<'_>,
    from: Date,
    to: Date,
    granularity: Granularity,
) -> Result<KpiReport, AnalyticsError> {
    input.purchases.validate()?;
    if input.coupons.issued.len() != input.coupons.redeemed.len() {
        return Err(AnalyticsError::Input(
            "coupon issued and redeemed columns must have the same length".into(),
        ));
    }
    let p = &input.points;
    if p.date.len() != p.flow.len() || p.date.len() != p.delta.len() {
        return Err(AnalyticsError::Input(
            "points date, flow and delta columns must have the same length".into(),
        ));
    }
    if from > to {
        return Err(AnalyticsError::Input("from must not be after to".into()));
    }
    let mut ranges = Vec::new();
    let mut start = granularity.start_of(from);
    while start <= to {
        if ranges.len() == MAX_BUCKETS {
            return Err(AnalyticsError::Input(format!(
                "more than {MAX_BUCKETS} buckets: choose a coarser granularity or a shorter range"
            )));
        }
        let next = granularity.next(start);
        let end = next.and_then(Date::previous_day).unwrap_or(Date::MAX);
        ranges.push((start, end));
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    let buckets = ranges
        .iter()
        .zip(figures(input, &ranges))
        .map(|(&(start, end), figures)| KpiBucket { start, end, figures })
        .collect();
    let total = figures(input, &[(from, to)]).remove(0);
    Ok(KpiReport {
        from,
        to,
        granularity,
        buckets,
        total,
    })
}
