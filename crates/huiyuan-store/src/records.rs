//! Rows as the use cases read and write them. Personal data only ever appears here encrypted
//! (`pii_ciphertext`) or as keyed hashes.

use huiyuan_domain::access::Role;
use huiyuan_domain::ids::{ApiKeyId, AuditEventId, BrandId, MemberId, OperatorId, StoreId};
use huiyuan_domain::member::MemberStatus;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq)]
pub struct BrandRecord {
    pub id: BrandId,
    pub slug: String,
    pub name: String,
    /// ISO 4217, e.g. `CNY`.
    pub currency: String,
    /// IANA zone, e.g. `Asia/Shanghai`.
    pub timezone: String,
    /// The brand's Ed25519 signing key for member codes, encrypted with the master key.
    pub code_key_ciphertext: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreRecord {
    pub id: StoreId,
    pub brand_id: BrandId,
    /// The brand's own code for the store (unique within the brand), as the POS knows it.
    pub code: String,
    pub name: String,
    pub city: Option<String>,
    pub region: Option<String>,
    pub active: bool,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperatorRecord {
    pub id: OperatorId,
    pub brand_id: BrandId,
    /// Unique across the installation: an operator signs in with it alone.
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub token_hash: Vec<u8>,
    pub operator_id: OperatorId,
    pub brand_id: BrandId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub brand_id: BrandId,
    pub name: String,
    pub role: Role,
    /// The public start of the key, used to find the row; unique.
    pub prefix: String,
    /// HMAC-SHA256 of the whole key under the installation's key-hashing key.
    pub secret_hash: Vec<u8>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub id: MemberId,
    pub brand_id: BrandId,
    pub status: MemberStatus,
    pub merged_into: Option<MemberId>,
    /// AES-256-GCM of the member's [`huiyuan_domain::member::PersonalData`]; `None` once erased.
    pub pii_ciphertext: Option<Vec<u8>>,
    /// Kept in clear for birthday campaigns; a month alone does not identify anyone.
    pub birth_month: Option<u8>,
    pub gender: Option<String>,
    pub city: Option<String>,
    pub household_size: Option<u8>,
    pub channel: String,
    pub store_id: Option<StoreId>,
    /// JSON of [`huiyuan_domain::member::Consents`].
    pub consents: String,
    /// JSON object of custom attributes.
    pub attributes: String,
    pub enrolled_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub erased_at: Option<OffsetDateTime>,
    /// Bumped on every update; see [`crate::Tx::update_member`].
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub brand_id: BrandId,
    pub kind: String,
    /// HMAC-SHA256 over brand, kind and normalised value.
    pub hash: Vec<u8>,
    pub member_id: MemberId,
    /// The normalised value, encrypted, so the member's export and the console can show it.
    pub value_ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberCodeRecord {
    pub brand_id: BrandId,
    /// The random part both forms of the code carry.
    pub nonce: String,
    /// Keyed hash of the short numeric code.
    pub code_hash: Vec<u8>,
    pub member_id: MemberId,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub used_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: AuditEventId,
    pub brand_id: BrandId,
    /// `operator`, `api_key` or `system`.
    pub actor_kind: String,
    pub actor_id: String,
    /// e.g. `member.enrolled`
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    /// JSON with personal data masked.
    pub diff: String,
    pub request_id: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub brand_id: BrandId,
    /// Whose key space this is (the API key or operator), so two clients never collide.
    pub scope: String,
    pub key: String,
    /// SHA-256 of method, path and body: the same key with another request is refused.
    pub request_hash: Vec<u8>,
    /// `None` while the first request is still running.
    pub status: Option<u16>,
    pub body: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
}

/// Cursor pagination, newest first: `starting_after` is the last ID of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub starting_after: Option<String>,
}

impl Page {
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            starting_after: None,
        }
    }
}

/// Search criteria; the hashes are computed by the caller from normalised input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    pub identity: Option<(String, Vec<u8>)>,
    pub name_prefix_hash: Option<Vec<u8>>,
    pub tag: Option<String>,
    pub status: Option<MemberStatus>,
    pub merged_into: Option<MemberId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub target_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
}
