//! The till's arithmetic: a basket priced for a member, then paid with points, the wallet and
//! money. One pure function prices the basket for the quote and for the commit alike, so a
//! quoted basket commits to exactly the quoted totals.
//!
//! Order of the discounts: the member's tier price first (the tier's discount on each line,
//! rounded down), then each coupon in the order given, on the lines as priced so far (a coupon's
//! discount is shared among its lines in proportion, so a returned line gives back its share).
//! Then the tender: points (at the programme's point value, never more than the amount due),
//! the wallet, and the rest in money. Points are earned on the money paid (the wallet included),
//! never on the part paid with points, and never on reward lines.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::coupons::{self, Ineligible, Occasion, PricedLine, Terms};
use super::money;
use super::wallet::{split_payment, Balance};
use crate::error::Validator;
use crate::ids::{MemberId, StoreId};
use crate::loyalty::purchase::{
    validate_basket_lines, validate_reference, LineInput, PurchaseLine, MAX_POINTS,
};
use crate::member::Channel;
use crate::money::MAX_AMOUNT;

crate::coded! {
    /// A till sale is refunded whole.
    pub enum SaleStatus {
        Completed = "completed",
        Refunded = "refunded",
    }
}
use crate::pii::Personal;
use crate::ValidationError;

/// Most coupons on one sale.
pub const MAX_COUPONS: usize = 10;

/// A basket at the till, for a quote or a commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckoutInput {
    /// The brand's order number: required to commit, where it makes the sale idempotent.
    pub order_id: Option<String>,
    /// The member: exactly one of `member_id`, `phone`, `member_code`.
    pub member_id: Option<MemberId>,
    pub phone: Option<Personal>,
    /// A dynamic member code (digits or QR payload); a commit uses it up.
    pub member_code: Option<String>,
    pub store_id: Option<StoreId>,
    pub channel: Channel,
    /// Line totals at list price, minor units.
    pub lines: Vec<LineInput>,
    /// Shipping fee, minor units.
    #[serde(default)]
    pub shipping: i64,
    /// Coupon codes to apply, in this order.
    #[serde(default)]
    pub coupons: Vec<String>,
    /// Points to pay with.
    #[serde(default)]
    pub points: i64,
    /// Minor units to pay from the wallet.
    #[serde(default)]
    pub wallet: i64,
}

/// Checks a basket's shape; returns its lines normalised and its coupon codes normalised.
pub fn validate_checkout(
    c: &CheckoutInput,
    commit: bool,
) -> Result<(Vec<PurchaseLine>, Vec<String>), ValidationError> {
    let mut v = Validator::default();
    match (&c.order_id, commit) {
        (Some(id), _) => {
            v.check(validate_reference("order_id", id));
        }
        (None, true) => v.push("order_id", "is required to commit a sale"),
        (None, false) => {}
    }
    let who = [c.member_id.is_some(), c.phone.is_some(), c.member_code.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if who != 1 {
        v.push("member_id", "give exactly one of member_id, phone, member_code");
    }
    let lines = validate_basket_lines(&mut v, &c.lines);
    if !(0..=MAX_AMOUNT).contains(&c.shipping) {
        v.push("shipping", "must not be negative");
    }
    if c.coupons.len() > MAX_COUPONS {
        v.push("coupons", format!("at most {MAX_COUPONS} coupons on one sale"));
    }
    let mut codes = Vec::with_capacity(c.coupons.len());
    for (i, code) in c.coupons.iter().enumerate() {
        match coupons::normalise_code(code) {
            Ok(code) if codes.contains(&code) => {
                v.push(format!("coupons[{i}]"), "the same coupon appears twice")
            }
            Ok(code) => codes.push(code),
            Err(e) => v.push(format!("coupons[{i}]"), e.errors[0].reason.clone()),
        }
    }
    if !(0..=MAX_POINTS).contains(&c.points) {
        v.push("points", format!("must be between 0 and {MAX_POINTS}"));
    }
    if !(0..=MAX_AMOUNT).contains(&c.wallet) {
        v.push("wallet", "must not be negative");
    }
    v.finish()?;
    Ok((lines, codes))
}

/// A coupon offered for the sale.
#[derive(Debug, Clone)]
pub struct OfferedCoupon<'a> {
    pub code: &'a str,
    pub terms: &'a Terms,
    pub valid_from: time::OffsetDateTime,
    pub valid_until: time::OffsetDateTime,
}

/// What the member can pay with besides money.
#[derive(Debug, Clone, Copy, Default)]
pub struct Means {
    pub points_available: i64,
    /// Money value of one point, minor units.
    pub point_value_minor: i64,
    pub wallet: Balance,
}

/// One line as priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PricedLineView {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: i64,
    pub reward: bool,
    /// At list price.
    pub list_amount: i64,
    pub tier_discount: i64,
    pub coupon_discount: i64,
    /// What the line costs after the discounts.
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppliedCoupon {
    pub code: String,
    /// Taken off the lines and the shipping fee together.
    pub discount: i64,
    pub shipping_discount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusedCoupon {
    pub code: String,
    pub reason: Ineligible,
    /// In words a clerk can act on ("minimum spend 100.00, basket 80.00").
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PointsTender {
    pub requested: i64,
    /// The most points that can pay for this sale: what the member has, up to the amount due.
    pub max_usable: i64,
    pub used: i64,
    /// Money value of the points used, minor units.
    pub value: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletTender {
    pub requested: i64,
    /// What the wallet holds (principal and bonus).
    pub balance: i64,
    pub max_usable: i64,
    pub used: i64,
    pub from_principal: i64,
    pub from_bonus: i64,
}

/// A basket priced and paid for: the quote's answer and the commit's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Priced {
    pub lines: Vec<PricedLineView>,
    /// Lines at list price.
    pub subtotal: i64,
    pub tier_discount: i64,
    pub coupons: Vec<AppliedCoupon>,
    pub refused_coupons: Vec<RefusedCoupon>,
    pub shipping: i64,
    pub shipping_discount: i64,
    /// Due after the discounts: lines plus shipping.
    pub total: i64,
    pub points: PointsTender,
    pub wallet: WalletTender,
    /// What is left to pay in money.
    pub money_due: i64,
}

impl Priced {
    /// Money paid, the wallet included: what points are earned on.
    pub fn paid_amount(&self) -> i64 {
        self.money_due + self.wallet.used
    }

    /// The lines as they are recorded with the purchase: at their price after discounts.
    pub fn purchase_lines(&self) -> Vec<PurchaseLine> {
        self.lines
            .iter()
            .map(|l| PurchaseLine {
                sku: l.sku.clone(),
                category: l.category.clone(),
                quantity: l.quantity,
                amount: l.amount,
                reward: l.reward,
                points: 0,
                refunded_quantity: 0,
            })
            .collect()
    }
}

/// A basket for a member, with the coupons offered for it, in the order given.
#[derive(Debug, Clone)]
pub struct Basket<'a> {
    pub lines: &'a [PurchaseLine],
    pub shipping: i64,
    /// The member's tier's discount.
    pub tier_discount_percent: Decimal,
    pub coupons: &'a [OfferedCoupon<'a>],
    pub occasion: Occasion<'a>,
}

/// What the member asks to pay with besides money.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    pub points: i64,
    pub wallet: i64,
}

/// Prices a basket (tier price, then each coupon in order), then pays with up to the points and
/// wallet money asked for, within the member's means.
pub fn price(basket: &Basket<'_>, ask: Ask, means: Means) -> Priced {
    let Basket {
        lines,
        shipping,
        tier_discount_percent,
        coupons: offered,
        occasion,
    } = *basket;
    let Ask { points, wallet } = ask;
    let mut priced: Vec<PricedLineView> = lines
        .iter()
        .map(|l| {
            let tier_discount = if l.reward || tier_discount_percent <= Decimal::ZERO {
                0
            } else {
                let off = (Decimal::from(l.amount) * tier_discount_percent / Decimal::ONE_HUNDRED).floor();
                whole(off).clamp(0, l.amount)
            };
            PricedLineView {
                sku: l.sku.clone(),
                category: l.category.clone(),
                quantity: l.quantity,
                reward: l.reward,
                list_amount: l.amount,
                tier_discount,
                coupon_discount: 0,
                amount: l.amount - tier_discount,
            }
        })
        .collect();
    let mut applied = Vec::new();
    let mut refused = Vec::new();
    let mut shipping_left = shipping;
    let several = offered.len() > 1;
    for c in offered {
        if several && !c.terms.stackable {
            refused.push(refusal(c.code, Ineligible::NotStackable));
            continue;
        }
        let now: Vec<PricedLine> = priced
            .iter()
            .map(|l| PricedLine {
                sku: l.sku.clone(),
                category: l.category.clone(),
                quantity: l.quantity,
                amount: l.amount,
                reward: l.reward,
            })
            .collect();
        let o = Occasion {
            shipping: shipping_left,
            ..occasion
        };
        match coupons::discount(c.terms, c.valid_from, c.valid_until, &now, &o) {
            Ok(d) => {
                for (i, share) in &d.lines {
                    priced[*i].coupon_discount += share;
                    priced[*i].amount -= share;
                }
                shipping_left -= d.shipping;
                applied.push(AppliedCoupon {
                    code: c.code.to_owned(),
                    discount: d.total,
                    shipping_discount: d.shipping,
                });
            }
            Err(why) => refused.push(refusal(c.code, why)),
        }
    }
    let subtotal = priced.iter().map(|l| l.list_amount).sum();
    let tier_discount = priced.iter().map(|l| l.tier_discount).sum();
    let total = priced.iter().map(|l| l.amount).sum::<i64>() + shipping_left;
    let max_points = if means.point_value_minor > 0 {
        means.points_available.max(0).min(total / means.point_value_minor)
    } else {
        0
    };
    let points_used = points.clamp(0, max_points);
    let points_value = points_used * means.point_value_minor;
    let max_wallet = means.wallet.total().min(total - points_value).max(0);
    let wallet_used = wallet.clamp(0, max_wallet);
    let split = split_payment(means.wallet, wallet_used).unwrap_or_default();
    Priced {
        lines: priced,
        subtotal,
        tier_discount,
        coupons: applied,
        refused_coupons: refused,
        shipping,
        shipping_discount: shipping - shipping_left,
        total,
        points: PointsTender {
            requested: points,
            max_usable: max_points,
            used: points_used,
            value: points_value,
        },
        wallet: WalletTender {
            requested: wallet,
            balance: means.wallet.total(),
            max_usable: max_wallet,
            used: wallet_used,
            from_principal: split.principal,
            from_bonus: split.bonus,
        },
        money_due: total - points_value - wallet_used,
    }
}

fn refusal(code: &str, reason: Ineligible) -> RefusedCoupon {
    RefusedCoupon {
        code: code.to_owned(),
        message: reason.message(),
        reason,
    }
}

/// A decimal already rounded to a whole number, as an integer.
fn whole(d: Decimal) -> i64 {
    i64::try_from(d.trunc().mantissa() / 10i128.pow(d.trunc().scale())).unwrap_or(0)
}

/// Why a priced sale cannot be committed as asked: the clerk asked for more than is possible,
/// or a coupon cannot be used. Each says what to change.
pub fn commit_refusals(p: &Priced) -> Result<(), ValidationError> {
    let mut v = Validator::default();
    for r in &p.refused_coupons {
        v.push("coupons", format!("{}: {}", r.code, r.message));
    }
    if p.points.requested > p.points.used {
        v.push(
            "points",
            format!(
                "at most {} points can pay for this sale (the member has enough for {}, the sale is worth {})",
                p.points.max_usable,
                p.points.max_usable,
                money(p.total)
            ),
        );
    }
    if p.wallet.requested > p.wallet.used {
        v.push(
            "wallet",
            if p.wallet.balance == 0 {
                "the wallet is empty".to_owned()
            } else {
                format!(
                    "at most {} can be paid from the wallet (it holds {})",
                    money(p.wallet.max_usable),
                    money(p.wallet.balance)
                )
            },
        );
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commerce::coupons::{Limits, Offer};
    use proptest::prelude::*;
    use time::macros::datetime;

    fn line(sku: &str, amount: i64) -> PurchaseLine {
        PurchaseLine {
            sku: sku.into(),
            category: Some("apparel".into()),
            quantity: 1,
            amount,
            reward: false,
            points: 0,
            refunded_quantity: 0,
        }
    }

    fn occasion() -> Occasion<'static> {
        Occasion {
            store_code: None,
            channel: Channel::Pos,
            tier_code: "silver",
            at: datetime!(2026-06-01 12:00 UTC),
            shipping: 0,
        }
    }

    fn terms(offer: Offer, stackable: bool) -> Terms {
        Terms {
            offer,
            limits: Limits::default(),
            stackable,
        }
    }

    fn offered<'a>(code: &'a str, t: &'a Terms) -> OfferedCoupon<'a> {
        OfferedCoupon {
            code,
            terms: t,
            valid_from: datetime!(2026-01-01 00:00 UTC),
            valid_until: datetime!(2027-01-01 00:00 UTC),
        }
    }

    /// Silver (10% off), 滿100減20 on 120 of goods, 500 points at 5 fen, 30 from the wallet.
    #[test]
    fn a_basket_is_priced_in_order_tier_coupon_points_wallet_money() {
        let t = terms(
            Offer::Threshold {
                min_spend: 10_000,
                amount: 2_000,
            },
            false,
        );
        let p = price(
            &Basket {
                lines: &[line("TEE", 8_000), line("CAP", 4_000)],
                shipping: 0,
                tier_discount_percent: Decimal::from(10),
                coupons: &[offered("C1", &t)],
                occasion: occasion(),
            },
            Ask {
                points: 500,
                wallet: 3_000,
            },
            Means {
                points_available: 800,
                point_value_minor: 5,
                wallet: Balance {
                    principal: 10_000,
                    bonus: 1_000,
                },
            },
        );
        // 120.00 → tier 108.00 → coupon 88.00 (20.00 shared 72:36).
        assert_eq!(p.subtotal, 12_000);
        assert_eq!(p.tier_discount, 1_200);
        assert_eq!(p.lines[0].amount, 7_200 - 1_333);
        assert_eq!(p.lines[1].amount, 3_600 - 667);
        assert_eq!(p.total, 8_800);
        assert_eq!((p.points.used, p.points.value), (500, 2_500));
        assert_eq!(
            (p.wallet.used, p.wallet.from_principal, p.wallet.from_bonus),
            (3_000, 2_728, 272)
        );
        assert_eq!(p.money_due, 8_800 - 2_500 - 3_000);
        assert_eq!(p.paid_amount(), 6_300);
        assert!(commit_refusals(&p).is_ok());
    }

    #[test]
    fn non_stackable_coupons_go_alone_and_requests_beyond_the_means_are_refused() {
        let a = terms(Offer::FixedAmount { amount: 500 }, false);
        let b = terms(Offer::FixedAmount { amount: 500 }, true);
        let p = price(
            &Basket {
                lines: &[line("TEE", 1_000)],
                shipping: 0,
                tier_discount_percent: Decimal::ZERO,
                coupons: &[offered("A", &a), offered("B", &b)],
                occasion: occasion(),
            },
            Ask {
                points: 1_000,
                wallet: 100,
            },
            Means {
                points_available: 10_000,
                point_value_minor: 5,
                wallet: Balance::default(),
            },
        );
        assert_eq!(p.coupons.len(), 1);
        assert_eq!(p.refused_coupons[0].reason, Ineligible::NotStackable);
        // 5.00 left: at most 100 points, and an empty wallet.
        assert_eq!((p.points.max_usable, p.points.used), (100, 100));
        let fields: Vec<String> = commit_refusals(&p)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["coupons", "points", "wallet"]);
    }

    proptest! {
        /// Whatever is asked, the tender adds up to the total, nothing is negative and no
        /// discount makes a line cost less than nothing.
        #[test]
        fn the_tender_always_adds_up(
            amounts in prop::collection::vec(0i64..100_000, 1..6),
            tier in 0u32..=30, fixed in 0i64..50_000, shipping in 0i64..2_000,
            points in 0i64..100_000, available in 0i64..100_000, value in 0i64..20,
            wallet in 0i64..200_000, principal in 0i64..100_000, bonus in 0i64..20_000) {
            let lines: Vec<PurchaseLine> = amounts.iter().map(|&a| line("X", a)).collect();
            let t = terms(Offer::FixedAmount { amount: fixed.max(1) }, true);
            let coupons = [offered("C", &t)];
            let basket = Basket { lines: &lines, shipping, tier_discount_percent: Decimal::from(tier), coupons: &coupons, occasion: occasion() };
            let p = price(&basket, Ask { points, wallet },
                Means { points_available: available, point_value_minor: value, wallet: Balance { principal, bonus } });
            prop_assert_eq!(p.points.value + p.wallet.used + p.money_due, p.total);
            prop_assert!(p.money_due >= 0 && p.points.used <= available && p.wallet.used <= principal + bonus);
            prop_assert_eq!(p.wallet.from_principal + p.wallet.from_bonus, p.wallet.used);
            for l in &p.lines {
                prop_assert!(l.amount >= 0);
                prop_assert_eq!(l.list_amount - l.tier_discount - l.coupon_discount, l.amount);
            }
            prop_assert_eq!(p.subtotal - p.tier_discount - p.coupons.iter().map(|c| c.discount - c.shipping_discount).sum::<i64>()
                + shipping - p.shipping_discount, p.total);
        }
    }
}
