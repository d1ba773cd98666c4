//! How many points a purchase earns, itemised so the items always sum to the total.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use super::programme::{Programme, Stacking, StreakPeriod, Tier};
use crate::member::Channel;

/// One line of a purchase, as the earning rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarnLine {
    pub category: Option<String>,
    /// Line total in minor units, before order-level discounts.
    pub amount: i64,
    /// A reward or gift line paid with points or a coupon: it never earns.
    pub reward: bool,
}

/// Everything about a purchase and its member that the rules may look at.
#[derive(Debug, Clone)]
pub struct PurchaseFacts<'a> {
    pub lines: &'a [EarnLine],
    /// What the member paid in money (minor units): discounts, coupons and points excluded.
    pub paid_amount: i64,
    pub store_code: Option<&'a str>,
    pub channel: Channel,
    /// When the purchase happened, and its calendar date in the brand's time zone.
    pub at: OffsetDateTime,
    pub local_date: Date,
    pub birth_month: Option<u8>,
    pub tier: Option<&'a Tier>,
    /// Consecutive streak periods (weeks or months, as the programme's streak bonus says) with a
    /// purchase, ending with this purchase's own period: 1 when the previous period had none.
    pub streak: u8,
    /// The paid membership plan the member holds at the time, if any.
    pub plan: Option<&'a crate::commerce::plans::Plan>,
}

/// A line of the "why did I get these points" breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EarnItem {
    /// `rule`, `multiplier` or `cap`.
    pub kind: String,
    /// The rule, multiplier (`member_day`, `birthday_month`, `tier:<code>`, `campaign:<id>`) or
    /// cap (`per_order`, `per_member_per_day`, `per_member_per_month`).
    pub source: String,
    pub label: String,
    pub points: i64,
}

/// The outcome of the earning rules for one purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Earning {
    /// The part of the paid amount that earns points (reward lines and excluded money removed).
    pub eligible_amount: i64,
    /// Sum of the items.
    pub points: i64,
    pub items: Vec<EarnItem>,
    /// Points attributed to each purchase line (same order as the lines), used to reverse a
    /// line's points exactly when it is refunded. Sums to `points`.
    pub line_points: Vec<i64>,
    /// Rules that matched lines but did not apply, and why (e.g. minimum spend not reached).
    pub not_applied: Vec<String>,
}

/// Points already earned from purchases in the periods the caps cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EarnedSoFar {
    pub today: i64,
    pub this_month: i64,
}

/// Applies the programme's rules, multipliers and caps to one purchase.
pub fn evaluate(programme: &Programme, facts: &PurchaseFacts<'_>, so_far: EarnedSoFar) -> Earning {
    let earnable_total: i64 = facts.lines.iter().filter(|l| !l.reward).map(|l| l.amount).sum();
    let eligible_total = facts.paid_amount.clamp(0, earnable_total.max(0));
    let mut not_applied = Vec::new();

    // Base points: the first matching rule of each line, on the line's share of the paid money.
    let mut per_rule: Vec<(usize, Decimal)> = Vec::new();
    let mut line_base: Vec<Decimal> = vec![Decimal::ZERO; facts.lines.len()];
    for (li, line) in facts.lines.iter().enumerate() {
        if line.reward || line.amount <= 0 || earnable_total <= 0 {
            continue;
        }
        let Some((ri, rule)) = programme
            .earn_rules
            .iter()
            .enumerate()
            .find(|(_, r)| rule_matches(r, line, facts))
        else {
            continue;
        };
        if facts.paid_amount < rule.min_spend {
            let note = format!("{}: minimum spend {} not reached", rule.id, rule.min_spend);
            if !not_applied.contains(&note) {
                not_applied.push(note);
            }
            continue;
        }
        // Saturating: a validated programme stays far below the limits (`MAX_SALE_POINTS`), and
        // an unvalidated one must not panic a sale; `Rounding::apply` saturates to i64 too.
        let share = Decimal::from(line.amount).saturating_mul(Decimal::from(eligible_total))
            / Decimal::from(earnable_total);
        let points = share.saturating_mul(rule.points) / Decimal::from(rule.per_amount);
        line_base[li] = points;
        match per_rule.iter_mut().find(|(i, _)| *i == ri) {
            Some((_, sum)) => *sum = sum.saturating_add(points),
            None => per_rule.push((ri, points)),
        }
    }
    per_rule.sort_by_key(|(i, _)| *i);

    let mut items = Vec::new();
    let mut base = 0i64;
    for (ri, points) in &per_rule {
        let rule = &programme.earn_rules[*ri];
        let p = programme.rounding.apply(*points);
        base = base.saturating_add(p);
        items.push(EarnItem {
            kind: "rule".into(),
            source: rule.id.clone(),
            label: rule.label.clone(),
            points: p,
        });
    }

    // Multipliers, each itemised as the extra it adds over what came before.
    let factors = multipliers(programme, facts);
    let mut cumulative = Decimal::ONE;
    let mut running = base;
    let applied: Vec<&(String, String, Decimal)> = match programme.multipliers.stacking {
        Stacking::Max => factors.iter().max_by(|a, b| a.2.cmp(&b.2)).into_iter().collect(),
        _ => factors.iter().collect(),
    };
    for (source, label, factor) in applied {
        cumulative = match programme.multipliers.stacking {
            Stacking::Multiply | Stacking::Max => cumulative.saturating_mul(*factor),
            Stacking::Add => cumulative.saturating_add(*factor - Decimal::ONE),
        };
        let total = programme
            .rounding
            .apply(Decimal::from(base).saturating_mul(cumulative));
        let extra = total - running;
        running = total;
        items.push(EarnItem {
            kind: "multiplier".into(),
            source: source.clone(),
            label: label.clone(),
            points: extra,
        });
    }

    // Caps, each itemised as the (negative) amount it removed.
    let caps = &programme.caps;
    for (source, label, room) in [
        ("per_order", "每單上限 Per-order cap", caps.per_order),
        (
            "per_member_per_day",
            "每日上限 Daily cap",
            caps.per_member_per_day.map(|c| (c - so_far.today).max(0)),
        ),
        (
            "per_member_per_month",
            "每月上限 Monthly cap",
            caps.per_member_per_month.map(|c| (c - so_far.this_month).max(0)),
        ),
    ] {
        if let Some(room) = room {
            if running > room {
                items.push(EarnItem {
                    kind: "cap".into(),
                    source: source.into(),
                    label: label.into(),
                    points: room - running,
                });
                running = room;
            }
        }
    }

    Earning {
        eligible_amount: eligible_total,
        points: running,
        line_points: allocate(running, &line_base),
        items,
        not_applied,
    }
}

fn rule_matches(rule: &super::programme::EarnRule, line: &EarnLine, facts: &PurchaseFacts<'_>) -> bool {
    let category_ok = rule.categories.is_empty()
        || line
            .category
            .as_deref()
            .is_some_and(|c| rule.categories.iter().any(|x| x == c));
    let store_ok = rule.stores.is_empty()
        || facts
            .store_code
            .is_some_and(|s| rule.stores.iter().any(|x| x == s));
    let channel_ok = rule.channels.is_empty() || rule.channels.contains(&facts.channel);
    category_ok && store_ok && channel_ok
}

/// The multipliers that apply to this purchase, in a fixed order: tier, member day, birthday
/// month, purchase streak, campaigns (in the order the programme lists them).
fn multipliers(programme: &Programme, facts: &PurchaseFacts<'_>) -> Vec<(String, String, Decimal)> {
    let m = &programme.multipliers;
    let mut out = Vec::new();
    if let Some(tier) = facts.tier.filter(|t| t.multiplier > Decimal::ONE) {
        out.push((
            format!("tier:{}", tier.code),
            format!("{} ×{}", tier.name, tier.multiplier.normalize()),
            tier.multiplier,
        ));
    }
    if let Some(plan) = facts.plan.filter(|p| p.points_multiplier > Decimal::ONE) {
        out.push((
            format!("plan:{}", plan.code),
            format!("{} ×{}", plan.name, plan.points_multiplier.normalize()),
            plan.points_multiplier,
        ));
    }
    if let Some(md) = m.member_day.as_ref() {
        if facts.local_date.day() == md.day_of_month && md.multiplier > Decimal::ONE {
            out.push((
                "member_day".into(),
                format!("會員日 Member day ×{}", md.multiplier.normalize()),
                md.multiplier,
            ));
        }
    }
    if let (Some(b), Some(month)) = (m.birthday_month, facts.birth_month) {
        if u8::from(facts.local_date.month()) == month && b > Decimal::ONE {
            out.push((
                "birthday_month".into(),
                format!("生日月 Birthday month ×{}", b.normalize()),
                b,
            ));
        }
    }
    if let Some(s) = m.streak.as_ref() {
        if facts.streak >= s.periods && s.multiplier > Decimal::ONE {
            let unit = match s.period {
                StreakPeriod::Week => "週 weeks",
                StreakPeriod::Month => "個月 months",
            };
            out.push((
                "streak".into(),
                format!(
                    "連續消費 {} {unit} in a row ×{}",
                    s.periods,
                    s.multiplier.normalize()
                ),
                s.multiplier,
            ));
        }
    }
    for c in &m.campaigns {
        let in_window = c.starts_at <= facts.at && facts.at < c.ends_at;
        let store_ok =
            c.stores.is_empty() || facts.store_code.is_some_and(|s| c.stores.iter().any(|x| x == s));
        let channel_ok = c.channels.is_empty() || c.channels.contains(&facts.channel);
        if in_window && store_ok && channel_ok && c.multiplier > Decimal::ONE {
            out.push((
                format!("campaign:{}", c.id),
                format!("{} ×{}", c.label, c.multiplier.normalize()),
                c.multiplier,
            ));
        }
    }
    out
}

/// Splits `total` over lines in proportion to `weights` by largest remainder, so the parts are
/// whole points that sum to exactly `total`.
pub fn allocate(total: i64, weights: &[Decimal]) -> Vec<i64> {
    let sum: Decimal = weights.iter().fold(Decimal::ZERO, |a, w| a.saturating_add(*w));
    if weights.is_empty() {
        return Vec::new();
    }
    if sum <= Decimal::ZERO || total == 0 {
        return vec![0; weights.len()];
    }
    // Exact as `total × w / sum`; where that product would overflow (only a programme that
    // skipped validation gets there), as `total × (w / sum)`.
    let exact: Vec<Decimal> = weights
        .iter()
        .map(|w| match Decimal::from(total).checked_mul(*w) {
            Some(product) => product / sum,
            None => Decimal::from(total).saturating_mul(*w / sum),
        })
        .collect();
    let mut parts: Vec<i64> = exact
        .iter()
        .map(|e| rust_decimal::prelude::ToPrimitive::to_i64(&e.floor()).unwrap_or(0))
        .collect();
    let mut left = total.saturating_sub(parts.iter().fold(0i64, |a, p| a.saturating_add(*p)));
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.cmp(&ra).then(a.cmp(&b))
    });
    for i in order.into_iter().cycle() {
        if left <= 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// Points to reverse so that, after a refund, the reversed total is proportional to the
/// refunded share: `earned × refunded_after / paid`, reaching exactly `earned` on a full refund.
/// Cumulative, so several partial refunds never reverse more than was earned.
pub fn proportional_reversal(earned: i64, paid: i64, refunded_after: i64, reversed_before: i64) -> i64 {
    if paid <= 0 || earned <= 0 {
        return 0;
    }
    let refunded_after = refunded_after.clamp(0, paid);
    let target = if refunded_after == paid {
        earned
    } else {
        // Floor: a partial refund never reverses a point the remaining sale still earns.
        ((i128::from(earned) * i128::from(refunded_after)) / i128::from(paid)) as i64
    };
    (target - reversed_before).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loyalty::programme::{CampaignBoost, Programme};
    use proptest::prelude::*;
    use time::macros::{date, datetime};

    fn line(category: &str, amount: i64) -> EarnLine {
        EarnLine {
            category: Some(category.into()),
            amount,
            reward: false,
        }
    }

    fn facts<'a>(lines: &'a [EarnLine], paid: i64, day: Date, tier: Option<&'a Tier>) -> PurchaseFacts<'a> {
        PurchaseFacts {
            lines,
            paid_amount: paid,
            store_code: Some("SH01"),
            channel: Channel::Pos,
            at: datetime!(2026-11-08 10:00 UTC),
            local_date: day,
            birth_month: Some(11),
            tier,
            streak: 1,
            plan: None,
        }
    }

    /// 10,000 points per 0.01 yuan with no cap, a purchase of 10^12 minor units and every
    /// multiplier at 100 once panicked a sale (decimal overflow). The validator refuses such a
    /// programme, naming the rule, unless a per-order cap bounds it; and the arithmetic
    /// saturates, so even a programme that skipped validation cannot panic a sale.
    #[test]
    fn the_largest_sale_cannot_overflow_the_earning() {
        use crate::loyalty::programme::MAX_SALE_POINTS;
        use crate::money::MAX_AMOUNT;
        let mut p = Programme::demo();
        p.caps = Default::default();
        p.earn_rules[0].points = Decimal::from(10_000);
        p.earn_rules[0].per_amount = 1;
        let err = p.validate().unwrap_err();
        assert_eq!(err.errors[0].field, "earn_rules[0].points", "{err:?}");
        p.caps.per_order = Some(MAX_SALE_POINTS);
        p.validate().unwrap();
        assert!(
            Programme::demo().validate().is_ok(),
            "the demo programme is far below the bound"
        );

        let hundred = Decimal::from(100);
        p.caps = Default::default();
        p.multipliers.member_day.as_mut().unwrap().multiplier = hundred;
        p.multipliers.birthday_month = Some(hundred);
        for i in 0..8 {
            p.multipliers.campaigns.push(CampaignBoost {
                id: format!("c{i}"),
                label: "x".into(),
                multiplier: hundred,
                starts_at: datetime!(2026-01-01 00:00 UTC),
                ends_at: datetime!(2027-01-01 00:00 UTC),
                stores: vec![],
                channels: vec![],
            });
        }
        let lines = [line("apparel", MAX_AMOUNT)];
        let f = facts(&lines, MAX_AMOUNT, date!(2026 - 11 - 08), None);
        let e = evaluate(&p, &f, EarnedSoFar::default());
        assert_eq!(e.points, i64::MAX, "saturated, not wrapped or panicked");
    }

    #[test]
    fn a_purchase_streak_earns_its_bonus_once_long_enough() {
        let p = Programme::demo();
        let streak = p.multipliers.streak.clone().expect("the demo has a streak bonus");
        assert_eq!(streak.periods, 3);
        let lines = [line("apparel", 10_000)];
        let mut f = facts(&lines, 10_000, date!(2026 - 10 - 03), None);
        f.birth_month = None;
        f.streak = 2;
        assert_eq!(evaluate(&p, &f, EarnedSoFar::default()).points, 100);
        f.streak = 3;
        let e = evaluate(&p, &f, EarnedSoFar::default());
        assert_eq!(e.points, 120);
        assert_eq!(e.items[1].source, "streak");
        assert_eq!(e.items[1].points, 20);
        f.streak = 12;
        assert_eq!(
            evaluate(&p, &f, EarnedSoFar::default()).points,
            120,
            "the bonus does not grow"
        );
    }

    #[test]
    fn one_point_per_yuan_and_gift_cards_earn_nothing() {
        let p = Programme::demo();
        let lines = [line("apparel", 19_990), line("gift_card", 50_000)];
        let e = evaluate(
            &p,
            &facts(&lines, 69_990, date!(2026 - 10 - 03), None),
            EarnedSoFar::default(),
        );
        assert_eq!(e.points, 199);
        assert_eq!(e.line_points, vec![199, 0]);
        assert_eq!(e.items.iter().map(|i| i.points).sum::<i64>(), e.points);
    }

    #[test]
    fn member_day_birthday_and_tier_stack_multiplicatively_by_default() {
        let p = Programme::demo();
        let gold = &p.tiers.levels[2];
        let lines = [line("apparel", 20_000)];
        // 8 November: member day (×3), birthday month (×2), gold (×1.5) → 200 × 9 = 1800.
        let e = evaluate(
            &p,
            &facts(&lines, 20_000, date!(2026 - 11 - 08), Some(gold)),
            EarnedSoFar::default(),
        );
        let items: Vec<_> = e.items.iter().map(|i| (i.source.as_str(), i.points)).collect();
        assert_eq!(
            items,
            [
                ("base", 200),
                ("tier:gold", 100),
                ("member_day", 600),
                ("birthday_month", 900)
            ]
        );
        assert_eq!(e.points, 1_800);

        let mut add = p.clone();
        add.multipliers.stacking = Stacking::Add;
        let e = evaluate(
            &add,
            &facts(&lines, 20_000, date!(2026 - 11 - 08), Some(gold)),
            EarnedSoFar::default(),
        );
        // 1 + 0.5 + 2 + 1 = 4.5
        assert_eq!(e.points, 900);
        let mut max = p.clone();
        max.multipliers.stacking = Stacking::Max;
        let e = evaluate(
            &max,
            &facts(&lines, 20_000, date!(2026 - 11 - 08), Some(gold)),
            EarnedSoFar::default(),
        );
        assert_eq!(e.points, 600);
        assert_eq!(e.items.len(), 2);
    }

    #[test]
    fn campaigns_apply_only_inside_their_window() {
        let mut p = Programme::demo();
        p.multipliers.campaigns.push(CampaignBoost {
            id: "double11".into(),
            label: "雙11".into(),
            multiplier: Decimal::from(2),
            starts_at: datetime!(2026-11-11 00:00 +8),
            ends_at: datetime!(2026-11-12 00:00 +8),
            stores: vec![],
            channels: vec![Channel::WebShop],
        });
        let lines = [line("apparel", 10_000)];
        let mut f = facts(&lines, 10_000, date!(2026 - 11 - 11), None);
        f.birth_month = None;
        f.at = datetime!(2026-11-11 12:00 +8);
        assert_eq!(
            evaluate(&p, &f, EarnedSoFar::default()).points,
            100,
            "wrong channel"
        );
        f.channel = Channel::WebShop;
        assert_eq!(evaluate(&p, &f, EarnedSoFar::default()).points, 200);
        f.at = datetime!(2026-11-12 00:00 +8);
        assert_eq!(
            evaluate(&p, &f, EarnedSoFar::default()).points,
            100,
            "window is half-open"
        );
    }

    #[test]
    fn caps_hold_and_are_itemised() {
        let p = Programme::demo();
        let lines = [line("apparel", 100_000_000)];
        let e = evaluate(
            &p,
            &facts(&lines, 100_000_000, date!(2026 - 10 - 03), None),
            EarnedSoFar::default(),
        );
        assert_eq!(e.points, 100_000);
        let e = evaluate(
            &p,
            &facts(&lines, 100_000_000, date!(2026 - 10 - 03), None),
            EarnedSoFar {
                today: 150_000,
                this_month: 0,
            },
        );
        assert_eq!(e.points, 50_000);
        assert_eq!(e.items.iter().map(|i| i.points).sum::<i64>(), 50_000);
        let e = evaluate(
            &p,
            &facts(&lines, 100_000_000, date!(2026 - 10 - 03), None),
            EarnedSoFar {
                today: 250_000,
                this_month: 0,
            },
        );
        assert_eq!(e.points, 0);
    }

    #[test]
    fn reward_lines_and_the_unpaid_part_never_earn() {
        let p = Programme::demo();
        // A 100-yuan shirt, a 50-yuan gift paid with points; the member paid 80 in money.
        let lines = [
            line("apparel", 10_000),
            EarnLine {
                category: Some("apparel".into()),
                amount: 5_000,
                reward: true,
            },
        ];
        let e = evaluate(
            &p,
            &facts(&lines, 8_000, date!(2026 - 10 - 03), None),
            EarnedSoFar::default(),
        );
        assert_eq!(e.eligible_amount, 8_000);
        assert_eq!(e.points, 80);
        assert_eq!(e.line_points, vec![80, 0]);
    }

    #[test]
    fn minimum_spend_is_explained() {
        let mut p = Programme::demo();
        p.earn_rules[1].min_spend = 5_000;
        let lines = [line("apparel", 4_000)];
        let e = evaluate(
            &p,
            &facts(&lines, 4_000, date!(2026 - 10 - 03), None),
            EarnedSoFar::default(),
        );
        assert_eq!(e.points, 0);
        assert_eq!(e.not_applied, ["base: minimum spend 5000 not reached"]);
    }

    #[test]
    fn partial_refunds_never_reverse_more_than_earned() {
        assert_eq!(proportional_reversal(100, 10_000, 3_333, 0), 33);
        assert_eq!(proportional_reversal(100, 10_000, 6_666, 33), 33);
        assert_eq!(proportional_reversal(100, 10_000, 10_000, 66), 34);
        assert_eq!(proportional_reversal(100, 10_000, 12_000, 100), 0);
    }

    proptest! {
        #[test]
        fn breakdown_sums_to_points_and_lines_share_them(
            amounts in proptest::collection::vec((0i64..2_000_000, any::<bool>(), 0usize..3), 1..8),
            paid_share in 0u32..=100,
            day in 1u8..=28,
            tier in 0usize..5,
            today in 0i64..300_000,
        ) {
            let p = Programme::demo();
            let cats = ["apparel", "gift_card", "beauty"];
            let lines: Vec<EarnLine> = amounts.iter().map(|(a, reward, c)| EarnLine {
                category: Some(cats[*c].into()), amount: *a, reward: *reward }).collect();
            let total: i64 = lines.iter().map(|l| l.amount).sum();
            let paid = total * i64::from(paid_share) / 100;
            let date = Date::from_calendar_date(2026, time::Month::November, day).unwrap();
            let f = facts(&lines, paid, date, Some(&p.tiers.levels[tier]));
            let e = evaluate(&p, &f, EarnedSoFar { today, this_month: today });
            prop_assert!(e.points >= 0);
            prop_assert_eq!(e.items.iter().map(|i| i.points).sum::<i64>(), e.points);
            prop_assert_eq!(e.line_points.iter().sum::<i64>(), e.points);
            prop_assert!(e.line_points.iter().all(|p| *p >= 0));
            prop_assert!(e.points <= 100_000);
            prop_assert!(e.points <= (200_000 - today).max(0));
            for (l, p) in lines.iter().zip(&e.line_points) {
                if l.reward || l.category.as_deref() == Some("gift_card") { prop_assert_eq!(*p, 0); }
            }
        }

        #[test]
        fn reversals_sum_to_what_was_earned(earned in 0i64..1_000_000, paid in 1i64..10_000_000,
                                            cuts in proptest::collection::vec(0i64..10_000_000, 0..6)) {
            let mut refunded = 0;
            let mut reversed = 0;
            for c in cuts {
                refunded = (refunded + c).min(paid);
                reversed += proportional_reversal(earned, paid, refunded, reversed);
                prop_assert!(reversed <= earned);
            }
            reversed += proportional_reversal(earned, paid, paid, reversed);
            prop_assert_eq!(reversed, earned);
        }
    }
}
