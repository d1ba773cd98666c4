//! Rows as the use cases read and write them. Personal data only ever appears here encrypted
//! (`pii_ciphertext`) or as keyed hashes.

use huiyuan_domain::access::Role;
use huiyuan_domain::ids::{ApiKeyId, AuditEventId, BrandId, MemberId, OperatorId, StoreId};
use huiyuan_domain::loyalty::ledger::LotStatus;
use huiyuan_domain::loyalty::purchase::PurchaseStatus;
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

/// One version of a brand's programme document (JSON); versions are never changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgrammeRecord {
    pub brand_id: BrandId,
    pub version: i64,
    pub document: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

/// A member's points balances, the head of their ledger's hash chain, and their tier.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub brand_id: BrandId,
    pub member_id: MemberId,
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    /// Sequence number and hash of the member's latest ledger entry (0 and zeros when none).
    pub last_seq: i64,
    pub last_hash: Vec<u8>,
    pub tier_code: Option<String>,
    pub tier_since: Option<OffsetDateTime>,
    pub tier_review_at: Option<OffsetDateTime>,
    /// Set when a review found the member below their tier: they keep it until then.
    pub tier_grace_until: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

/// Points earned together, with their own maturity and expiry; spending takes the oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct LotRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub member_id: MemberId,
    pub status: LotStatus,
    /// The entry kind that created it (`earn`, `action`, `adjustment`, `merge_in`, …).
    pub source: String,
    /// The order (for purchase points) or other reference.
    pub reference: Option<String>,
    pub amount: i64,
    pub remaining: i64,
    pub earned_at: OffsetDateTime,
    pub matures_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub expiry_notified: bool,
}

/// One append-only ledger entry, chained to the member's previous entry by `prev_hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntryRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub member_id: MemberId,
    pub seq: i64,
    /// An `EntryKind`'s word, kept as stored: the entry's hash covers these bytes, and
    /// `ledger verify` reports a word it does not know instead of failing to read the chain.
    pub kind: String,
    pub available_delta: i64,
    pub pending_delta: i64,
    pub debt_delta: i64,
    pub lot_id: Option<String>,
    pub reference: Option<String>,
    pub programme_version: Option<i64>,
    /// JSON: the rules applied, the lots consumed, the reason given.
    pub detail: String,
    pub actor: String,
    pub created_at: OffsetDateTime,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseRecord {
    pub brand_id: BrandId,
    /// The brand's order number: the natural idempotency key.
    pub order_id: String,
    pub id: String,
    pub member_id: MemberId,
    pub store_id: Option<StoreId>,
    pub channel: String,
    pub occurred_at: OffsetDateTime,
    pub paid_amount: i64,
    pub eligible_amount: i64,
    pub points: i64,
    pub points_reversed: i64,
    pub refunded_amount: i64,
    pub status: PurchaseStatus,
    /// JSON array of lines with their points and refunded quantities.
    pub lines: String,
    /// JSON of the earning breakdown.
    pub earning: String,
    pub programme_version: i64,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundRecord {
    pub brand_id: BrandId,
    pub refund_id: String,
    pub order_id: String,
    pub member_id: MemberId,
    pub amount: i64,
    pub points_reversed: i64,
    /// JSON of the refund's outcome, returned when the refund is sent again, with (under
    /// `request`) what it asked for, which the retry must repeat.
    pub detail: String,
    pub created_at: OffsetDateTime,
}

/// An idempotent points operation (adjustment, redemption, action), keyed by its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    pub brand_id: BrandId,
    pub kind: String,
    pub reference: String,
    pub member_id: MemberId,
    /// JSON of the outcome, returned as is when the operation is sent again.
    pub result: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierChangeRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub member_id: MemberId,
    pub from_tier: Option<String>,
    pub to_tier: String,
    pub reason: String,
    pub created_at: OffsetDateTime,
}

/// A domain event, written in the transaction that caused it, for webhooks and automation.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub event_type: String,
    /// The member (or other record) the event is about.
    pub subject: String,
    pub payload: String,
    /// Jobs set it so that a re-run never emits the same event twice.
    pub dedupe_key: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A periodic job and its lease: one process runs it at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub name: String,
    pub due_at: OffsetDateTime,
    pub lease_owner: Option<String>,
    pub lease_until: Option<OffsetDateTime>,
    pub last_started_at: Option<OffsetDateTime>,
    pub last_finished_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub runs: i64,
}

/// What the analytics read of a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseFact {
    pub member_id: MemberId,
    pub occurred_at: OffsetDateTime,
    /// Paid minus refunded, minor units.
    pub net_amount: i64,
    /// Fully refunded: not a purchase any more.
    pub refunded: bool,
}

/// Which purchases an analytics reader reads: all of a brand's, or one store's or channel's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurchaseFilter {
    pub store_id: Option<StoreId>,
    pub channel: Option<String>,
}

/// A purchase's member, time and lines, for the recommender's co-purchase counts.
#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseBasket {
    pub member_id: MemberId,
    pub occurred_at: OffsetDateTime,
    /// JSON array of the stored lines (with their refunded quantities).
    pub lines: String,
    pub refunded: bool,
}

/// When and where a member joined: member growth and lifecycle stages.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberEnrolment {
    pub member_id: MemberId,
    pub enrolled_at: OffsetDateTime,
    pub channel: String,
    pub store_id: Option<StoreId>,
}

/// The sum of a brand's ledger movements of one kind in one time slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerFlow {
    pub kind: String,
    /// Start of the slot.
    pub slot: OffsetDateTime,
    /// Sum of available and pending deltas.
    pub points: i64,
    pub debt: i64,
    pub entries: i64,
}

/// Sums of what a member achieved in a tier's qualifying window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurchaseTotals {
    pub points: i64,
    pub spend: i64,
    pub visits: i64,
}

/// Which sums of [`PurchaseTotals`] a caller needs since an instant. Each one costs the
/// database an aggregate over every purchase since the earliest instant asked (a cap wants
/// only points, a streak only visits, a tier only the metrics its thresholds name), and one
/// not asked for may be returned as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub points: bool,
    pub spend: bool,
    pub visits: bool,
}

impl Sums {
    pub const ALL: Sums = Sums {
        points: true,
        spend: true,
        visits: true,
    };
    pub const POINTS: Sums = Sums {
        points: true,
        spend: false,
        visits: false,
    };
    pub const VISITS: Sums = Sums {
        points: false,
        spend: false,
        visits: true,
    };

    pub fn any(self) -> bool {
        self.points || self.spend || self.visits
    }

    pub fn union(self, other: Sums) -> Sums {
        Sums {
            points: self.points || other.points,
            spend: self.spend || other.spend,
            visits: self.visits || other.visits,
        }
    }
}

/// A brand's outstanding points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointTotals {
    pub members: i64,
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
}

/// The parts of a segment the database answers; each present list is "any of", and all
/// present parts must hold. Only active members are ever in a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentQuery {
    pub tiers: Option<TierSet>,
    pub tags: Option<Vec<String>>,
    /// Plans covering the member at the instant given.
    pub plans: Option<(Vec<String>, OffsetDateTime)>,
    /// Channels the members enrolled through.
    pub channels: Option<Vec<String>>,
}

/// Which tier codes on members' points accounts a segment takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierSet {
    AnyOf(Vec<String>),
    /// Every code but these, members without an account or tier code included: how "the
    /// lowest tier" is asked for, since members who never earned have no tier code stored.
    NoneOf(Vec<String>),
}
