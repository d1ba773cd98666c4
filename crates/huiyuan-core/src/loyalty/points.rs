//! Points operations (adjust, redeem, actions), the balance and statement, merges, events.

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::loyalty::ledger::{Deltas, EntryKind, LotStatus};
use huiyuan_domain::loyalty::purchase::{
    validate_adjustment, validate_redeem, validate_reference, ActionInput, AdjustmentInput, RedeemInput,
};
use huiyuan_domain::member::MemberStatus;
use huiyuan_store::{LedgerEntryRecord, LotRecord, OperationRecord, Page, Tx};
use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::tiers::change_view;
use super::views::{BalanceView, EntryView, ExpiryView, PointsOutcome, TierChangeView};
use super::{new_account, LoyaltyContext, NewLot, Posting};
use crate::{Actor, Core, CoreError, ErrorCode, Result};
use std::sync::Arc;

/// Points "expiring soon" look this far ahead.
pub const EXPIRING_SOON: Duration = Duration::days(30);

/// An event from the outbox.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

pub(crate) fn entry_view(e: LedgerEntryRecord) -> EntryView {
    EntryView {
        detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail.clone())),
        id: e.id,
        seq: e.seq,
        kind: e.kind,
        available_delta: e.available_delta,
        pending_delta: e.pending_delta,
        debt_delta: e.debt_delta,
        lot_id: e.lot_id,
        reference: e.reference,
        programme_version: e.programme_version,
        created_at: e.created_at,
        hash: e.hash.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// An operation that has not been seen before, with its member's account locked.
struct Operation<'c> {
    tx: Box<dyn Tx>,
    ctx: Arc<LoyaltyContext>,
    posting: Posting<'c>,
    kind: String,
    reference: String,
}

enum Begun<'c> {
    Replay(PointsOutcome),
    Fresh(Box<Operation<'c>>),
}

/// Points that are active at once (adjustments, actions).
fn new_lot<'a>(
    source: EntryKind,
    reference: &'a str,
    now: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
) -> NewLot<'a> {
    NewLot {
        source,
        reference: Some(reference),
        earned_at: now,
        matures_at: None,
        expires_at,
    }
}

impl Core {
    /// Opens an idempotent points operation: the same (kind, reference) returns the first outcome.
    async fn begin_operation(
        &self,
        actor: &Actor,
        member: &MemberId,
        kind: &str,
        reference: &str,
    ) -> Result<Begun<'_>> {
        validate_reference("reference", reference)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let m = self.active_member(&mut *tx, brand, member, false).await?;
        if m.status == MemberStatus::Erased {
            return Err(CoreError::conflict(
                ErrorCode::MemberErased,
                "the member was erased",
            ));
        }
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let posting = Posting::open(self, &mut *tx, brand, &m.id, &actor.label()).await?;
        if let Some(existing) = tx.get_operation(brand, kind, reference).await? {
            if existing.member_id != m.id {
                return Err(CoreError::conflict(
                    ErrorCode::ReferenceReused,
                    format!("reference {reference} was already used for another member"),
                ));
            }
            let outcome =
                serde_json::from_str(&existing.result).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            return Ok(Begun::Replay(outcome));
        }
        Ok(Begun::Fresh(Box::new(Operation {
            tx,
            ctx,
            posting,
            kind: kind.into(),
            reference: reference.into(),
        })))
    }

    /// Records the operation's outcome and event, saves the account and commits.
    async fn finish_operation(
        &self,
        actor: &Actor,
        op: Box<Operation<'_>>,
        points: i64,
        debt_repaid: i64,
    ) -> Result<PointsOutcome> {
        let Operation {
            mut tx,
            posting,
            kind,
            reference,
            ..
        } = *op;
        let brand = &actor.brand_id;
        let outcome = PointsOutcome {
            kind: kind.clone(),
            reference: reference.clone(),
            member_id: posting.account.member_id.clone(),
            points,
            debt_repaid,
            available_after: posting.account.available,
            entry_id: posting.entries.last().map(|e| e.id.clone()),
            created_at: self.now(),
        };
        let result = serde_json::to_string(&outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let inserted = tx
            .insert_operation(&OperationRecord {
                brand_id: brand.clone(),
                kind: kind.clone(),
                reference,
                member_id: outcome.member_id.clone(),
                result,
                created_at: outcome.created_at,
            })
            .await?;
        if !inserted {
            return Err(CoreError::conflict(
                ErrorCode::ReferenceReused,
                "this reference is being used concurrently; retry",
            ));
        }
        let event = format!("points.{}", kind.split(':').next().unwrap_or(&kind));
        self.emit(
            &mut *tx,
            brand,
            &event,
            outcome.member_id.as_str(),
            json!(outcome),
            None,
        )
        .await?;
        posting.save(&mut *tx).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// An operator's grant (positive) or deduction (negative) with a mandatory reason; audited.
    /// Returns the outcome and whether this call made it.
    pub async fn adjust_points(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: AdjustmentInput,
    ) -> Result<(PointsOutcome, bool)> {
        actor.require(Permission::PointsAdjust)?;
        let reason = validate_adjustment(&input)?;
        let mut op = match self
            .begin_operation(actor, member, "adjustment", &input.reference)
            .await?
        {
            Begun::Replay(o) => return Ok((o, false)),
            Begun::Fresh(op) => op,
        };
        let now = self.now();
        let detail = json!({ "reason": reason, "by": actor.label() });
        let mut repaid = 0;
        if input.points > 0 {
            let expires = op.ctx.expires_at(now);
            let lot = new_lot(EntryKind::Adjustment, &input.reference, now, expires);
            (repaid, _) = op
                .posting
                .credit(input.points, lot, Some(op.ctx.version), detail)?;
        } else {
            let want = -input.points;
            op.posting.expire_due(&mut *op.tx).await?;
            if op.posting.account.available < want {
                return Err(CoreError::conflict(
                    ErrorCode::InsufficientPoints,
                    format!(
                        "the member has {} points available; cannot deduct {want}",
                        op.posting.account.available
                    ),
                ));
            }
            let version = Some(op.ctx.version);
            op.posting
                .spend(
                    &mut *op.tx,
                    EntryKind::Adjustment,
                    want,
                    &input.reference,
                    version,
                    detail,
                )
                .await?;
        }
        self.audit(
            &mut *op.tx,
            actor,
            "points.adjusted",
            ("member", op.posting.account.member_id.as_str()),
            json!({ "points": input.points, "reason": reason, "reference": input.reference }),
        )
        .await?;
        let outcome = self.finish_operation(actor, op, input.points, repaid).await?;
        Ok((outcome, true))
    }

    /// Spends points, oldest first. Refused (changing nothing) when too few are available.
    pub async fn redeem_points(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: RedeemInput,
    ) -> Result<(PointsOutcome, bool)> {
        actor.require(Permission::PointsRedeem)?;
        validate_redeem(&input)?;
        let mut op = match self
            .begin_operation(actor, member, "redeem", &input.reference)
            .await?
        {
            Begun::Replay(o) => return Ok((o, false)),
            Begun::Fresh(op) => op,
        };
        op.posting.expire_due(&mut *op.tx).await?;
        if op.posting.account.available < input.points {
            return Err(CoreError::conflict(
                ErrorCode::InsufficientPoints,
                format!(
                    "the member has {} points available ({} pending); {} needed",
                    op.posting.account.available, op.posting.account.pending, input.points
                ),
            ));
        }
        let version = Some(op.ctx.version);
        let detail = json!({ "description": input.description });
        op.posting
            .spend(
                &mut *op.tx,
                EntryKind::Redeem,
                input.points,
                &input.reference,
                version,
                detail,
            )
            .await?;
        let outcome = self.finish_operation(actor, op, -input.points, 0).await?;
        Ok((outcome, true))
    }

    /// Points for an action, within the programme's per-day and per-member limits.
    pub async fn reward_action(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: ActionInput,
    ) -> Result<(PointsOutcome, bool)> {
        actor.require(Permission::PointsActions)?;
        let kind = format!("action:{}", input.action.as_str());
        let mut op = match self
            .begin_operation(actor, member, &kind, &input.reference)
            .await?
        {
            Begun::Replay(o) => return Ok((o, false)),
            Begun::Fresh(op) => op,
        };
        let Some(reward) = op.ctx.programme.actions.get(&input.action).cloned() else {
            return Err(CoreError::conflict(
                ErrorCode::ActionNotRewarded,
                format!("the programme gives no points for {}", input.action.as_str()),
            ));
        };
        let brand = actor.brand_id.clone();
        let member_id = op.posting.account.member_id.clone();
        let now = self.now();
        if let Some(limit) = reward.per_member {
            if op.tx.count_operations(&brand, &member_id, &kind, None).await? >= i64::from(limit) {
                return Err(CoreError::conflict(
                    ErrorCode::ActionLimitReached,
                    format!(
                        "{} is rewarded at most {limit} time(s) per member",
                        input.action.as_str()
                    ),
                ));
            }
        }
        if let Some(limit) = reward.per_day {
            let day_start = op.ctx.calendar.start_of(op.ctx.calendar.date_of(now));
            if op
                .tx
                .count_operations(&brand, &member_id, &kind, Some(day_start))
                .await?
                >= i64::from(limit)
            {
                return Err(CoreError::conflict(
                    ErrorCode::ActionLimitReached,
                    format!(
                        "{} is rewarded at most {limit} time(s) a day",
                        input.action.as_str()
                    ),
                ));
            }
        }
        let mut repaid = 0;
        if reward.points > 0 {
            let expires = op.ctx.expires_at(now);
            let lot = new_lot(EntryKind::Action, &input.reference, now, expires);
            let detail = json!({ "action": input.action.as_str() });
            (repaid, _) = op
                .posting
                .credit(reward.points, lot, Some(op.ctx.version), detail)?;
        }
        let outcome = self.finish_operation(actor, op, reward.points, repaid).await?;
        Ok((outcome, true))
    }

    /// Available, pending, debt, what expires in the next 30 days, and the tier.
    pub async fn points_balance(&self, actor: &Actor, member: &MemberId) -> Result<BalanceView> {
        actor.require(Permission::MembersRead)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let m = self.active_member(&mut *tx, brand, member, false).await?;
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let account = match tx.get_account(brand, &m.id).await? {
            Some(a) => a,
            None => new_account(brand, &m.id, self.now()),
        };
        let lots = tx.open_lots(brand, &m.id).await?;
        let now = self.now();
        let horizon = now + EXPIRING_SOON;
        let active = |l: &&LotRecord| l.status == LotStatus::Active && l.remaining > 0;
        let expiring_soon = lots
            .iter()
            .filter(active)
            .filter(|l| l.expires_at.is_some_and(|e| e <= horizon))
            .map(|l| l.remaining)
            .sum();
        let next_at = lots.iter().filter(active).filter_map(|l| l.expires_at).min();
        let next_expiry = next_at.map(|at| ExpiryView {
            at,
            points: lots
                .iter()
                .filter(active)
                .filter(|l| l.expires_at == Some(at))
                .map(|l| l.remaining)
                .sum(),
        });
        let metrics = self.tier_metrics(&mut *tx, &ctx, &account).await?;
        Ok(BalanceView {
            member_id: m.id.clone(),
            available: account.available,
            pending: account.pending,
            debt: account.debt,
            expiring_soon,
            expiring_before: horizon,
            next_expiry,
            tier: ctx.tier_view(&account, metrics),
            available_value: account.available.saturating_mul(ctx.programme.point_value_minor),
        })
    }

    /// The member's ledger, newest first.
    pub async fn points_statement(
        &self,
        actor: &Actor,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<EntryView>> {
        actor.require(Permission::MembersRead)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let m = self.active_member(&mut *tx, brand, member, false).await?;
        Ok(tx
            .list_entries(brand, &m.id, page)
            .await?
            .into_iter()
            .map(entry_view)
            .collect())
    }

    pub async fn tier_history(&self, actor: &Actor, member: &MemberId) -> Result<Vec<TierChangeView>> {
        actor.require(Permission::MembersRead)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let m = self.active_member(&mut *tx, brand, member, false).await?;
        Ok(tx
            .list_tier_changes(brand, &m.id)
            .await?
            .iter()
            .map(change_view)
            .collect())
    }

    /// Events of the brand, oldest first after a cursor (for webhooks and automation).
    pub async fn list_events(
        &self,
        actor: &Actor,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventView>> {
        actor.require(Permission::EventsRead)?;
        let mut tx = self.storage.read().await?;
        Ok(tx
            .list_events(&actor.brand_id, after, limit)
            .await?
            .into_iter()
            .map(|e| EventView {
                payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
                id: e.id,
                event_type: e.event_type,
                subject: e.subject,
                created_at: e.created_at,
            })
            .collect())
    }

    /// Moves a merged member's points, lots, purchases and debt to the survivor (inside the
    /// merge's transaction, with both members locked).
    pub(crate) async fn merge_points(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        gone: &MemberId,
        keep: &MemberId,
    ) -> Result<()> {
        let brand = &actor.brand_id;
        let moved_purchases = tx.move_purchases(brand, gone, keep).await?;
        tx.move_commerce(brand, gone, keep).await?;
        self.merge_wallets(tx, actor, gone, keep).await?;
        let Some(_) = tx.get_account(brand, gone).await? else {
            return Ok(());
        };
        // Lock in ID order, as the merge itself does.
        let label = actor.label();
        let (mut from, mut into) = if gone < keep {
            let f = Posting::open(self, tx, brand, gone, &label).await?;
            let i = Posting::open(self, tx, brand, keep, &label).await?;
            (f, i)
        } else {
            let i = Posting::open(self, tx, brand, keep, &label).await?;
            let f = Posting::open(self, tx, brand, gone, &label).await?;
            (f, i)
        };
        let lots: Vec<LotRecord> = from.lots(tx).await?.clone();
        let (available, pending, debt) = (from.account.available, from.account.pending, from.account.debt);
        if available == 0 && pending == 0 && debt == 0 {
            from.save(tx).await?;
            into.save(tx).await?;
            return Ok(());
        }
        let moved: Vec<serde_json::Value> = lots
            .iter()
            .map(|l| json!({ "lot": l.id, "points": l.remaining }))
            .collect();
        let copies: Vec<LotRecord> = lots
            .iter()
            .map(|lot| LotRecord {
                id: self.new_id(huiyuan_domain::ids::LotId::generate).to_string(),
                member_id: keep.clone(),
                ..lot.clone()
            })
            .collect();
        let closed: Vec<LotRecord> = lots
            .iter()
            .map(|lot| LotRecord {
                remaining: 0,
                status: LotStatus::Closed,
                ..lot.clone()
            })
            .collect();
        tx.insert_lots(&copies).await?;
        tx.update_lots(&closed).await?;
        from.append(
            EntryKind::MergeOut,
            Deltas {
                available: -available,
                pending: -pending,
                debt: -debt,
            },
            None,
            Some(keep.as_str()),
            None,
            json!({ "merged_into": keep, "lots": moved }),
        )?;
        into.append(
            EntryKind::MergeIn,
            Deltas {
                available,
                pending,
                debt,
            },
            None,
            Some(gone.as_str()),
            None,
            json!({ "merged_from": gone, "lots": moved, "purchases_moved": moved_purchases }),
        )?;
        // The survivor's tier: what the combined purchases qualify for (never lower).
        let ctx = self.loyalty_context(tx, brand).await;
        if let Ok(ctx) = ctx {
            if ctx.level_of(&from.account) > ctx.level_of(&into.account) {
                into.account.tier_code = from.account.tier_code.clone();
                into.account.tier_since = from.account.tier_since;
                into.account.tier_review_at = from.account.tier_review_at;
            }
            self.upgrade_if_qualified(tx, &ctx, &mut into.account, "merge")
                .await?;
        }
        from.save(tx).await?;
        into.save(tx).await?;
        Ok(())
    }
}
