//! Programme versions: publish a new document, read the current one, list the history.

use huiyuan_domain::access::Permission;
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_store::ProgrammeRecord;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{Actor, Core, CoreError, Result};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgrammeVersion {
    pub version: i64,
    pub programme: Programme,
    /// Who published it (`operator opr_…`, `api_key key_…` or `system`).
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
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
