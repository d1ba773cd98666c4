//! Purchases, refunds, adjustments and redemptions as callers send them, and their validation.

use serde::Deserialize;
use time::OffsetDateTime;

use super::earning::EarnLine;
use super::programme::{ActionKind, Programme};
use crate::error::Validator;
use crate::ids::{MemberId, StoreId};
use crate::member::{validate_text, Channel};
use crate::money::MAX_AMOUNT;
use crate::pii::Personal;
use crate::ValidationError;

crate::coded! {
    /// Where a recorded purchase stands after its refunds, line by line or whole.
    pub enum PurchaseStatus {
        Completed = "completed",
        PartiallyRefunded = "partially_refunded",
        Refunded = "refunded",
    }
}

pub const MAX_LINES: usize = 500;
/// Largest number of points moved by one operation.
pub const MAX_POINTS: i64 = 100_000_000;
/// Most units of one line of a basket (and so of a return).
pub const MAX_QUANTITY: i64 = 1_000_000;

/// A purchase to record; `order_id` is the brand's own order number and makes the call
/// idempotent: the same order sent again returns the first result and earns nothing more.
/// Serializable too, for clients written in Rust (the load generator, imports).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PurchaseInput {
    pub order_id: String,
    /// The member: exactly one of `member_id`, `phone`, `member_code`.
    pub member_id: Option<MemberId>,
    pub phone: Option<Personal>,
    /// A dynamic member code (18 digits or the QR payload), verified and used up.
    pub member_code: Option<String>,
    /// With `phone`: enrol an unknown number ("pay and you are a member"); default true.
    pub enrol_if_unknown: Option<bool>,
    pub store_id: Option<StoreId>,
    pub channel: Channel,
    /// When the sale happened (default: now). Earlier times are accepted (imports, offline tills).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
    pub lines: Vec<LineInput>,
    /// What the member paid in money, minor units: discounts, coupons and points excluded.
    pub paid_amount: i64,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: i64,
    /// Line total in minor units.
    pub amount: i64,
    /// A reward or gift paid with points or a coupon: it never earns points.
    #[serde(default)]
    pub reward: bool,
}

/// A validated line, as stored with the purchase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurchaseLine {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: i64,
    pub amount: i64,
    pub reward: bool,
    /// Points this line earned.
    #[serde(default)]
    pub points: i64,
    /// Quantity refunded so far.
    #[serde(default)]
    pub refunded_quantity: i64,
}

impl PurchaseLine {
    pub fn earn_line(&self) -> EarnLine {
        EarnLine {
            category: self.category.clone(),
            amount: self.amount,
            reward: self.reward,
        }
    }
}

/// Checks a purchase's shape; returns its lines normalised.
pub fn validate_purchase(p: &PurchaseInput) -> Result<Vec<PurchaseLine>, ValidationError> {
    let mut v = Validator::default();
    v.check(validate_reference("order_id", &p.order_id));
    let who = [p.member_id.is_some(), p.phone.is_some(), p.member_code.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if who != 1 {
        v.push("member_id", "give exactly one of member_id, phone, member_code");
    }
    let lines = check_basket(&mut v, &p.lines, p.paid_amount);
    v.finish()?;
    Ok(lines)
}

/// Checks a basket's lines and paid amount (a purchase's or a preview's); returns the lines
/// normalised.
fn check_basket(v: &mut Validator, input: &[LineInput], paid_amount: i64) -> Vec<PurchaseLine> {
    let lines = validate_basket_lines(v, input);
    let total = lines.iter().fold(0i64, |t, l| t.saturating_add(l.amount.max(0)));
    if paid_amount < 0 || paid_amount > total {
        v.push(
            "paid_amount",
            format!("must be between 0 and the sum of the lines ({total})"),
        );
    }
    lines
}

/// Checks a basket's lines (errors go to `v`); returns them normalised.
pub fn validate_basket_lines(v: &mut Validator, input: &[LineInput]) -> Vec<PurchaseLine> {
    if input.is_empty() || input.len() > MAX_LINES {
        v.push("lines", format!("must have between 1 and {MAX_LINES} lines"));
    }
    let mut lines = Vec::with_capacity(input.len());
    for (i, l) in input.iter().enumerate() {
        let sku = v.check(validate_text(&format!("lines[{i}].sku"), &l.sku, 64));
        let category = l
            .category
            .as_deref()
            .and_then(|c| v.check(validate_text(&format!("lines[{i}].category"), c, 64)));
        if !(1..=MAX_QUANTITY).contains(&l.quantity) {
            v.push(
                format!("lines[{i}].quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            );
        }
        if !(0..=MAX_AMOUNT).contains(&l.amount) {
            v.push(
                format!("lines[{i}].amount"),
                format!("must be between 0 and {MAX_AMOUNT} minor units (no negative lines: give discounts through paid_amount)"),
            );
        }
        lines.push(PurchaseLine {
            sku: sku.unwrap_or_default(),
            category,
            quantity: l.quantity,
            amount: l.amount,
            reward: l.reward,
            points: 0,
            refunded_quantity: 0,
        });
    }
    lines
}

/// "What would this basket earn?" — for the console's programme editor and the till, without
/// recording anything. Everything about the member is imagined, so a draft programme can be
/// tried on a gold member on member day before it is published.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EarningPreviewInput {
    /// A draft programme to try; absent: the brand's current one.
    pub programme: Option<Programme>,
    pub channel: Channel,
    /// Store code, for rules and campaigns limited to stores.
    pub store_code: Option<String>,
    /// Default: now. Decides member day, birthday month and campaign windows.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
    pub lines: Vec<LineInput>,
    pub paid_amount: i64,
    #[serde(default)]
    pub member: PreviewMember,
}

/// The imagined member of a preview.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PreviewMember {
    /// Tier code; default: the first tier.
    pub tier: Option<String>,
    /// 1–12.
    pub birth_month: Option<u8>,
    /// Periods in a row with a purchase, this one included (default 1).
    pub streak: Option<u8>,
    /// A paid membership plan's code, for its points multiplier.
    pub plan: Option<String>,
    /// Purchase points already earned today and this month (for the caps).
    #[serde(default)]
    pub earned_today: i64,
    #[serde(default)]
    pub earned_this_month: i64,
}

/// Checks a preview's basket and member against the programme it will run on.
pub fn validate_preview(
    input: &EarningPreviewInput,
    programme: &Programme,
) -> Result<Vec<PurchaseLine>, ValidationError> {
    let mut v = Validator::default();
    let lines = check_basket(&mut v, &input.lines, input.paid_amount);
    if let Some(code) = &input.store_code {
        v.check(validate_text("store_code", code, 64));
    }
    let m = &input.member;
    if let Some(tier) = &m.tier {
        if programme.tier_index(tier).is_none() {
            v.push("member.tier", format!("the programme has no tier {tier:?}"));
        }
    }
    if m.birth_month.is_some_and(|b| !(1..=12).contains(&b)) {
        v.push("member.birth_month", "must be between 1 and 12");
    }
    if let Some(plan) = &m.plan {
        if !programme.plans.iter().any(|p| p.code == *plan) {
            v.push("member.plan", format!("the programme has no plan {plan:?}"));
        }
    }
    if m.streak.is_some_and(|s| !(1..=120).contains(&s)) {
        v.push("member.streak", "must be between 1 and 120");
    }
    for (field, x) in [
        ("member.earned_today", m.earned_today),
        ("member.earned_this_month", m.earned_this_month),
    ] {
        if !(0..=MAX_POINTS).contains(&x) {
            v.push(field, format!("must be between 0 and {MAX_POINTS}"));
        }
    }
    v.finish()?;
    Ok(lines)
}

/// A refund of a recorded purchase: by lines, by amount, or (neither given) all that remains.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    /// The brand's refund number: the same refund sent again changes nothing.
    pub refund_id: String,
    /// Money returned, minor units (a partial refund by amount).
    pub amount: Option<i64>,
    /// Lines returned, by position in the purchase.
    pub lines: Option<Vec<RefundLineInput>>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefundLineInput {
    /// Index of the line in the purchase (0-based).
    pub line: usize,
    pub quantity: i64,
}

pub fn validate_refund(r: &RefundInput) -> Result<(), ValidationError> {
    let mut v = Validator::default();
    v.check(validate_reference("refund_id", &r.refund_id));
    if r.amount.is_some() && r.lines.is_some() {
        v.push("amount", "give amount or lines, not both");
    }
    if let Some(a) = r.amount {
        if !(1..=MAX_AMOUNT).contains(&a) {
            v.push("amount", format!("must be between 1 and {MAX_AMOUNT}"));
        }
    }
    if let Some(lines) = &r.lines {
        if lines.is_empty() || lines.len() > MAX_LINES {
            v.push("lines", format!("must have between 1 and {MAX_LINES} lines"));
        }
        for (i, l) in lines.iter().enumerate() {
            if !(1..=MAX_QUANTITY).contains(&l.quantity) {
                v.push(
                    format!("lines[{i}].quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                );
            }
        }
    }
    if let Some(reason) = &r.reason {
        v.check(validate_text("reason", reason, 200));
    }
    v.finish()
}

/// An operator's grant (positive) or deduction (negative), with the reason the audit log keeps.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdjustmentInput {
    pub points: i64,
    pub reason: String,
    /// A reference that makes the call idempotent (e.g. the support ticket number).
    pub reference: String,
}

pub fn validate_adjustment(a: &AdjustmentInput) -> Result<String, ValidationError> {
    let mut v = Validator::default();
    // `unsigned_abs`: `abs` of i64::MIN is i64::MIN again (in a release build), which is
    // below the bound, so the largest deduction of all would pass.
    if a.points == 0 || a.points.unsigned_abs() > MAX_POINTS.unsigned_abs() {
        v.push(
            "points",
            format!("must be non-zero and at most {MAX_POINTS} either way"),
        );
    }
    let reason = v.check(validate_text("reason", &a.reason, 200));
    v.check(validate_reference("reference", &a.reference));
    v.finish()?;
    Ok(reason.unwrap_or_default())
}

/// Spending points (the rewards catalogue and checkout build on this).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RedeemInput {
    pub points: i64,
    /// Makes the call idempotent: the same reference spends once.
    pub reference: String,
    pub description: Option<String>,
}

pub fn validate_redeem(r: &RedeemInput) -> Result<(), ValidationError> {
    let mut v = Validator::default();
    if !(1..=MAX_POINTS).contains(&r.points) {
        v.push("points", format!("must be between 1 and {MAX_POINTS}"));
    }
    v.check(validate_reference("reference", &r.reference));
    if let Some(d) = &r.description {
        v.check(validate_text("description", d, 200));
    }
    v.finish()
}

/// Giving points to another member of the brand (family sharing, gifting). The points keep
/// their expiry: a transfer never makes old points young.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransferInput {
    pub to_member_id: MemberId,
    pub points: i64,
    /// Makes the call idempotent: the same reference moves points once.
    pub reference: String,
    pub note: Option<String>,
}

pub fn validate_transfer(t: &TransferInput) -> Result<(), ValidationError> {
    let mut v = Validator::default();
    if !(1..=MAX_POINTS).contains(&t.points) {
        v.push("points", format!("must be between 1 and {MAX_POINTS}"));
    }
    v.check(validate_reference("reference", &t.reference));
    if let Some(n) = &t.note {
        v.check(validate_text("note", n, 200));
    }
    v.finish()
}

/// Points for an action (check-in, review, …), idempotent on `reference`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    pub action: ActionKind,
    pub reference: String,
}

/// An external reference (order, refund, ticket): 1–64 visible characters.
pub fn validate_reference(field: &str, s: &str) -> Result<String, ValidationError> {
    let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic() || c.is_alphanumeric());
    if !ok {
        return Err(ValidationError::field(
            field,
            "must be 1–64 characters with no spaces or control characters",
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every numeric input of the points and purchase requests, over the whole i64 range:
        /// validation never panics and accepts only values inside the bound it states (an
        /// `abs()` let i64::MIN through as a deduction once).
        #[test]
        fn numeric_inputs_are_bounded_at_the_extremes(
            n in prop_oneof![Just(i64::MIN), Just(i64::MIN + 1), Just(-1i64), Just(0i64),
                             Just(i64::MAX), any::<i64>()],
        ) {
            let reference = "R-1".to_owned();
            let adjusted = validate_adjustment(&AdjustmentInput {
                points: n, reason: "support".into(), reference: reference.clone() });
            prop_assert_eq!(adjusted.is_ok(), n != 0 && (-MAX_POINTS..=MAX_POINTS).contains(&n));
            let redeemed = validate_redeem(&RedeemInput {
                points: n, reference: reference.clone(), description: None });
            prop_assert_eq!(redeemed.is_ok(), (1..=MAX_POINTS).contains(&n));
            let transferred = validate_transfer(&TransferInput {
                to_member_id: "mem_01JABCDEFGHJKMNPQRSTVWXYZ0".parse().unwrap(),
                points: n, reference: reference.clone(), note: None });
            prop_assert_eq!(transferred.is_ok(), (1..=MAX_POINTS).contains(&n));
            let by_amount = validate_refund(&RefundInput {
                refund_id: reference.clone(), amount: Some(n), lines: None, reason: None });
            prop_assert_eq!(by_amount.is_ok(), (1..=MAX_AMOUNT).contains(&n));
            let by_line = validate_refund(&RefundInput {
                refund_id: reference.clone(), amount: None,
                lines: Some(vec![RefundLineInput { line: 0, quantity: n }]), reason: None });
            prop_assert_eq!(by_line.is_ok(), (1..=MAX_QUANTITY).contains(&n));
            let sale = |paid: i64, quantity: i64, amount: i64| input(serde_json::json!({
                "order_id": "O-1", "member_id": "mem_01JABCDEFGHJKMNPQRSTVWXYZ0", "channel": "pos",
                "paid_amount": paid, "lines": [{"sku": "A", "quantity": quantity, "amount": amount}]
            }));
            let amount_ok = (0..=MAX_AMOUNT).contains(&n);
            prop_assert_eq!(validate_purchase(&sale(n, 1, n)).is_ok(), amount_ok);
            prop_assert_eq!(validate_purchase(&sale(100, n, 100)).is_ok(), (1..=MAX_QUANTITY).contains(&n));
        }
    }

    fn input(json: serde_json::Value) -> PurchaseInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn purchase_errors_name_each_field() {
        let p = input(serde_json::json!({
            "order_id": "has space", "phone": "13800138000", "member_id": "mem_01JABCDEFGHJKMNPQRSTVWXYZ0",
            "channel": "pos", "paid_amount": 500,
            "lines": [{"sku": "A", "quantity": 0, "amount": -1}, {"sku": "", "quantity": 1, "amount": 100}]
        }));
        let err = validate_purchase(&p).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "order_id",
                "member_id",
                "lines[0].quantity",
                "lines[0].amount",
                "lines[1].sku",
                "paid_amount"
            ]
        );
    }

    #[test]
    fn a_good_purchase_passes() {
        let p = input(serde_json::json!({
            "order_id": "SO-2026-0001", "phone": "13800138000", "channel": "pos", "paid_amount": 100,
            "lines": [{"sku": "A", "category": "apparel", "quantity": 2, "amount": 100}]
        }));
        assert_eq!(validate_purchase(&p).unwrap()[0].quantity, 2);
    }

    #[test]
    fn refunds_and_adjustments_are_checked() {
        let r = RefundInput {
            refund_id: "R1".into(),
            amount: Some(0),
            lines: Some(vec![]),
            reason: None,
        };
        let fields: Vec<_> = validate_refund(&r)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["amount", "amount", "lines"]);
        let a = AdjustmentInput {
            points: 0,
            reason: " ".into(),
            reference: "T-1".into(),
        };
        let fields: Vec<_> = validate_adjustment(&a)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["points", "reason"]);
    }
}
