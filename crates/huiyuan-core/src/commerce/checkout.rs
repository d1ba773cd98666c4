//! The till: quote a basket for a member (nothing changes), commit it (coupons, points, the
//! wallet and the purchase's points in one transaction, idempotent on the order ID), and refund
//! it (everything the sale did, reversed in one transaction).

use std::sync::Arc;

use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::checkout::{
    commit_refusals, price, validate_checkout, Ask, Basket, CheckoutInput, Means, OfferedCoupon, Priced,
    SaleStatus,
};
use huiyuan_domain::commerce::coupons::{CouponStatus, Ineligible, Occasion, TemplateInput};
use huiyuan_domain::commerce::wallet::{Balance, WalletEntryKind};
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::loyalty::ledger::EntryKind;
use huiyuan_domain::loyalty::purchase::{
    validate_reference, LineInput, PurchaseInput, PurchaseLine, RefundInput,
};
use huiyuan_domain::member::Identity;
use huiyuan_domain::pii::Phone;
use huiyuan_store::{AccountRecord, CouponRecord, MemberRecord, SaleRecord, Tx, WalletRecord};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::benefits::{Standing, PLAN_DISCOUNT, TIER_DISCOUNT};
use super::coupons::{not_usable, offered, template_view, terms_of, CouponView};
use super::plans::active_plan;
use super::wallet::{wallet_view, WalletPosting, WalletView};
use crate::loyalty::ingest::SaleFacts;
use crate::loyalty::purchases::Prepared;
use crate::loyalty::views::{PurchaseOutcome, PurchaseView, RefundOutcome, TierChangeView};
use crate::loyalty::{new_account, LoyaltyContext, Posting};
use crate::members::enum_str;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// Who is buying, as the till knows them.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteMember {
    /// Absent for a phone number that is not a member yet (a commit enrols it).
    pub member_id: Option<MemberId>,
    pub tier_code: String,
    pub tier_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tier_discount_percent: Decimal,
    pub perks: Vec<String>,
    /// The paid membership plan running now, if any.
    pub plan: Option<String>,
    /// The discount this member gets: the better of the tier's and the plan's.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub discount_percent: Decimal,
    pub points_available: i64,
    pub points_pending: i64,
    pub wallet: Option<WalletView>,
}

/// A coupon of the member's that this basket could use, and what it would take off alone.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CouponChoice {
    pub coupon: CouponView,
    pub discount: i64,
}

/// A coupon of the member's that this basket cannot use, and why.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CouponRefusal {
    pub coupon: CouponView,
    pub reason: Ineligible,
    pub message: String,
}

/// The answer to a quote: nothing was changed.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    pub member: QuoteMember,
    /// The basket priced with the coupons, points and wallet asked for.
    pub priced: Priced,
    /// The member's coupons this basket could use now (each on its own).
    pub usable_coupons: Vec<CouponChoice>,
    /// The member's coupons it cannot use, with the reason.
    pub unusable_coupons: Vec<CouponRefusal>,
    /// Points the sale would earn, paid as priced.
    pub points_to_earn: i64,
    /// Money value of the points the member has, minor units.
    pub points_value: i64,
}

/// What a committed sale did; returned again, unchanged, when the same order is sent again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sale {
    pub order_id: String,
    pub member_id: MemberId,
    /// The member was enrolled by this sale ("pay and you are a member").
    pub member_enrolled: bool,
    pub priced: Priced,
    /// IDs of the coupons this sale used.
    pub coupon_ids: Vec<String>,
    pub points_spent: i64,
    pub wallet_principal: i64,
    pub wallet_bonus: i64,
    /// Paid in money at the till.
    pub money: i64,
    /// The purchase as recorded, with the points it earned.
    pub purchase: PurchaseView,
    pub tier_change: Option<TierChangeView>,
    pub status: SaleStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// Refund a whole till sale; `refund_id` makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SaleRefundInput {
    pub refund_id: String,
    pub reason: Option<String>,
}

/// What a refund of a till sale gave back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleRefund {
    pub refund_id: String,
    pub order_id: String,
    pub member_id: MemberId,
    /// Coupons usable again.
    pub coupons_restored: Vec<String>,
    /// Coupons whose validity ended meanwhile: expired, not restored.
    pub coupons_expired: Vec<String>,
    /// Points the sale had spent, given back (after repaying debt).
    pub points_restored: i64,
    pub debt_repaid: i64,
    pub wallet_principal_restored: i64,
    pub wallet_bonus_restored: i64,
    /// Money to hand back at the till.
    pub money_returned: i64,
    /// The reversal of the points the sale earned.
    pub points: RefundOutcome,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// The buyer, found by ID or phone.
enum Buyer {
    Member(Box<MemberRecord>),
    /// A phone number that is not a member yet.
    NewPhone,
}

/// Who a quote is for: a member, or a phone that is not one yet (`member` is `None`; the
/// account is a fresh one under an unused ID).
struct QuoteBuyer {
    member: Option<Box<MemberRecord>>,
    member_id: MemberId,
    account: AccountRecord,
    wallet: Option<WalletRecord>,
}

impl QuoteBuyer {
    fn birth_month(&self) -> Option<u8> {
        self.member.as_ref().and_then(|m| m.birth_month)
    }

    fn balance(&self) -> Balance {
        self.wallet.as_ref().map_or(Balance::default(), |w| Balance {
            principal: w.principal,
            bonus: w.bonus,
        })
    }
}

/// A sale being committed, once priced: what the later phases read.
struct SaleInProgress {
    member_id: MemberId,
    ctx: Arc<LoyaltyContext>,
    tier: huiyuan_domain::loyalty::programme::Tier,
    plan: Option<huiyuan_domain::commerce::plans::Plan>,
    coupons: Vec<SaleCoupon>,
    priced: Priced,
    now: OffsetDateTime,
}

/// What the phases of a commit produced, for the sale's record.
struct SaleParts {
    enrolled: bool,
    coupon_ids: Vec<String>,
    points_lots: Vec<(String, i64)>,
    outcome: PurchaseOutcome,
}

/// A coupon on the sale, with its template.
struct SaleCoupon {
    record: CouponRecord,
    template: TemplateInput,
}

impl Core {
    /// Prices a basket for a member with the coupons, points and wallet asked for, and lists
    /// the member's coupons this basket could and could not use. Changes nothing.
    ///
    /// In phases, in one read transaction: who is buying and what they hold
    /// ([`Core::quote_buyer`]); the coupons asked for ([`Core::asked_coupons`]); the basket
    /// priced as a commit would price it; each of the member's coupons tried alone on it
    /// ([`Core::coupon_choices`]); the points the sale would earn.
    pub async fn quote(&self, actor: &Actor, input: CheckoutInput) -> Result<Quote> {
        actor.require(Permission::Checkout)?;
        let (lines, codes) = validate_checkout(&input, false)?;
        if input.member_code.is_some() {
            return Err(huiyuan_domain::ValidationError::field(
                "member_code",
                "a quote changes nothing, and verifying a code uses it up: identify the member with \
                 POST /v1/till/identify and quote by member_id",
            )
            .into());
        }
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let buyer = self.quote_buyer(&mut *tx, actor, &input).await?;
        let store_code = self.store_code(&mut *tx, brand, &input).await?;
        let tier = &ctx.programme.tiers.levels[ctx.level_of(&buyer.account)];
        let terms = self
            .plan_terms(&mut *tx, &ctx, brand, std::slice::from_ref(&buyer.member_id))
            .await?;
        let plan = active_plan(&ctx.programme, &terms, &buyer.member_id, self.now());
        let discount_percent = best_discount(tier.discount_percent, plan);
        let (asked, unusable) = self
            .asked_coupons(&mut *tx, brand, &buyer.member_id, &codes)
            .await;
        let means = Means {
            points_available: buyer.account.available,
            point_value_minor: ctx.programme.point_value_minor,
            wallet: buyer.balance(),
        };
        let terms: Vec<_> = asked.iter().map(|c| terms_of(&c.template)).collect();
        let offered: Vec<OfferedCoupon<'_>> = asked
            .iter()
            .zip(&terms)
            .map(|(c, t)| offered(&c.record, t))
            .collect();
        let basket = Basket {
            lines: &lines,
            shipping: input.shipping,
            tier_discount_percent: discount_percent,
            coupons: &offered,
            occasion: Occasion {
                store_code: store_code.as_deref(),
                channel: input.channel,
                tier_code: &tier.code,
                at: self.now(),
                shipping: input.shipping,
            },
        };
        let ask = Ask {
            points: input.points,
            wallet: input.wallet,
        };
        let mut priced = price(&basket, ask, means);
        for (code, message) in unusable {
            priced
                .refused_coupons
                .push(huiyuan_domain::commerce::checkout::RefusedCoupon {
                    code,
                    reason: Ineligible::NotStackable,
                    message,
                });
        }
        let (usable_coupons, unusable_coupons) = match &buyer.member {
            Some(m) => self.coupon_choices(&mut *tx, actor, m, &basket, means).await?,
            None => (Vec::new(), Vec::new()),
        };
        let purchase_lines = priced.purchase_lines();
        let earning = self
            .estimate_earning(
                &mut *tx,
                &ctx,
                (&buyer.member_id, buyer.birth_month()),
                &buyer.account,
                &SaleFacts {
                    lines: &purchase_lines,
                    paid_amount: priced.paid_amount(),
                    store_code: store_code.as_deref(),
                    channel: input.channel,
                },
            )
            .await?;
        Ok(Quote {
            member: QuoteMember {
                member_id: buyer.member.as_ref().map(|m| m.id.clone()),
                tier_code: tier.code.clone(),
                tier_name: tier.name.clone(),
                tier_discount_percent: tier.discount_percent,
                perks: tier
                    .perks
                    .iter()
                    .chain(plan.iter().flat_map(|p| p.perks.iter()))
                    .cloned()
                    .collect(),
                plan: plan.map(|p| p.code.clone()),
                discount_percent,
                points_available: buyer.account.available,
                points_pending: buyer.account.pending,
                wallet: buyer.wallet.as_ref().map(wallet_view),
            },
            points_value: buyer.account.available * ctx.programme.point_value_minor,
            priced,
            usable_coupons,
            unusable_coupons,
            points_to_earn: earning.points,
        })
    }

    /// Who a quote is for, with their points account and wallet. A phone that is not a member
    /// yet is quoted as a new member: a fresh account under an ID nobody has.
    async fn quote_buyer(&self, tx: &mut dyn Tx, actor: &Actor, input: &CheckoutInput) -> Result<QuoteBuyer> {
        let brand = &actor.brand_id;
        let member = match self.find_buyer(tx, actor, input).await? {
            Buyer::Member(m) => Some(m),
            Buyer::NewPhone => None,
        };
        let member_id = member
            .as_ref()
            .map_or_else(|| self.new_id(MemberId::generate), |m| m.id.clone());
        let (account, wallet) = match &member {
            Some(m) => (
                tx.get_account(brand, &m.id).await?,
                tx.get_wallet(brand, &m.id).await?,
            ),
            None => (None, None),
        };
        let account = account.unwrap_or_else(|| new_account(brand, &member_id, self.now()));
        Ok(QuoteBuyer {
            member,
            member_id,
            account,
            wallet,
        })
    }

    /// The coupons a quote asks for that exist and are the member's to use, and for each of
    /// the others its code and why not: those are reported, not applied.
    async fn asked_coupons(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        member_id: &MemberId,
        codes: &[String],
    ) -> (Vec<SaleCoupon>, Vec<(String, String)>) {
        let (mut asked, mut unusable) = (Vec::new(), Vec::new());
        for code in codes {
            match self.sale_coupon(tx, brand, member_id, code).await {
                Ok(c) => asked.push(c),
                Err(e) => unusable.push((code.clone(), e.to_string())),
            }
        }
        (asked, unusable)
    }

    /// Each of the member's issued coupons tried alone on the basket (without points or
    /// wallet): those it would discount, with the discount, and those it would not, with why.
    async fn coupon_choices(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        member: &MemberRecord,
        basket: &Basket<'_>,
        means: Means,
    ) -> Result<(Vec<CouponChoice>, Vec<CouponRefusal>)> {
        let brand = &actor.brand_id;
        let (mut usable, mut unusable) = (Vec::new(), Vec::new());
        let mine = tx
            .list_member_coupons(
                brand,
                &member.id,
                Some(CouponStatus::Issued),
                &huiyuan_store::Page::first(200),
            )
            .await?;
        for view in self.coupon_views(tx, actor, &mine).await? {
            let record = mine.iter().find(|c| c.id == view.id).cloned();
            let Some(record) = record else { continue };
            let template = tx
                .get_coupon_template(brand, &record.template_id)
                .await?
                .ok_or_else(|| CoreError::Corrupt("a coupon's template vanished".into()))?;
            let t = terms_of(&template_view(&template)?.definition);
            let one = [offered(&record, &t)];
            let alone = price(
                &Basket {
                    coupons: &one,
                    ..basket.clone()
                },
                Ask::default(),
                means,
            );
            match (alone.coupons.first(), alone.refused_coupons.first()) {
                (Some(applied), _) => usable.push(CouponChoice {
                    coupon: view,
                    discount: applied.discount,
                }),
                (None, Some(r)) => unusable.push(CouponRefusal {
                    coupon: view,
                    reason: r.reason.clone(),
                    message: r.message.clone(),
                }),
                (None, None) => {}
            }
        }
        Ok((usable, unusable))
    }

    /// Commits a sale: redeems the coupons, spends the points, pays from the wallet and records
    /// the purchase (earning points on the money paid), all in one transaction. The same order
    /// sent again returns the first sale; sent with a different basket, it is refused.
    ///
    /// The phases, each its own method: who is buying ([`Core::sale_buyer`]); in one write
    /// transaction, the basket priced as a quote would price it ([`Core::price_sale`]), then
    /// the coupons ([`Core::redeem_sale_coupons`]), the points and the wallet
    /// ([`Core::pay_sale`]), the purchase with its earning ([`Core::record_sale_purchase`]),
    /// and the sale itself with its benefit use and event ([`Core::save_sale`]). A test's fault
    /// hook runs between the phases.
    pub async fn commit_sale(&self, actor: &Actor, input: CheckoutInput) -> Result<(Sale, bool)> {
        actor.require(Permission::Checkout)?;
        let (lines, codes) = validate_checkout(&input, true)?;
        let order_id = input.order_id.clone().unwrap_or_default();
        let brand = &actor.brand_id;
        {
            let mut tx = self.storage.read().await?;
            if let Some(sale) = tx.get_sale(brand, &order_id).await? {
                return replay(&sale, &input, &lines, &codes).map(|s| (s, false));
            }
        }
        let (member_id, enrolled) = self.sale_buyer(actor, &input).await?;
        let mut tx = self.storage.write().await?;
        if let Some(sale) = tx.get_sale(brand, &order_id).await? {
            return replay(&sale, &input, &lines, &codes).map(|s| (s, false));
        }
        if tx.get_purchase(brand, &order_id).await?.is_some() {
            return Err(CoreError::conflict(
                ErrorCode::OrderIdReused,
                format!("order {order_id} was already recorded as a purchase; use a new order_id"),
            ));
        }
        let (sale, posting, wallet) = self
            .price_sale(&mut *tx, actor, &input, &lines, &codes, &member_id)
            .await?;
        commit_refusals(&sale.priced)?;
        self.fault("priced")?;
        let coupon_ids = self
            .redeem_sale_coupons(&mut *tx, brand, &order_id, &input, &sale)
            .await?;
        self.fault("coupons")?;
        let points_lots = self.pay_sale(&mut *tx, &order_id, &sale, posting, wallet).await?;
        let outcome = self
            .record_sale_purchase(&mut *tx, actor, &order_id, &input, &sale, enrolled)
            .await?;
        self.fault("purchase")?;
        let sale = self
            .save_sale(
                &mut *tx,
                brand,
                &order_id,
                &input,
                sale,
                SaleParts {
                    enrolled,
                    coupon_ids,
                    points_lots,
                    outcome,
                },
            )
            .await?;
        self.fault("before_commit")?;
        tx.commit().await?;
        Ok((sale, true))
    }

    /// Who is buying: by ID, by phone (enrolled now if unknown), or by a member code (used up,
    /// so only once it is known that this order is new). Returns the member and whether this
    /// sale enrolled them.
    async fn sale_buyer(&self, actor: &Actor, input: &CheckoutInput) -> Result<(MemberId, bool)> {
        Ok(match (&input.member_id, &input.phone, &input.member_code) {
            (Some(id), _, _) => (id.clone(), false),
            (None, Some(_), _) => {
                let mut tx = self.storage.read().await?;
                match self.find_buyer(&mut *tx, actor, input).await? {
                    Buyer::Member(m) => (m.id, false),
                    Buyer::NewPhone => {
                        drop(tx);
                        self.enrol_at_till(actor, input).await?
                    }
                }
            }
            (None, None, Some(code)) => (self.verify_code(actor, code).await?.member.id, false),
            (None, None, None) => {
                return Err(CoreError::Corrupt(
                    "a checkout without a member passed validation".into(),
                ))
            }
        })
    }

    /// The basket priced inside the sale's transaction, under the member's, points account's
    /// and wallet's locks: the member's tier or plan price, the coupons, and the points and
    /// wallet asked for against what the member holds now.
    async fn price_sale(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        input: &CheckoutInput,
        lines: &[PurchaseLine],
        codes: &[String],
        member_id: &MemberId,
    ) -> Result<(SaleInProgress, Posting<'_>, WalletPosting<'_>)> {
        let brand = &actor.brand_id;
        let member = self.active_member(&mut *tx, brand, member_id, true).await?;
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let store_code = self.store_code(&mut *tx, brand, input).await?;
        let mut posting = Posting::open(self, &mut *tx, brand, &member.id, &actor.label()).await?;
        if input.points > 0 {
            posting.expire_due(&mut *tx).await?;
        }
        let wallet = WalletPosting::open(self, &mut *tx, brand, &member.id, &actor.label()).await?;
        let tier = ctx.programme.tiers.levels[ctx.level_of(&posting.account)].clone();
        let terms = self
            .plan_terms(&mut *tx, &ctx, brand, std::slice::from_ref(&member.id))
            .await?;
        let plan = active_plan(&ctx.programme, &terms, &member.id, self.now()).cloned();
        let discount_percent = best_discount(tier.discount_percent, plan.as_ref());
        let mut coupons = Vec::with_capacity(codes.len());
        for code in codes {
            coupons.push(self.sale_coupon(&mut *tx, brand, &member.id, code).await?);
        }
        let terms: Vec<_> = coupons.iter().map(|c| terms_of(&c.template)).collect();
        let offered: Vec<OfferedCoupon<'_>> = coupons
            .iter()
            .zip(&terms)
            .map(|(c, t)| offered(&c.record, t))
            .collect();
        let now = self.now();
        let occasion = Occasion {
            store_code: store_code.as_deref(),
            channel: input.channel,
            tier_code: &tier.code,
            at: now,
            shipping: input.shipping,
        };
        let priced = price(
            &Basket {
                lines,
                shipping: input.shipping,
                tier_discount_percent: discount_percent,
                coupons: &offered,
                occasion,
            },
            Ask {
                points: input.points,
                wallet: input.wallet,
            },
            Means {
                points_available: posting.account.available,
                point_value_minor: ctx.programme.point_value_minor,
                wallet: wallet.balance(),
            },
        );
        let sale = SaleInProgress {
            member_id: member.id,
            ctx,
            tier,
            plan,
            coupons,
            priced,
            now,
        };
        Ok((sale, posting, wallet))
    }

    /// Phase 1, the coupons: each at most once, whatever else is going on. Returns their IDs.
    async fn redeem_sale_coupons(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        order_id: &str,
        input: &CheckoutInput,
        sale: &SaleInProgress,
    ) -> Result<Vec<String>> {
        let member_id = &sale.member_id;
        let mut coupon_ids = Vec::with_capacity(sale.coupons.len());
        for (c, applied) in sale.coupons.iter().zip(&sale.priced.coupons) {
            let mut used = c.record.clone();
            used.redeemed_at = Some(sale.now);
            used.redeemed_order_id = Some(order_id.to_owned());
            used.redeemed_store_id = input.store_id.as_ref().map(|s| s.to_string());
            used.redeemed_channel = Some(enum_str(input.channel));
            used.discount = Some(applied.discount);
            if !tx.redeem_coupon(&used).await? {
                let now = tx.get_coupon_by_code(brand, &used.code).await?.unwrap_or(used);
                return Err(not_usable(&now));
            }
            self.emit(
                &mut *tx,
                brand,
                "coupon.redeemed",
                member_id.as_str(),
                json!({ "coupon_id": c.record.id, "template_id": c.record.template_id, "member_id": member_id,
                        "order_id": order_id, "discount": applied.discount, "channel": used.redeemed_channel,
                        "store_id": used.redeemed_store_id }),
                None,
            )
            .await?;
            coupon_ids.push(c.record.id.clone());
        }
        Ok(coupon_ids)
    }

    /// Phases 2 and 3: the points, oldest first, then the wallet. Returns the lots the points
    /// came from (a refund gives them back to the same lots).
    async fn pay_sale(
        &self,
        tx: &mut dyn Tx,
        order_id: &str,
        sale: &SaleInProgress,
        mut posting: Posting<'_>,
        mut wallet: WalletPosting<'_>,
    ) -> Result<Vec<(String, i64)>> {
        let mut points_lots = Vec::new();
        if sale.priced.points.used > 0 {
            let taken = posting
                .spend(
                    &mut *tx,
                    EntryKind::Redeem,
                    sale.priced.points.used,
                    order_id,
                    Some(sale.ctx.version),
                    json!({ "order_id": order_id, "value": sale.priced.points.value }),
                )
                .await?;
            points_lots = taken.lots;
        }
        posting.save(&mut *tx).await?;
        self.fault("points")?;
        if sale.priced.wallet.used > 0 {
            wallet.append(
                WalletEntryKind::Pay,
                -sale.priced.wallet.from_principal,
                -sale.priced.wallet.from_bonus,
                order_id,
                json!({ "order_id": order_id, "amount": sale.priced.wallet.used }),
            )?;
        }
        wallet.save(&mut *tx).await?;
        self.fault("wallet")?;
        Ok(points_lots)
    }

    /// Phase 4, the purchase, earning on the money paid (the wallet included, points not).
    async fn record_sale_purchase(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        order_id: &str,
        input: &CheckoutInput,
        sale: &SaleInProgress,
        enrolled: bool,
    ) -> Result<PurchaseOutcome> {
        let purchase_lines = sale.priced.purchase_lines();
        let prepared = Prepared {
            input: PurchaseInput {
                order_id: order_id.to_owned(),
                member_id: Some(sale.member_id.clone()),
                phone: None,
                member_code: None,
                enrol_if_unknown: None,
                store_id: input.store_id.clone(),
                channel: input.channel,
                occurred_at: Some(sale.now),
                lines: purchase_lines
                    .iter()
                    .map(|l| LineInput {
                        sku: l.sku.clone(),
                        category: l.category.clone(),
                        quantity: l.quantity,
                        amount: l.amount,
                        reward: l.reward,
                    })
                    .collect(),
                paid_amount: sale.priced.paid_amount(),
            },
            lines: purchase_lines,
            member_id: sale.member_id.clone(),
            enrolled,
            actor: actor.label(),
        };
        let brand = &actor.brand_id;
        self.record_batch(&mut *tx, &sale.ctx, brand, std::slice::from_ref(&prepared))
            .await?
            .pop()
            .ok_or_else(|| CoreError::Corrupt("no outcome for the sale's purchase".into()))?
    }

    /// Phase 5, the sale, so that a refund can reverse exactly this; with the member price's
    /// benefit use and the `sale.committed` event.
    async fn save_sale(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        order_id: &str,
        input: &CheckoutInput,
        done: SaleInProgress,
        parts: SaleParts,
    ) -> Result<Sale> {
        let SaleInProgress {
            member_id,
            tier,
            plan,
            priced,
            now,
            ..
        } = done;
        let SaleParts {
            enrolled,
            coupon_ids,
            points_lots,
            outcome,
        } = parts;
        let sale = Sale {
            order_id: order_id.to_owned(),
            member_id: member_id.clone(),
            member_enrolled: enrolled,
            coupon_ids: coupon_ids.clone(),
            points_spent: priced.points.used,
            wallet_principal: priced.wallet.from_principal,
            wallet_bonus: priced.wallet.from_bonus,
            money: priced.money_due,
            purchase: outcome.purchase,
            tier_change: outcome.tier_change,
            priced,
            status: SaleStatus::Completed,
            created_at: now,
        };
        let record = SaleRecord {
            brand_id: brand.clone(),
            order_id: order_id.to_owned(),
            member_id: member_id.clone(),
            store_id: input.store_id.as_ref().map(|s| s.to_string()),
            channel: enum_str(input.channel),
            priced: to_json(&sale.priced)?,
            coupons: to_json(&coupon_ids)?,
            points_used: sale.points_spent,
            points_lots: to_json(&points_lots)?,
            wallet_principal: sale.wallet_principal,
            wallet_bonus: sale.wallet_bonus,
            money: sale.money,
            status: SaleStatus::Completed,
            outcome: to_json(&sale)?,
            refund_outcome: None,
            created_at: now,
            refunded_at: None,
        };
        if !tx.insert_sale(&record).await? {
            return Err(CoreError::conflict(
                ErrorCode::OrderIdRace,
                "this order was committed at the same moment by another request; send it again",
            ));
        }
        if sale.priced.tier_discount > 0 {
            // The member price came from the plan when its discount beat the tier's.
            let by_plan = plan
                .as_ref()
                .is_some_and(|p| p.discount_percent > tier.discount_percent);
            let benefit = if by_plan { PLAN_DISCOUNT } else { TIER_DISCOUNT };
            let standing = Standing {
                tier: &tier,
                plan: plan.as_ref(),
            };
            self.record_benefit_use(
                &mut *tx,
                brand,
                &member_id,
                (benefit, ""),
                &standing,
                record.store_id.as_deref(),
                order_id,
            )
            .await?;
        }
        self.emit(
            &mut *tx,
            brand,
            "sale.committed",
            member_id.as_str(),
            json!({ "order_id": order_id, "member_id": member_id, "total": sale.priced.total,
                    "money": sale.money, "points_spent": sale.points_spent,
                    "wallet": sale.wallet_principal + sale.wallet_bonus, "coupons": coupon_ids }),
            None,
        )
        .await?;
        Ok(sale)
    }

    /// A committed sale, by order ID.
    pub async fn get_sale(&self, actor: &Actor, order_id: &str) -> Result<Sale> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let record = tx
            .get_sale(&actor.brand_id, order_id)
            .await?
            .ok_or(CoreError::NotFound("sale"))?;
        let mut sale: Sale =
            serde_json::from_str(&record.outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        sale.status = record.status;
        Ok(sale)
    }

    /// Refunds a whole till sale: the points it earned reversed, the points and wallet money
    /// it spent given back, its coupons usable again (or expired, when their time is up), in
    /// one transaction. The same refund sent again returns the first outcome.
    pub async fn refund_sale(
        &self,
        actor: &Actor,
        order_id: &str,
        input: SaleRefundInput,
    ) -> Result<(SaleRefund, bool)> {
        actor.require(Permission::PurchasesRefund)?;
        validate_reference("refund_id", &input.refund_id)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let mut sale = tx
            .get_sale(brand, order_id)
            .await?
            .ok_or(CoreError::NotFound("sale"))?;
        if let Some(done) = &sale.refund_outcome {
            let outcome: SaleRefund =
                serde_json::from_str(done).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            if outcome.refund_id == input.refund_id {
                return Ok((outcome, false));
            }
            return Err(CoreError::conflict(
                ErrorCode::AlreadyRefunded,
                format!(
                    "order {order_id} was already refunded (refund {})",
                    outcome.refund_id
                ),
            ));
        }
        let ctx = self.loyalty_context(&mut *tx, brand).await?;
        let mut posting = Posting::open(self, &mut *tx, brand, &sale.member_id, &actor.label()).await?;
        let mut wallet = WalletPosting::open(self, &mut *tx, brand, &sale.member_id, &actor.label()).await?;
        // 1. The points the sale earned.
        let (points, _) = self
            .refund_in(
                &mut *tx,
                &ctx,
                actor,
                order_id,
                &RefundInput {
                    refund_id: input.refund_id.clone(),
                    amount: None,
                    lines: None,
                    reason: input.reason.clone(),
                },
                &mut posting,
            )
            .await?;
        // 2. The points it spent, back to the lots they came from.
        let lots: Vec<(String, i64)> =
            serde_json::from_str(&sale.points_lots).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let debt_repaid = posting
            .restore(
                &mut *tx,
                &lots,
                order_id,
                Some(ctx.version),
                json!({ "refund_id": input.refund_id, "order_id": order_id }),
            )
            .await?;
        posting.save(&mut *tx).await?;
        // 3. The wallet money, to principal and bonus as it was taken.
        if sale.wallet_principal + sale.wallet_bonus > 0 {
            wallet.append(
                WalletEntryKind::PayRefund,
                sale.wallet_principal,
                sale.wallet_bonus,
                &format!("refund:{}", input.refund_id),
                json!({ "order_id": order_id, "refund_id": input.refund_id }),
            )?;
        }
        wallet.save(&mut *tx).await?;
        // 4. The coupons: usable again while they are valid.
        let ids: Vec<String> =
            serde_json::from_str(&sale.coupons).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let now = self.now();
        let (mut restored, mut expired) = (Vec::new(), Vec::new());
        for mut c in tx.get_coupons(brand, &ids).await? {
            let valid = c.valid_until > now;
            c.status = if valid {
                CouponStatus::Issued
            } else {
                CouponStatus::Expired
            };
            c.redeemed_at = None;
            c.redeemed_order_id = None;
            c.redeemed_store_id = None;
            c.redeemed_channel = None;
            c.discount = None;
            tx.update_coupon_status(&c).await?;
            let event = if valid {
                "coupon.restored"
            } else {
                "coupon.expired"
            };
            self.emit(
                &mut *tx,
                brand,
                event,
                c.member_id.as_str(),
                json!({ "coupon_id": c.id, "template_id": c.template_id, "member_id": c.member_id, "order_id": order_id }),
                None,
            )
            .await?;
            if valid {
                restored.push(c.id);
            } else {
                expired.push(c.id);
            }
        }
        let outcome = SaleRefund {
            refund_id: input.refund_id.clone(),
            order_id: order_id.to_owned(),
            member_id: sale.member_id.clone(),
            coupons_restored: restored,
            coupons_expired: expired,
            points_restored: sale.points_used,
            debt_repaid,
            wallet_principal_restored: sale.wallet_principal,
            wallet_bonus_restored: sale.wallet_bonus,
            money_returned: sale.money,
            points,
            created_at: now,
        };
        sale.status = SaleStatus::Refunded;
        sale.refunded_at = Some(now);
        sale.refund_outcome = Some(to_json(&outcome)?);
        tx.update_sale(&sale).await?;
        self.announce(
            &mut *tx,
            actor,
            "sale.refunded",
            sale.member_id.as_str(),
            ("sale", order_id),
            json!(outcome),
            json!({ "refund_id": input.refund_id, "reason": input.reason }),
        )
        .await?;
        tx.commit().await?;
        Ok((outcome, true))
    }

    /// The buyer of a quote or a commit, by ID or phone (a member code is the commit's).
    async fn find_buyer(&self, tx: &mut dyn Tx, actor: &Actor, input: &CheckoutInput) -> Result<Buyer> {
        let brand = &actor.brand_id;
        match (&input.member_id, &input.phone) {
            (Some(id), _) => Ok(Buyer::Member(Box::new(
                self.active_member(tx, brand, id, false).await?,
            ))),
            (None, Some(phone)) => {
                let identity = Identity::Phone(Phone::parse(phone)?);
                match tx
                    .find_identity(brand, &identity.kind(), &self.identity_hash(brand, &identity))
                    .await?
                {
                    Some(id) => Ok(Buyer::Member(Box::new(
                        self.active_member(tx, brand, &id, false).await?,
                    ))),
                    None => Ok(Buyer::NewPhone),
                }
            }
            // A member code: the commit resolves it (and uses it up); a quote refuses it.
            (None, None) => Err(CoreError::Corrupt("a buyer without ID or phone".into())),
        }
    }

    /// "Pay and you are a member": an unknown phone at the till is enrolled.
    async fn enrol_at_till(&self, actor: &Actor, input: &CheckoutInput) -> Result<(MemberId, bool)> {
        self.enrol_buyer(
            actor,
            &PurchaseInput {
                order_id: input.order_id.clone().unwrap_or_default(),
                member_id: None,
                phone: input.phone.clone(),
                member_code: None,
                enrol_if_unknown: Some(true),
                store_id: input.store_id.clone(),
                channel: input.channel,
                occurred_at: None,
                lines: Vec::new(),
                paid_amount: 0,
            },
        )
        .await
    }

    async fn store_code(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        input: &CheckoutInput,
    ) -> Result<Option<String>> {
        match &input.store_id {
            None => Ok(None),
            Some(id) => Ok(Some(
                tx.get_store(brand, id)
                    .await?
                    .ok_or_else(|| {
                        huiyuan_domain::ValidationError::field("store_id", "no such store in this brand")
                    })?
                    .code,
            )),
        }
    }

    /// A coupon the member wants to use: theirs, issued (not used, expired or void).
    async fn sale_coupon(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        member: &MemberId,
        code: &str,
    ) -> Result<SaleCoupon> {
        let record = tx
            .get_coupon_by_code(brand, code)
            .await?
            .ok_or_else(|| CoreError::Conflict {
                code: ErrorCode::CouponUnknown,
                message: format!("coupon {code} does not exist in this brand"),
                errors: vec![huiyuan_domain::FieldError {
                    field: "coupons".into(),
                    reason: format!("{code} does not exist"),
                }],
            })?;
        if record.member_id != *member {
            return Err(CoreError::conflict(
                ErrorCode::CouponNotYours,
                format!("coupon {code} belongs to another member"),
            ));
        }
        if record.status != CouponStatus::Issued {
            return Err(not_usable(&record));
        }
        let template = tx
            .get_coupon_template(brand, &record.template_id)
            .await?
            .ok_or_else(|| CoreError::Corrupt("a coupon's template vanished".into()))?;
        Ok(SaleCoupon {
            record,
            template: template_view(&template)?.definition,
        })
    }
}

/// The first sale of an order sent again: the same basket returns it; another is refused.
fn replay(
    record: &SaleRecord,
    input: &CheckoutInput,
    lines: &[huiyuan_domain::loyalty::purchase::PurchaseLine],
    codes: &[String],
) -> Result<Sale> {
    let mut sale: Sale =
        serde_json::from_str(&record.outcome).map_err(|e| CoreError::Corrupt(e.to_string()))?;
    sale.status = record.status;
    let same_member = input.member_id.as_ref().is_none_or(|m| *m == sale.member_id);
    let same_lines = sale.priced.lines.len() == lines.len()
        && sale
            .priced
            .lines
            .iter()
            .zip(lines)
            .all(|(a, b)| a.sku == b.sku && a.quantity == b.quantity && a.list_amount == b.amount);
    let mut used: Vec<&str> = sale.priced.coupons.iter().map(|c| c.code.as_str()).collect();
    used.sort_unstable();
    let mut asked: Vec<&str> = codes.iter().map(String::as_str).collect();
    asked.sort_unstable();
    let same_tender =
        sale.priced.points.requested == input.points && sale.priced.wallet.requested == input.wallet;
    if same_member && same_lines && used == asked && same_tender {
        Ok(sale)
    } else {
        Err(CoreError::conflict(
            ErrorCode::OrderIdReused,
            format!(
                "order {} was already committed with another member, basket or tender; use a new order_id",
                record.order_id
            ),
        ))
    }
}

/// The member's price: the better of the tier's discount and a paid plan's.
fn best_discount(tier: Decimal, plan: Option<&huiyuan_domain::commerce::plans::Plan>) -> Decimal {
    plan.map_or(tier, |p| p.discount_percent.max(tier))
}

/// JSON of what is stored with a sale.
fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| CoreError::Corrupt(e.to_string()))
}
