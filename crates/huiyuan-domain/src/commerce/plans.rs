//! Paid membership plans (付費會員, like PLUS, 88VIP or Prime): a fee for a term of months that
//! buys benefits — a discount at the till, a points multiplier, perks — renewed term after term,
//! lapsing when not renewed, refundable by the plan's rules.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::{Duration, Month, OffsetDateTime};

use crate::error::Validator;
use crate::money::MAX_AMOUNT;

/// A plan as the programme defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Stable identifier, e.g. `plus`.
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    /// Minor units per term.
    pub fee: i64,
    pub term_months: u16,
    /// Off every line at the till; a member gets the better of this and their tier's.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub discount_percent: Decimal,
    /// Multiplies points earned, stacked with the programme's other multipliers.
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub points_multiplier: Decimal,
    #[serde(default)]
    pub perks: Vec<String>,
    #[serde(default)]
    pub refund: PlanRefund,
}

fn one() -> Decimal {
    Decimal::ONE
}

/// What refunding a term gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlanRefund {
    /// The whole fee within this many days of the term's start (a term not started yet: always).
    pub full_within_days: u16,
    /// After that, the unused share of the fee (by time); false: no refund.
    pub pro_rata: bool,
}

impl Default for PlanRefund {
    fn default() -> Self {
        Self {
            full_within_days: 7,
            pro_rata: true,
        }
    }
}

impl Plan {
    pub fn validate(&self, v: &mut Validator, field: &str) {
        let f = |name: &str| format!("{field}.{name}");
        if self.code.is_empty()
            || self.code.len() > 32
            || !self
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            v.push(f("code"), "must be 1 to 32 lower-case letters, digits, - or _");
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 60 {
            v.push(f("name"), "must be 1 to 60 characters");
        }
        if !(0..=MAX_AMOUNT).contains(&self.fee) {
            v.push(f("fee"), "must not be negative");
        }
        if !(1..=36).contains(&self.term_months) {
            v.push(f("term_months"), "must be between 1 and 36");
        }
        if self.discount_percent < Decimal::ZERO
            || self.discount_percent > Decimal::from(90)
            || self.discount_percent.scale() > 2
        {
            v.push(
                f("discount_percent"),
                "must be between 0 and 90, with at most two decimals",
            );
        }
        if self.points_multiplier < Decimal::ONE || self.points_multiplier > Decimal::from(100) {
            v.push(f("points_multiplier"), "must be between 1 and 100");
        }
        if self.refund.full_within_days > 366 {
            v.push(f("refund.full_within_days"), "must be at most 366");
        }
    }
}

/// The end of a term of `months` calendar months from `start` (the same day of the month,
/// or the month's last day when it has no such day).
pub fn term_end(start: OffsetDateTime, months: u16) -> OffsetDateTime {
    let date = start.date();
    let total = i32::from(u8::from(date.month())) - 1 + i32::from(months);
    let year = date.year() + total.div_euclid(12);
    let month = Month::try_from((total.rem_euclid(12) + 1) as u8).unwrap_or(Month::January);
    let day = date.day().min(time::util::days_in_month(month, year));
    let end = time::Date::from_calendar_date(year, month, day).unwrap_or(date);
    start.replace_date(end)
}

/// What refunding a term that cost `fee` and runs `[starts_at, ends_at)` gives back `now`;
/// `None` when the plan gives nothing back any more.
pub fn refund_amount(
    rules: PlanRefund,
    fee: i64,
    starts_at: OffsetDateTime,
    ends_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<i64> {
    if now < starts_at || now - starts_at <= Duration::days(i64::from(rules.full_within_days)) {
        return Some(fee);
    }
    if !rules.pro_rata || now >= ends_at {
        return None;
    }
    let total = (ends_at - starts_at).whole_seconds().max(1);
    let left = (ends_at - now).whole_seconds().max(0);
    Some((i128::from(fee) * i128::from(left) / i128::from(total)) as i64)
}

crate::coded! {
    /// A paid plan's term: `Active` until it ends, or `Refunded` (ended early, money back).
    pub enum MembershipStatus {
        Active = "active",
        Refunded = "refunded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn terms_end_on_the_same_day_or_the_month_end() {
        assert_eq!(
            term_end(datetime!(2026-01-15 10:00 UTC), 1),
            datetime!(2026-02-15 10:00 UTC)
        );
        assert_eq!(
            term_end(datetime!(2026-01-31 10:00 UTC), 1),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            term_end(datetime!(2026-11-30 00:00 UTC), 12),
            datetime!(2027-11-30 00:00 UTC)
        );
        assert_eq!(
            term_end(datetime!(2026-12-31 00:00 UTC), 2),
            datetime!(2027-02-28 00:00 UTC)
        );
    }

    #[test]
    fn refunds_are_full_at_first_then_pro_rata_or_nothing() {
        let rules = PlanRefund::default();
        let (start, end) = (datetime!(2026-01-01 00:00 UTC), datetime!(2026-01-31 00:00 UTC));
        assert_eq!(
            refund_amount(rules, 3_000, start, end, start + Duration::days(7)),
            Some(3_000)
        );
        // 30 days, 20 left.
        assert_eq!(
            refund_amount(rules, 3_000, start, end, start + Duration::days(10)),
            Some(2_000)
        );
        assert_eq!(refund_amount(rules, 3_000, start, end, end), None);
        let strict = PlanRefund {
            full_within_days: 0,
            pro_rata: false,
        };
        assert_eq!(
            refund_amount(strict, 3_000, start, end, start + Duration::days(1)),
            None
        );
        // Not started yet (a renewal bought ahead): all of it.
        assert_eq!(
            refund_amount(strict, 3_000, end, end + Duration::days(30), start),
            Some(3_000)
        );
    }
}
