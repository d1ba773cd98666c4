//! The wallet (儲值): top-ups with bonus, refunds of top-ups, the balance and statement, and the
//! posting every change of a wallet goes through (hash-chained entries under the wallet's lock).

use huiyuan_domain::access::Permission;
use huiyuan_domain::chain::GENESIS_HASH;
use huiyuan_domain::commerce::wallet::{
    refund_top_up, wallet_entry_hash, Balance, RefundRefused, WalletEntryContent, WalletEntryKind,
};
use huiyuan_domain::ids::{BrandId, MemberId, WalletEntryId};
use huiyuan_domain::loyalty::purchase::validate_reference;
use huiyuan_domain::member::MemberStatus;
use huiyuan_domain::ValidationError;
use huiyuan_store::{OperationRecord, Page, TopUpRecord, Tx, WalletEntryRecord, WalletRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// A wallet's balance.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletView {
    pub member_id: MemberId,
    /// Money the member paid in, minor units.
    pub principal: i64,
    /// Bonus the brand added, minor units.
    pub bonus: i64,
    /// What the wallet can pay: principal + bonus.
    pub balance: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletEntryView {
    pub id: String,
    pub seq: i64,
    pub kind: WalletEntryKind,
    pub principal_delta: i64,
    pub bonus_delta: i64,
    pub reference: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    /// Hex SHA-256 chained to the previous entry.
    pub hash: String,
}

/// Money into the wallet; `reference` (the payment's ID) makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopUpInput {
    pub reference: String,
    /// Minor units.
    pub amount: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpOutcome {
    pub reference: String,
    pub member_id: MemberId,
    pub amount: i64,
    pub bonus: i64,
    pub principal_after: i64,
    pub bonus_after: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// Refund all or part of a top-up; `refund_id` makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopUpRefundInput {
    pub refund_id: String,
    /// Principal to refund, minor units; absent: all that is left of the top-up.
    pub amount: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpRefundOutcome {
    pub refund_id: String,
    pub top_up: String,
    pub principal: i64,
    pub bonus_clawed_back: i64,
    /// Bonus already spent, whose value was kept back from the money returned.
    pub bonus_kept_back: i64,
    /// What to hand back to the member.
    pub money_returned: i64,
    pub principal_after: i64,
    pub bonus_after: i64,
}

pub(crate) fn wallet_view(w: &WalletRecord) -> WalletView {
    WalletView {
        member_id: w.member_id.clone(),
        principal: w.principal,
        bonus: w.bonus,
        balance: w.principal + w.bonus,
    }
}

/// Changes to one member's wallet inside one transaction, under its lock.
pub(crate) struct WalletPosting<'c> {
    core: &'c Core,
    pub wallet: WalletRecord,
    actor: String,
    entries: Vec<WalletEntryRecord>,
}

impl<'c> WalletPosting<'c> {
    /// Locks the member's wallet, creating it on first use.
    pub async fn open(
        core: &'c Core,
        tx: &mut dyn Tx,
        brand: &BrandId,
        member: &MemberId,
        actor: &str,
    ) -> Result<Self> {
        let wallet = match tx.lock_wallet(brand, member).await? {
            Some(w) => w,
            None => {
                tx.ensure_wallet(&WalletRecord {
                    brand_id: brand.clone(),
                    member_id: member.clone(),
                    principal: 0,
                    bonus: 0,
                    last_seq: 0,
                    last_hash: GENESIS_HASH.to_vec(),
                    updated_at: core.now(),
                })
                .await?;
                tx.lock_wallet(brand, member)
                    .await?
                    .ok_or_else(|| CoreError::Corrupt("wallet vanished".into()))?
            }
        };
        Ok(Self {
            core,
            wallet,
            actor: actor.into(),
            entries: Vec::new(),
        })
    }

    pub fn balance(&self) -> Balance {
        Balance {
            principal: self.wallet.principal,
            bonus: self.wallet.bonus,
        }
    }

    /// Appends an entry and applies it; refuses any change that would leave a bucket negative
    /// (callers check first: reaching this is a bug, never a member's problem).
    pub fn append(
        &mut self,
        kind: WalletEntryKind,
        principal_delta: i64,
        bonus_delta: i64,
        reference: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let w = &mut self.wallet;
        let (principal, bonus) = (w.principal + principal_delta, w.bonus + bonus_delta);
        if principal < 0 || bonus < 0 {
            return Err(CoreError::Corrupt(format!(
                "{} on the wallet of {} would leave a negative bucket ({principal}/{bonus})",
                kind.as_str(),
                w.member_id
            )));
        }
        let now = self.core.now();
        let mut entry = WalletEntryRecord {
            id: self.core.new_id(WalletEntryId::generate).to_string(),
            brand_id: w.brand_id.clone(),
            member_id: w.member_id.clone(),
            seq: w.last_seq + 1,
            kind: kind.as_str().into(),
            principal_delta,
            bonus_delta,
            reference: reference.into(),
            detail: detail.to_string(),
            actor: self.actor.clone(),
            created_at: now,
            prev_hash: w.last_hash.clone(),
            hash: Vec::new(),
        };
        entry.hash = entry_hash(&entry, kind).to_vec();
        w.principal = principal;
        w.bonus = bonus;
        w.last_seq = entry.seq;
        w.last_hash = entry.hash.clone();
        w.updated_at = now;
        self.entries.push(entry);
        Ok(())
    }

    /// Writes the entries and the wallet. Nothing to write, nothing written.
    pub async fn save(self, tx: &mut dyn Tx) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        tx.insert_wallet_entries(&self.entries).await?;
        tx.save_wallet(&self.wallet).await?;
        Ok(())
    }
}

/// The hash of a stored wallet entry, as written and as verified.
pub(crate) fn entry_hash(e: &WalletEntryRecord, kind: WalletEntryKind) -> [u8; 32] {
    wallet_entry_hash(
        &e.prev_hash,
        &WalletEntryContent {
            brand_id: e.brand_id.as_str(),
            member_id: e.member_id.as_str(),
            seq: e.seq,
            entry_id: &e.id,
            kind,
            principal_delta: e.principal_delta,
            bonus_delta: e.bonus_delta,
            reference: &e.reference,
            detail: &e.detail,
            actor: &e.actor,
            created_at_ms: (e.created_at.unix_timestamp_nanos() / 1_000_000) as i64,
        },
    )
}

impl Core {
    /// Moves a merged member's wallet balance to the survivor (inside the merge's transaction),
    /// locking the two wallets in ID order.
    pub(crate) async fn merge_wallets(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        gone: &MemberId,
        keep: &MemberId,
    ) -> Result<()> {
        let brand = &actor.brand_id;
        let Some(w) = tx.get_wallet(brand, gone).await? else {
            return Ok(());
        };
        if w.principal == 0 && w.bonus == 0 {
            return Ok(());
        }
        let label = actor.label();
        let (mut from, mut into) = if gone < keep {
            let f = WalletPosting::open(self, tx, brand, gone, &label).await?;
            (f, WalletPosting::open(self, tx, brand, keep, &label).await?)
        } else {
            let i = WalletPosting::open(self, tx, brand, keep, &label).await?;
            (WalletPosting::open(self, tx, brand, gone, &label).await?, i)
        };
        let (principal, bonus) = (from.wallet.principal, from.wallet.bonus);
        from.append(
            WalletEntryKind::MergeOut,
            -principal,
            -bonus,
            keep.as_str(),
            json!({ "merged_into": keep }),
        )?;
        into.append(
            WalletEntryKind::MergeIn,
            principal,
            bonus,
            gone.as_str(),
            json!({ "merged_from": gone }),
        )?;
        from.save(tx).await?;
        into.save(tx).await
    }

    /// Tops up a member's wallet and adds the programme's bonus; the same reference returns the
    /// first outcome.
    pub async fn top_up_wallet(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: TopUpInput,
    ) -> Result<(TopUpOutcome, bool)> {
        actor.require(Permission::WalletTopUp)?;
        validate_reference("reference", &input.reference)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, member, false).await?;
        if record.status == MemberStatus::Erased {
            return Err(CoreError::conflict(
                ErrorCode::MemberErased,
                "the member was erased",
            ));
        }
        let mut wallet = WalletPosting::open(self, &mut *tx, brand, &record.id, &actor.label()).await?;
        if let Some(existing) = tx.get_top_up(brand, &input.reference).await? {
            if existing.member_id != record.id || existing.amount != input.amount {
                return Err(CoreError::conflict(
                    ErrorCode::ReferenceReused,
                    format!(
                        "top-up {} was already made with another member or amount",
                        input.reference
                    ),
                ));
            }
            return Ok((
                TopUpOutcome {
                    reference: existing.reference,
                    member_id: existing.member_id,
                    amount: existing.amount,
                    bonus: existing.bonus,
                    principal_after: wallet.wallet.principal,
                    bonus_after: wallet.wallet.bonus,
                    created_at: existing.created_at,
                },
                false,
            ));
        }
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let bonus = ctx
            .programme
            .wallet
            .top_up(input.amount, wallet.balance().total())?;
        wallet.append(
            WalletEntryKind::TopUp,
            input.amount,
            bonus,
            &input.reference,
            json!({ "amount": input.amount, "bonus": bonus, "programme_version": ctx.version }),
        )?;
        let now = self.now();
        let top_up = TopUpRecord {
            brand_id: brand.clone(),
            reference: input.reference.clone(),
            member_id: record.id.clone(),
            amount: input.amount,
            bonus,
            refunded: 0,
            clawed: 0,
            created_at: now,
        };
        if !tx.insert_top_up(&top_up).await? {
            return Err(CoreError::conflict(
                ErrorCode::ReferenceReused,
                "this reference is being used concurrently; retry",
            ));
        }
        let outcome = TopUpOutcome {
            reference: input.reference.clone(),
            member_id: record.id.clone(),
            amount: input.amount,
            bonus,
            principal_after: wallet.wallet.principal,
            bonus_after: wallet.wallet.bonus,
            created_at: now,
        };
        wallet.save(&mut *tx).await?;
        self.announce(
            &mut *tx,
            actor,
            "wallet.topped_up",
            record.id.as_str(),
            ("member", record.id.as_str()),
            json!(outcome),
            json!({ "reference": input.reference, "amount": input.amount, "bonus": bonus }),
        )
        .await?;
        tx.commit().await?;
        Ok((outcome, true))
    }

    /// Refunds all or part of a top-up: its principal out, its bonus clawed back in proportion
    /// (bonus already spent is kept back from the money returned).
    pub async fn refund_top_up(
        &self,
        actor: &Actor,
        member: &MemberId,
        reference: &str,
        input: TopUpRefundInput,
    ) -> Result<(TopUpRefundOutcome, bool)> {
        actor.require(Permission::WalletRefund)?;
        validate_reference("refund_id", &input.refund_id)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, member, false).await?;
        let mut wallet = WalletPosting::open(self, &mut *tx, brand, &record.id, &actor.label()).await?;
        // Idempotent on the refund ID, kept with the other idempotent operations.
        if let Some(done) = tx.get_operation(brand, "wallet_refund", &input.refund_id).await? {
            if done.member_id != record.id {
                return Err(CoreError::conflict(
                    ErrorCode::RefundIdReused,
                    format!("refund {} was made for another member", input.refund_id),
                ));
            }
            let outcome: TopUpRefundOutcome =
                serde_json::from_str(&done.result).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            return Ok((outcome, false));
        }
        let refund_ref = format!("refund:{}", input.refund_id);
        let mut top_up = tx
            .get_top_up(brand, reference)
            .await?
            .filter(|t| t.member_id == record.id)
            .ok_or(CoreError::NotFound("top-up"))?;
        let amount = input.amount.unwrap_or(top_up.amount - top_up.refunded);
        let r = refund_top_up(
            top_up.amount,
            top_up.bonus,
            top_up.refunded,
            top_up.clawed,
            amount,
            wallet.balance(),
        )
        .map_err(|why| match why {
            RefundRefused::MoreThanTopUp { left: 0 } => {
                CoreError::conflict(ErrorCode::AlreadyRefunded, format!("top-up {reference} was already refunded in full"))
            }
            RefundRefused::MoreThanTopUp { left } => {
                ValidationError::field("amount", format!("at most {left} of this top-up is left to refund")).into()
            }
            RefundRefused::PrincipalSpent { principal } => CoreError::conflict(
                ErrorCode::WalletSpent,
                format!("the wallet holds {principal} of the member's own money; the rest of this top-up was spent"),
            ),
        })?;
        top_up.refunded += r.principal;
        top_up.clawed += r.bonus_clawed_back + r.bonus_kept_back;
        let outcome = TopUpRefundOutcome {
            refund_id: input.refund_id.clone(),
            top_up: reference.to_owned(),
            principal: r.principal,
            bonus_clawed_back: r.bonus_clawed_back,
            bonus_kept_back: r.bonus_kept_back,
            money_returned: r.money_returned,
            principal_after: wallet.wallet.principal - r.principal,
            bonus_after: wallet.wallet.bonus - r.bonus_clawed_back,
        };
        wallet.append(
            WalletEntryKind::TopUpRefund,
            -r.principal,
            -r.bonus_clawed_back,
            &refund_ref,
            json!(outcome),
        )?;
        tx.update_top_up(&top_up).await?;
        let inserted = tx
            .insert_operation(&OperationRecord {
                brand_id: brand.clone(),
                kind: "wallet_refund".into(),
                reference: input.refund_id.clone(),
                member_id: record.id.clone(),
                result: serde_json::to_string(&outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?,
                created_at: self.now(),
            })
            .await?;
        if !inserted {
            return Err(CoreError::conflict(
                ErrorCode::RefundIdReused,
                "this refund_id is being used concurrently; retry",
            ));
        }
        wallet.save(&mut *tx).await?;
        self.announce(
            &mut *tx,
            actor,
            "wallet.top_up_refunded",
            record.id.as_str(),
            ("member", record.id.as_str()),
            json!(outcome),
            json!({ "top_up": reference, "refund_id": input.refund_id, "principal": r.principal,
                    "money_returned": r.money_returned }),
        )
        .await?;
        tx.commit().await?;
        Ok((outcome, true))
    }

    pub async fn wallet_balance(&self, actor: &Actor, member: &MemberId) -> Result<WalletView> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let record = self
            .active_member(&mut *tx, &actor.brand_id, member, false)
            .await?;
        Ok(match tx.get_wallet(&actor.brand_id, &record.id).await? {
            Some(w) => wallet_view(&w),
            None => WalletView {
                member_id: record.id,
                principal: 0,
                bonus: 0,
                balance: 0,
            },
        })
    }

    /// The wallet's statement, newest first.
    pub async fn wallet_statement(
        &self,
        actor: &Actor,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<WalletEntryView>> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let record = self
            .active_member(&mut *tx, &actor.brand_id, member, false)
            .await?;
        tx.list_wallet_entries(&actor.brand_id, &record.id, page)
            .await?
            .into_iter()
            .map(|e| {
                Ok(WalletEntryView {
                    kind: WalletEntryKind::parse(&e.kind).ok_or_else(|| {
                        CoreError::Corrupt(format!("wallet entry {} has kind {:?}", e.id, e.kind))
                    })?,
                    detail: serde_json::from_str(&e.detail)
                        .unwrap_or(serde_json::Value::String(e.detail.clone())),
                    hash: e.hash.iter().map(|b| format!("{b:02x}")).collect(),
                    id: e.id,
                    seq: e.seq,
                    principal_delta: e.principal_delta,
                    bonus_delta: e.bonus_delta,
                    reference: e.reference,
                    created_at: e.created_at,
                })
            })
            .collect()
    }
}
