//! Analytics over a brand's data: the store's paged readers feed the pure models of
//! `huiyuan-analytics`; dates are the brand's local dates. Brand-wide reports are computed on
//! request over one read snapshot; per-member insights and recommendations come from a model of
//! the brand kept for a few minutes ([`insights`]).

pub mod insights;

use std::collections::HashMap;

use huiyuan_analytics::cohort::{cohort_retention, Cohort};
use huiyuan_analytics::kpi::{kpis, CouponDates, Granularity, KpiReport, PointFlow, PointMovements};
use huiyuan_analytics::rfm::rfm;
use huiyuan_analytics::{AnalyticsError, Transactions};
use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{BrandId, MemberId, StoreId};
use huiyuan_domain::loyalty::ledger::EntryKind;
use huiyuan_domain::member::Channel;
use huiyuan_domain::ValidationError;
use huiyuan_store::records::{BrandRecord, MemberEnrolment, PurchaseFilter};
use huiyuan_store::Tx;
use serde::Serialize;
use time::Date;

use crate::loyalty::calendar::BrandCalendar;
use crate::members::enum_str;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// Rows read per page.
const PAGE: u32 = 50_000;

impl From<AnalyticsError> for CoreError {
    fn from(e: AnalyticsError) -> Self {
        CoreError::conflict(ErrorCode::AnalyticsUnavailable, e.to_string())
    }
}

/// Pages through rows ordered by member, handing out only whole members: a full page may stop
/// inside its last member, whose rows are read again at the start of the next page.
struct ByMember {
    limit: u32,
    after: Option<MemberId>,
    done: bool,
}

impl ByMember {
    fn new(limit: u32) -> Self {
        ByMember {
            limit,
            after: None,
            done: false,
        }
    }

    /// The whole members of a page read after [`Self::after`] with [`Self::limit`]; moves on.
    fn whole<'p, T>(&mut self, page: &'p [T], member_of: impl Fn(&T) -> &MemberId) -> &'p [T] {
        let full = page.len() == self.limit as usize;
        let keep = match page.last() {
            None => 0,
            Some(last) if full => page
                .iter()
                .position(|f| member_of(f) == member_of(last))
                .unwrap_or(0),
            Some(_) => page.len(),
        };
        if full && keep == 0 {
            // One member fills the page: read it again, bigger.
            self.limit = self.limit.saturating_mul(2);
            return &[];
        }
        if full {
            self.after = Some(member_of(&page[keep - 1]).clone());
        } else {
            self.done = true;
        }
        &page[..keep]
    }
}

/// Every member of the brand (merged duplicates left out), by ID.
async fn enrolments(tx: &mut dyn Tx, brand: &BrandId) -> Result<Vec<MemberEnrolment>> {
    let mut out: Vec<MemberEnrolment> = Vec::new();
    loop {
        let page = tx
            .member_enrolments(brand, out.last().map(|e| &e.member_id), PAGE)
            .await?;
        let done = page.len() < PAGE as usize;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// A brand's purchases (fully refunded ones left out) as the models' columns: `member[i]`
/// indexes `ids`, dates are the brand's local dates, amounts net of refunds in minor units.
pub struct BrandTransactions {
    pub ids: Vec<MemberId>,
    pub member: Vec<u32>,
    pub date: Vec<Date>,
    pub amount: Vec<i64>,
}

impl BrandTransactions {
    pub fn columns(&self) -> Transactions<'_> {
        Transactions {
            member: &self.member,
            date: &self.date,
            amount: &self.amount,
        }
    }

    /// Reads every purchase of the brand that passes `filter`, in one snapshot, `limit` at a time.
    async fn read(
        tx: &mut dyn Tx,
        brand: &BrandId,
        calendar: &BrandCalendar,
        filter: &PurchaseFilter,
        limit: u32,
    ) -> Result<Self> {
        let mut out = BrandTransactions {
            ids: Vec::new(),
            member: Vec::new(),
            date: Vec::new(),
            amount: Vec::new(),
        };
        let mut pages = ByMember::new(limit);
        while !pages.done {
            let page = tx
                .purchase_facts(brand, filter, pages.after.as_ref(), pages.limit)
                .await?;
            for f in pages.whole(&page, |f| &f.member_id) {
                if out.ids.last() != Some(&f.member_id) {
                    out.ids.push(f.member_id.clone());
                }
                if f.refunded {
                    continue;
                }
                out.member.push((out.ids.len() - 1) as u32);
                out.date.push(calendar.date_of(f.occurred_at));
                out.amount.push(f.net_amount);
            }
        }
        Ok(out)
    }

    /// Adds the members without a purchase (from `joined`) after those with one, and returns
    /// when each member joined, by index: their enrolment, or their first purchase when that was
    /// earlier (purchases imported with their history predate the member record).
    fn with_everyone(&mut self, joined: &[MemberEnrolment], calendar: &BrandCalendar) -> Vec<Date> {
        let mut enrolled: Vec<Option<Date>> = vec![None; self.ids.len()];
        let index: HashMap<&MemberId, usize> = self.ids.iter().enumerate().map(|(i, m)| (m, i)).collect();
        let mut extra = Vec::new();
        for e in joined {
            let date = calendar.date_of(e.enrolled_at);
            match index.get(&e.member_id) {
                Some(&i) => enrolled[i] = Some(date),
                None => extra.push((e.member_id.clone(), date)),
            }
        }
        // A buyer with no enrolment row (merged away since the purchases were read) joined on
        // their first purchase, as far as the models can tell.
        let mut first: Vec<Option<Date>> = vec![None; self.ids.len()];
        for (m, d) in self.member.iter().zip(&self.date) {
            let f = &mut first[*m as usize];
            *f = Some(f.map_or(*d, |x| x.min(*d)));
        }
        let mut out: Vec<Date> = enrolled
            .iter()
            .zip(&first)
            .map(|(e, f)| match (e, f) {
                (Some(e), Some(f)) => (*e).min(*f),
                (e, f) => e.or(*f).unwrap_or(Date::MIN),
            })
            .collect();
        for (id, date) in extra {
            self.ids.push(id);
            out.push(date);
        }
        out
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentView {
    /// `important_value`, `important_development`, `important_retain`, `important_win_back`,
    /// `general_value`, `general_development`, `general_retain`, `general_win_back`.
    pub segment: String,
    pub name_zh: String,
    pub name_en: String,
    pub members: u64,
    /// Minor units.
    pub revenue: i64,
}

/// The brand's RFM segments (see docs/analytics.md for the definitions).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RfmView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub as_of: String,
    /// Members with a purchase on or before the date.
    pub members: u64,
    pub mean_recency_days: f64,
    pub mean_frequency: f64,
    /// Minor units.
    pub mean_monetary: f64,
    /// All eight, empty ones included.
    pub segments: Vec<SegmentView>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CohortView {
    /// First-purchase month, `YYYY-MM`.
    pub month: String,
    pub size: u64,
    /// Members of the cohort who bought k months after it (k = 0 is the first month).
    pub active: Vec<u64>,
    pub rate: Vec<f64>,
}

/// What the dashboard asks for: a local date range, a bucket size, and optionally one store or
/// one channel (purchase figures and new members follow the filter; points are brand-wide).
#[derive(Debug, Clone)]
pub struct KpiQuery {
    /// Default: 29 days before `to`.
    pub from: Option<Date>,
    /// Default: today.
    pub to: Option<Date>,
    pub granularity: Granularity,
    pub store_id: Option<StoreId>,
    pub channel: Option<Channel>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierCountView {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub members: u64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KpiView {
    pub currency: String,
    pub timezone: String,
    pub store_id: Option<StoreId>,
    pub channel: Option<Channel>,
    #[serde(flatten)]
    pub report: KpiReport,
    /// Members per tier now (lowest tier for members who never earned), brand-wide.
    pub tiers: Vec<TierCountView>,
}

/// Which flow a ledger entry kind is, for the dashboard.
fn flow_of(kind: &str) -> PointFlow {
    match EntryKind::ALL.into_iter().find(|k| k.as_str() == kind) {
        Some(EntryKind::Earn | EntryKind::Action) => PointFlow::Issued,
        Some(EntryKind::Redeem) => PointFlow::Redeemed,
        Some(EntryKind::Expire) => PointFlow::Expired,
        Some(EntryKind::RefundReversal) => PointFlow::Reversed,
        Some(EntryKind::Adjustment) => PointFlow::Adjusted,
        _ => PointFlow::Moved,
    }
}

/// Ledger slots are summed by the database per quarter hour, so that every time zone's local
/// dates (some are offset by 30 or 45 minutes) split them exactly.
const LEDGER_SLOT_SECONDS: u32 = 900;

impl Core {
    /// The caller may read analytics; their brand, its calendar and today's local date.
    async fn analytics_calendar(
        &self,
        actor: &Actor,
        tx: &mut dyn Tx,
    ) -> Result<(BrandRecord, BrandCalendar, Date)> {
        actor.require(Permission::AnalyticsRead)?;
        let record = tx
            .get_brand(&actor.brand_id)
            .await?
            .ok_or(CoreError::NotFound("brand"))?;
        let calendar = BrandCalendar::new(&record.timezone)?;
        let today = calendar.date_of(self.now());
        Ok((record, calendar, today))
    }

    async fn analytics_input(&self, actor: &Actor, as_of: Option<Date>) -> Result<(BrandTransactions, Date)> {
        let mut tx = self.storage.read().await?;
        let (_, calendar, today) = self.analytics_calendar(actor, &mut *tx).await?;
        let data = BrandTransactions::read(
            &mut *tx,
            &actor.brand_id,
            &calendar,
            &PurchaseFilter::default(),
            PAGE,
        )
        .await?;
        Ok((data, as_of.unwrap_or(today)))
    }

    /// Every purchase of the brand as columns, for the command-line analytics (`--data`).
    pub async fn brand_transactions(&self, actor: &Actor) -> Result<BrandTransactions> {
        Ok(self.analytics_input(actor, None).await?.0)
    }

    /// RFM segments as of a local date (default: today).
    pub async fn rfm_report(&self, actor: &Actor, as_of: Option<Date>) -> Result<RfmView> {
        let (data, as_of) = self.analytics_input(actor, as_of).await?;
        let report = rfm(&data.columns(), as_of)?;
        Ok(RfmView {
            as_of: as_of.to_string(),
            members: report.members.len() as u64,
            mean_recency_days: report.mean_recency_days,
            mean_frequency: report.mean_frequency,
            mean_monetary: report.mean_monetary,
            segments: report
                .segments
                .iter()
                .map(|s| SegmentView {
                    segment: enum_str(s.segment),
                    name_zh: s.name_zh.into(),
                    name_en: s.name_en.into(),
                    members: s.members,
                    revenue: s.revenue,
                })
                .collect(),
        })
    }

    /// Retention by first-purchase month, up to a local date (default: today).
    pub async fn cohort_report(&self, actor: &Actor, as_of: Option<Date>) -> Result<Vec<CohortView>> {
        let (data, as_of) = self.analytics_input(actor, as_of).await?;
        Ok(cohort_retention(&data.columns(), as_of)?
            .into_iter()
            .map(|c: Cohort| CohortView {
                month: c.month,
                size: c.size,
                active: c.active,
                rate: c.rate,
            })
            .collect())
    }

    /// The dashboard's figures by day, week or month (docs/analytics.md has the definitions).
    pub async fn kpi_report(&self, actor: &Actor, q: KpiQuery) -> Result<KpiView> {
        let mut tx = self.storage.read().await?;
        let (record, calendar, today) = self.analytics_calendar(actor, &mut *tx).await?;
        let brand = &actor.brand_id;
        let to = q.to.unwrap_or(today);
        let from = q.from.unwrap_or(to - time::Duration::days(29));
        if from > to {
            return Err(ValidationError::field("from", "must not be after to").into());
        }
        if let Some(store) = &q.store_id {
            if tx.get_store(brand, store).await?.is_none() {
                return Err(ValidationError::field("store_id", "is not a store of this brand").into());
            }
        }
        let channel = q.channel.map(enum_str);
        let filter = PurchaseFilter {
            store_id: q.store_id.clone(),
            channel: channel.clone(),
        };
        let data = BrandTransactions::read(&mut *tx, brand, &calendar, &filter, PAGE).await?;
        let joined = enrolments(&mut *tx, brand).await?;
        let enrolled: Vec<Date> = joined
            .iter()
            .filter(|e| q.store_id.is_none() || e.store_id == q.store_id)
            .filter(|e| channel.is_none() || Some(&e.channel) == channel.as_ref())
            .map(|e| calendar.date_of(e.enrolled_at))
            .collect();
        // Flows are read from the first bucket's start on; what members held before it is what
        // they hold now less what moved since (accounts equal their ledgers), one opening
        // movement the day before. The dashboard thus reads recent entries, not the whole ledger.
        let window = q.granularity.start_of(from);
        let flows = tx
            .ledger_flows(brand, LEDGER_SLOT_SECONDS, Some(calendar.start_of(window)))
            .await?;
        let since: i64 = flows.iter().map(|f| f.points).sum();
        let opening = tx.points_outstanding(brand).await? - since;
        let mut by_day: HashMap<(Date, u8), (PointFlow, i64)> = HashMap::new();
        by_day.insert(
            (window.previous_day().unwrap_or(window), PointFlow::Moved as u8),
            (PointFlow::Moved, opening),
        );
        for f in flows {
            let flow = flow_of(&f.kind);
            let e = by_day
                .entry((calendar.date_of(f.slot), flow as u8))
                .or_insert((flow, 0));
            e.1 += f.points;
        }
        let (mut dates, mut flows, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
        for ((date, _), (flow, delta)) in by_day {
            dates.push(date);
            flows.push(flow);
            deltas.push(delta);
        }
        let (mut issued, mut redeemed) = (Vec::new(), Vec::new());
        let mut after: Option<String> = None;
        loop {
            let page = tx.coupon_dates(brand, &filter, after.as_deref(), PAGE).await?;
            for (_, issued_at, redeemed_at) in &page {
                issued.push(calendar.date_of(*issued_at));
                redeemed.push(redeemed_at.map(|t| calendar.date_of(t)));
            }
            match page.last() {
                Some((id, _, _)) if page.len() == PAGE as usize => after = Some(id.clone()),
                _ => break,
            }
        }
        let programme = match tx.latest_programme_version(brand).await? {
            Some(_) => Some(self.loyalty_context(&mut *tx, brand).await?),
            None => None,
        };
        let input = huiyuan_analytics::kpi::KpiInput {
            enrolled: &enrolled,
            purchases: data.columns(),
            points: PointMovements {
                date: &dates,
                flow: &flows,
                delta: &deltas,
            },
            coupons: CouponDates {
                issued: &issued,
                redeemed: &redeemed,
            },
            point_value_minor: programme.as_ref().map_or(0, |c| c.programme.point_value_minor),
        };
        let report = kpis(&input, from, to, q.granularity).map_err(|e| match e {
            AnalyticsError::Input(reason) => CoreError::from(ValidationError::field("granularity", reason)),
            other => other.into(),
        })?;

        let mut tiers: Vec<TierCountView> = Vec::new();
        if let Some(ctx) = &programme {
            let levels = &ctx.programme.tiers.levels;
            tiers = levels
                .iter()
                .map(|t| TierCountView {
                    code: t.code.clone(),
                    name: t.name.clone(),
                    name_en: t.name_en.clone(),
                    members: 0,
                })
                .collect();
            let mut counted = 0u64;
            for (code, n) in tx.tier_counts(brand).await? {
                let level = code
                    .as_deref()
                    .and_then(|c| ctx.programme.tier_index(c))
                    .unwrap_or(0);
                if let Some(t) = tiers.get_mut(level) {
                    t.members += n as u64;
                }
                counted += n as u64;
            }
            // Members who never had an account are in the lowest tier.
            let everyone = joined.len() as u64;
            if let Some(t) = tiers.first_mut() {
                t.members += everyone.saturating_sub(counted);
            }
        }
        Ok(KpiView {
            currency: record.currency,
            timezone: record.timezone,
            store_id: q.store_id,
            channel: q.channel,
            report,
            tiers,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use huiyuan_domain::loyalty::programme::Programme;
    use huiyuan_domain::loyalty::purchase::{LineInput, PurchaseInput};
    use huiyuan_domain::member::{Channel, EnrolInput};

    use super::*;
    use crate::clock::OffsetClock;
    use crate::crypto::MasterKey;
    use crate::CoreConfig;

    /// Pages that end inside a member (or hold only part of one) read the same columns as one
    /// big page.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_pages_read_what_one_page_reads() {
        let dir = std::env::temp_dir().join(format!("huiyuan-analytics-{}", crate::crypto::random_token(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let storage = huiyuan_store_sqlite::SqliteStorage::open(&dir.join("a.db"))
            .await
            .unwrap();
        let core = Core::new(
            Arc::new(storage),
            &MasterKey::generate(),
            Arc::new(OffsetClock::starting_at(crate::clock::test_start())),
            CoreConfig::default(),
        );
        let made = core
            .bootstrap_brand(
                crate::brands::NewBrand {
                    slug: "pages".into(),
                    name: "Pages".into(),
                    currency: None,
                    timezone: None,
                },
                "admin-pages",
                "a long enough password",
            )
            .await
            .unwrap();
        let actor = Actor::system(made.brand.id.clone());
        core.publish_programme(&actor, Programme::demo()).await.unwrap();
        let mut order = 0;
        for (i, purchases) in [1, 5, 2, 3].into_iter().enumerate() {
            let input = EnrolInput {
                phone: Some(format!("1380013820{i}").into()),
                ..Default::default()
            };
            let member = match core.enrol(&actor, input).await.unwrap() {
                crate::members::Enrolment::Created(m) | crate::members::Enrolment::Existing(m) => m.id,
            };
            for k in 0..purchases {
                order += 1;
                let sale = PurchaseInput {
                    order_id: format!("P-{order}"),
                    member_id: Some(member.clone()),
                    phone: None,
                    member_code: None,
                    enrol_if_unknown: None,
                    store_id: None,
                    channel: Channel::Pos,
                    occurred_at: Some(core.now() - time::Duration::days(40 - k)),
                    lines: vec![LineInput {
                        sku: "S".into(),
                        category: None,
                        quantity: 1,
                        amount: 1_000 + k,
                        reward: false,
                    }],
                    paid_amount: 1_000 + k,
                };
                core.record_purchase(&actor, sale).await.unwrap();
            }
        }
        let calendar = BrandCalendar::new("Asia/Shanghai").unwrap();
        let read = |limit| {
            let (core, brand, calendar) = (&core, &actor.brand_id, &calendar);
            async move {
                let mut tx = core.storage.read().await.unwrap();
                let t = BrandTransactions::read(&mut *tx, brand, calendar, &PurchaseFilter::default(), limit)
                    .await
                    .unwrap();
                (t.ids, t.member, t.date, t.amount)
            }
        };
        let whole = read(1_000).await;
        assert_eq!(whole.1.len(), 11);
        assert_eq!(whole.0.len(), 4);
        for limit in [1, 2, 3, 4] {
            assert_eq!(read(limit).await, whole, "pages of {limit}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
