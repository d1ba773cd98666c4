//! Paid membership plans: buying and renewing terms (with money or from the wallet), refunds by
//! the plan's rules, lapses announced by a job, and the renewal-rate report. While a term runs
//! the member gets the plan's discount at the till (the better of it and their tier's) and its
//! points multiplier on every purchase.

use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::plans::{refund_amount, term_end, MembershipStatus, Plan};
use huiyuan_domain::commerce::wallet::{split_payment, WalletEntryKind};
use huiyuan_domain::ids::{BrandId, MemberId, MembershipId};
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_domain::loyalty::purchase::validate_reference;
use huiyuan_domain::ValidationError;
use huiyuan_store::{MembershipRecord, OperationRecord, Tx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::wallet::WalletPosting;
use crate::loyalty::LoyaltyContext;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// Buy (or renew) a plan. `reference` — the payment's ID — makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BuyPlanInput {
    pub plan: String,
    pub reference: String,
    /// `money` (paid at the till or online; the default) or `wallet`.
    #[serde(default)]
    pub pay_with: PayWith,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PayWith {
    #[default]
    Money,
    Wallet,
}

/// Refund a term; `refund_id` makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlanRefundInput {
    pub refund_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TermView {
    pub id: String,
    pub member_id: MemberId,
    pub plan: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub ends_at: OffsetDateTime,
    pub fee: i64,
    pub paid_with: String,
    pub status: MembershipStatus,
    pub reference: String,
    /// The term this one renews.
    pub renewal_of: Option<String>,
    pub refunded_amount: i64,
}

/// A member's plans: every term, and the plan that holds now.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembershipView {
    pub member_id: MemberId,
    /// The plan running now, if any.
    pub current: Option<String>,
    /// Until when the member is covered without a break (renewals bought ahead included).
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub covered_until: Option<OffsetDateTime>,
    pub terms: Vec<TermView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanRefundOutcome {
    pub refund_id: String,
    pub term: TermView,
    /// Given back: to the wallet when the term was paid from it, else in money.
    pub amount: i64,
}

/// The renewal-rate report's line for a plan.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenewalLine {
    pub plan: String,
    /// Terms that ended in the period.
    pub ended: i64,
    pub renewed: i64,
    /// Renewed ÷ ended; absent when none ended.
    pub renewal_rate: Option<f64>,
}

fn term_view(m: &MembershipRecord) -> TermView {
    TermView {
        id: m.id.clone(),
        member_id: m.member_id.clone(),
        plan: m.plan_code.clone(),
        starts_at: m.starts_at,
        ends_at: m.ends_at,
        fee: m.fee,
        paid_with: m.paid_with.clone(),
        status: m.status,
        reference: m.reference.clone(),
        renewal_of: m.renewal_of.clone(),
        refunded_amount: m.refunded_amount,
    }
}

/// The plan a member holds at `at`, among `terms` (of any members), as the programme defines it.
pub(crate) fn active_plan<'p>(
    programme: &'p Programme,
    terms: &[MembershipRecord],
    member: &MemberId,
    at: OffsetDateTime,
) -> Option<&'p Plan> {
    let term = terms.iter().find(|t| {
        t.member_id == *member && t.status == MembershipStatus::Active && t.starts_at <= at && at < t.ends_at
    })?;
    programme.plans.iter().find(|p| p.code == term.plan_code)
}

/// The end of a member's unbroken coverage by `plan` running at or after `now`, and the term
/// that ends it (what a renewal continues).
fn coverage<'t>(
    terms: &'t [MembershipRecord],
    member: &MemberId,
    plan: &str,
    now: OffsetDateTime,
) -> Option<&'t MembershipRecord> {
    let mut mine: Vec<&MembershipRecord> = terms
        .iter()
        .filter(|t| t.member_id == *member && t.plan_code == plan && t.status == MembershipStatus::Active)
        .collect();
    mine.sort_by_key(|t| t.starts_at);
    let mut last: Option<&MembershipRecord> = None;
    for t in mine {
        match last {
            None if t.starts_at <= now && now < t.ends_at => last = Some(t),
            Some(l) if t.starts_at <= l.ends_at => last = Some(t),
            _ => {}
        }
    }
    last
}

impl Core {
    /// The terms of the members, read only when the programme has plans (the purchase path
    /// then pays nothing for them).
    pub(crate) async fn plan_terms(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        brand: &BrandId,
        members: &[MemberId],
    ) -> Result<Vec<MembershipRecord>> {
        if ctx.programme.plans.is_empty() || members.is_empty() {
            return Ok(Vec::new());
        }
        Ok(tx.memberships_of(brand, members).await?)
    }

    /// Buys a plan's term: starting now, or — while the member is covered — right after the
    /// current coverage ends (a renewal). Paid in money, or from the wallet in the same
    /// transaction. The same reference again returns the first term.
    pub async fn buy_plan(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: BuyPlanInput,
    ) -> Result<(TermView, bool)> {
        actor.require(Permission::Checkout)?;
        validate_reference("reference", &input.reference)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, member, true).await?;
        if let Some(done) = tx.get_membership_by_reference(brand, &input.reference).await? {
            if done.member_id != record.id || done.plan_code != input.plan {
                return Err(CoreError::conflict(
                    ErrorCode::ReferenceReused,
                    "this reference bought another member's or plan's term",
                ));
            }
            return Ok((term_view(&done), false));
        }
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let plan = ctx
            .programme
            .plans
            .iter()
            .find(|p| p.code == input.plan)
            .ok_or_else(|| ValidationError::field("plan", "no such plan in the programme"))?
            .clone();
        let now = self.now();
        let terms = tx.memberships_of(brand, std::slice::from_ref(&record.id)).await?;
        let renews = coverage(&terms, &record.id, &plan.code, now);
        let starts_at = renews.map_or(now, |t| t.ends_at);
        let term = MembershipRecord {
            id: self.new_id(MembershipId::generate).to_string(),
            brand_id: brand.clone(),
            member_id: record.id.clone(),
            plan_code: plan.code.clone(),
            starts_at,
            ends_at: term_end(starts_at, plan.term_months),
            fee: plan.fee,
            paid_with: match input.pay_with {
                PayWith::Money => "money",
                PayWith::Wallet => "wallet",
            }
            .into(),
            status: MembershipStatus::Active,
            reference: input.reference.clone(),
            renewal_of: renews.map(|t| t.id.clone()),
            refunded_amount: 0,
            lapse_notified: false,
            created_at: now,
        };
        if input.pay_with == PayWith::Wallet && plan.fee > 0 {
            let mut wallet = WalletPosting::open(self, &mut *tx, brand, &record.id, &actor.label()).await?;
            let split = split_payment(wallet.balance(), plan.fee).ok_or_else(|| {
                ValidationError::field(
                    "pay_with",
                    format!(
                        "the wallet holds {}; the plan costs {}",
                        huiyuan_domain::commerce::money(wallet.balance().total()),
                        huiyuan_domain::commerce::money(plan.fee)
                    ),
                )
            })?;
            wallet.append(
                WalletEntryKind::Pay,
                -split.principal,
                -split.bonus,
                &format!("plan:{}", input.reference),
                json!({ "plan": plan.code, "term": term.id, "principal": split.principal, "bonus": split.bonus }),
            )?;
            wallet.save(&mut *tx).await?;
        }
        if !tx.insert_membership(&term).await? {
            return Err(CoreError::conflict(
                ErrorCode::ReferenceReused,
                "this reference is being used concurrently; retry",
            ));
        }
        let view = term_view(&term);
        let event = if term.renewal_of.is_some() {
            "membership.renewed"
        } else {
            "membership.started"
        };
        self.announce(
            &mut *tx,
            actor,
            event,
            record.id.as_str(),
            ("member", record.id.as_str()),
            json!(view),
            json!({ "plan": plan.code, "reference": input.reference, "fee": plan.fee }),
        )
        .await?;
        tx.commit().await?;
        Ok((view, true))
    }

    /// Refunds a term by the plan's rules (all within the first days, else the unused share,
    /// or nothing): to the wallet when it was paid from it. The term ends now (or never
    /// starts).
    pub async fn refund_plan(
        &self,
        actor: &Actor,
        member: &MemberId,
        reference: &str,
        input: PlanRefundInput,
    ) -> Result<(PlanRefundOutcome, bool)> {
        actor.require(Permission::PurchasesRefund)?;
        validate_reference("refund_id", &input.refund_id)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, member, true).await?;
        if let Some(done) = tx.get_operation(brand, "plan_refund", &input.refund_id).await? {
            let outcome: PlanRefundOutcome =
                serde_json::from_str(&done.result).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            return Ok((outcome, false));
        }
        let mut term = tx
            .get_membership_by_reference(brand, reference)
            .await?
            .filter(|t| t.member_id == record.id)
            .ok_or(CoreError::NotFound("membership term"))?;
        if term.status != MembershipStatus::Active {
            return Err(CoreError::conflict(
                ErrorCode::AlreadyRefunded,
                format!("term {reference} was already refunded"),
            ));
        }
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let rules = ctx
            .programme
            .plans
            .iter()
            .find(|p| p.code == term.plan_code)
            .map(|p| p.refund)
            .unwrap_or_default();
        let now = self.now();
        let amount = refund_amount(rules, term.fee, term.starts_at, term.ends_at, now).ok_or_else(|| {
            CoreError::conflict(
                ErrorCode::NotRefundable,
                format!(
                    "the {} plan gives nothing back at this point of the term",
                    term.plan_code
                ),
            )
        })?;
        if term.paid_with == "wallet" && amount > 0 {
            let mut wallet = WalletPosting::open(self, &mut *tx, brand, &record.id, &actor.label()).await?;
            // Back to principal and bonus in the proportion the fee was taken.
            let paid = tx
                .wallet_chain(brand, &record.id)
                .await?
                .into_iter()
                .find(|e| e.reference == format!("plan:{}", term.reference))
                .ok_or_else(|| CoreError::Corrupt("a wallet-paid term without its payment".into()))?;
            let taken = -(paid.principal_delta + paid.bonus_delta);
            let bonus = if taken == 0 {
                0
            } else {
                (i128::from(amount) * i128::from(-paid.bonus_delta) / i128::from(taken)) as i64
            };
            wallet.append(
                WalletEntryKind::PayRefund,
                amount - bonus,
                bonus,
                &format!("refund:{}", input.refund_id),
                json!({ "plan": term.plan_code, "term": term.id }),
            )?;
            wallet.save(&mut *tx).await?;
        }
        term.status = MembershipStatus::Refunded;
        term.refunded_amount = amount;
        tx.update_membership(&term).await?;
        let outcome = PlanRefundOutcome {
            refund_id: input.refund_id.clone(),
            term: term_view(&term),
            amount,
        };
        let inserted = tx
            .insert_operation(&OperationRecord {
                brand_id: brand.clone(),
                kind: "plan_refund".into(),
                reference: input.refund_id.clone(),
                member_id: record.id.clone(),
                result: serde_json::to_string(&outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?,
                created_at: now,
            })
            .await?;
        if !inserted {
            return Err(CoreError::conflict(
                ErrorCode::RefundIdReused,
                "this refund_id is being used concurrently; retry",
            ));
        }
        self.announce(
            &mut *tx,
            actor,
            "membership.refunded",
            record.id.as_str(),
            ("member", record.id.as_str()),
            json!(outcome),
            json!({ "term": term.id, "amount": amount }),
        )
        .await?;
        tx.commit().await?;
        Ok((outcome, true))
    }

    /// A member's terms and the plan holding now.
    pub async fn memberships(&self, actor: &Actor, member: &MemberId) -> Result<MembershipView> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let record = self
            .active_member(&mut *tx, &actor.brand_id, member, false)
            .await?;
        let terms = tx
            .memberships_of(&actor.brand_id, std::slice::from_ref(&record.id))
            .await?;
        let now = self.now();
        let current = terms
            .iter()
            .find(|t| t.status == MembershipStatus::Active && t.starts_at <= now && now < t.ends_at)
            .map(|t| t.plan_code.clone());
        let covered_until = current
            .as_deref()
            .and_then(|plan| coverage(&terms, &record.id, plan, now))
            .map(|t| t.ends_at);
        Ok(MembershipView {
            member_id: record.id,
            current,
            covered_until,
            terms: terms.iter().map(term_view).collect(),
        })
    }

    /// Per plan, the terms that ended in `[from, to)` and the share renewed.
    pub async fn renewal_report(
        &self,
        actor: &Actor,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<RenewalLine>> {
        actor.require(Permission::AnalyticsRead)?;
        if to <= from {
            return Err(ValidationError::field("to", "must be after from").into());
        }
        let mut tx = self.storage.read().await?;
        Ok(tx
            .renewal_counts(&actor.brand_id, from, to)
            .await?
            .into_iter()
            .map(|c| RenewalLine {
                renewal_rate: (c.ended > 0).then(|| c.renewed as f64 / c.ended as f64),
                plan: c.plan_code,
                ended: c.ended,
                renewed: c.renewed,
            })
            .collect())
    }

    /// Announces the terms that ended without a renewal (`membership.lapsed`), once each.
    pub async fn lapse_memberships(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.storage.write().await?;
            let lapsed = tx.memberships_lapsed(self.now(), 500).await?;
            for t in &lapsed {
                let mut t = t.clone();
                t.lapse_notified = true;
                tx.update_membership(&t).await?;
                self.emit(
                    &mut *tx,
                    &t.brand_id,
                    "membership.lapsed",
                    t.member_id.as_str(),
                    json!({ "member_id": t.member_id, "plan": t.plan_code, "term": t.id,
                            "ended_at": crate::views::rfc3339(t.ends_at) }),
                    Some(format!("membership.lapsed:{}", t.id)),
                )
                .await?;
            }
            tx.commit().await?;
            total += lapsed.len() as u64;
            if lapsed.len() < 500 {
                return Ok(total);
            }
        }
    }
}
