//! What the loyalty use cases return.

use huiyuan_domain::ids::{MemberId, StoreId};
use huiyuan_domain::loyalty::earning::Earning;
use huiyuan_domain::loyalty::purchase::PurchaseLine;
use huiyuan_domain::loyalty::tiers::TierMetrics;
use huiyuan_domain::member::Channel;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A member's points at a glance.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BalanceView {
    pub member_id: MemberId,
    /// Spendable now.
    pub available: i64,
    /// Earned, inside the return window; becomes available when it closes.
    pub pending: i64,
    /// Reversals the balance could not cover; the next earnings repay it first.
    pub debt: i64,
    /// Available points that expire within the next 30 days.
    pub expiring_soon: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expiring_before: OffsetDateTime,
    /// The next expiry date and how many points expire then.
    pub next_expiry: Option<ExpiryView>,
    pub tier: TierView,
    /// Money value of the available points (minor units), as the programme prices a point.
    pub available_value: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExpiryView {
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    pub points: i64,
}

/// A member's tier, its benefits (for the till) and the progress to the next one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierView {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub level: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub review_at: Option<OffsetDateTime>,
    /// Set when a review found the member below this tier: it is kept until then.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub grace_until: Option<OffsetDateTime>,
    pub multiplier: String,
    /// Percent off at the till (10 = 9折).
    pub discount_percent: String,
    pub perks: Vec<String>,
    /// What counts towards qualification in the current window.
    pub qualifying: TierMetrics,
    pub next: Option<NextTierView>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NextTierView {
    pub code: String,
    pub name: String,
    /// What is still missing for each threshold the next tier uses (0 where met or unused).
    pub missing: TierMetrics,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierChangeView {
    pub id: String,
    pub from_tier: Option<String>,
    pub to_tier: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// One line of a member's statement.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryView {
    pub id: String,
    pub seq: i64,
    /// `earn`, `action`, `activate`, `redeem`, `expire`, `refund_reversal`, `adjustment`,
    /// `transfer_out`, `transfer_in`, `merge_out`, `merge_in`.
    pub kind: String,
    pub available_delta: i64,
    pub pending_delta: i64,
    pub debt_delta: i64,
    pub lot_id: Option<String>,
    /// The order, refund, or other reference the entry belongs to.
    pub reference: Option<String>,
    pub programme_version: Option<i64>,
    /// Why: the rules and multipliers applied, the lots consumed, the reason given.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    /// SHA-256 of the entry chained to the previous one (hex).
    pub hash: String,
}

/// A recorded purchase and what it earned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurchaseView {
    pub id: String,
    pub order_id: String,
    pub member_id: MemberId,
    pub store_id: Option<StoreId>,
    pub channel: Channel,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub occurred_at: OffsetDateTime,
    pub paid_amount: i64,
    /// The part of the paid amount that earned points.
    pub eligible_amount: i64,
    pub points: i64,
    pub points_reversed: i64,
    pub refunded_amount: i64,
    pub status: huiyuan_domain::loyalty::purchase::PurchaseStatus,
    pub lines: Vec<PurchaseLine>,
    /// The itemised breakdown: which rule, multiplier and cap gave or took how many points.
    pub earning: Earning,
    pub programme_version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// The answer to `POST /v1/transactions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurchaseOutcome {
    pub purchase: PurchaseView,
    /// False when the order was already recorded: nothing changed this time.
    pub created: bool,
    /// True when this purchase enrolled the member ("pay and you are a member").
    pub member_enrolled: bool,
    /// Debt repaid from this purchase's points before the rest was credited.
    pub debt_repaid: i64,
    pub tier_change: Option<TierChangeView>,
}

/// What a refund did; stored and returned as is when the refund is sent again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundOutcome {
    pub refund_id: String,
    pub order_id: String,
    pub member_id: MemberId,
    pub amount: i64,
    /// Points the refund reversed in all…
    pub points_reversed: i64,
    /// …taken from the order's pending points,
    pub from_pending: i64,
    /// …from available points,
    pub from_available: i64,
    /// …and added to the member's debt, because they were already spent.
    pub debt_added: i64,
    /// Not reversed at all, under the programme's refund policy.
    pub written_off: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// What an adjustment, redemption or action did; stored and returned as is when repeated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PointsOutcome {
    pub kind: String,
    pub reference: String,
    pub member_id: MemberId,
    /// Signed change to the member's points.
    pub points: i64,
    pub debt_repaid: i64,
    pub available_after: i64,
    pub entry_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}
