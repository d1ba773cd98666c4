//! Coupon templates and coupons: create, issue (to a member, by claim code, as a points
//! reward), look up, redeem online exactly once, expire, and report usage.

use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::checkout::{price, Ask, Basket, Means, OfferedCoupon};
use huiyuan_domain::commerce::coupons::{
    code_from_random, normalise_code, validate_template, CouponStatus, Ineligible, Occasion, Offer,
    TemplateInput, TemplateStatus, Terms, Validity,
};
use huiyuan_domain::error::Validator;
use huiyuan_domain::ids::{BrandId, CouponId, CouponTemplateId, MemberId};
use huiyuan_domain::loyalty::ledger::EntryKind;
use huiyuan_domain::loyalty::purchase::{validate_basket_lines, validate_reference, LineInput};
use huiyuan_domain::member::{Channel, MemberStatus};
use huiyuan_domain::ValidationError;
use huiyuan_store::{CouponRecord, CouponTemplateRecord, MemberRecord, Page, Tx};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::loyalty::Posting;
use crate::members::enum_str;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// A template as shown to operators, with its usage.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateView {
    pub id: String,
    #[serde(flatten)]
    pub definition: TemplateInput,
    /// Coupons issued so far (counted against the stock).
    pub issued: i64,
    pub status: TemplateStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// How a template's coupons were used: the benefit usage report's line.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateUsage {
    pub template: TemplateView,
    pub issued: i64,
    pub redeemed: i64,
    pub expired: i64,
    /// Redeemed ÷ issued; absent with nothing issued.
    pub redemption_rate: Option<f64>,
    /// Taken off sales by its redemptions, minor units.
    pub discount_given: i64,
    /// Redemptions × the template's cost per redemption, minor units.
    pub cost: i64,
    /// Below the usage rate the report was asked about [15%]: a candidate to retire.
    pub below_threshold: bool,
}

/// One coupon, as the member and the till see it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CouponView {
    pub id: String,
    pub code: String,
    pub template_id: String,
    pub name: String,
    pub offer: Offer,
    pub member_id: MemberId,
    pub status: CouponStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub valid_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub valid_until: OffsetDateTime,
    pub stackable: bool,
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub redeemed_at: Option<OffsetDateTime>,
    pub redeemed_order_id: Option<String>,
    pub redeemed_store_id: Option<String>,
    pub redeemed_channel: Option<String>,
    pub discount: Option<i64>,
}

/// Issue one coupon of a template to a member. `reference` makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IssueInput {
    pub template_id: String,
    pub reference: String,
}

/// A member claims a coupon with a template's public claim code.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimInput {
    pub claim_code: String,
}

/// Spend points on a template in the rewards catalogue; `reference` makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RewardInput {
    pub template_id: String,
    pub reference: String,
}

/// Redeem a coupon on an order placed elsewhere (an online shop that prices its own baskets).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RedeemCouponInput {
    pub order_id: String,
    pub member_id: MemberId,
    pub store_id: Option<huiyuan_domain::ids::StoreId>,
    pub channel: Channel,
    /// The order's lines at their price, for the coupon's rules (minimum spend, categories).
    pub lines: Vec<LineInput>,
    #[serde(default)]
    pub shipping: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedeemCouponOutcome {
    pub coupon: CouponView,
    /// What it takes off the order.
    pub discount: i64,
}

pub(crate) fn template_view(r: &CouponTemplateRecord) -> Result<TemplateView> {
    let definition: TemplateInput = serde_json::from_str(&r.definition)
        .map_err(|e| CoreError::Corrupt(format!("template {}: {e}", r.id)))?;
    Ok(TemplateView {
        id: r.id.clone(),
        definition,
        issued: r.issued,
        status: r.status,
        created_at: r.created_at,
    })
}

/// The brand's template, refused when archived: archived templates issue no more coupons.
pub(crate) async fn active_template(
    tx: &mut dyn Tx,
    brand: &BrandId,
    id: &str,
) -> Result<CouponTemplateRecord> {
    let template = tx
        .get_coupon_template(brand, id)
        .await?
        .ok_or(CoreError::NotFound("coupon template"))?;
    if template.status != TemplateStatus::Active {
        return Err(CoreError::conflict(
            ErrorCode::TemplateArchived,
            format!("{} is archived and issues no more coupons", template.name),
        ));
    }
    Ok(template)
}

pub(crate) fn terms_of(t: &TemplateInput) -> Terms {
    Terms {
        offer: t.offer.clone(),
        limits: t.limits.clone(),
        stackable: t.stackable,
    }
}

/// A coupon as the pricing function takes it, with its template's terms.
pub(crate) fn offered<'a>(c: &'a CouponRecord, terms: &'a Terms) -> OfferedCoupon<'a> {
    OfferedCoupon {
        code: &c.code,
        terms,
        valid_from: c.valid_from,
        valid_until: c.valid_until,
    }
}

/// A coupon code with all but its last four characters hidden.
pub(crate) fn masked_code(code: &str) -> String {
    let keep: String = code
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{keep}")
}

/// Who sees a coupon's code in full: a code is money to whoever holds it, so the roles that may
/// redeem coupons (admin, marketer, clerk; the member, through the system actor of their own
/// pages) see it, and the rest (analyst, auditor) see [`masked_code`], in every view of a
/// coupon. Exports mask it unless revealed (see `files::export`).
pub(crate) fn visible_code(actor: &Actor, code: &str) -> String {
    if actor.role.allows(Permission::CouponsRedeem) {
        code.to_owned()
    } else {
        masked_code(code)
    }
}

pub(crate) fn coupon_view(actor: &Actor, c: &CouponRecord, t: &TemplateInput) -> CouponView {
    CouponView {
        id: c.id.clone(),
        code: visible_code(actor, &c.code),
        template_id: c.template_id.clone(),
        name: t.name.clone(),
        offer: t.offer.clone(),
        member_id: c.member_id.clone(),
        status: c.status,
        valid_from: c.valid_from,
        valid_until: c.valid_until,
        stackable: t.stackable,
        source: c.source.clone(),
        issued_at: c.issued_at,
        redeemed_at: c.redeemed_at,
        redeemed_order_id: c.redeemed_order_id.clone(),
        redeemed_store_id: c.redeemed_store_id.clone(),
        redeemed_channel: c.redeemed_channel.clone(),
        discount: c.discount,
    }
}

/// "Coupon ABCD-… was already used at store SH01 on 2026-06-01 14:03 (order SO-1)": what a clerk
/// needs to answer a member at the till.
pub(crate) fn already_used(c: &CouponRecord) -> CoreError {
    let when = c
        .redeemed_at
        .map(|t| {
            format!(
                " on {} UTC",
                t.format(&time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]"
                ))
                .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let store = c
        .redeemed_store_id
        .as_deref()
        .map(|s| format!(" at store {s}"))
        .or_else(|| {
            c.redeemed_channel
                .as_deref()
                .map(|ch| format!(" on channel {ch}"))
        })
        .unwrap_or_default();
    let order = c
        .redeemed_order_id
        .as_deref()
        .map(|o| format!(" (order {o})"))
        .unwrap_or_default();
    CoreError::conflict(
        ErrorCode::CouponRedeemed,
        format!("coupon {} was already used{store}{when}{order}", c.code),
    )
}

/// Why a coupon in a state other than `issued` cannot be used.
pub(crate) fn not_usable(c: &CouponRecord) -> CoreError {
    match c.status.as_str() {
        "redeemed" => already_used(c),
        "expired" => CoreError::conflict(ErrorCode::CouponExpired, format!("coupon {} has expired", c.code)),
        other => CoreError::conflict(ErrorCode::CouponVoid, format!("coupon {} is {other}", c.code)),
    }
}

impl Core {
    /// Creates a coupon template.
    pub async fn create_coupon_template(&self, actor: &Actor, input: TemplateInput) -> Result<TemplateView> {
        actor.require(Permission::CouponsManage)?;
        let t = validate_template(&input)?;
        let brand = &actor.brand_id;
        let record = CouponTemplateRecord {
            id: self.new_id(CouponTemplateId::generate).to_string(),
            brand_id: brand.clone(),
            name: t.name.clone(),
            definition: serde_json::to_string(&t).map_err(|e| CoreError::Corrupt(e.to_string()))?,
            claim_code: t.claim_code.clone(),
            stock: t.stock,
            issued: 0,
            points_price: t.points_price,
            status: TemplateStatus::Active,
            created_at: self.now(),
        };
        let mut tx = self.storage.write().await?;
        if let Some(code) = &t.claim_code {
            if tx.find_template_by_claim_code(brand, code).await?.is_some() {
                return Err(
                    ValidationError::field("claim_code", "is used by another template of the brand").into(),
                );
            }
        }
        tx.insert_coupon_template(&record).await?;
        self.audit(
            &mut *tx,
            actor,
            "coupon_template.created",
            ("coupon_template", record.id.as_str()),
            json!({ "name": t.name, "offer": t.offer }),
        )
        .await?;
        tx.commit().await?;
        template_view(&record)
    }

    pub async fn list_coupon_templates(&self, actor: &Actor, page: &Page) -> Result<Vec<TemplateView>> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        tx.list_coupon_templates(&actor.brand_id, page)
            .await?
            .iter()
            .map(template_view)
            .collect()
    }

    pub async fn get_coupon_template(&self, actor: &Actor, id: &str) -> Result<TemplateView> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let t = tx
            .get_coupon_template(&actor.brand_id, id)
            .await?
            .ok_or(CoreError::NotFound("coupon template"))?;
        template_view(&t)
    }

    /// Stops a template from issuing more coupons; those already issued stay usable.
    pub async fn archive_coupon_template(&self, actor: &Actor, id: &str) -> Result<TemplateView> {
        actor.require(Permission::CouponsManage)?;
        let mut tx = self.storage.write().await?;
        if !tx
            .set_template_status(&actor.brand_id, id, TemplateStatus::Archived)
            .await?
        {
            return Err(CoreError::NotFound("coupon template"));
        }
        let t = tx
            .get_coupon_template(&actor.brand_id, id)
            .await?
            .ok_or(CoreError::NotFound("coupon template"))?;
        self.audit(
            &mut *tx,
            actor,
            "coupon_template.archived",
            ("coupon_template", id),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        template_view(&t)
    }

    /// Issued, redeemed and expired coupons of every template of the brand, the redemption
    /// rate, and which fall below `threshold` (a share, [0.15]): the benefit usage report.
    pub async fn coupon_usage(&self, actor: &Actor, threshold: f64) -> Result<Vec<TemplateUsage>> {
        actor.require(Permission::AnalyticsRead)?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(ValidationError::field("threshold", "must be between 0 and 1").into());
        }
        let mut tx = self.storage.read().await?;
        let mut out = Vec::new();
        let mut page = Page::first(1000);
        loop {
            let templates = tx.list_coupon_templates(&actor.brand_id, &page).await?;
            for t in &templates {
                let counts = tx.coupon_counts(&actor.brand_id, &t.id).await?;
                let template = template_view(t)?;
                let rate = (counts.issued > 0).then(|| counts.redeemed as f64 / counts.issued as f64);
                out.push(TemplateUsage {
                    cost: counts.redeemed * template.definition.cost_per_redemption,
                    template,
                    issued: counts.issued,
                    redeemed: counts.redeemed,
                    expired: counts.expired,
                    redemption_rate: rate,
                    discount_given: counts.discount,
                    below_threshold: rate.is_some_and(|r| r < threshold),
                });
            }
            match templates.last() {
                Some(last) if templates.len() == 1000 => page.starting_after = Some(last.id.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Issues one coupon to a member; the same reference returns the coupon issued first.
    pub async fn issue_coupon(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: IssueInput,
    ) -> Result<(CouponView, bool)> {
        actor.require(Permission::CouponsIssue)?;
        validate_reference("reference", &input.reference)?;
        let mut tx = self.storage.write().await?;
        let issued = self
            .issue_in(
                &mut *tx,
                actor,
                member,
                &input.template_id,
                "direct",
                &input.reference,
            )
            .await?;
        if issued.1 {
            tx.commit().await?;
        }
        Ok(issued)
    }

    /// A member claims a coupon with a template's claim code: one per member (or the
    /// template's per-member limit), within the stock.
    pub async fn claim_coupon(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: ClaimInput,
    ) -> Result<(CouponView, bool)> {
        actor.require(Permission::MembersUpdate)?;
        let code = input.claim_code.trim().to_uppercase();
        let mut tx = self.storage.write().await?;
        let record = self
            .active_member(&mut *tx, &actor.brand_id, member, true)
            .await?;
        let template = tx
            .find_template_by_claim_code(&actor.brand_id, &code)
            .await?
            .ok_or_else(|| ValidationError::field("claim_code", "no coupon can be claimed with this code"))?;
        // One claim per member and template: the reference says so, so a second claim returns
        // the first coupon instead of a second one.
        let reference = format!("{}:{}", template.id, record.id);
        let issued = self
            .issue_in(&mut *tx, actor, &record.id, &template.id, "claim", &reference)
            .await?;
        if issued.1 {
            tx.commit().await?;
        }
        Ok(issued)
    }

    /// Spends the template's points price and issues its coupon, in one transaction
    /// [1,000 points → a 50-yuan coupon].
    pub async fn redeem_reward(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: RewardInput,
    ) -> Result<(CouponView, bool)> {
        actor.require(Permission::PointsRedeem)?;
        validate_reference("reference", &input.reference)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        if let Some(existing) = tx
            .get_coupon_by_reference(brand, "reward", &input.reference)
            .await?
        {
            return self.replayed_issue(&mut *tx, actor, member, existing).await;
        }
        let record = self.active_member(&mut *tx, brand, member, true).await?;
        let template = tx
            .get_coupon_template(brand, &input.template_id)
            .await?
            .ok_or(CoreError::NotFound("coupon template"))?;
        let price = template.points_price.ok_or_else(|| {
            ValidationError::field(
                "template_id",
                "this template is not in the rewards catalogue (it has no points price)",
            )
        })?;
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let mut posting = Posting::open(self, &mut *tx, brand, &record.id, &actor.label()).await?;
        posting.expire_due(&mut *tx).await?;
        if posting.account.available < price {
            return Err(CoreError::conflict(
                ErrorCode::InsufficientPoints,
                format!(
                    "{} costs {price} points; the member has {} available ({} pending)",
                    template.name, posting.account.available, posting.account.pending
                ),
            ));
        }
        let (coupon, _) = self
            .issue_in(
                &mut *tx,
                actor,
                &record.id,
                &template.id,
                "reward",
                &input.reference,
            )
            .await?;
        posting
            .spend(
                &mut *tx,
                EntryKind::Redeem,
                price,
                &input.reference,
                Some(ctx.version),
                json!({ "reward": template.id, "coupon": coupon.id }),
            )
            .await?;
        posting.save(&mut *tx).await?;
        tx.commit().await?;
        Ok((coupon, true))
    }

    /// Issues in the caller's transaction: checks the template, the member's limit and the
    /// stock. Returns the coupon and whether it was made now (false: the reference was used).
    pub(crate) async fn issue_in(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        member: &MemberId,
        template_id: &str,
        source: &str,
        reference: &str,
    ) -> Result<(CouponView, bool)> {
        let brand = &actor.brand_id;
        if let Some(existing) = tx.get_coupon_by_reference(brand, source, reference).await? {
            return self.replayed_issue(tx, actor, member, existing).await;
        }
        let record = self.active_member(tx, brand, member, true).await?;
        if record.status == MemberStatus::Erased {
            return Err(CoreError::conflict(
                ErrorCode::MemberErased,
                "the member was erased",
            ));
        }
        let template = active_template(tx, brand, template_id).await?;
        let definition = template_view(&template)?.definition;
        if let Some(limit) = definition.limits.per_member {
            let has = tx.count_member_coupons(brand, &template.id, &record.id).await?;
            if has >= i64::from(limit) {
                return Err(CoreError::conflict(
                    ErrorCode::CouponLimitReached,
                    format!(
                        "the member already has {has} of {} (at most {limit} each)",
                        template.name
                    ),
                ));
            }
        }
        if !tx.take_coupon_stock(brand, &template.id, 1).await? {
            return Err(CoreError::conflict(
                ErrorCode::CouponOutOfStock,
                format!(
                    "all {} of {} have been issued",
                    template.stock.unwrap_or(0),
                    template.name
                ),
            ));
        }
        let now = self.now();
        let coupon = self.new_coupon(
            &template.id,
            &record,
            &definition.validity,
            source,
            reference,
            now,
        );
        if tx.insert_coupons(std::slice::from_ref(&coupon)).await? != 1 {
            return Err(CoreError::conflict(
                ErrorCode::ReferenceReused,
                "this reference is being used concurrently; retry",
            ));
        }
        self.announce(
            tx,
            actor,
            "coupon.issued",
            record.id.as_str(),
            ("coupon", coupon.id.as_str()),
            json!({ "coupon_id": coupon.id, "template_id": template.id, "member_id": record.id,
                    "source": source, "valid_until": crate::views::rfc3339(coupon.valid_until) }),
            json!({ "template_id": template.id, "member_id": record.id, "source": source, "reference": reference }),
        )
        .await?;
        Ok((coupon_view(actor, &coupon, &definition), true))
    }

    async fn replayed_issue(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        member: &MemberId,
        existing: CouponRecord,
    ) -> Result<(CouponView, bool)> {
        if existing.member_id != *member {
            return Err(CoreError::conflict(
                ErrorCode::ReferenceReused,
                "this reference was already used to issue a coupon to another member",
            ));
        }
        let template = tx
            .get_coupon_template(&existing.brand_id, &existing.template_id)
            .await?
            .ok_or_else(|| CoreError::Corrupt("a coupon's template vanished".into()))?;
        Ok((
            coupon_view(actor, &existing, &template_view(&template)?.definition),
            false,
        ))
    }

    /// A fresh coupon with an unguessable code (65 random bits and a check character).
    pub(crate) fn new_coupon(
        &self,
        template_id: &str,
        member: &MemberRecord,
        validity: &Validity,
        source: &str,
        reference: &str,
        now: OffsetDateTime,
    ) -> CouponRecord {
        let (valid_from, valid_until) = validity.window(now);
        CouponRecord {
            id: self.new_id(CouponId::generate).to_string(),
            brand_id: member.brand_id.clone(),
            template_id: template_id.to_owned(),
            code: code_from_random(self.random()),
            member_id: member.id.clone(),
            status: CouponStatus::Issued,
            valid_from,
            valid_until,
            source: source.into(),
            reference: reference.into(),
            issued_at: now,
            redeemed_at: None,
            redeemed_order_id: None,
            redeemed_store_id: None,
            redeemed_channel: None,
            discount: None,
        }
    }

    /// A member's coupons, newest first (`status` to filter).
    pub async fn member_coupons(
        &self,
        actor: &Actor,
        member: &MemberId,
        status: Option<&str>,
        page: &Page,
    ) -> Result<Vec<CouponView>> {
        actor.require(Permission::MembersRead)?;
        let status = match status {
            None => None,
            Some(s) => Some(CouponStatus::parse(s).ok_or_else(|| {
                ValidationError::field("status", "must be issued, redeemed, expired or void")
            })?),
        };
        let mut tx = self.storage.read().await?;
        let record = self
            .active_member(&mut *tx, &actor.brand_id, member, false)
            .await?;
        let coupons = tx
            .list_member_coupons(&actor.brand_id, &record.id, status, page)
            .await?;
        self.coupon_views(&mut *tx, actor, &coupons).await
    }

    /// Views of coupons, each with its template.
    pub(crate) async fn coupon_views(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        coupons: &[CouponRecord],
    ) -> Result<Vec<CouponView>> {
        let mut templates: Vec<(String, TemplateInput)> = Vec::new();
        let mut out = Vec::with_capacity(coupons.len());
        for c in coupons {
            if !templates.iter().any(|(id, _)| *id == c.template_id) {
                let t = tx
                    .get_coupon_template(&c.brand_id, &c.template_id)
                    .await?
                    .ok_or_else(|| CoreError::Corrupt("a coupon's template vanished".into()))?;
                templates.push((t.id.clone(), template_view(&t)?.definition));
            }
            if let Some((_, t)) = templates.iter().find(|(id, _)| *id == c.template_id) {
                out.push(coupon_view(actor, c, t));
            }
        }
        Ok(out)
    }

    /// The brand's latest redemptions (up to `limit`, at most 500), of one template when given.
    pub async fn coupon_redemptions(
        &self,
        actor: &Actor,
        template: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CouponView>> {
        actor.require(Permission::CouponsManage)?;
        if !(1..=500).contains(&limit) {
            return Err(ValidationError::field("limit", "must be between 1 and 500").into());
        }
        let mut tx = self.storage.read().await?;
        let coupons = tx.list_redeemed_coupons(&actor.brand_id, template, limit).await?;
        self.coupon_views(&mut *tx, actor, &coupons).await
    }

    /// A coupon by its code (as typed or scanned).
    pub async fn get_coupon(&self, actor: &Actor, code: &str) -> Result<CouponView> {
        actor.require(Permission::MembersRead)?;
        let code = normalise_code(code)?;
        let mut tx = self.storage.read().await?;
        let c = tx
            .get_coupon_by_code(&actor.brand_id, &code)
            .await?
            .ok_or(CoreError::NotFound("coupon"))?;
        Ok(self.coupon_views(&mut *tx, actor, &[c]).await?.remove(0))
    }

    /// Redeems a coupon on an order priced elsewhere (an online shop): checks its rules
    /// against the order's lines and marks it used, exactly once whatever the concurrency.
    /// The same order sent again returns the first outcome.
    pub async fn redeem_coupon(
        &self,
        actor: &Actor,
        code: &str,
        input: RedeemCouponInput,
    ) -> Result<(RedeemCouponOutcome, bool)> {
        actor.require(Permission::CouponsRedeem)?;
        let code = normalise_code(code)?;
        let mut v = Validator::default();
        v.check(validate_reference("order_id", &input.order_id));
        let lines = validate_basket_lines(&mut v, &input.lines);
        if input.shipping < 0 {
            v.push("shipping", "must not be negative");
        }
        v.finish()?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let mut c = tx
            .get_coupon_by_code(brand, &code)
            .await?
            .ok_or(CoreError::NotFound("coupon"))?;
        let template = tx
            .get_coupon_template(brand, &c.template_id)
            .await?
            .ok_or_else(|| CoreError::Corrupt("a coupon's template vanished".into()))?;
        let definition = template_view(&template)?.definition;
        if c.status == CouponStatus::Redeemed
            && c.redeemed_order_id.as_deref() == Some(input.order_id.as_str())
        {
            let d = c.discount.unwrap_or(0);
            return Ok((
                RedeemCouponOutcome {
                    coupon: coupon_view(actor, &c, &definition),
                    discount: d,
                },
                false,
            ));
        }
        let member = self
            .active_member(&mut *tx, brand, &input.member_id, false)
            .await?;
        if c.member_id != member.id {
            return Err(CoreError::conflict(
                ErrorCode::CouponNotYours,
                format!("coupon {code} belongs to another member"),
            ));
        }
        if c.status != CouponStatus::Issued {
            return Err(not_usable(&c));
        }
        let store_code = match &input.store_id {
            Some(id) => Some(
                tx.get_store(brand, id)
                    .await?
                    .ok_or_else(|| ValidationError::field("store_id", "no such store in this brand"))?
                    .code,
            ),
            None => None,
        };
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let tier_code = match tx.get_account(brand, &member.id).await? {
            Some(a) => ctx.programme.tiers.levels[ctx.level_of(&a)].code.clone(),
            None => ctx
                .programme
                .tiers
                .levels
                .first()
                .map(|t| t.code.clone())
                .unwrap_or_default(),
        };
        // Priced by the till's own function: the shop's lines at their price, this coupon alone.
        let terms = terms_of(&definition);
        let offered = [offered(&c, &terms)];
        let priced = price(
            &Basket {
                lines: &lines,
                shipping: input.shipping,
                tier_discount_percent: Decimal::ZERO,
                coupons: &offered,
                occasion: Occasion {
                    store_code: store_code.as_deref(),
                    channel: input.channel,
                    tier_code: &tier_code,
                    at: self.now(),
                    shipping: input.shipping,
                },
            },
            Ask::default(),
            Means::default(),
        );
        if let Some(refused) = priced.refused_coupons.first() {
            return Err(ineligible(&code, &refused.reason));
        }
        let d = priced
            .coupons
            .first()
            .ok_or_else(|| CoreError::Corrupt("a coupon neither applied nor refused".into()))?;
        c.redeemed_at = Some(self.now());
        c.redeemed_order_id = Some(input.order_id.clone());
        c.redeemed_store_id = input.store_id.as_ref().map(|s| s.to_string());
        c.redeemed_channel = Some(enum_str(input.channel));
        c.discount = Some(d.discount);
        if !tx.redeem_coupon(&c).await? {
            // Redeemed by another request since it was read (PostgreSQL waited for it).
            let now = tx.get_coupon_by_code(brand, &code).await?.unwrap_or(c);
            return Err(not_usable(&now));
        }
        c.status = CouponStatus::Redeemed;
        self.emit(
            &mut *tx,
            brand,
            "coupon.redeemed",
            member.id.as_str(),
            json!({ "coupon_id": c.id, "template_id": c.template_id, "member_id": member.id,
                    "order_id": input.order_id, "discount": d.discount, "channel": c.redeemed_channel,
                    "store_id": c.redeemed_store_id }),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok((
            RedeemCouponOutcome {
                coupon: coupon_view(actor, &c, &definition),
                discount: d.discount,
            },
            true,
        ))
    }

    /// Marks issued coupons whose validity ended as expired, with an event each; returns how
    /// many. Safe to run again (and on several nodes: PostgreSQL skips rows another holds).
    pub async fn expire_coupons(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.storage.write().await?;
            let now = self.now();
            let due = tx.coupons_past_validity(now, 500).await?;
            for mut c in due.iter().cloned() {
                c.status = CouponStatus::Expired;
                tx.update_coupon_status(&c).await?;
                self.emit(
                    &mut *tx,
                    &c.brand_id,
                    "coupon.expired",
                    c.member_id.as_str(),
                    json!({ "coupon_id": c.id, "template_id": c.template_id, "member_id": c.member_id }),
                    Some(format!("coupon.expired:{}", c.id)),
                )
                .await?;
            }
            tx.commit().await?;
            total += due.len() as u64;
            if due.len() < 500 {
                return Ok(total);
            }
        }
    }
}

/// A coupon refused for this basket, as a clerk-actionable 422.
pub(crate) fn ineligible(code: &str, why: &Ineligible) -> CoreError {
    CoreError::Conflict {
        code: why.code(),
        message: format!("coupon {code}: {}", why.message()),
        errors: vec![huiyuan_domain::FieldError {
            field: "code".into(),
            reason: why.message(),
        }],
    }
}
