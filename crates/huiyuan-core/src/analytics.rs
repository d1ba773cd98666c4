//! Analytics over a brand's purchases: the store's paged reader feeds the pure models of
//! `huiyuan-analytics`; dates are the brand's local dates.

use huiyuan_analytics::cohort::{cohort_retention, Cohort};
use huiyuan_analytics::rfm::rfm;
use huiyuan_analytics::{AnalyticsError, Transactions};
use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_store::Tx;
use serde::Serialize;
use time::Date;
use utoipa::ToSchema;

use crate::loyalty::calendar::BrandCalendar;
use crate::{Actor, Core, CoreError, Result};

/// Purchases read per page.
const PAGE: u32 = 50_000;

impl From<AnalyticsError> for CoreError {
    fn from(e: AnalyticsError) -> Self {
        CoreError::conflict("analytics_unavailable", e.to_string())
    }
}

/// A brand's purchases (fully refunded ones left out) as the models' columns.
struct BrandTransactions {
    ids: Vec<MemberId>,
    member: Vec<u32>,
    date: Vec<Date>,
    amount: Vec<i64>,
}

impl BrandTransactions {
    fn columns(&self) -> Transactions<'_> {
        Transactions {
            member: &self.member,
            date: &self.date,
            amount: &self.amount,
        }
    }

    /// Reads every purchase of the brand in one snapshot, `limit` at a time.
    async fn read(
        tx: &mut dyn Tx,
        brand: &BrandId,
        calendar: &BrandCalendar,
        mut limit: u32,
    ) -> Result<Self> {
        let mut out = BrandTransactions {
            ids: Vec::new(),
            member: Vec::new(),
            date: Vec::new(),
            amount: Vec::new(),
        };
        let mut after: Option<MemberId> = None;
        loop {
            let page = tx.purchase_facts(brand, after.as_ref(), limit).await?;
            let full = page.len() == limit as usize;
            // A full page may stop inside its last member: keep the members before, and read
            // the last one again from the start of the next page.
            let keep = match page.last() {
                None => 0,
                Some(last) if full => page
                    .iter()
                    .position(|f| f.member_id == last.member_id)
                    .unwrap_or(0),
                Some(_) => page.len(),
            };
            if full && keep == 0 {
                // One member fills the page: read bigger pages.
                limit = limit.saturating_mul(2);
                continue;
            }
            for f in &page[..keep] {
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
            if !full {
                return Ok(out);
            }
            after = Some(page[keep - 1].member_id.clone());
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RfmView {
    #[schema(value_type = String, format = Date)]
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

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CohortView {
    /// First-purchase month, `YYYY-MM`.
    pub month: String,
    pub size: u64,
    /// Members of the cohort who bought k months after it (k = 0 is the first month).
    pub active: Vec<u64>,
    pub rate: Vec<f64>,
}

impl Core {
    async fn analytics_input(&self, actor: &Actor, as_of: Option<Date>) -> Result<(BrandTransactions, Date)> {
        actor.require(Permission::AnalyticsRead)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let record = tx.get_brand(brand).await?.ok_or(CoreError::NotFound("brand"))?;
        let calendar = BrandCalendar::new(&record.timezone)?;
        let as_of = as_of.unwrap_or_else(|| calendar.date_of(self.now()));
        Ok((
            BrandTransactions::read(&mut *tx, brand, &calendar, PAGE).await?,
            as_of,
        ))
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
                    segment: serde_json::to_value(s.segment)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
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
            Arc::new(OffsetClock::default()),
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
                phone: Some(format!("1380013820{i}")),
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
                let t = BrandTransactions::read(&mut *tx, brand, calendar, limit)
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
