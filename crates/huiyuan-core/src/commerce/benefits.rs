//! Benefits in use (權益): each use of a tier's or a plan's discount at the till, of a perk a
//! clerk hands over, and of a partner code is recorded with the member's tier at that moment,
//! so that the usage report can say, per benefit and tier, how many of the members entitled to
//! it used it — and flag those below a usage rate, candidates for retirement (SPEC §4).

use std::collections::HashMap;

use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::plans::Plan;
use huiyuan_domain::ids::{BrandId, MemberId, StoreId};
use huiyuan_domain::loyalty::programme::Tier;
use huiyuan_domain::loyalty::purchase::validate_reference;
use huiyuan_domain::ValidationError;
use huiyuan_store::{BenefitUseRecord, Page, Tx};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Date, Duration, OffsetDateTime};

use super::plans::active_plan;
use crate::loyalty::LoyaltyContext;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// The benefit kinds a use is recorded under.
pub const TIER_DISCOUNT: &str = "tier_discount";
pub const PLAN_DISCOUNT: &str = "plan_discount";
pub const PERK: &str = "perk";
pub const PLAN_PERK: &str = "plan_perk";
pub const PARTNER_CODE: &str = "partner_code";
/// Kinds of the report that are read from purchases rather than recorded uses.
pub const POINTS_MULTIPLIER: &str = "points_multiplier";
pub const PLAN_POINTS_MULTIPLIER: &str = "plan_points_multiplier";

/// The default report period and usage rate under which a benefit is flagged.
const DEFAULT_DAYS: i64 = 90;
pub const DEFAULT_THRESHOLD: f64 = 0.15;

/// Where a member stands now: their tier and the paid plan covering them, if any.
pub(crate) struct Standing<'c> {
    pub tier: &'c Tier,
    pub plan: Option<&'c Plan>,
}

/// A clerk hands a member a perk of their tier or plan (free gift wrap, a lounge visit).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PerkUseInput {
    /// The perk, as the programme names it.
    pub perk: String,
    /// The caller's reference: sent again, it records nothing more.
    pub reference: String,
    pub store_id: Option<StoreId>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BenefitUseView {
    pub id: String,
    pub member_id: MemberId,
    /// `tier_discount`, `plan_discount`, `perk`, `plan_perk` or `partner_code`.
    pub benefit: String,
    /// The perk or the partner pool; absent for a discount.
    pub code: Option<String>,
    /// The member's tier when they used it.
    pub tier: String,
    /// The plan it came from.
    pub plan: Option<String>,
    pub store_id: Option<String>,
    pub reference: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub used_at: OffsetDateTime,
}

fn use_view(u: BenefitUseRecord) -> BenefitUseView {
    BenefitUseView {
        id: u.id,
        member_id: u.member_id,
        benefit: u.benefit,
        code: (!u.code.is_empty()).then_some(u.code),
        tier: u.tier_code,
        plan: u.plan_code,
        store_id: u.store_id,
        reference: u.reference,
        used_at: u.used_at,
    }
}

/// One benefit of one tier (or plan) in the usage report.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BenefitUsageLine {
    /// `tier_discount`, `points_multiplier`, `perk`, `partner_code`, `plan_discount`,
    /// `plan_points_multiplier` or `plan_perk`.
    pub benefit: String,
    /// The perk or the partner pool's ID.
    pub code: Option<String>,
    /// What it is, for people: "10% off", "×1.5 points", the perk, the pool's name.
    pub label: String,
    /// The tier it belongs to (absent for a plan's benefit).
    pub tier: Option<String>,
    /// The plan it belongs to.
    pub plan: Option<String>,
    /// Members entitled to it now: in the tier, or covered by the plan.
    pub eligible: i64,
    /// Distinct members who used it in the period (while in the tier, or covered by the plan).
    pub used: i64,
    /// `used / eligible`; absent when nobody is eligible.
    pub usage_rate: Option<f64>,
    /// Used by fewer than the threshold of those entitled: a candidate for retirement.
    pub below_threshold: bool,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BenefitUsageReport {
    #[serde(serialize_with = "huiyuan_analytics::iso_date")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub from: Date,
    #[serde(serialize_with = "huiyuan_analytics::iso_date")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub to: Date,
    pub threshold: f64,
    pub lines: Vec<BenefitUsageLine>,
}

fn percent_label(p: Decimal) -> String {
    format!("{}% off", p.normalize())
}

fn times_label(m: Decimal) -> String {
    format!("×{} points", m.normalize())
}

impl Core {
    /// The member's tier now (the lowest while they have no points account) and their plan.
    pub(crate) async fn standing<'c>(
        &self,
        tx: &mut dyn Tx,
        ctx: &'c LoyaltyContext,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<Standing<'c>> {
        let levels = &ctx.programme.tiers.levels;
        let level = match tx.get_account(brand, member).await? {
            Some(a) => ctx.level_of(&a),
            None => 0,
        };
        let tier = levels
            .get(level)
            .ok_or_else(|| CoreError::Corrupt("the programme has no tiers".into()))?;
        let terms = self
            .plan_terms(tx, ctx, brand, std::slice::from_ref(member))
            .await?;
        let plan = active_plan(&ctx.programme, &terms, member, self.now());
        Ok(Standing { tier, plan })
    }

    /// Records a benefit's use in the caller's transaction (a sale, a partner code's
    /// hand-out); a reference recorded before records nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_benefit_use(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        member: &MemberId,
        (benefit, code): (&str, &str),
        standing: &Standing<'_>,
        store_id: Option<&str>,
        reference: &str,
    ) -> Result<BenefitUseRecord> {
        let plan_code = matches!(benefit, PLAN_DISCOUNT | PLAN_PERK)
            .then(|| standing.plan.map(|p| p.code.clone()))
            .flatten();
        let record = BenefitUseRecord {
            id: self
                .new_id(huiyuan_domain::ids::BenefitUseId::generate)
                .to_string(),
            brand_id: brand.clone(),
            member_id: member.clone(),
            benefit: benefit.to_owned(),
            code: code.to_owned(),
            tier_code: standing.tier.code.clone(),
            plan_code,
            store_id: store_id.map(str::to_owned),
            reference: reference.to_owned(),
            used_at: self.now(),
        };
        if !tx.insert_benefit_use(&record).await? {
            if let Some(earlier) = tx.get_benefit_use(brand, benefit, code, reference).await? {
                return Ok(earlier);
            }
        }
        Ok(record)
    }

    /// A clerk hands a member a perk of their tier or of the plan covering them. The same
    /// reference again records nothing more and returns the first use.
    pub async fn use_perk(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: PerkUseInput,
    ) -> Result<(BenefitUseView, bool)> {
        actor.require(Permission::Checkout)?;
        validate_reference("reference", &input.reference)?;
        let perk = input.perk.trim();
        if perk.is_empty() || perk.chars().count() > 100 {
            return Err(ValidationError::field("perk", "must be 1 to 100 characters").into());
        }
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, member, true).await?;
        for kind in [PERK, PLAN_PERK] {
            if let Some(done) = tx.get_benefit_use(brand, kind, perk, &input.reference).await? {
                if done.member_id != record.id {
                    return Err(CoreError::conflict(
                        ErrorCode::ReferenceReused,
                        "this reference already recorded a perk for another member",
                    ));
                }
                return Ok((use_view(done), false));
            }
        }
        if let Some(store) = &input.store_id {
            if tx.get_store(brand, store).await?.is_none() {
                return Err(ValidationError::field("store_id", "no such store in this brand").into());
            }
        }
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let standing = self.standing(&mut *tx, &ctx, brand, &record.id).await?;
        let has = |perks: &[String]| perks.iter().any(|p| p == perk);
        let kind = if has(&standing.tier.perks) {
            PERK
        } else if standing.plan.is_some_and(|p| has(&p.perks)) {
            PLAN_PERK
        } else {
            return Err(perk_refusal(&ctx, perk, standing.tier));
        };
        let store = input.store_id.as_ref().map(|s| s.to_string());
        let used = self
            .record_benefit_use(
                &mut *tx,
                brand,
                &record.id,
                (kind, perk),
                &standing,
                store.as_deref(),
                &input.reference,
            )
            .await?;
        self.announce(
            &mut *tx,
            actor,
            "benefit.used",
            record.id.as_str(),
            ("member", record.id.as_str()),
            json!({ "member_id": record.id, "benefit": kind, "perk": perk, "tier": used.tier_code,
                    "plan": used.plan_code, "store_id": used.store_id }),
            json!({ "perk": perk, "reference": input.reference }),
        )
        .await?;
        tx.commit().await?;
        Ok((use_view(used), true))
    }

    /// Per benefit of every tier and plan: the members entitled to it now, those who used it
    /// in the period (local dates, both included; default the last 90 days), and a flag on
    /// those used by fewer than `threshold` (default 15%) of the entitled.
    pub async fn benefit_usage(
        &self,
        actor: &Actor,
        from: Option<Date>,
        to: Option<Date>,
        threshold: Option<f64>,
    ) -> Result<BenefitUsageReport> {
        actor.require(Permission::AnalyticsRead)?;
        let threshold = threshold.unwrap_or(DEFAULT_THRESHOLD);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(ValidationError::field("threshold", "must be between 0 and 1").into());
        }
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let calendar = &ctx.calendar;
        let to = to.unwrap_or_else(|| calendar.date_of(self.now()));
        let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
        if from > to {
            return Err(ValidationError::field("from", "must not be after to").into());
        }
        let (start, end) = (calendar.start_of(from), calendar.start_of(to + Duration::days(1)));
        let used: HashMap<(String, String, String), i64> = tx
            .benefit_use_counts(brand, start, end)
            .await?
            .into_iter()
            .map(|c| ((c.benefit, c.code, c.holder), c.members))
            .collect();
        let used_of = |benefit: &str, code: &str, holder: &str| {
            used.get(&(benefit.to_owned(), code.to_owned(), holder.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        let levels = &ctx.programme.tiers.levels;
        // Per tier: members now, and of them those who earned on a purchase in the period.
        let mut per_tier: HashMap<&str, (i64, i64)> = HashMap::new();
        for (code, members, buyers) in tx.tier_members_and_buyers(brand, start, end).await? {
            let level = code
                .as_deref()
                .and_then(|c| ctx.programme.tier_index(c))
                .unwrap_or(0);
            if let Some(t) = levels.get(level) {
                let e = per_tier.entry(t.code.as_str()).or_default();
                e.0 += members;
                e.1 += buyers;
            }
        }
        let mut pools = Vec::new();
        let mut page = Page::first(1000);
        loop {
            let batch = tx.list_partner_pools(brand, &page).await?;
            let full = batch.len() == 1000;
            page.starting_after = batch.last().map(|p| p.id.clone());
            pools.extend(batch);
            if !full {
                break;
            }
        }
        let line = |benefit: &str,
                    code: Option<&str>,
                    label: String,
                    holder: (Option<&str>, Option<&str>),
                    eligible: i64,
                    used: i64| {
            let rate = (eligible > 0).then(|| used as f64 / eligible as f64);
            BenefitUsageLine {
                benefit: benefit.to_owned(),
                code: code.map(str::to_owned),
                label,
                tier: holder.0.map(str::to_owned),
                plan: holder.1.map(str::to_owned),
                eligible,
                used,
                usage_rate: rate,
                below_threshold: rate.is_some_and(|r| r < threshold),
            }
        };
        let mut lines = Vec::new();
        for t in levels {
            let (eligible, buyers) = per_tier.get(t.code.as_str()).copied().unwrap_or_default();
            let holder = (Some(t.code.as_str()), None);
            if t.discount_percent > Decimal::ZERO {
                let n = used_of(TIER_DISCOUNT, "", &t.code);
                lines.push(line(
                    TIER_DISCOUNT,
                    None,
                    percent_label(t.discount_percent),
                    holder,
                    eligible,
                    n,
                ));
            }
            if t.multiplier > Decimal::ONE {
                lines.push(line(
                    POINTS_MULTIPLIER,
                    None,
                    times_label(t.multiplier),
                    holder,
                    eligible,
                    buyers,
                ));
            }
            for p in &t.perks {
                let n = used_of(PERK, p, &t.code);
                lines.push(line(PERK, Some(p), p.clone(), holder, eligible, n));
            }
            for pool in &pools {
                let n = used_of(PARTNER_CODE, &pool.id, &t.code);
                let label = format!("{} ({})", pool.name, pool.partner);
                lines.push(line(PARTNER_CODE, Some(&pool.id), label, holder, eligible, n));
            }
        }
        if !ctx.programme.plans.is_empty() {
            let covered: HashMap<String, (i64, i64)> = tx
                .plan_members_and_buyers(brand, self.now(), start, end)
                .await?
                .into_iter()
                .map(|(plan, members, buyers)| (plan, (members, buyers)))
                .collect();
            for p in &ctx.programme.plans {
                let (eligible, buyers) = covered.get(&p.code).copied().unwrap_or_default();
                let holder = (None, Some(p.code.as_str()));
                if p.discount_percent > Decimal::ZERO {
                    let n = used_of(PLAN_DISCOUNT, "", &p.code);
                    lines.push(line(
                        PLAN_DISCOUNT,
                        None,
                        percent_label(p.discount_percent),
                        holder,
                        eligible,
                        n,
                    ));
                }
                if p.points_multiplier > Decimal::ONE {
                    let label = times_label(p.points_multiplier);
                    lines.push(line(
                        PLAN_POINTS_MULTIPLIER,
                        None,
                        label,
                        holder,
                        eligible,
                        buyers,
                    ));
                }
                for perk in &p.perks {
                    let n = used_of(PLAN_PERK, perk, &p.code);
                    lines.push(line(PLAN_PERK, Some(perk), perk.clone(), holder, eligible, n));
                }
            }
        }
        Ok(BenefitUsageReport {
            from,
            to,
            threshold,
            lines,
        })
    }
}

/// Why a member cannot have a perk: nobody can (a field error), or it belongs to other tiers
/// or plans (a conflict naming them).
fn perk_refusal(ctx: &LoyaltyContext, perk: &str, tier: &Tier) -> CoreError {
    let holders: Vec<&str> = ctx
        .programme
        .tiers
        .levels
        .iter()
        .filter(|t| t.perks.iter().any(|p| p == perk))
        .map(|t| t.name.as_str())
        .chain(
            ctx.programme
                .plans
                .iter()
                .filter(|p| p.perks.iter().any(|x| x == perk))
                .map(|p| p.name.as_str()),
        )
        .collect();
    if holders.is_empty() {
        return ValidationError::field("perk", "is not a perk of any tier or plan").into();
    }
    CoreError::conflict(
        ErrorCode::PerkNotAvailable,
        format!(
            "{perk} is a perk of {}; this member is {} without such a plan",
            holders.join(", "),
            tier.name
        ),
    )
}
