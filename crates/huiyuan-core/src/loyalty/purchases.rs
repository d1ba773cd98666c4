//! Purchases and refunds: rules, ledger and tier in one transaction, idempotent on the
//! brand's own order and refund numbers.

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::loyalty::earning::{proportional_reversal, Earning};
use huiyuan_domain::loyalty::ledger::{Deltas, EntryKind, LotStatus};
use huiyuan_domain::loyalty::programme::RefundPolicy;
use huiyuan_domain::loyalty::purchase::PurchaseStatus;
use huiyuan_domain::loyalty::purchase::{
    validate_purchase, validate_refund, PurchaseInput, PurchaseLine, RefundInput,
};
use huiyuan_domain::member::{EnrolInput, Identity};
use huiyuan_domain::pii::Phone;
use huiyuan_domain::ValidationError;
use huiyuan_store::{Page, PurchaseRecord, RefundRecord, Tx};
use serde_json::json;
use time::Duration;

use super::views::{PurchaseOutcome, PurchaseView, RefundOutcome};
use super::{LoyaltyContext, Posting};
use crate::members::{parse_enum, Enrolment};
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// How far in the future a sale's time may be (till clocks drift).
const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// What a refund asked for, kept with it: the same `refund_id` sent again must ask the same.
fn refund_request(input: &RefundInput) -> serde_json::Value {
    let lines = input.lines.as_ref().map(|lines| {
        lines
            .iter()
            .map(|l| json!({ "line": l.line, "quantity": l.quantity }))
            .collect::<Vec<_>>()
    });
    json!({ "amount": input.amount, "lines": lines })
}

/// Where a sale comes from, which decides how far back it may be dated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaleSource {
    /// The API or the till: within [`crate::CoreConfig::backdate_window`].
    Live,
    /// A purchase import: any time up to now.
    History,
}

/// A purchase checked and resolved to a member, ready for the transaction.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub input: PurchaseInput,
    pub lines: Vec<PurchaseLine>,
    pub member_id: MemberId,
    /// Enrolled by this sale ("pay and you are a member").
    pub enrolled: bool,
    /// Who recorded it, as the ledger names them.
    pub actor: String,
}

pub(super) fn purchase_view(r: &PurchaseRecord) -> Result<PurchaseView> {
    let corrupt = |e: serde_json::Error| CoreError::Corrupt(format!("purchase {}: {e}", r.order_id));
    let lines = serde_json::from_str(&r.lines).map_err(corrupt)?;
    let earning = serde_json::from_str(&r.earning).map_err(corrupt)?;
    view_of(r, lines, earning)
}

/// The view of a stored purchase whose lines and earning the caller already has parsed.
pub(super) fn view_of(
    r: &PurchaseRecord,
    lines: Vec<PurchaseLine>,
    earning: Earning,
) -> Result<PurchaseView> {
    Ok(PurchaseView {
        id: r.id.clone(),
        order_id: r.order_id.clone(),
        member_id: r.member_id.clone(),
        store_id: r.store_id.clone(),
        channel: parse_enum(&r.channel)
            .ok_or_else(|| CoreError::Corrupt(format!("purchase {}: channel {:?}", r.order_id, r.channel)))?,
        occurred_at: r.occurred_at,
        paid_amount: r.paid_amount,
        eligible_amount: r.eligible_amount,
        points: r.points,
        points_reversed: r.points_reversed,
        refunded_amount: r.refunded_amount,
        status: r.status,
        lines,
        earning,
        programme_version: r.programme_version,
        created_at: r.created_at,
    })
}

/// What a purchase needs before its transaction: nothing (seen before), or its resolved parts.
/// Both boxed: each is a few hundred bytes and they differ in size.
pub(super) enum Preparation {
    Replay(Box<PurchaseOutcome>),
    Ready(Box<Prepared>),
}

/// The answer to an order seen before: its first outcome, marked as not created now.
pub(super) fn replay(existing: &PurchaseRecord) -> Result<PurchaseOutcome> {
    Ok(PurchaseOutcome {
        purchase: purchase_view(existing)?,
        created: false,
        member_enrolled: false,
        debt_repaid: 0,
        tier_change: None,
    })
}

/// A repeated order must be the same sale; anything else is a client bug worth reporting.
pub(super) fn same_sale(
    existing: &PurchaseRecord,
    input: &PurchaseInput,
    lines: &[PurchaseLine],
) -> Result<()> {
    let stored: Vec<PurchaseLine> = serde_json::from_str(&existing.lines).unwrap_or_default();
    let same_lines = stored.len() == lines.len()
        && stored
            .iter()
            .zip(lines)
            .all(|(a, b)| a.sku == b.sku && a.amount == b.amount && a.quantity == b.quantity);
    if existing.paid_amount != input.paid_amount || !same_lines {
        return Err(CoreError::Conflict {
            code: ErrorCode::OrderIdReused,
            message: format!(
                "order {} was already recorded with different lines or amount; use a new order_id",
                existing.order_id
            ),
            errors: vec![huiyuan_domain::FieldError {
                field: "order_id".into(),
                reason: "already used for another sale".into(),
            }],
        });
    }
    Ok(())
}

impl Core {
    /// Validates, and resolves the member when the sale names them by phone or member code:
    /// an order seen before is answered with its first outcome (without touching a member
    /// code again), a code is verified, an unknown phone enrolled — all before the purchase's
    /// transaction, which must not open another one. A sale by member ID needs nothing here:
    /// its transaction checks the member, the store and a replay, for a whole batch at once.
    pub(super) async fn prepare_purchase(
        &self,
        actor: &Actor,
        input: PurchaseInput,
        source: SaleSource,
    ) -> Result<Preparation> {
        let lines = validate_purchase(&input)?;
        if input.occurred_at.is_some_and(|t| t > self.now() + MAX_CLOCK_SKEW) {
            return Err(ValidationError::field("occurred_at", "is in the future").into());
        }
        let window = self.config.backdate_window;
        if source == SaleSource::Live && input.occurred_at.is_some_and(|t| t < self.now() - window) {
            return Err(ValidationError::field(
                "occurred_at",
                format!(
                    "is more than {} days ago: older sales are imported (POST /v1/imports/transactions)",
                    window.whole_days()
                ),
            )
            .into());
        }
        let brand = &actor.brand_id;
        let (member_id, enrolled) = match (&input.member_id, &input.phone, &input.member_code) {
            (Some(id), _, _) => (id.clone(), false),
            (None, phone, code) => {
                let found = {
                    let mut tx = self.storage.read().await?;
                    if let Some(existing) = tx.get_purchase(brand, &input.order_id).await? {
                        same_sale(&existing, &input, &lines)?;
                        return Ok(Preparation::Replay(Box::new(replay(&existing)?)));
                    }
                    match phone {
                        Some(phone) => {
                            let identity = Identity::Phone(Phone::parse(phone)?);
                            tx.find_identity(brand, &identity.kind(), &self.identity_hash(brand, &identity))
                                .await?
                        }
                        None => None,
                    }
                };
                match (found, code) {
                    (Some(id), _) => (id, false),
                    (None, Some(code)) => (self.verify_code(actor, code).await?.member.id, false),
                    (None, None) => self.enrol_buyer(actor, &input).await?,
                }
            }
        };
        Ok(Preparation::Ready(Box::new(Prepared {
            input,
            lines,
            member_id,
            enrolled,
            actor: actor.label(),
        })))
    }

    /// "Pay and you are a member": enrols an unknown phone, with the sale's channel and store
    /// as the member's origin.
    pub(crate) async fn enrol_buyer(&self, actor: &Actor, input: &PurchaseInput) -> Result<(MemberId, bool)> {
        if !input.enrol_if_unknown.unwrap_or(true) {
            return Err(CoreError::NotFound("member"));
        }
        let enrolment = EnrolInput {
            phone: input.phone.clone(),
            channel: Some(input.channel),
            store_id: input.store_id.clone(),
            ..Default::default()
        };
        match self.enrol(actor, enrolment).await? {
            Enrolment::Created(m) => Ok((m.id, true)),
            Enrolment::Existing(m) => Ok((m.id, false)),
        }
    }

    pub async fn get_purchase(&self, actor: &Actor, order_id: &str) -> Result<PurchaseView> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let r = tx
            .get_purchase(&actor.brand_id, order_id)
            .await?
            .ok_or(CoreError::NotFound("purchase"))?;
        purchase_view(&r)
    }

    pub async fn list_member_purchases(
        &self,
        actor: &Actor,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<PurchaseView>> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let m = self
            .active_member(&mut *tx, &actor.brand_id, member, false)
            .await?;
        tx.list_purchases(&actor.brand_id, &m.id, page)
            .await?
            .iter()
            .map(purchase_view)
            .collect()
    }

    /// Refunds all or part of a purchase and reverses its points in proportion. Points already
    /// spent become a debt (or are written off, as the programme's refund policy says).
    /// Returns the outcome and whether this call made it (false: the refund was seen before).
    pub async fn refund_purchase(
        &self,
        actor: &Actor,
        order_id: &str,
        input: RefundInput,
    ) -> Result<(RefundOutcome, bool)> {
        actor.require(Permission::PurchasesRefund)?;
        validate_refund(&input)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let first = tx
            .get_purchase(brand, order_id)
            .await?
            .ok_or(CoreError::NotFound("purchase"))?;
        if tx.get_sale(brand, order_id).await?.is_some() {
            return Err(CoreError::conflict(
                ErrorCode::UseCheckoutRefund,
                format!(
                    "order {order_id} was sold at the till with coupons, points or the wallet; \
                     refund it with POST /v1/checkout/{order_id}/refund, which gives all of them back"
                ),
            ));
        }
        let mut posting = Posting::open(self, &mut *tx, brand, &first.member_id, &actor.label()).await?;
        let result = self
            .refund_in(&mut *tx, &ctx, actor, order_id, &input, &mut posting)
            .await?;
        if result.1 {
            posting.save(&mut *tx).await?;
            tx.commit().await?;
        }
        Ok(result)
    }

    /// A refund in the caller's transaction, on the member's posting (which the caller saves).
    /// Returns the outcome and whether this call made it (false: the refund ID was seen before).
    pub(crate) async fn refund_in(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        actor: &Actor,
        order_id: &str,
        input: &RefundInput,
        posting: &mut Posting<'_>,
    ) -> Result<(RefundOutcome, bool)> {
        let brand = &actor.brand_id;
        if let Some(existing) = tx.get_refund(brand, &input.refund_id).await? {
            if existing.order_id != order_id {
                return Err(CoreError::conflict(
                    ErrorCode::RefundIdReused,
                    format!(
                        "refund {} belongs to order {}",
                        existing.refund_id, existing.order_id
                    ),
                ));
            }
            let detail: serde_json::Value =
                serde_json::from_str(&existing.detail).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            // Refunds recorded before the request was kept have none to compare.
            if detail.get("request").is_some_and(|r| *r != refund_request(input)) {
                return Err(CoreError::conflict(
                    ErrorCode::RefundIdReused,
                    format!(
                        "refund {} was made for another amount or other lines; a new refund needs a new refund_id",
                        existing.refund_id
                    ),
                ));
            }
            let outcome = serde_json::from_value(detail).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            return Ok((outcome, false));
        }
        // Read again under the lock: another refund may have landed since.
        let mut purchase = tx
            .get_purchase(brand, order_id)
            .await?
            .ok_or(CoreError::NotFound("purchase"))?;
        let mut lines: Vec<PurchaseLine> =
            serde_json::from_str(&purchase.lines).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let remaining_amount = purchase.paid_amount - purchase.refunded_amount;
        let all_lines_back = |lines: &[PurchaseLine]| lines.iter().all(|l| l.refunded_quantity >= l.quantity);
        if remaining_amount <= 0 && (purchase.status == PurchaseStatus::Refunded || all_lines_back(&lines)) {
            return Err(CoreError::conflict(
                ErrorCode::AlreadyRefunded,
                format!("order {order_id} was already refunded in full"),
            ));
        }
        let (amount, reverse) = match (&input.amount, &input.lines) {
            (Some(a), _) => {
                if *a > remaining_amount {
                    return Err(ValidationError::field(
                        "amount",
                        format!("at most {remaining_amount} of this order is left to refund"),
                    )
                    .into());
                }
                let after = purchase.refunded_amount + a;
                if after == purchase.paid_amount {
                    for l in &mut lines {
                        l.refunded_quantity = l.quantity;
                    }
                }
                (
                    *a,
                    proportional_reversal(
                        purchase.points,
                        purchase.paid_amount,
                        after,
                        purchase.points_reversed,
                    ),
                )
            }
            (None, Some(refund_lines)) => {
                let money_total: i64 = lines.iter().filter(|l| !l.reward).map(|l| l.amount).sum();
                let mut amount = 0i64;
                let mut reverse = 0i64;
                for (i, rl) in refund_lines.iter().enumerate() {
                    let Some(line) = lines.get_mut(rl.line) else {
                        return Err(ValidationError::field(
                            format!("lines[{i}].line"),
                            "no such line in the order",
                        )
                        .into());
                    };
                    let left = line.quantity - line.refunded_quantity;
                    if rl.quantity > left {
                        return Err(ValidationError::field(
                            format!("lines[{i}].quantity"),
                            format!("only {left} of this line are left to refund"),
                        )
                        .into());
                    }
                    let share = |q: i64| -> i64 {
                        if line.reward || money_total == 0 {
                            return 0;
                        }
                        let full = i128::from(purchase.paid_amount) * i128::from(line.amount)
                            / i128::from(money_total);
                        (full * i128::from(q) / i128::from(line.quantity)) as i64
                    };
                    let line_points = |q: i64| -> i64 {
                        if q >= line.quantity {
                            line.points
                        } else {
                            ((i128::from(line.points) * i128::from(q)) / i128::from(line.quantity)) as i64
                        }
                    };
                    let (before, after) = (line.refunded_quantity, line.refunded_quantity + rl.quantity);
                    amount += share(after) - share(before);
                    reverse += line_points(after) - line_points(before);
                    line.refunded_quantity = after;
                }
                if all_lines_back(&lines) {
                    amount = remaining_amount;
                }
                (amount.min(remaining_amount), reverse)
            }
            (None, None) => {
                for l in &mut lines {
                    l.refunded_quantity = l.quantity;
                }
                (remaining_amount, purchase.points - purchase.points_reversed)
            }
        };
        let fully = purchase.refunded_amount + amount >= purchase.paid_amount && all_lines_back(&lines);
        let mut reverse = reverse.clamp(0, purchase.points - purchase.points_reversed);
        if fully {
            reverse = purchase.points - purchase.points_reversed;
        }
        let policy = ctx.programme.refund_policy;
        let order = order_id.to_owned();
        let taken = match policy {
            RefundPolicy::PendingOnly => {
                posting
                    .take_points(
                        &mut *tx,
                        reverse,
                        |l| {
                            l.reference.as_deref() == Some(&order)
                                && l.source == EntryKind::Earn.as_str()
                                && l.status == LotStatus::Pending
                        },
                        false,
                    )
                    .await?
            }
            _ => {
                posting
                    .take_points(
                        &mut *tx,
                        reverse,
                        |l| l.reference.as_deref() == Some(&order) && l.source == EntryKind::Earn.as_str(),
                        true,
                    )
                    .await?
            }
        };
        let short = reverse - taken.total();
        let (debt_added, written_off) = match policy {
            RefundPolicy::AllowDebt => (short, 0),
            _ => (0, short),
        };
        let now = self.now();
        let outcome = RefundOutcome {
            refund_id: input.refund_id.clone(),
            order_id: order.clone(),
            member_id: posting.account.member_id.clone(),
            amount,
            points_reversed: reverse - written_off,
            from_pending: taken.from_pending,
            from_available: taken.from_available,
            debt_added,
            written_off,
            created_at: now,
        };
        if reverse > 0 {
            posting.append(
                EntryKind::RefundReversal,
                Deltas {
                    available: -taken.from_available,
                    pending: -taken.from_pending,
                    debt: debt_added,
                },
                None,
                Some(&order),
                Some(ctx.version),
                json!({ "refund_id": input.refund_id, "amount": amount, "points": reverse,
                            "lots": taken.lots_json(), "debt_added": debt_added, "written_off": written_off,
                            "reason": input.reason }),
            )?;
        }
        purchase.refunded_amount += amount;
        purchase.points_reversed += reverse;
        purchase.status = if fully {
            PurchaseStatus::Refunded
        } else {
            PurchaseStatus::PartiallyRefunded
        };
        purchase.lines = json!(lines).to_string();
        tx.update_purchase_refund(&purchase).await?;
        // The outcome, answered again to a retry, and the request, which a retry must repeat.
        let mut detail = serde_json::to_value(&outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        detail["request"] = refund_request(input);
        let detail = detail.to_string();
        let inserted = tx
            .insert_refund(&RefundRecord {
                brand_id: brand.clone(),
                refund_id: input.refund_id.clone(),
                order_id: order.clone(),
                member_id: posting.account.member_id.clone(),
                amount,
                points_reversed: reverse,
                detail,
                created_at: now,
            })
            .await?;
        if !inserted {
            return Err(CoreError::conflict(
                ErrorCode::RefundIdReused,
                "this refund_id is being used concurrently; retry",
            ));
        }
        self.emit(
            &mut *tx,
            brand,
            "purchase.refunded",
            posting.account.member_id.as_str(),
            json!(outcome),
            None,
        )
        .await?;
        Ok((outcome, true))
    }
}
