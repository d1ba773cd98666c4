//! Brands (tenants) and their stores. Creating a brand is an installation-level act (the CLI
//! and `demo`); everything else is done inside one brand.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use huiyuan_domain::access::{Permission, Role};
use huiyuan_domain::error::Validator;
use huiyuan_domain::ids::{BrandId, StoreId};
use huiyuan_domain::member::validate_text;
use huiyuan_domain::{FieldError, ValidationError};
use huiyuan_store::{BrandRecord, Page, StoreError, StoreRecord};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{CreatedApiKey, NewApiKey, NewOperator};
use crate::views::{BrandView, OperatorView, StoreView};
use crate::{Actor, Core, CoreError, ErrorCode, Result};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewBrand {
    /// Short lower-case name used in URLs and logs, unique in the installation.
    pub slug: String,
    pub name: String,
    /// ISO 4217; `CNY` when not given.
    pub currency: Option<String>,
    /// IANA time zone; `Asia/Shanghai` when not given.
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BrandChanges {
    pub name: Option<String>,
    pub currency: Option<String>,
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewStore {
    /// The brand's own code for the store, as its POS knows it; unique within the brand.
    pub code: String,
    pub name: String,
    pub city: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StoreChanges {
    pub name: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub active: Option<bool>,
}

/// A brand ready to use: its first admin operator and admin API key.
#[derive(Debug, Clone)]
pub struct BootstrappedBrand {
    pub brand: BrandView,
    pub admin: OperatorView,
    pub api_key: CreatedApiKey,
}

fn currency(s: &str) -> Result<String, ValidationError> {
    let c = s.trim().to_uppercase();
    if c.len() != 3 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
        return Err(ValidationError::field(
            "currency",
            "must be a three-letter ISO 4217 code such as CNY",
        ));
    }
    Ok(c)
}

fn timezone(s: &str) -> Result<String, ValidationError> {
    let t = s.trim();
    let ok = t == "UTC"
        || (t.contains('/')
            && t.len() <= 64
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+')));
    if !ok {
        return Err(ValidationError::field(
            "timezone",
            "must be an IANA time zone such as Asia/Shanghai",
        ));
    }
    Ok(t.to_owned())
}

impl Core {
    fn brand_view(&self, b: &BrandRecord) -> Result<BrandView> {
        let key = self.brand_code_key(&b.id, &b.code_key_ciphertext)?;
        Ok(BrandView {
            id: b.id.clone(),
            slug: b.slug.clone(),
            name: b.name.clone(),
            currency: b.currency.clone(),
            timezone: b.timezone.clone(),
            code_public_key: STANDARD.encode(key.verifying_key().to_bytes()),
            created_at: b.created_at,
        })
    }

    /// Creates a brand with an admin operator and an admin API key (installation level: the CLI
    /// and `demo` call it, no API route does).
    pub async fn bootstrap_brand(
        &self,
        input: NewBrand,
        admin_username: &str,
        admin_password: &str,
    ) -> Result<BootstrappedBrand> {
        let mut v = Validator::default();
        let slug = input.slug.trim().to_lowercase();
        if slug.len() < 2
            || slug.len() > 32
            || !slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            v.push("slug", "must be 2 to 32 characters of a-z, 0-9 and -");
        }
        let name = v.check(validate_text("name", &input.name, 100));
        let currency = v.check(currency(input.currency.as_deref().unwrap_or("CNY")));
        let timezone = v.check(timezone(input.timezone.as_deref().unwrap_or("Asia/Shanghai")));
        v.finish()?;
        let (Some(name), Some(currency), Some(timezone)) = (name, currency, timezone) else {
            unreachable!("validated above")
        };
        let id = self.new_id(BrandId::generate);
        let record = BrandRecord {
            code_key_ciphertext: self.new_brand_code_key(&id),
            id: id.clone(),
            slug,
            name,
            currency,
            timezone,
            created_at: self.now(),
        };
        let system = Actor::system(id.clone());
        {
            let mut tx = self.storage.write().await?;
            match tx.insert_brand(&record).await {
                Err(StoreError::Conflict(_)) => {
                    return Err(CoreError::Conflict {
                        code: ErrorCode::SlugTaken,
                        message: "a brand with this slug exists".into(),
                        errors: vec![FieldError {
                            field: "slug".into(),
                            reason: "is taken".into(),
                        }],
                    })
                }
                other => other?,
            }
            self.audit(
                &mut *tx,
                &system,
                "brand.created",
                ("brand", id.as_str()),
                json!({ "slug": record.slug }),
            )
            .await?;
            tx.commit().await?;
        }
        let admin = self
            .create_operator(
                &system,
                NewOperator {
                    username: admin_username.into(),
                    display_name: "Administrator".into(),
                    role: Role::Admin,
                    password: admin_password.into(),
                },
            )
            .await?;
        let api_key = self
            .create_api_key(
                &system,
                NewApiKey {
                    name: "Admin key".into(),
                    role: Role::Admin,
                },
            )
            .await?;
        Ok(BootstrappedBrand {
            brand: self.brand_view(&record)?,
            admin,
            api_key,
        })
    }

    /// Every brand of the installation (for the CLI, which picks the only one by default).
    pub async fn list_all_brands(&self) -> Result<Vec<BrandView>> {
        let mut tx = self.storage.read().await?;
        tx.list_brands()
            .await?
            .iter()
            .map(|b| self.brand_view(b))
            .collect()
    }

    /// The brand with the given slug (installation level, for the CLI).
    pub async fn find_brand(&self, slug: &str) -> Result<Option<BrandView>> {
        let mut tx = self.storage.read().await?;
        tx.get_brand_by_slug(slug)
            .await?
            .as_ref()
            .map(|b| self.brand_view(b))
            .transpose()
    }

    pub async fn get_brand(&self, actor: &Actor) -> Result<BrandView> {
        actor.require(Permission::BrandRead)?;
        let mut tx = self.storage.read().await?;
        let b = tx
            .get_brand(&actor.brand_id)
            .await?
            .ok_or(CoreError::NotFound("brand"))?;
        self.brand_view(&b)
    }

    pub async fn update_brand(&self, actor: &Actor, input: BrandChanges) -> Result<BrandView> {
        actor.require(Permission::BrandManage)?;
        let mut v = Validator::default();
        let name = input
            .name
            .as_deref()
            .and_then(|n| v.check(validate_text("name", n, 100)));
        let cur = input.currency.as_deref().and_then(|c| v.check(currency(c)));
        let tz = input.timezone.as_deref().and_then(|t| v.check(timezone(t)));
        v.finish()?;
        let mut tx = self.storage.write().await?;
        let mut b = tx
            .get_brand(&actor.brand_id)
            .await?
            .ok_or(CoreError::NotFound("brand"))?;
        let before = json!({ "name": b.name, "currency": b.currency, "timezone": b.timezone });
        b.name = name.unwrap_or(b.name);
        b.currency = cur.unwrap_or(b.currency);
        b.timezone = tz.unwrap_or(b.timezone);
        tx.update_brand(&b).await?;
        let after = json!({ "name": b.name, "currency": b.currency, "timezone": b.timezone });
        self.audit(
            &mut *tx,
            actor,
            "brand.updated",
            ("brand", b.id.as_str()),
            json!({ "before": before, "after": after }),
        )
        .await?;
        tx.commit().await?;
        self.brand_view(&b)
    }

    pub async fn create_store(&self, actor: &Actor, input: NewStore) -> Result<StoreView> {
        actor.require(Permission::StoresManage)?;
        let mut v = Validator::default();
        let code = v.check(validate_text("code", &input.code, 32));
        let name = v.check(validate_text("name", &input.name, 100));
        let city = input
            .city
            .as_deref()
            .and_then(|c| v.check(validate_text("city", c, 64)));
        let region = input
            .region
            .as_deref()
            .and_then(|r| v.check(validate_text("region", r, 64)));
        v.finish()?;
        let (Some(code), Some(name)) = (code, name) else {
            unreachable!("validated above")
        };
        let record = StoreRecord {
            id: self.new_id(StoreId::generate),
            brand_id: actor.brand_id.clone(),
            code,
            name,
            city,
            region,
            active: true,
            created_at: self.now(),
        };
        let mut tx = self.storage.write().await?;
        match tx.insert_store(&record).await {
            Err(StoreError::Conflict(_)) => {
                return Err(CoreError::Conflict {
                    code: ErrorCode::StoreCodeTaken,
                    message: "another store of this brand has this code".into(),
                    errors: vec![FieldError {
                        field: "code".into(),
                        reason: "is taken".into(),
                    }],
                })
            }
            other => other?,
        }
        let view = store_view(&record);
        self.audit(
            &mut *tx,
            actor,
            "store.created",
            ("store", record.id.as_str()),
            json!({ "after": view }),
        )
        .await?;
        tx.commit().await?;
        Ok(view)
    }

    pub async fn update_store(&self, actor: &Actor, id: &StoreId, input: StoreChanges) -> Result<StoreView> {
        actor.require(Permission::StoresManage)?;
        let mut v = Validator::default();
        let name = input
            .name
            .as_deref()
            .and_then(|n| v.check(validate_text("name", n, 100)));
        let city = input
            .city
            .as_deref()
            .and_then(|c| v.check(validate_text("city", c, 64)));
        let region = input
            .region
            .as_deref()
            .and_then(|r| v.check(validate_text("region", r, 64)));
        v.finish()?;
        let mut tx = self.storage.write().await?;
        let mut record = tx
            .get_store(&actor.brand_id, id)
            .await?
            .ok_or(CoreError::NotFound("store"))?;
        let before = store_view(&record);
        record.name = name.unwrap_or(record.name);
        record.city = city.or(record.city);
        record.region = region.or(record.region);
        record.active = input.active.unwrap_or(record.active);
        tx.update_store(&record).await?;
        let after = store_view(&record);
        self.audit(
            &mut *tx,
            actor,
            "store.updated",
            ("store", id.as_str()),
            json!({ "before": before, "after": after }),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn get_store(&self, actor: &Actor, id: &StoreId) -> Result<StoreView> {
        actor.require(Permission::StoresRead)?;
        let mut tx = self.storage.read().await?;
        tx.get_store(&actor.brand_id, id)
            .await?
            .as_ref()
            .map(store_view)
            .ok_or(CoreError::NotFound("store"))
    }

    pub async fn list_stores(&self, actor: &Actor, page: &Page) -> Result<Vec<StoreView>> {
        actor.require(Permission::StoresRead)?;
        let mut tx = self.storage.read().await?;
        Ok(tx
            .list_stores(&actor.brand_id, page)
            .await?
            .iter()
            .map(store_view)
            .collect())
    }
}

fn store_view(s: &StoreRecord) -> StoreView {
    StoreView {
        id: s.id.clone(),
        code: s.code.clone(),
        name: s.name.clone(),
        city: s.city.clone(),
        region: s.region.clone(),
        active: s.active,
        created_at: s.created_at,
    }
}
