//! Partner benefits (異業聯盟): pools of codes a partner brand gives out — a coffee, a car wash,
//! a streaming month — imported in bulk and handed to members one each, each code to at most
//! one member.

use huiyuan_domain::access::Permission;
use huiyuan_domain::error::Validator;
use huiyuan_domain::ids::{MemberId, PartnerPoolId};
use huiyuan_domain::loyalty::purchase::validate_reference;
use huiyuan_domain::member::validate_text;
use huiyuan_store::{Page, PartnerCodeRecord, PartnerPoolRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::benefits::PARTNER_CODE;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// Most codes in one import.
pub const MAX_IMPORT: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PoolInput {
    pub name: String,
    /// The partner brand.
    pub partner: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolView {
    pub id: String,
    pub name: String,
    pub partner: String,
    pub description: Option<String>,
    /// Codes in the pool, handed out, and left.
    pub codes: i64,
    pub handed_out: i64,
    pub left: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// Codes to add to a pool, as the partner sent them.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportInput {
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportOutcome {
    pub added: u64,
    /// Already in the pool (or twice in this import): skipped.
    pub duplicates: u64,
    pub pool: PoolView,
}

/// Give a member one code of a pool; `reference` makes it idempotent.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HandOutInput {
    pub pool_id: String,
    pub reference: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerCodeView {
    pub pool_id: String,
    pub code: String,
    pub member_id: Option<MemberId>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub assigned_at: Option<OffsetDateTime>,
}

fn code_view(c: PartnerCodeRecord) -> PartnerCodeView {
    PartnerCodeView {
        pool_id: c.pool_id,
        code: c.code,
        member_id: c.member_id,
        assigned_at: c.assigned_at,
    }
}

impl Core {
    pub async fn create_partner_pool(&self, actor: &Actor, input: PoolInput) -> Result<PoolView> {
        actor.require(Permission::CouponsManage)?;
        let mut v = Validator::default();
        let name = v.check(validate_text("name", &input.name, 100));
        let partner = v.check(validate_text("partner", &input.partner, 100));
        let description = input
            .description
            .as_deref()
            .and_then(|d| v.check(validate_text("description", d, 1_000)));
        v.finish()?;
        let pool = PartnerPoolRecord {
            id: self.new_id(PartnerPoolId::generate).to_string(),
            brand_id: actor.brand_id.clone(),
            name: name.unwrap_or_default(),
            partner: partner.unwrap_or_default(),
            description,
            created_at: self.now(),
        };
        let mut tx = self.storage.write().await?;
        tx.insert_partner_pool(&pool).await?;
        self.audit(
            &mut *tx,
            actor,
            "partner_pool.created",
            ("partner_pool", pool.id.as_str()),
            json!({ "name": pool.name, "partner": pool.partner }),
        )
        .await?;
        tx.commit().await?;
        Ok(pool_view(pool, (0, 0, 0)))
    }

    pub async fn list_partner_pools(&self, actor: &Actor, page: &Page) -> Result<Vec<PoolView>> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let mut out = Vec::new();
        for p in tx.list_partner_pools(&actor.brand_id, page).await? {
            let counts = tx.partner_pool_counts(&p.id).await?;
            out.push(pool_view(p, counts));
        }
        Ok(out)
    }

    pub async fn get_partner_pool(&self, actor: &Actor, id: &str) -> Result<PoolView> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let p = tx
            .get_partner_pool(&actor.brand_id, id)
            .await?
            .ok_or(CoreError::NotFound("partner pool"))?;
        let counts = tx.partner_pool_counts(&p.id).await?;
        Ok(pool_view(p, counts))
    }

    /// Adds a partner's codes to a pool; codes already there are skipped and counted.
    pub async fn import_partner_codes(
        &self,
        actor: &Actor,
        pool: &str,
        input: ImportInput,
    ) -> Result<ImportOutcome> {
        actor.require(Permission::CouponsManage)?;
        if input.codes.is_empty() || input.codes.len() > MAX_IMPORT {
            return Err(huiyuan_domain::ValidationError::field(
                "codes",
                format!("must hold between 1 and {MAX_IMPORT} codes"),
            )
            .into());
        }
        let mut v = Validator::default();
        let codes: Vec<String> = input
            .codes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| v.check(validate_text(&format!("codes[{i}]"), c, 128)))
            .collect();
        v.finish()?;
        let mut tx = self.storage.write().await?;
        let p = tx
            .get_partner_pool(&actor.brand_id, pool)
            .await?
            .ok_or(CoreError::NotFound("partner pool"))?;
        let (_, _, last) = tx.partner_pool_counts(&p.id).await?;
        let records: Vec<PartnerCodeRecord> = codes
            .iter()
            .enumerate()
            .map(|(i, code)| PartnerCodeRecord {
                brand_id: p.brand_id.clone(),
                pool_id: p.id.clone(),
                code: code.clone(),
                seq: last + 1 + i as i64,
                member_id: None,
                reference: None,
                assigned_at: None,
            })
            .collect();
        let added = tx.insert_partner_codes(&records).await?;
        self.audit(
            &mut *tx,
            actor,
            "partner_pool.codes_imported",
            ("partner_pool", p.id.as_str()),
            json!({ "added": added, "sent": codes.len() }),
        )
        .await?;
        let counts = tx.partner_pool_counts(&p.id).await?;
        tx.commit().await?;
        Ok(ImportOutcome {
            added,
            duplicates: codes.len() as u64 - added,
            pool: pool_view(p, counts),
        })
    }

    /// Hands a member the pool's next free code, exactly once per code and per reference.
    pub async fn hand_out_partner_code(
        &self,
        actor: &Actor,
        member: &MemberId,
        input: HandOutInput,
    ) -> Result<(PartnerCodeView, bool)> {
        actor.require(Permission::CouponsIssue)?;
        validate_reference("reference", &input.reference)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, member, true).await?;
        let pool = tx
            .get_partner_pool(brand, &input.pool_id)
            .await?
            .ok_or(CoreError::NotFound("partner pool"))?;
        if let Some(done) = tx
            .get_partner_code_by_reference(brand, &pool.id, &input.reference)
            .await?
        {
            if done.member_id.as_ref() != Some(&record.id) {
                return Err(CoreError::conflict(
                    ErrorCode::ReferenceReused,
                    "this reference already gave a code to another member",
                ));
            }
            return Ok((code_view(done), false));
        }
        let code = tx
            .assign_partner_code(brand, &pool.id, &record.id, &input.reference, self.now())
            .await?
            .ok_or_else(|| {
                CoreError::conflict(
                    ErrorCode::PartnerCodesExhausted,
                    format!("every code of {} has been handed out", pool.name),
                )
            })?;
        // Counted as the member's tier's benefit in the usage report (a brand may hand out
        // partner codes before it has a loyalty programme: then there is no tier to count).
        if tx.latest_programme_version(brand).await?.is_some() {
            let ctx = self.loyalty_context(&mut *tx, brand).await?;
            let standing = self.standing(&mut *tx, &ctx, brand, &record.id).await?;
            self.record_benefit_use(
                &mut *tx,
                brand,
                &record.id,
                (PARTNER_CODE, &pool.id),
                &standing,
                None,
                &input.reference,
            )
            .await?;
        }
        self.announce(
            &mut *tx,
            actor,
            "partner_code.handed_out",
            record.id.as_str(),
            ("partner_pool", pool.id.as_str()),
            json!({ "pool_id": pool.id, "partner": pool.partner, "member_id": record.id }),
            json!({ "member_id": record.id, "reference": input.reference }),
        )
        .await?;
        tx.commit().await?;
        Ok((code_view(code), true))
    }

    /// The partner codes a member was given.
    pub async fn member_partner_codes(
        &self,
        actor: &Actor,
        member: &MemberId,
    ) -> Result<Vec<PartnerCodeView>> {
        actor.require(Permission::MembersRead)?;
        let mut tx = self.storage.read().await?;
        let record = self
            .active_member(&mut *tx, &actor.brand_id, member, false)
            .await?;
        Ok(tx
            .list_member_partner_codes(&actor.brand_id, &record.id)
            .await?
            .into_iter()
            .map(code_view)
            .collect())
    }
}

fn pool_view(p: PartnerPoolRecord, (codes, handed_out, _): (i64, i64, i64)) -> PoolView {
    PoolView {
        id: p.id,
        name: p.name,
        partner: p.partner,
        description: p.description,
        codes,
        handed_out,
        left: codes - handed_out,
        created_at: p.created_at,
    }
}
