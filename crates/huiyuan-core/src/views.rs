//! What the use cases return: plain, serialisable views with personal data masked unless the
//! caller asked for it and may see it.

use std::collections::BTreeMap;

use huiyuan_domain::access::Role;
use huiyuan_domain::ids::{ApiKeyId, AuditEventId, BrandId, MemberId, OperatorId, StoreId};
use huiyuan_domain::member::{Channel, Consents, Gender, MemberStatus};
use serde::Serialize;
use time::OffsetDateTime;

/// A member as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberView {
    pub id: MemberId,
    pub status: MemberStatus,
    /// Personal data below is masked (`138****8000`) unless this is false.
    pub pii_revealed: bool,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// `YYYY-MM-DD`, masked as `****-MM-**`.
    pub birthday: Option<String>,
    pub birth_month: Option<u8>,
    pub gender: Option<Gender>,
    pub city: Option<String>,
    pub household_size: Option<u8>,
    pub channel: Channel,
    pub store_id: Option<StoreId>,
    /// Every identity the member can be found by (including those merged in).
    pub identities: Vec<IdentityView>,
    pub consents: Consents,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub tags: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub enrolled_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub erased_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityView {
    /// `phone`, `email`, `card` or `ext:<channel>`.
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BrandView {
    pub id: BrandId,
    pub slug: String,
    pub name: String,
    pub currency: String,
    pub timezone: String,
    /// Ed25519 public key (base64) that verifies this brand's member-code QR payloads offline.
    pub code_public_key: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreView {
    pub id: StoreId,
    pub code: String,
    pub name: String,
    pub city: Option<String>,
    pub region: Option<String>,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorView {
    pub id: OperatorId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyView {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    /// The public start of the key, to recognise it; the secret is never shown again.
    pub prefix: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditView {
    pub id: AuditEventId,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    /// What changed, with personal data masked.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub diff: serde_json::Value,
    pub request_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// Everything held about a member, in clear: the answer to a PIPL / GDPR access request.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberExport {
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub exported_at: OffsetDateTime,
    pub member: MemberView,
    /// Records merged into this member; their IDs redirect here.
    pub merged_from: Vec<MemberId>,
    /// Every audited change to this member, newest first (personal data masked, as stored).
    pub history: Vec<AuditView>,
}

/// An instant as RFC 3339 text, for JSON details stored beside records.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
