//! Programme versions: publish a new document, read the current one, list the history.

use huiyuan_domain::access::Permission;
use huiyuan_domain::loyalty::earning::{evaluate, EarnLine, EarnedSoFar, Earning, PurchaseFacts};
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_domain::loyalty::purchase::{validate_preview, EarningPreviewInput, PurchaseLine};
use huiyuan_store::ProgrammeRecord;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::calendar::BrandCalendar;
use crate::{Actor, Core, CoreError, Result};

/// What a basket would earn, and under which assumptions.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EarningPreview {
    /// The programme version previewed; absent for a draft.
    pub version: Option<i64>,
    /// The sale's date in the brand's time zone (member day and birthday month follow it).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub local_date: String,
    /// The tier the imagined member is in.
    pub tier: String,
    pub earning: Earning,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProgrammeVersion {
    pub version: i64,
    pub programme: Programme,
    /// Who published it (`operator opr_…`, `api_key key_…` or `system`).
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

fn version_view(r: ProgrammeRecord) -> Result<ProgrammeVersion> {
    Ok(ProgrammeVersion {
        version: r.version,
        programme: Programme::parse_json(&r.document).map_err(|e| CoreError::Corrupt(e.to_string()))?,
        created_by: r.created_by,
        created_at: r.created_at,
    })
}

impl Core {
    /// Publishes a new version; postings from now on use it and record its number.
    pub async fn publish_programme(&self, actor: &Actor, programme: Programme) -> Result<ProgrammeVersion> {
        actor.require(Permission::ProgrammeManage)?;
        programme.validate()?;
        let document = serde_json::to_string(&programme).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let version = tx.latest_programme_version(brand).await?.unwrap_or(0) + 1;
        let record = ProgrammeRecord {
            brand_id: brand.clone(),
            version,
            document,
            created_by: actor.label(),
            created_at: self.now(),
        };
        tx.insert_programme(&record).await?;
        self.audit(
            &mut *tx,
            actor,
            "programme.published",
            ("programme", &version.to_string()),
            json!({ "version": version }),
        )
        .await?;
        self.emit(
            &mut *tx,
            brand,
            "programme.published",
            brand.as_str(),
            json!({ "version": version }),
            None,
        )
        .await?;
        tx.commit().await?;
        self.programmes.forget(brand);
        version_view(record)
    }

    /// The current programme, or a specific version.
    pub async fn get_programme(&self, actor: &Actor, version: Option<i64>) -> Result<ProgrammeVersion> {
        actor.require(Permission::ProgrammeRead)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let version = match version {
            Some(v) => v,
            None => tx
                .latest_programme_version(brand)
                .await?
                .ok_or(CoreError::NotFound("programme"))?,
        };
        let record = tx
            .get_programme(brand, version)
            .await?
            .ok_or(CoreError::NotFound("programme version"))?;
        version_view(record)
    }

    /// Runs the earning rules of the current programme, or of a draft, on an imagined sale.
    /// Reads only; nothing is recorded.
    pub async fn preview_earning(&self, actor: &Actor, input: EarningPreviewInput) -> Result<EarningPreview> {
        actor.require(Permission::ProgrammeRead)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let (version, programme, calendar) = match &input.programme {
            Some(draft) => {
                draft.validate().map_err(|mut e| {
                    for f in &mut e.errors {
                        f.field = format!("programme.{}", f.field);
                    }
                    e
                })?;
                let record = tx.get_brand(brand).await?.ok_or(CoreError::NotFound("brand"))?;
                (None, draft.clone(), BrandCalendar::new(&record.timezone)?)
            }
            None => {
                let ctx = self.loyalty_context(&mut *tx, brand).await?;
                (Some(ctx.version), ctx.programme.clone(), ctx.calendar.clone())
            }
        };
        let lines = validate_preview(&input, &programme)?;
        let at = input.occurred_at.unwrap_or_else(|| self.now());
        let local_date = calendar.date_of(at);
        let member = &input.member;
        let tier = match &member.tier {
            Some(code) => programme.tier_index(code).unwrap_or(0),
            None => 0,
        };
        let earn_lines: Vec<EarnLine> = lines.iter().map(PurchaseLine::earn_line).collect();
        let earning = evaluate(
            &programme,
            &PurchaseFacts {
                lines: &earn_lines,
                paid_amount: input.paid_amount,
                store_code: input.store_code.as_deref(),
                channel: input.channel,
                at,
                local_date,
                birth_month: member.birth_month,
                tier: programme.tiers.levels.get(tier),
                streak: member.streak.unwrap_or(1),
                plan: member
                    .plan
                    .as_ref()
                    .and_then(|code| programme.plans.iter().find(|p| p.code == *code)),
            },
            EarnedSoFar {
                today: member.earned_today,
                this_month: member.earned_this_month,
            },
        );
        Ok(EarningPreview {
            version,
            local_date: local_date.to_string(),
            tier: programme
                .tiers
                .levels
                .get(tier)
                .map(|t| t.code.clone())
                .unwrap_or_default(),
            earning,
        })
    }

    /// Versions newest first.
    pub async fn list_programmes(&self, actor: &Actor, limit: u32) -> Result<Vec<ProgrammeVersion>> {
        actor.require(Permission::ProgrammeRead)?;
        let mut tx = self.storage.read().await?;
        tx.list_programmes(&actor.brand_id, limit)
            .await?
            .into_iter()
            .map(version_view)
            .collect()
    }
}
