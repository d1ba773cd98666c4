//! Per-member insights — RFM segment, lifecycle stage, churn probability and lifetime value — and
//! "you may also like" lists, read from a model of the whole brand.
//!
//! A member's RFM scores are quintiles of the whole brand and their churn probability comes from
//! a model fitted on everyone, so answering for one member means modelling all of them. The model
//! is built on first use and kept per brand for [`crate::CoreConfig::analytics_ttl`]; one build
//! runs at a time and callers in the meantime wait for it rather than building their own. The
//! brand-wide lifecycle and lifetime-value reports are computed afresh for the date asked.
//! Recommendations exclude what the member bought up to this moment (read fresh), not only what
//! the model saw.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use huiyuan_analytics::clv::{lifetimes, outlook, MemberLifetime};
use huiyuan_analytics::lifecycle::{lifecycle, LifecycleRules, Stage};
use huiyuan_analytics::recommend::{Reason, Recommender, RecommenderConfig};
use huiyuan_analytics::rfm::{rfm, MemberRfm, Segment};
use huiyuan_analytics::summary::{summarise, Period};
use huiyuan_analytics::{bgnbd::BgNbd, gamma_gamma::GammaGamma};
use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::loyalty::purchase::{PurchaseLine, PurchaseStatus};
use huiyuan_store::records::{Page, PurchaseFilter};
use huiyuan_store::Tx;
use serde::Serialize;
use time::{Date, OffsetDateTime};

use super::{enrolments, BrandTransactions, ByMember, PAGE};
use crate::loyalty::calendar::BrandCalendar;
use crate::members::enum_str;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// Lifetime value is projected this many months ahead, at this monthly discount rate.
pub const HORIZON_MONTHS: u32 = 12;
pub const DISCOUNT_RATE: f64 = 0.01;
/// The newest purchases of a member that recommendations treat as their history.
const HISTORY_PURCHASES: u32 = 1_000;

/// The brand models, kept for a while.
#[derive(Default)]
pub(crate) struct InsightsCache {
    brands: Mutex<HashMap<BrandId, Arc<BrandModel>>>,
    building: tokio::sync::Mutex<()>,
}

/// The SKUs the brand sold, as the recommender's dense item indices.
#[derive(Default)]
struct Catalogue {
    sku: Vec<String>,
    category: Vec<Option<String>>,
    index: HashMap<String, u32>,
}

impl Catalogue {
    fn item(&mut self, sku: &str, category: Option<&str>) -> u32 {
        if let Some(&i) = self.index.get(sku) {
            return i;
        }
        let i = self.sku.len() as u32;
        self.sku.push(sku.to_owned());
        self.category.push(category.map(str::to_owned));
        self.index.insert(sku.to_owned(), i);
        i
    }
}

/// What a purchase's lines say the member actually kept: lines that are not rewards and not
/// wholly refunded.
fn kept_skus(lines: &str) -> Result<Vec<PurchaseLine>> {
    let lines: Vec<PurchaseLine> =
        serde_json::from_str(lines).map_err(|e| CoreError::Corrupt(format!("purchase lines: {e}")))?;
    Ok(lines
        .into_iter()
        .filter(|l| !l.reward && l.refunded_quantity < l.quantity)
        .collect())
}

/// The models of one brand as of one date.
struct Modelled {
    /// By member index of the [`BrandTransactions`] the models were run on.
    rfm: Vec<Option<MemberRfm>>,
    stage: Vec<Option<Stage>>,
    lifetime: Vec<Option<MemberLifetime>>,
    /// The fitted lifetime models, or why they could not be fitted.
    fitted: std::result::Result<(BgNbd, GammaGamma), String>,
}

/// RFM, the lifetime models and lifecycle stages over every member (`enrolled` by index).
fn model(
    data: &BrandTransactions,
    enrolled: &[Date],
    as_of: Date,
    rules: &LifecycleRules,
) -> Result<Modelled> {
    let n = data.ids.len();
    let columns = data.columns();
    let mut by_member = vec![None; n];
    for m in rfm(&columns, as_of)?.members {
        let i = m.member as usize;
        by_member[i] = Some(m);
    }
    let outlook = outlook(&columns, as_of, HORIZON_MONTHS, DISCOUNT_RATE)?;
    let mut lifetime = outlook.by_member.clone();
    lifetime.resize(n, None);
    let mut p_alive = outlook.p_alive();
    p_alive.resize(n, None);
    let enrolled: Vec<Option<Date>> = enrolled.iter().map(|&d| Some(d)).collect();
    let stage = lifecycle(&columns, Some(&enrolled), Some(&p_alive), as_of, rules)?;
    Ok(Modelled {
        rfm: by_member,
        stage,
        lifetime,
        fitted: outlook.fitted.map(|f| (f.bgnbd, f.gamma_gamma)),
    })
}

/// One brand's model: every member's insights and the recommender.
struct BrandModel {
    built_at: OffsetDateTime,
    as_of: Date,
    index: HashMap<MemberId, usize>,
    modelled: Modelled,
    recommender: Recommender,
    catalogue: Catalogue,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberRfmView {
    pub recency_days: i64,
    pub frequency: u64,
    /// Minor units.
    pub monetary: i64,
    pub r: u8,
    pub f: u8,
    pub m: u8,
    /// As in `GET /v1/analytics/rfm`.
    pub segment: String,
    pub name_zh: String,
    pub name_en: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberLifetimeView {
    /// Probability that the member is still a customer (BG/NBD).
    pub p_alive: f64,
    /// Over the next `horizon_months`.
    pub expected_purchases: f64,
    /// Per purchase, minor units (Gamma-Gamma).
    pub expected_spend: i64,
    /// Discounted lifetime value over the horizon, minor units.
    pub clv: i64,
    pub horizon_months: u32,
}

/// What the models say about one member, as of the model's date.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberInsightsView {
    pub member_id: MemberId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub as_of: String,
    /// When the brand's model was built; it is rebuilt after a few minutes.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub computed_at: OffsetDateTime,
    /// Absent for a member without a purchase.
    pub rfm: Option<MemberRfmView>,
    /// `new`, `active`, `at_risk`, `dormant` or `churned`; absent before they joined.
    pub lifecycle_stage: Option<String>,
    pub lifetime: Option<MemberLifetimeView>,
    /// Why `lifetime` is absent: e.g. the brand's data cannot fit the models yet.
    pub lifetime_unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecommendationView {
    pub sku: String,
    pub category: Option<String>,
    /// 0 to 1; 0 for popular filler.
    pub score: f64,
    /// `bought_together` (with `because_sku`), `popular_in_category` or `popular`.
    pub reason: String,
    pub because_sku: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecommendationsView {
    pub member_id: MemberId,
    /// When the brand's model was built; the member's own purchases are read fresh.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub computed_at: OffsetDateTime,
    pub items: Vec<RecommendationView>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageCountView {
    pub stage: String,
    pub name_zh: String,
    pub name_en: String,
    pub members: u64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LifecycleView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub as_of: String,
    /// Members enrolled by the date.
    pub members: u64,
    /// new, active, at_risk, dormant, churned: all five, in that order.
    pub stages: Vec<StageCountView>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub rules: LifecycleRules,
    /// The churn model behind `churned`; absent when it cannot be fitted yet (then nobody is
    /// churned and the reason is in `churn_model_unavailable`).
    pub churn_model: Option<BgNbd>,
    pub churn_model_unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClvView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub as_of: String,
    /// Model periods: weeks, Monday to Sunday.
    pub period: String,
    pub horizon_months: u32,
    pub discount_rate: f64,
    /// Members with a purchase by the date.
    pub customers: u64,
    pub bgnbd: BgNbd,
    pub gamma_gamma: GammaGamma,
    pub mean_p_alive: f64,
    /// Sum over customers, over the horizon.
    pub expected_purchases: f64,
    /// Sum over customers, minor units.
    pub total_clv: i64,
}

fn stage_names(s: Stage) -> (&'static str, &'static str) {
    match s {
        Stage::New => ("新會員", "New"),
        Stage::Active => ("活躍", "Active"),
        Stage::AtRisk => ("流失預警", "At risk"),
        Stage::Dormant => ("沉睡", "Dormant"),
        Stage::Churned => ("已流失", "Churned"),
    }
}

/// The member's entry of a per-member column, if they have one.
fn pick<T: Clone>(column: &[Option<T>], at: Option<usize>) -> Option<T> {
    at.and_then(|i| column.get(i).cloned().flatten())
}

/// Minor units from a model's real number, rounded.
fn minor(x: f64) -> i64 {
    x.round() as i64
}

impl Core {
    /// Everything the models need, read in one snapshot: purchases and when every member
    /// joined, in local dates of `calendar`.
    async fn brand_data(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        calendar: &BrandCalendar,
    ) -> Result<(BrandTransactions, Vec<Date>)> {
        let mut data = BrandTransactions::read(tx, brand, calendar, &PurchaseFilter::default(), PAGE).await?;
        let joined = enrolments(tx, brand).await?;
        let enrolled = data.with_everyone(&joined, calendar);
        Ok((data, enrolled))
    }

    /// The brand's model, built now if there is none or it is older than the configured time.
    async fn brand_model(&self, brand: &BrandId) -> Result<Arc<BrandModel>> {
        let fresh = |m: &Arc<BrandModel>| self.now() - m.built_at < self.config.analytics_ttl;
        let cached = |cache: &InsightsCache| {
            cache
                .brands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(brand)
                .filter(|m| fresh(m))
                .cloned()
        };
        if let Some(m) = cached(&self.insights) {
            return Ok(m);
        }
        let _one_build = self.insights.building.lock().await;
        if let Some(m) = cached(&self.insights) {
            return Ok(m);
        }
        self.build_and_cache(brand).await
    }

    /// Builds the brand's model and keeps it; the caller holds `insights.building`.
    async fn build_and_cache(&self, brand: &BrandId) -> Result<Arc<BrandModel>> {
        let built = Arc::new(self.build_model(brand).await?);
        self.insights
            .brands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(brand.clone(), built.clone());
        Ok(built)
    }

    /// Builds the models of brands that have none yet (`all_brands`) or whose model is past half
    /// its lifetime, so that pages reading insights find a fresh one instead of building it
    /// while the operator waits. Run by the server in the background.
    pub async fn refresh_insights(&self, all_brands: bool) -> Result<usize> {
        let half = self.config.analytics_ttl / 2;
        let brands: Vec<BrandId> = if all_brands {
            let mut tx = self.storage.read().await?;
            tx.list_brands().await?.into_iter().map(|b| b.id).collect()
        } else {
            self.insights
                .brands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect()
        };
        let mut built = 0;
        for brand in brands {
            let due = self
                .insights
                .brands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&brand)
                .is_none_or(|m| self.now() - m.built_at >= half);
            if !due {
                continue;
            }
            let _one_build = self.insights.building.lock().await;
            self.build_and_cache(&brand).await?;
            built += 1;
        }
        Ok(built)
    }

    async fn build_model(&self, brand: &BrandId) -> Result<BrandModel> {
        let mut tx = self.storage.read().await?;
        let record = tx.get_brand(brand).await?.ok_or(CoreError::NotFound("brand"))?;
        let calendar = BrandCalendar::new(&record.timezone)?;
        let (data, enrolled) = self.brand_data(&mut *tx, brand, &calendar).await?;
        let index: HashMap<MemberId, usize> = data
            .ids
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        let mut catalogue = Catalogue::default();
        let (mut member, mut item) = (Vec::new(), Vec::new());
        let mut pages = ByMember::new(PAGE);
        while !pages.done {
            let page = tx
                .purchase_baskets(brand, pages.after.as_ref(), pages.limit)
                .await?;
            for b in pages
                .whole(&page, |b| &b.member_id)
                .iter()
                .filter(|b| !b.refunded)
            {
                let Some(&m) = index.get(&b.member_id) else {
                    continue;
                };
                for l in kept_skus(&b.lines)? {
                    member.push(m as u32);
                    item.push(catalogue.item(&l.sku, l.category.as_deref()));
                }
            }
        }
        drop(tx);
        let built_at = self.now();
        let as_of = calendar.date_of(built_at);
        // Categories as dense indices for the recommender.
        let mut names: HashMap<&str, u32> = HashMap::new();
        let category: Vec<Option<u32>> = catalogue
            .category
            .iter()
            .map(|c| {
                c.as_deref().map(|c| {
                    let next = names.len() as u32;
                    *names.entry(c).or_insert(next)
                })
            })
            .collect();
        let recommender = Recommender::fit(&member, &item, &category, RecommenderConfig::default())?;
        let modelled = model(&data, &enrolled, as_of, &LifecycleRules::default())?;
        Ok(BrandModel {
            built_at,
            as_of,
            index,
            modelled,
            recommender,
            catalogue,
        })
    }

    /// The members of the brand's model whose RFM segment is among `segments` and whose
    /// lifecycle stage is among `stages` (`None` asks nothing of that part), and the model's
    /// date. Members who joined after the model was built are in no segment until it is rebuilt.
    pub(crate) async fn modelled_members(
        &self,
        brand: &BrandId,
        segments: Option<&[Segment]>,
        stages: Option<&[Stage]>,
    ) -> Result<(Date, HashSet<MemberId>)> {
        let model = self.brand_model(brand).await?;
        let modelled = &model.modelled;
        let chosen = model
            .index
            .iter()
            .filter(|(_, &i)| {
                segments.is_none_or(|s| pick(&modelled.rfm, Some(i)).is_some_and(|r| s.contains(&r.segment)))
                    && stages.is_none_or(|s| pick(&modelled.stage, Some(i)).is_some_and(|st| s.contains(&st)))
            })
            .map(|(m, _)| m.clone())
            .collect();
        Ok((model.as_of, chosen))
    }

    /// Every modelled member's insights as a table, by member ID (the export of `insights`).
    pub(crate) async fn insights_table(&self, brand: &BrandId) -> Result<crate::files::table::Table> {
        use crate::files::table::{Column, Table, Values};
        let model = self.brand_model(brand).await?;
        let mut members: Vec<(&MemberId, usize)> = model.index.iter().map(|(m, &i)| (m, i)).collect();
        members.sort_unstable();
        let modelled = &model.modelled;
        let rfm: Vec<Option<MemberRfm>> = members
            .iter()
            .map(|&(_, i)| pick(&modelled.rfm, Some(i)))
            .collect();
        let life: Vec<Option<MemberLifetime>> = members
            .iter()
            .map(|&(_, i)| pick(&modelled.lifetime, Some(i)))
            .collect();
        let col = |name, values| Column { name, values };
        let r_int = |f: fn(&MemberRfm) -> i64| rfm.iter().map(|r| r.as_ref().map(f)).collect();
        let real = |f: fn(&MemberLifetime) -> f64| life.iter().map(|l| l.as_ref().map(f)).collect();
        let as_of = model.as_of.to_string();
        Ok(Table {
            columns: vec![
                col(
                    "member_id",
                    Values::Text(members.iter().map(|(m, _)| Some(m.to_string())).collect()),
                ),
                col(
                    "as_of",
                    Values::Text(members.iter().map(|_| Some(as_of.clone())).collect()),
                ),
                col("recency_days", Values::Int(r_int(|r| r.recency_days))),
                col("frequency", Values::Int(r_int(|r| r.frequency as i64))),
                col("monetary", Values::Money(r_int(|r| r.monetary))),
                col("r", Values::Int(r_int(|r| i64::from(r.r)))),
                col("f", Values::Int(r_int(|r| i64::from(r.f)))),
                col("m", Values::Int(r_int(|r| i64::from(r.m)))),
                col(
                    "rfm_segment",
                    Values::Text(
                        rfm.iter()
                            .map(|r| r.as_ref().map(|r| enum_str(r.segment)))
                            .collect(),
                    ),
                ),
                col(
                    "lifecycle_stage",
                    Values::Text(
                        members
                            .iter()
                            .map(|&(_, i)| pick(&modelled.stage, Some(i)).map(enum_str))
                            .collect(),
                    ),
                ),
                col("p_alive", Values::Real(real(|l| l.p_alive))),
                col("expected_purchases", Values::Real(real(|l| l.expected_purchases))),
                col(
                    "expected_spend",
                    Values::Money(
                        life.iter()
                            .map(|l| l.as_ref().map(|l| minor(l.expected_spend)))
                            .collect(),
                    ),
                ),
                col(
                    "clv",
                    Values::Money(life.iter().map(|l| l.as_ref().map(|l| minor(l.clv))).collect()),
                ),
            ],
        })
    }

    /// RFM segment, lifecycle stage, churn probability and lifetime value of one member.
    pub async fn member_insights(&self, actor: &Actor, member: &MemberId) -> Result<MemberInsightsView> {
        actor.require(Permission::AnalyticsRead)?;
        let m = {
            let mut tx = self.storage.read().await?;
            self.active_member(&mut *tx, &actor.brand_id, member, false)
                .await?
        };
        let model = self.brand_model(&actor.brand_id).await?;
        let at = model.index.get(&m.id).copied();
        let rfm: Option<MemberRfm> = pick(&model.modelled.rfm, at);
        let stage: Option<Stage> = pick(&model.modelled.stage, at);
        let lifetime: Option<MemberLifetime> = pick(&model.modelled.lifetime, at);
        let lifetime_unavailable = match (&model.modelled.fitted, &lifetime) {
            (Err(reason), _) => Some(reason.clone()),
            (Ok(_), None) => Some("the member has no purchase in the model yet".into()),
            (Ok(_), Some(_)) => None,
        };
        Ok(MemberInsightsView {
            member_id: m.id,
            as_of: model.as_of.to_string(),
            computed_at: model.built_at,
            rfm: rfm.map(|r| MemberRfmView {
                recency_days: r.recency_days,
                frequency: r.frequency,
                monetary: r.monetary,
                r: r.r,
                f: r.f,
                m: r.m,
                segment: enum_str(r.segment),
                name_zh: r.segment.name_zh().into(),
                name_en: r.segment.name_en().into(),
            }),
            lifecycle_stage: stage.map(enum_str),
            lifetime: lifetime.map(|l| MemberLifetimeView {
                p_alive: l.p_alive,
                expected_purchases: l.expected_purchases,
                expected_spend: minor(l.expected_spend),
                clv: minor(l.clv),
                horizon_months: HORIZON_MONTHS,
            }),
            lifetime_unavailable,
        })
    }

    /// "You may also like": up to `limit` SKUs the member has not bought, best first.
    pub async fn recommendations(
        &self,
        actor: &Actor,
        member: &MemberId,
        limit: usize,
    ) -> Result<RecommendationsView> {
        actor.require(Permission::MembersRead)?;
        let (m, bought) = {
            let mut tx = self.storage.read().await?;
            let m = self
                .active_member(&mut *tx, &actor.brand_id, member, false)
                .await?;
            let bought = tx
                .list_purchases(&actor.brand_id, &m.id, &Page::first(HISTORY_PURCHASES))
                .await?;
            (m, bought)
        };
        let model = self.brand_model(&actor.brand_id).await?;
        let mut history = Vec::new();
        for p in bought.iter().filter(|p| p.status != PurchaseStatus::Refunded) {
            for l in kept_skus(&p.lines)? {
                if let Some(&i) = model.catalogue.index.get(&l.sku) {
                    history.push(i);
                }
            }
        }
        let sku = |i: u32| model.catalogue.sku[i as usize].clone();
        let items = model
            .recommender
            .recommend(&history, limit)
            .into_iter()
            .map(|r| {
                let (reason, because) = match r.reason {
                    Reason::BoughtTogether { because } => ("bought_together", Some(sku(because))),
                    Reason::PopularInCategory => ("popular_in_category", None),
                    Reason::Popular => ("popular", None),
                };
                RecommendationView {
                    sku: sku(r.item),
                    category: model.catalogue.category[r.item as usize].clone(),
                    score: r.score,
                    reason: reason.into(),
                    because_sku: because,
                }
            })
            .collect();
        Ok(RecommendationsView {
            member_id: m.id,
            computed_at: model.built_at,
            items,
        })
    }

    /// How many members are in each lifecycle stage as of a local date (default: today).
    pub async fn lifecycle_report(&self, actor: &Actor, as_of: Option<Date>) -> Result<LifecycleView> {
        let mut tx = self.storage.read().await?;
        let (_, calendar, today) = self.analytics_calendar(actor, &mut *tx).await?;
        let (data, enrolled) = self.brand_data(&mut *tx, &actor.brand_id, &calendar).await?;
        drop(tx);
        let as_of = as_of.unwrap_or(today);
        let rules = LifecycleRules::default();
        let modelled = model(&data, &enrolled, as_of, &rules)?;
        let stages = [
            Stage::New,
            Stage::Active,
            Stage::AtRisk,
            Stage::Dormant,
            Stage::Churned,
        ]
        .into_iter()
        .map(|s| {
            let (zh, en) = stage_names(s);
            StageCountView {
                stage: enum_str(s),
                name_zh: zh.into(),
                name_en: en.into(),
                members: modelled.stage.iter().filter(|x| **x == Some(s)).count() as u64,
            }
        })
        .collect();
        let (churn_model, churn_model_unavailable) = match modelled.fitted {
            Ok((bg, _)) => (Some(bg), None),
            Err(reason) => (None, Some(reason)),
        };
        Ok(LifecycleView {
            as_of: as_of.to_string(),
            members: modelled.stage.iter().filter(|s| s.is_some()).count() as u64,
            stages,
            rules,
            churn_model,
            churn_model_unavailable,
        })
    }

    /// The brand's lifetime-value models fitted on purchases up to a local date (default:
    /// today), and what they project over the next twelve months.
    pub async fn clv_report(&self, actor: &Actor, as_of: Option<Date>) -> Result<ClvView> {
        let (data, as_of) = self.analytics_input(actor, as_of).await?;
        let summary = summarise(&data.columns(), Period::Week, as_of)?;
        if summary.is_empty() {
            return Err(CoreError::conflict(
                ErrorCode::AnalyticsUnavailable,
                "no purchases on or before the date: nothing to fit",
            ));
        }
        let fitted = lifetimes(&summary, Period::Week, HORIZON_MONTHS, DISCOUNT_RATE)?;
        let n = fitted.members.len() as f64;
        Ok(ClvView {
            as_of: as_of.to_string(),
            period: "week".into(),
            horizon_months: HORIZON_MONTHS,
            discount_rate: DISCOUNT_RATE,
            customers: fitted.members.len() as u64,
            bgnbd: fitted.bgnbd,
            gamma_gamma: fitted.gamma_gamma,
            mean_p_alive: fitted.members.iter().map(|m| m.p_alive).sum::<f64>() / n,
            expected_purchases: fitted.members.iter().map(|m| m.expected_purchases).sum(),
            total_clv: minor(fitted.members.iter().map(|m| m.clv).sum()),
        })
    }
}
