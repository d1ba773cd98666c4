//! Point transfers between members of one brand (family sharing, gifting).
//!
//! The sender's points are spent oldest first, and each piece arrives as a lot of its own with
//! the expiry (and age) it had: moving points between accounts never extends their life. The
//! receiver's debt, if any, is repaid first, exactly as with any other earning.

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{LotId, MemberId};
use huiyuan_domain::loyalty::ledger::{repay_debt_first, Deltas, EntryKind, LotStatus};
use huiyuan_domain::loyalty::purchase::{validate_transfer, TransferInput};
use huiyuan_domain::member::MemberStatus;
use huiyuan_domain::ValidationError;
use huiyuan_store::{LotRecord, OperationRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::{Posting, Taken};
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// Operation kind under which transfers are kept (idempotency and daily limits).
const TRANSFER: &str = "transfer";

/// What a transfer did; stored and returned as is when repeated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferOutcome {
    pub reference: String,
    pub from_member_id: MemberId,
    pub to_member_id: MemberId,
    pub points: i64,
    /// Of `points`, what repaid the receiver's debt.
    pub debt_repaid: i64,
    pub from_available_after: i64,
    pub to_available_after: i64,
    /// The pieces moved, oldest first, each with the expiry it keeps.
    pub lots: Vec<TransferredLot>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferredLot {
    /// The sender's lot the points came from.
    pub from_lot: String,
    /// The receiver's new lot; absent when the piece went to repay debt.
    pub to_lot: Option<String>,
    pub points: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<OffsetDateTime>,
}

impl Core {
    /// Moves available points from one member to another, within the programme's transfer
    /// policy. Idempotent on `reference`. Returns the outcome and whether this call made it.
    pub async fn transfer_points(
        &self,
        actor: &Actor,
        from: &MemberId,
        input: TransferInput,
    ) -> Result<(TransferOutcome, bool)> {
        actor.require(Permission::PointsRedeem)?;
        validate_transfer(&input)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let sender = self.active_member(&mut *tx, brand, from, false).await?;
        let receiver = match self
            .active_member(&mut *tx, brand, &input.to_member_id, false)
            .await
        {
            Err(CoreError::NotFound(_)) => {
                return Err(ValidationError::field("to_member_id", "no such member in this brand").into())
            }
            other => other?,
        };
        if let Some(existing) = tx.get_operation(brand, TRANSFER, &input.reference).await? {
            if existing.member_id != sender.id {
                return Err(CoreError::conflict(
                    ErrorCode::ReferenceReused,
                    format!(
                        "reference {} was already used for another member",
                        input.reference
                    ),
                ));
            }
            let outcome: TransferOutcome =
                serde_json::from_str(&existing.result).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            if outcome.to_member_id != receiver.id || outcome.points != input.points {
                return Err(CoreError::conflict(
                    ErrorCode::ReferenceReused,
                    format!(
                        "reference {} was used for another transfer; use a new reference",
                        input.reference
                    ),
                ));
            }
            return Ok((outcome, false));
        }
        if sender.id == receiver.id {
            return Err(ValidationError::field("to_member_id", "must be another member").into());
        }
        for m in [&sender, &receiver] {
            if m.status == MemberStatus::Erased {
                return Err(CoreError::conflict(
                    ErrorCode::MemberErased,
                    format!("member {} was erased", m.id),
                ));
            }
        }
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let Some(policy) = ctx.programme.transfers else {
            return Err(CoreError::conflict(
                ErrorCode::TransfersDisabled,
                "the programme does not allow point transfers",
            ));
        };
        if input.points < policy.min_points {
            return Err(CoreError::conflict(
                ErrorCode::TransferTooSmall,
                format!("transfers start at {} points", policy.min_points),
            ));
        }
        // Both accounts locked in member order, as merges lock them: no deadlock between two
        // members sending to each other at once.
        let label = actor.label();
        let (mut out, mut into) = if sender.id < receiver.id {
            let o = Posting::open(self, &mut *tx, brand, &sender.id, &label).await?;
            let i = Posting::open(self, &mut *tx, brand, &receiver.id, &label).await?;
            (o, i)
        } else {
            let i = Posting::open(self, &mut *tx, brand, &receiver.id, &label).await?;
            let o = Posting::open(self, &mut *tx, brand, &sender.id, &label).await?;
            (o, i)
        };
        let now = self.now();
        if let Some(limit) = policy.per_day {
            let day_start = ctx.calendar.start_of(ctx.calendar.date_of(now));
            let sent = tx
                .count_operations(brand, &sender.id, TRANSFER, Some(day_start))
                .await?;
            if sent >= i64::from(limit) {
                return Err(CoreError::conflict(
                    ErrorCode::TransferLimitReached,
                    format!("a member may send at most {limit} transfer(s) a day"),
                ));
            }
        }
        out.expire_due(&mut *tx).await?;
        if out.account.available < input.points {
            return Err(CoreError::conflict(
                ErrorCode::InsufficientPoints,
                format!(
                    "the member has {} points available ({} pending); {} needed",
                    out.account.available, out.account.pending, input.points
                ),
            ));
        }
        let taken: Taken = out.take_points(&mut *tx, input.points, |_| false, true).await?;
        let sources: Vec<LotRecord> = {
            let lots = out.lots(&mut *tx).await?;
            taken
                .lots
                .iter()
                .map(|(id, _)| {
                    lots.iter()
                        .find(|l| &l.id == id)
                        .cloned()
                        .ok_or_else(|| CoreError::Corrupt(format!("consumed lot {id} vanished")))
                })
                .collect::<Result<_>>()?
        };
        // The receiver's debt takes the oldest pieces; the rest arrive as lots.
        let (debt_repaid, _) = repay_debt_first(input.points, into.account.debt);
        let mut to_repay = debt_repaid;
        let mut moved = Vec::with_capacity(sources.len());
        for (source, (_, points)) in sources.iter().zip(&taken.lots) {
            let repaying = to_repay.min(*points);
            to_repay -= repaying;
            if repaying > 0 {
                moved.push(TransferredLot {
                    from_lot: source.id.clone(),
                    to_lot: None,
                    points: repaying,
                    expires_at: source.expires_at,
                });
            }
            let rest = points - repaying;
            if rest > 0 {
                let lot = LotRecord {
                    id: self.new_id(LotId::generate).to_string(),
                    member_id: receiver.id.clone(),
                    status: LotStatus::Active,
                    source: EntryKind::TransferIn.as_str().into(),
                    reference: Some(input.reference.clone()),
                    amount: rest,
                    remaining: rest,
                    matures_at: None,
                    expiry_notified: false,
                    ..source.clone()
                };
                moved.push(TransferredLot {
                    from_lot: source.id.clone(),
                    to_lot: Some(lot.id.clone()),
                    points: rest,
                    expires_at: source.expires_at,
                });
                into.add_lot(lot);
            }
        }
        let version = Some(ctx.version);
        out.append(
            EntryKind::TransferOut,
            Deltas {
                available: -input.points,
                pending: 0,
                debt: 0,
            },
            None,
            Some(&input.reference),
            version,
            json!({ "to_member_id": receiver.id, "note": input.note, "lots": taken.lots_json() }),
        )?;
        into.append(
            EntryKind::TransferIn,
            Deltas {
                available: input.points - debt_repaid,
                pending: 0,
                debt: -debt_repaid,
            },
            None,
            Some(&input.reference),
            version,
            json!({ "from_member_id": sender.id, "note": input.note, "debt_repaid": debt_repaid,
                    "lots": moved }),
        )?;
        let outcome = TransferOutcome {
            reference: input.reference.clone(),
            from_member_id: sender.id.clone(),
            to_member_id: receiver.id.clone(),
            points: input.points,
            debt_repaid,
            from_available_after: out.account.available,
            to_available_after: into.account.available,
            lots: moved,
            created_at: now,
        };
        let result = serde_json::to_string(&outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let inserted = tx
            .insert_operation(&OperationRecord {
                brand_id: brand.clone(),
                kind: TRANSFER.into(),
                reference: input.reference.clone(),
                member_id: sender.id.clone(),
                result,
                created_at: now,
            })
            .await?;
        if !inserted {
            return Err(CoreError::conflict(
                ErrorCode::ReferenceReused,
                "this reference is being used concurrently; retry",
            ));
        }
        let payload = json!({ "reference": outcome.reference, "from_member_id": sender.id,
                              "to_member_id": receiver.id, "points": input.points,
                              "debt_repaid": debt_repaid });
        for subject in [&sender.id, &receiver.id] {
            self.emit(
                &mut *tx,
                brand,
                "points.transferred",
                subject.as_str(),
                payload.clone(),
                None,
            )
            .await?;
        }
        out.save(&mut *tx).await?;
        into.save(&mut *tx).await?;
        tx.commit().await?;
        Ok((outcome, true))
    }
}
