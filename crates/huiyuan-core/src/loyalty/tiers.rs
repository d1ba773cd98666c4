//! Tiers: upgrade on the purchase that crosses a threshold, downgrade only at a review after
//! the grace, history with reasons.

use huiyuan_domain::ids::TierChangeId;
use huiyuan_domain::loyalty::tiers::{
    add_months, progress_to_next, qualification_reason, qualified_level, review, window_start,
    ReviewDecision, TierMetrics,
};
use huiyuan_store::{AccountRecord, OutboxRecord, TierChangeRecord, Tx};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::views::{NextTierView, TierChangeView, TierView};
use super::LoyaltyContext;
use crate::{Core, Result};

impl LoyaltyContext {
    /// The level of the account's tier in the current programme (0 when unknown or none).
    pub fn level_of(&self, account: &AccountRecord) -> usize {
        account
            .tier_code
            .as_deref()
            .and_then(|c| self.programme.tier_index(c))
            .unwrap_or(0)
    }

    /// When the window that ends now began.
    pub fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.calendar.start_of(window_start(
            self.programme.tiers.window,
            self.calendar.date_of(now),
        ))
    }

    fn next_review(&self, now: OffsetDateTime) -> OffsetDateTime {
        let date = add_months(
            self.calendar.date_of(now),
            i32::from(self.programme.tiers.review.every_months),
        );
        self.calendar.start_of(date)
    }

    pub fn tier_view(&self, account: &AccountRecord, metrics: TierMetrics) -> TierView {
        let level = self.level_of(account);
        let tiers = &self.programme.tiers;
        let tier = &tiers.levels[level.min(tiers.levels.len() - 1)];
        TierView {
            code: tier.code.clone(),
            name: tier.name.clone(),
            name_en: tier.name_en.clone(),
            level,
            since: account.tier_since,
            review_at: account.tier_review_at,
            grace_until: account.tier_grace_until,
            multiplier: tier.multiplier.normalize().to_string(),
            discount_percent: tier.discount_percent.normalize().to_string(),
            perks: tier.perks.clone(),
            qualifying: metrics,
            next: progress_to_next(tiers, level, &metrics).map(|(t, missing)| NextTierView {
                code: t.code.clone(),
                name: t.name.clone(),
                missing,
            }),
        }
    }
}

pub(crate) fn change_view(c: &TierChangeRecord) -> TierChangeView {
    TierChangeView {
        id: c.id.clone(),
        from_tier: c.from_tier.clone(),
        to_tier: c.to_tier.clone(),
        reason: c.reason.clone(),
        created_at: c.created_at,
    }
}

impl Core {
    pub(crate) async fn tier_metrics(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        account: &AccountRecord,
    ) -> Result<TierMetrics> {
        let totals = tx
            .purchase_totals(
                &account.brand_id,
                &account.member_id,
                ctx.window_start(self.now()),
            )
            .await?;
        Ok(TierMetrics {
            points: totals.points,
            spend: totals.spend,
            visits: totals.visits,
        })
    }

    /// The change of the account to tier `level`, and its event: applied to the account, for
    /// the caller to write, alone ([`Core::change_tier`]) or with a batch's other rows.
    fn tier_change(
        &self,
        ctx: &LoyaltyContext,
        account: &mut AccountRecord,
        level: usize,
        reason: String,
    ) -> (TierChangeRecord, OutboxRecord) {
        let now = self.now();
        let to = ctx.programme.tiers.levels[level].code.clone();
        let change = TierChangeRecord {
            id: self.new_id(TierChangeId::generate).to_string(),
            brand_id: account.brand_id.clone(),
            member_id: account.member_id.clone(),
            from_tier: Some(ctx.programme.tiers.levels[ctx.level_of(account)].code.clone()),
            to_tier: to.clone(),
            reason,
            created_at: now,
        };
        let event = self.event(
            &account.brand_id,
            "tier.changed",
            account.member_id.as_str(),
            json!({ "member_id": account.member_id, "from": change.from_tier, "to": to, "reason": change.reason }),
        );
        account.tier_code = Some(to);
        account.tier_since = Some(now);
        account.tier_grace_until = None;
        account.tier_review_at = (level > 0).then(|| ctx.next_review(now));
        (change, event)
    }

    async fn change_tier(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        account: &mut AccountRecord,
        level: usize,
        reason: String,
    ) -> Result<TierChangeRecord> {
        save_tier_change(tx, self.tier_change(ctx, account, level, reason)).await
    }

    /// Upgrades the member when what they achieved in the window reaches a higher tier.
    /// Never downgrades: that waits for the review.
    pub(crate) async fn upgrade_if_qualified(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        account: &mut AccountRecord,
        cause: &str,
    ) -> Result<Option<TierChangeRecord>> {
        let metrics = self.tier_metrics(tx, ctx, account).await?;
        match self.upgrade_to_qualified(ctx, account, &metrics, cause) {
            Some(upgrade) => save_tier_change(tx, upgrade).await.map(Some),
            None => Ok(None),
        }
    }

    /// The upgrade (applied to the account) and its event when `metrics`, the window's,
    /// reach a higher tier, for the caller to write: a batch of sales sums the metrics once
    /// for all its members and writes its upgrades with its other rows.
    pub(crate) fn upgrade_to_qualified(
        &self,
        ctx: &LoyaltyContext,
        account: &mut AccountRecord,
        metrics: &TierMetrics,
        cause: &str,
    ) -> Option<(TierChangeRecord, OutboxRecord)> {
        let qualified = qualified_level(&ctx.programme.tiers, metrics);
        if qualified <= ctx.level_of(account) {
            return None;
        }
        let tier = &ctx.programme.tiers.levels[qualified];
        let reason = format!("{cause}: {}", qualification_reason(tier, metrics));
        Some(self.tier_change(ctx, account, qualified, reason))
    }

    /// The periodic review of one account (under its lock): confirm, start the grace, or
    /// downgrade to the tier the member qualifies for once the grace is over.
    pub(crate) async fn review_tier(
        &self,
        tx: &mut dyn Tx,
        ctx: &LoyaltyContext,
        account: &mut AccountRecord,
    ) -> Result<Option<TierChangeRecord>> {
        let now = self.now();
        let metrics = self.tier_metrics(tx, ctx, account).await?;
        let current = ctx.level_of(account);
        let qualified = qualified_level(&ctx.programme.tiers, &metrics);
        let grace = ctx.programme.tiers.review.grace_days;
        let grace_over = account.tier_grace_until.is_some_and(|g| g <= now);
        match review(
            current,
            qualified,
            account.tier_grace_until.is_some(),
            grace_over,
            grace,
        ) {
            ReviewDecision::Confirm { level } if level > current => {
                let tier = &ctx.programme.tiers.levels[level];
                let reason = format!("review: {}", qualification_reason(tier, &metrics));
                self.change_tier(tx, ctx, account, level, reason).await.map(Some)
            }
            ReviewDecision::Confirm { .. } => {
                account.tier_grace_until = None;
                account.tier_review_at = (current > 0).then(|| ctx.next_review(now));
                Ok(None)
            }
            ReviewDecision::StartGrace => {
                if account.tier_grace_until.is_none() {
                    let until = now + Duration::days(i64::from(grace));
                    account.tier_grace_until = Some(until);
                    self.emit(
                        tx,
                        &account.brand_id,
                        "tier.grace_started",
                        account.member_id.as_str(),
                        json!({ "member_id": account.member_id, "tier": account.tier_code, "until": crate::views::rfc3339(until) }),
                        None,
                    )
                    .await?;
                }
                account.tier_review_at = account.tier_grace_until;
                Ok(None)
            }
            ReviewDecision::Downgrade { level } => {
                let tier = &ctx.programme.tiers.levels[current];
                let reason = format!(
                    "review after grace: {} below {}",
                    qualification_reason(tier, &metrics),
                    tier.name
                );
                self.change_tier(tx, ctx, account, level, reason).await.map(Some)
            }
        }
    }
}

/// Writes a tier change and its event in the caller's transaction.
async fn save_tier_change(
    tx: &mut dyn Tx,
    (change, event): (TierChangeRecord, OutboxRecord),
) -> Result<TierChangeRecord> {
    tx.insert_tier_change(&change).await?;
    tx.insert_event(&event).await?;
    Ok(change)
}
