//! Purchases and refunds: rules, ledger and tier in one transaction, idempotent on the
//! brand's own order and refund numbers.

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{MemberId, PurchaseId};
use huiyuan_domain::loyalty::earning::{
    evaluate, proportional_reversal, EarnLine, EarnedSoFar, Earning, PurchaseFacts,
};
use huiyuan_domain::loyalty::ledger::{Deltas, EntryKind};
use huiyuan_domain::loyalty::programme::RefundPolicy;
use huiyuan_domain::loyalty::purchase::{
    validate_purchase, validate_refund, PurchaseInput, PurchaseLine, RefundInput,
};
use huiyuan_domain::member::{EnrolInput, Identity, MemberStatus};
use huiyuan_domain::pii::Phone;
use huiyuan_domain::ValidationError;
use huiyuan_store::{Page, PurchaseRecord, RefundRecord, Tx};
use serde_json::json;
use time::Duration;

use super::tiers::change_view;
use super::views::{PurchaseOutcome, PurchaseView, RefundOutcome};
use super::{LoyaltyContext, NewLot, Posting};
use crate::members::{enum_str, parse_enum, Enrolment};
use crate::{Actor, Core, CoreError, Result};

/// Most purchases accepted by one batch call.
pub const MAX_BATCH: usize = 1_000;
/// How far in the future a sale's time may be (till clocks drift).
const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// A purchase checked and resolved to a member, ready for the transaction.
struct Prepared {
    input: PurchaseInput,
    lines: Vec<PurchaseLine>,
    member_id: MemberId,
    store_code: Option<String>,
    enrolled: bool,
}

fn purchase_view(r: &PurchaseRecord) -> Result<PurchaseView> {
    let corrupt = |e: serde_json::Error| CoreError::Corrupt(format!("purchase {}: {e}", r.order_id));
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
        status: r.status.clone(),
        lines: serde_json::from_str(&r.lines).map_err(corrupt)?,
        earning: serde_json::from_str(&r.earning).map_err(corrupt)?,
        programme_version: r.programme_version,
        created_at: r.created_at,
    })
}

/// What a purchase needs before its transaction: nothing (seen before), or its resolved parts.
/// Both boxed: each is a few hundred bytes and they differ in size.
enum Preparation {
    Replay(Box<PurchaseOutcome>),
    Ready(Box<Prepared>),
}

/// The answer to an order seen before: its first outcome, marked as not created now.
fn replay(existing: &PurchaseRecord) -> Result<PurchaseOutcome> {
    Ok(PurchaseOutcome {
        purchase: purchase_view(existing)?,
        created: false,
        member_enrolled: false,
        debt_repaid: 0,
        tier_change: None,
    })
}

/// A repeated order must be the same sale; anything else is a client bug worth reporting.
fn same_sale(existing: &PurchaseRecord, input: &PurchaseInput, lines: &[PurchaseLine]) -> Result<()> {
    let stored: Vec<PurchaseLine> = serde_json::from_str(&existing.lines).unwrap_or_default();
    let same_lines = stored.len() == lines.len()
        && stored
            .iter()
            .zip(lines)
            .all(|(a, b)| a.sku == b.sku && a.amount == b.amount && a.quantity == b.quantity);
    if existing.paid_amount != input.paid_amount || !same_lines {
        return Err(CoreError::Conflict {
            code: "order_id_reused",
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
    /// Records a purchase: earns points by the programme, in one transaction with the ledger
    /// entry, the balance and the tier. Sending the same `order_id` again changes nothing.
    pub async fn record_purchase(&self, actor: &Actor, input: PurchaseInput) -> Result<PurchaseOutcome> {
        actor.require(Permission::PurchasesRecord)?;
        let prepared = match self.prepare_purchase(actor, input).await? {
            Preparation::Replay(outcome) => return Ok(*outcome),
            Preparation::Ready(p) => *p,
        };
        let mut tx = self.storage.write().await?;
        let ctx = self.loyalty_context(&mut *tx, &actor.brand_id).await?;
        let outcome = self.record_in_tx(&mut *tx, &ctx, actor, prepared).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records up to [`MAX_BATCH`] purchases in one transaction. Each item gets its own
    /// outcome or error; a database failure fails the whole batch (retry it: it is idempotent).
    pub async fn record_purchases(
        &self,
        actor: &Actor,
        inputs: Vec<PurchaseInput>,
    ) -> Result<Vec<Result<PurchaseOutcome>>> {
        actor.require(Permission::PurchasesRecord)?;
        if inputs.is_empty() || inputs.len() > MAX_BATCH {
            return Err(ValidationError::field(
                "purchases",
                format!("must hold between 1 and {MAX_BATCH} purchases"),
            )
            .into());
        }
        let mut slots: Vec<Option<Result<PurchaseOutcome>>> = Vec::with_capacity(inputs.len());
        let mut prepared = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            match self.prepare_purchase(actor, input).await {
                Ok(Preparation::Ready(p)) => {
                    prepared.push((i, *p));
                    slots.push(None);
                }
                Ok(Preparation::Replay(outcome)) => slots.push(Some(Ok(*outcome))),
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        let mut tx = self.storage.write().await?;
        let ctx = self.loyalty_context(&mut *tx, &actor.brand_id).await?;
        for (i, p) in prepared {
            let result = self.record_in_tx(&mut *tx, &ctx, actor, p).await;
            match result {
                Err(CoreError::Store(e)) => return Err(CoreError::Store(e)),
                Err(CoreError::Corrupt(e)) => return Err(CoreError::Corrupt(e)),
                other => slots[i] = Some(other),
            }
        }
        tx.commit().await?;
        Ok(slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(CoreError::Corrupt("batch slot left empty".into()))))
            .collect())
    }

    /// Validates once, then in one read snapshot: an order seen before is answered with its
    /// first outcome (without touching a member code again); otherwise the store is checked and
    /// the member found. A member code is then verified, or an unknown phone enrolled — all
    /// before the purchase's transaction, which must not open another one.
    async fn prepare_purchase(&self, actor: &Actor, input: PurchaseInput) -> Result<Preparation> {
        let lines = validate_purchase(&input)?;
        let brand = &actor.brand_id;
        let (store_code, found) = {
            let mut tx = self.storage.read().await?;
            if let Some(existing) = tx.get_purchase(brand, &input.order_id).await? {
                same_sale(&existing, &input, &lines)?;
                return Ok(Preparation::Replay(Box::new(replay(&existing)?)));
            }
            if input.occurred_at.is_some_and(|t| t > self.now() + MAX_CLOCK_SKEW) {
                return Err(ValidationError::field("occurred_at", "is in the future").into());
            }
            let store_code = match &input.store_id {
                None => None,
                Some(id) => {
                    let store = tx
                        .get_store(brand, id)
                        .await?
                        .ok_or_else(|| ValidationError::field("store_id", "no such store in this brand"))?;
                    Some(store.code)
                }
            };
            let found = if let Some(id) = &input.member_id {
                // Here, so that another brand's member is "not found" before anything else.
                Some(self.active_member(&mut *tx, brand, id, false).await?.id)
            } else if let Some(phone) = &input.phone {
                let identity = Identity::Phone(Phone::parse(phone)?);
                tx.find_identity(brand, &identity.kind(), &self.identity_hash(brand, &identity))
                    .await?
            } else {
                None
            };
            (store_code, found)
        };
        let (member_id, enrolled) = match (found, &input.member_code) {
            (Some(id), _) => (id, false),
            (None, Some(code)) => (self.verify_code(actor, code).await?.member.id, false),
            (None, None) => self.enrol_buyer(actor, &input).await?,
        };
        Ok(Preparation::Ready(Box::new(Prepared {
            input,
            lines,
            member_id,
            store_code,
            enrolled,
        })))
    }

    /// "Pay and you are a member": enrols an unknown phone, with the sale's channel and store
    /// as the member's origin.
    async fn enrol_buyer(&self, actor: &Actor, input: &PurchaseInput) -> Result<(MemberId, bool)> {
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

    async fn record_in_tx(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        actor: &Actor,
        p: Prepared,
    ) -> Result<PurchaseOutcome> {
        let brand = &actor.brand_id;
        let member = self.active_member(tx, brand, &p.member_id, false).await?;
        if member.status == MemberStatus::Erased {
            return Err(CoreError::conflict(
                "member_erased",
                "the member was erased and cannot earn points",
            ));
        }
        let mut posting = Posting::open(self, tx, brand, &member.id, &actor.label()).await?;
        // Under the account lock: a concurrent copy of this order has either committed (seen
        // here) or will see ours.
        if let Some(existing) = tx.get_purchase(brand, &p.input.order_id).await? {
            same_sale(&existing, &p.input, &p.lines)?;
            return replay(&existing);
        }
        let now = self.now();
        let occurred_at = p.input.occurred_at.map(crate::clock::truncate_ms).unwrap_or(now);
        let programme = &ctx.programme;
        let local_date = ctx.calendar.date_of(occurred_at);
        let so_far =
            if programme.caps.per_member_per_day.is_some() || programme.caps.per_member_per_month.is_some() {
                let day = tx
                    .purchase_totals(brand, &member.id, ctx.calendar.start_of(local_date))
                    .await?;
                let month_start = super::calendar::BrandCalendar::month_start(local_date);
                let month = tx
                    .purchase_totals(brand, &member.id, ctx.calendar.start_of(month_start))
                    .await?;
                EarnedSoFar {
                    today: day.points,
                    this_month: month.points,
                }
            } else {
                EarnedSoFar::default()
            };
        let tier_level = ctx.level_of(&posting.account);
        let earn_lines: Vec<EarnLine> = p.lines.iter().map(PurchaseLine::earn_line).collect();
        let earning: Earning = evaluate(
            programme,
            &PurchaseFacts {
                lines: &earn_lines,
                paid_amount: p.input.paid_amount,
                store_code: p.store_code.as_deref(),
                channel: p.input.channel,
                at: occurred_at,
                local_date,
                birth_month: member.birth_month,
                tier: programme.tiers.levels.get(tier_level),
            },
            so_far,
        );
        let mut lines = p.lines;
        for (line, points) in lines.iter_mut().zip(&earning.line_points) {
            line.points = *points;
        }
        let record = PurchaseRecord {
            brand_id: brand.clone(),
            order_id: p.input.order_id.clone(),
            id: self.new_id(PurchaseId::generate).to_string(),
            member_id: member.id.clone(),
            store_id: p.input.store_id.clone(),
            channel: enum_str(p.input.channel),
            occurred_at,
            paid_amount: p.input.paid_amount,
            eligible_amount: earning.eligible_amount,
            points: earning.points,
            points_reversed: 0,
            refunded_amount: 0,
            status: "completed".into(),
            lines: json!(lines).to_string(),
            earning: json!(earning).to_string(),
            programme_version: ctx.version,
            created_at: now,
        };
        if !tx.insert_purchase(&record).await? {
            // Same order ID for another member, recorded concurrently.
            return Err(CoreError::Conflict {
                code: "order_id_reused",
                message: format!("order {} was recorded for another member", record.order_id),
                errors: Vec::new(),
            });
        }
        let mut debt_repaid = 0;
        if earning.points > 0 {
            let matures_at = occurred_at + Duration::days(i64::from(programme.pending_days));
            let (repaid, pending) = posting
                .credit(
                    tx,
                    earning.points,
                    NewLot {
                        source: EntryKind::Earn,
                        reference: Some(&record.order_id),
                        earned_at: occurred_at,
                        matures_at: Some(matures_at),
                        expires_at: ctx.expires_at(occurred_at),
                    },
                    Some(ctx.version),
                    json!({
                        "purchase_id": record.id,
                        "eligible_amount": earning.eligible_amount,
                        "items": earning.items,
                    }),
                )
                .await?;
            debt_repaid = repaid;
            self.emit(
                tx,
                brand,
                "points.earned",
                member.id.as_str(),
                json!({ "member_id": member.id, "order_id": record.order_id, "points": earning.points,
                        "pending": pending, "debt_repaid": repaid }),
                None,
            )
            .await?;
        }
        let cause = format!("purchase {}", record.order_id);
        let change = self
            .upgrade_if_qualified(tx, ctx, &mut posting.account, &cause)
            .await?;
        self.emit(
            tx,
            brand,
            "purchase.recorded",
            member.id.as_str(),
            json!({ "member_id": member.id, "order_id": record.order_id, "paid_amount": record.paid_amount,
                    "store_id": record.store_id, "channel": record.channel }),
            None,
        )
        .await?;
        posting.save(tx).await?;
        Ok(PurchaseOutcome {
            purchase: purchase_view(&record)?,
            created: true,
            member_enrolled: p.enrolled,
            debt_repaid,
            tier_change: change.as_ref().map(change_view),
        })
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
        let mut posting = Posting::open(self, &mut *tx, brand, &first.member_id, &actor.label()).await?;
        if let Some(existing) = tx.get_refund(brand, &input.refund_id).await? {
            if existing.order_id != order_id {
                return Err(CoreError::conflict(
                    "refund_id_reused",
                    format!(
                        "refund {} belongs to order {}",
                        existing.refund_id, existing.order_id
                    ),
                ));
            }
            let outcome =
                serde_json::from_str(&existing.detail).map_err(|e| CoreError::Corrupt(e.to_string()))?;
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
        if remaining_amount <= 0 && (purchase.status == "refunded" || all_lines_back(&lines)) {
            return Err(CoreError::conflict(
                "already_refunded",
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
                                && l.source == "earn"
                                && l.status == "pending"
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
                        |l| l.reference.as_deref() == Some(&order) && l.source == "earn",
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
            posting
                .append(
                    &mut *tx,
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
                )
                .await?;
        }
        purchase.refunded_amount += amount;
        purchase.points_reversed += reverse;
        purchase.status = if fully { "refunded" } else { "partially_refunded" }.into();
        purchase.lines = json!(lines).to_string();
        tx.update_purchase_refund(&purchase).await?;
        let detail = serde_json::to_string(&outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?;
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
                "refund_id_reused",
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
        posting.save(&mut *tx).await?;
        tx.commit().await?;
        Ok((outcome, true))
    }
}
