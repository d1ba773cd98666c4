//! The programme document: how a brand's members earn, keep and lose points and tiers.
//!
//! It is one JSON document per brand, versioned: a change stores a new version and every ledger
//! posting records the version that produced it, so "why did I get 37 points" always has an
//! answer. Money is in minor units (fen); rates and multipliers are decimals, never floats.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Validator;
use crate::member::Channel;
use crate::money::MAX_AMOUNT;
use crate::ValidationError;

/// The demo programme, with the defaults the SPEC names (1 yuan = 1 point, member day ×3 on
/// the 8th, birthday month ×2, 7 pending days, 12-month expiry, 普通/銀卡/金卡/鉑金/鑽石).
pub const DEMO_PROGRAMME_JSON: &str = include_str!("../../programmes/demo.json");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Programme {
    /// Money value of one point in minor units, for the liability report (5 fen: 1,000 points
    /// are worth a 50-yuan coupon).
    pub point_value_minor: i64,
    /// How fractional points are turned into whole points.
    #[serde(default)]
    pub rounding: Rounding,
    /// Money-based earning; for each purchase line the **first** rule that matches applies.
    pub earn_rules: Vec<EarnRule>,
    #[serde(default)]
    pub multipliers: Multipliers,
    #[serde(default)]
    pub caps: Caps,
    /// Days a purchase's points stay pending (the return window) before they can be spent.
    pub pending_days: u16,
    pub expiry: Expiry,
    /// Points for actions (check-in, review, share, profile completed, referral).
    #[serde(default)]
    pub actions: BTreeMap<ActionKind, ActionReward>,
    /// What a refund does when the points it should reverse were already spent.
    #[serde(default)]
    pub refund_policy: RefundPolicy,
    /// Whether and how members may give points to each other; absent: they may not.
    pub transfers: Option<TransferPolicy>,
    pub tiers: TierProgramme,
    /// Stored value (儲值): top-up bonuses and limits.
    #[serde(default)]
    pub wallet: crate::commerce::wallet::WalletRules,
    /// Paid membership plans (付費會員) members can buy.
    #[serde(default)]
    pub plans: Vec<crate::commerce::plans::Plan>,
}

/// Limits on point transfers between members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransferPolicy {
    /// Smallest transfer.
    pub min_points: i64,
    /// Transfers a member may send per day (brand time zone); absent: no limit.
    pub per_day: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Down to a whole point (the member never gets a point they did not fully earn).
    #[default]
    Floor,
    /// To the nearest point, halves up.
    HalfUp,
    Ceil,
}

impl Rounding {
    pub fn apply(self, d: Decimal) -> i64 {
        use rust_decimal::prelude::ToPrimitive;
        use rust_decimal::RoundingStrategy;
        let r = match self {
            Rounding::Floor => d.floor(),
            Rounding::HalfUp => d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero),
            Rounding::Ceil => d.ceil(),
        };
        r.to_i64().unwrap_or(i64::MAX)
    }
}

/// `points` for every `per_amount` minor units paid on matching lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EarnRule {
    /// Stable name shown in the breakdown, e.g. `base` or `cosmetics-double`.
    pub id: String,
    pub label: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1"))]
    pub points: Decimal,
    /// Minor units per `points` (100 = per yuan).
    pub per_amount: i64,
    /// Only lines of these categories (empty: any).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Only at these store codes (empty: any).
    #[serde(default)]
    pub stores: Vec<String>,
    /// Only on these channels (empty: any).
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// The rule applies only when the purchase's paid amount reaches this (minor units).
    #[serde(default)]
    pub min_spend: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Multipliers {
    /// Member day: a day of the month on which points are multiplied.
    pub member_day: Option<MemberDay>,
    /// Multiplier during the member's birthday month.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub birthday_month: Option<Decimal>,
    #[serde(default)]
    pub stacking: Stacking,
    /// Campaign boosts with a window and optional store/channel limits.
    #[serde(default)]
    pub campaigns: Vec<CampaignBoost>,
    /// Consecutive-purchase bonus: a multiplier for members who bought in each of the last N
    /// weeks or months (this purchase's period included).
    pub streak: Option<StreakBonus>,
}

/// Rewards habit rather than basket size: "buy in three months running, earn ×1.2".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StreakBonus {
    pub period: StreakPeriod,
    /// Periods in a row with a purchase, this purchase's own period included (2–12).
    pub periods: u8,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub multiplier: Decimal,
}

/// Calendar periods in the brand's time zone; weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StreakPeriod {
    Week,
    Month,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberDay {
    /// 1–28, so that it exists in every month.
    pub day_of_month: u8,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub multiplier: Decimal,
}

/// How several multipliers that apply together combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    /// ×3 on member day and ×2 in the birthday month give ×6.
    #[default]
    Multiply,
    /// The bonuses add: ×3 and ×2 give ×(1 + 2 + 1) = ×4.
    Add,
    /// Only the largest applies: ×3.
    Max,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CampaignBoost {
    pub id: String,
    pub label: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub multiplier: Decimal,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    #[serde(default)]
    pub stores: Vec<String>,
    #[serde(default)]
    pub channels: Vec<Channel>,
}

/// Limits on purchase points; absent means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Caps {
    pub per_order: Option<i64>,
    /// Per member per calendar day in the brand's time zone.
    pub per_member_per_day: Option<i64>,
    /// Per member per calendar month in the brand's time zone.
    pub per_member_per_month: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expiry {
    /// Points expire N months after they were earned.
    RollingMonths {
        months: u16,
    },
    /// Points expire at the end of the calendar year (brand time zone) `years_after` years after
    /// the year they were earned (0: the same year).
    EndOfYear {
        years_after: u8,
    },
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CheckIn,
    Review,
    Share,
    ProfileCompleted,
    Referral,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CheckIn => "check_in",
            ActionKind::Review => "review",
            ActionKind::Share => "share",
            ActionKind::ProfileCompleted => "profile_completed",
            ActionKind::Referral => "referral",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionReward {
    pub points: i64,
    /// How many times a member may be rewarded per day (brand time zone).
    pub per_day: Option<u32>,
    /// How many times a member may be rewarded at all (e.g. 1 for profile completed).
    pub per_member: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefundPolicy {
    /// Reverse everything; what the balance cannot cover becomes a debt repaid by the next
    /// earnings (shown on the statement).
    #[default]
    AllowDebt,
    /// Reverse what the balance covers; the rest is written off (shown on the statement).
    WithinBalance,
    /// Reverse only the order's points that are still pending; spent points stay spent.
    PendingOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TierProgramme {
    /// Whether a tier needs any one of its thresholds or all of them (a composite).
    #[serde(default)]
    pub qualify: Qualify,
    pub window: QualifyingWindow,
    pub review: TierReview,
    /// Lowest first; the first has no thresholds and is where every member starts.
    pub levels: Vec<Tier>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Qualify {
    #[default]
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum QualifyingWindow {
    RollingMonths { months: u16 },
    CalendarYear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TierReview {
    /// A member's tier is reviewed this many months after it was reached or last confirmed.
    pub every_months: u16,
    /// Once a review finds a member below their tier, they keep it this many days more.
    pub grace_days: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Stable code, e.g. `gold`.
    pub code: String,
    /// Display name, e.g. 金卡.
    pub name: String,
    pub name_en: Option<String>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Points multiplier for purchases while in this tier.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub multiplier: Decimal,
    /// Percent off the tier price at the till (10 = 9折).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default)]
    pub discount_percent: Decimal,
    #[serde(default)]
    pub perks: Vec<String>,
}

/// What a member must reach within the qualifying window; absent thresholds are not used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Purchase points earned (net of refunds).
    pub points: Option<i64>,
    /// Money spent, minor units (net of refunds).
    pub spend: Option<i64>,
    /// Purchases not fully refunded.
    pub visits: Option<i64>,
}

impl Thresholds {
    fn is_empty(&self) -> bool {
        self.points.is_none() && self.spend.is_none() && self.visits.is_none()
    }
}

/// Longest programme document accepted, in bytes.
pub const MAX_PROGRAMME_BYTES: usize = 256 * 1024;
/// Most points one sale may earn under a programme (see `Programme::check_largest_sale`).
pub const MAX_SALE_POINTS: i64 = 1_000_000_000_000;
const MAX_RULES: usize = 200;

impl Programme {
    /// Parses and validates a document; errors name the JSON path of each offending field.
    pub fn parse_json(text: &str) -> Result<Programme, ValidationError> {
        if text.len() > MAX_PROGRAMME_BYTES {
            return Err(ValidationError::field(
                "programme",
                format!("is larger than {MAX_PROGRAMME_BYTES} bytes"),
            ));
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let programme: Programme = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path == "?" {
                "programme".to_owned()
            } else {
                path
            };
            ValidationError::field(field, e.into_inner().to_string())
        })?;
        programme.validate()?;
        Ok(programme)
    }

    pub fn demo() -> Programme {
        Programme::parse_json(DEMO_PROGRAMME_JSON).expect("the bundled demo programme is valid")
    }

    /// Checks the rules a document must obey beyond its shape.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Validator::default();
        self.wallet.validate(&mut v, "wallet");
        for (i, plan) in self.plans.iter().enumerate() {
            plan.validate(&mut v, &format!("plans[{i}]"));
            if self.plans[..i].iter().any(|p| p.code == plan.code) {
                v.push(format!("plans[{i}].code"), "is used by another plan");
            }
        }
        let one = Decimal::ONE;
        let hundred = Decimal::from(100);
        let max_mult = Decimal::from(100);
        if self.point_value_minor < 0 || self.point_value_minor > 1_000_000 {
            v.push("point_value_minor", "must be between 0 and 1000000");
        }
        if self.earn_rules.len() > MAX_RULES {
            v.push("earn_rules", format!("at most {MAX_RULES} rules"));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, r) in self.earn_rules.iter().enumerate() {
            let f = |name: &str| format!("earn_rules[{i}].{name}");
            check_id(&mut v, &f("id"), &r.id);
            if !ids.insert(r.id.as_str()) {
                v.push(f("id"), "is used by another rule");
            }
            check_label(&mut v, &f("label"), &r.label);
            if r.points < Decimal::ZERO || r.points > Decimal::from(10_000) {
                v.push(f("points"), "must be between 0 and 10000");
            }
            if r.per_amount < 1 || r.per_amount > 100_000_000 {
                v.push(f("per_amount"), "must be between 1 and 100000000 minor units");
            }
            if r.min_spend < 0 {
                v.push(f("min_spend"), "must not be negative");
            }
            for (j, c) in r.categories.iter().enumerate() {
                check_id(&mut v, &f(&format!("categories[{j}]")), c);
            }
            for (j, s) in r.stores.iter().enumerate() {
                check_id(&mut v, &f(&format!("stores[{j}]")), s);
            }
        }
        if let Some(md) = &self.multipliers.member_day {
            if !(1..=28).contains(&md.day_of_month) {
                v.push("multipliers.member_day.day_of_month", "must be between 1 and 28");
            }
            if md.multiplier < one || md.multiplier > max_mult {
                v.push("multipliers.member_day.multiplier", "must be between 1 and 100");
            }
        }
        if let Some(b) = self.multipliers.birthday_month {
            if b < one || b > max_mult {
                v.push("multipliers.birthday_month", "must be between 1 and 100");
            }
        }
        if let Some(streak) = &self.multipliers.streak {
            if !(2..=12).contains(&streak.periods) {
                v.push("multipliers.streak.periods", "must be between 2 and 12");
            }
            if streak.multiplier < one || streak.multiplier > max_mult {
                v.push("multipliers.streak.multiplier", "must be between 1 and 100");
            }
        }
        for (i, c) in self.multipliers.campaigns.iter().enumerate() {
            let f = |name: &str| format!("multipliers.campaigns[{i}].{name}");
            check_id(&mut v, &f("id"), &c.id);
            check_label(&mut v, &f("label"), &c.label);
            if c.multiplier < one || c.multiplier > max_mult {
                v.push(f("multiplier"), "must be between 1 and 100");
            }
            if c.ends_at <= c.starts_at {
                v.push(f("ends_at"), "must be after starts_at");
            }
        }
        for (name, cap) in [
            ("caps.per_order", self.caps.per_order),
            ("caps.per_member_per_day", self.caps.per_member_per_day),
            ("caps.per_member_per_month", self.caps.per_member_per_month),
        ] {
            if cap.is_some_and(|c| c < 0) {
                v.push(name, "must not be negative");
            }
        }
        if self.pending_days > 365 {
            v.push("pending_days", "must be at most 365");
        }
        match self.expiry {
            Expiry::RollingMonths { months } if !(1..=120).contains(&months) => {
                v.push("expiry.months", "must be between 1 and 120")
            }
            Expiry::EndOfYear { years_after } if years_after > 10 => {
                v.push("expiry.years_after", "must be at most 10")
            }
            _ => {}
        }
        for (kind, reward) in &self.actions {
            let f = |name: &str| format!("actions.{}.{name}", kind.as_str());
            if !(0..=1_000_000).contains(&reward.points) {
                v.push(f("points"), "must be between 0 and 1000000");
            }
            if reward.per_day == Some(0) || reward.per_member == Some(0) {
                v.push(
                    f("per_day"),
                    "a limit of 0 disables the action; remove the action instead",
                );
            }
        }
        if let Some(t) = &self.transfers {
            if !(1..=1_000_000).contains(&t.min_points) {
                v.push("transfers.min_points", "must be between 1 and 1000000");
            }
            if t.per_day == Some(0) {
                v.push(
                    "transfers.per_day",
                    "a limit of 0 disables transfers; remove `transfers` instead",
                );
            }
        }
        self.tiers.validate(&mut v, one, hundred, max_mult);
        if v.is_empty() {
            self.check_largest_sale(&mut v);
        }
        v.finish()
    }

    /// Refuses a programme under which one sale could earn more than [`MAX_SALE_POINTS`]: the
    /// fastest rule on a sale of the largest amount, with every multiplier there is at once (the
    /// tier's and plan's largest), under the per-order cap if there is one. Below that bound the
    /// earning arithmetic cannot overflow, and no balance nears `i64`'s limit.
    fn check_largest_sale(&self, v: &mut Validator) {
        let Some((i, rate)) = self
            .earn_rules
            .iter()
            .map(|r| r.points / Decimal::from(r.per_amount))
            .enumerate()
            .max_by(|a, b| a.1.cmp(&b.1))
        else {
            return;
        };
        let m = &self.multipliers;
        let mut factors: Vec<Decimal> = [
            m.member_day.as_ref().map(|d| d.multiplier),
            m.birthday_month,
            m.streak.as_ref().map(|s| s.multiplier),
            self.tiers.levels.iter().map(|t| t.multiplier).max(),
            self.plans.iter().map(|p| p.points_multiplier).max(),
        ]
        .into_iter()
        .flatten()
        .collect();
        factors.extend(m.campaigns.iter().map(|c| c.multiplier));
        let factor = match m.stacking {
            Stacking::Max => factors.into_iter().max(),
            Stacking::Multiply => factors
                .into_iter()
                .try_fold(Decimal::ONE, |a, f| a.checked_mul(f)),
            Stacking::Add => factors
                .into_iter()
                .try_fold(Decimal::ONE, |a, f| a.checked_add(f - Decimal::ONE)),
        };
        // `None` on the way: beyond what a decimal holds, so beyond the bound.
        let largest = factor
            .and_then(|f| f.max(Decimal::ONE).checked_mul(rate))
            .and_then(|d| d.checked_mul(Decimal::from(MAX_AMOUNT)))
            .unwrap_or(Decimal::MAX);
        let capped = self.caps.per_order.is_some_and(|cap| cap <= MAX_SALE_POINTS);
        if !capped && largest > Decimal::from(MAX_SALE_POINTS) {
            v.push(
                format!("earn_rules[{i}].points"),
                format!(
                    "with every multiplier at once, a sale of {MAX_AMOUNT} minor units would earn \
                     about {} points, more than {MAX_SALE_POINTS}: lower the rate or the \
                     multipliers, or set caps.per_order",
                    largest.round()
                ),
            );
        }
    }

    /// Position of a tier by code.
    pub fn tier_index(&self, code: &str) -> Option<usize> {
        self.tiers.levels.iter().position(|t| t.code == code)
    }
}

impl TierProgramme {
    fn validate(&self, v: &mut Validator, one: Decimal, hundred: Decimal, max_mult: Decimal) {
        if !(1..=5).contains(&self.levels.len()) {
            v.push("tiers.levels", "must have between 1 and 5 tiers (3–5 is usual)");
        }
        if let QualifyingWindow::RollingMonths { months } = self.window {
            if !(1..=60).contains(&months) {
                v.push("tiers.window.months", "must be between 1 and 60");
            }
        }
        if !(1..=60).contains(&self.review.every_months) {
            v.push("tiers.review.every_months", "must be between 1 and 60");
        }
        if self.review.grace_days > 366 {
            v.push("tiers.review.grace_days", "must be at most 366");
        }
        let mut codes = std::collections::HashSet::new();
        let mut previous: Option<&Thresholds> = None;
        for (i, t) in self.levels.iter().enumerate() {
            let f = |name: &str| format!("tiers.levels[{i}].{name}");
            check_id(v, &f("code"), &t.code);
            if !codes.insert(t.code.as_str()) {
                v.push(f("code"), "is used by another tier");
            }
            check_label(v, &f("name"), &t.name);
            if let Some(n) = &t.name_en {
                check_label(v, &f("name_en"), n);
            }
            if t.multiplier < one || t.multiplier > max_mult {
                v.push(f("multiplier"), "must be between 1 and 100");
            }
            if t.discount_percent < Decimal::ZERO || t.discount_percent >= hundred {
                v.push(f("discount_percent"), "must be at least 0 and below 100");
            }
            for (j, p) in t.perks.iter().enumerate() {
                check_label(v, &f(&format!("perks[{j}]")), p);
            }
            for (name, x) in [
                ("points", t.thresholds.points),
                ("spend", t.thresholds.spend),
                ("visits", t.thresholds.visits),
            ] {
                if x.is_some_and(|x| x <= 0) {
                    v.push(f(&format!("thresholds.{name}")), "must be positive");
                }
            }
            if i == 0 {
                if !t.thresholds.is_empty() {
                    v.push(
                        f("thresholds"),
                        "the first tier is where members start: no thresholds",
                    );
                }
            } else if t.thresholds.is_empty() {
                v.push(f("thresholds"), "needs at least one of points, spend, visits");
            } else if let Some(prev) = previous.filter(|p| !p.is_empty()) {
                for (name, a, b) in [
                    ("points", prev.points, t.thresholds.points),
                    ("spend", prev.spend, t.thresholds.spend),
                    ("visits", prev.visits, t.thresholds.visits),
                ] {
                    if let (Some(a), Some(b)) = (a, b) {
                        if b <= a {
                            v.push(
                                f(&format!("thresholds.{name}")),
                                "must be higher than the tier below",
                            );
                        }
                    }
                }
            }
            previous = Some(&t.thresholds);
        }
    }
}

fn check_id(v: &mut Validator, field: &str, s: &str) {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        v.push(field, "must be 1–64 letters, digits, `-`, `_`, `.` or `:`");
    }
}

fn check_label(v: &mut Validator, field: &str, s: &str) {
    if s.trim().is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
        v.push(field, "must be 1–100 characters without control characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_programme_is_valid_and_has_the_spec_defaults() {
        let p = Programme::demo();
        assert_eq!(
            p.earn_rules.last().map(|r| (r.points, r.per_amount)),
            Some((Decimal::ONE, 100))
        );
        assert_eq!(p.pending_days, 7);
        assert_eq!(p.expiry, Expiry::RollingMonths { months: 12 });
        let md = p.multipliers.member_day.as_ref().map(|m| m.multiplier);
        assert_eq!(md, Some(Decimal::from(3)));
        assert_eq!(p.multipliers.birthday_month, Some(Decimal::from(2)));
        let names: Vec<_> = p.tiers.levels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["普通", "銀卡", "金卡", "鉑金", "鑽石"]);
        assert_eq!(p.tiers.levels[1].thresholds.points, Some(5_000));
        assert_eq!(p.tiers.levels[2].thresholds.points, Some(10_000));
        assert_eq!(p.tiers.levels[2].thresholds.spend, Some(1_000_000));
    }

    #[test]
    fn errors_name_the_path_of_the_field() {
        let mut doc: serde_json::Value = serde_json::from_str(DEMO_PROGRAMME_JSON).unwrap();
        doc["earn_rules"][0]["per_amount"] = serde_json::json!(0);
        doc["tiers"]["levels"][2]["thresholds"]["points"] = serde_json::json!(100);
        let err = Programme::parse_json(&doc.to_string()).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"earn_rules[0].per_amount"), "{fields:?}");
        assert!(
            fields.contains(&"tiers.levels[2].thresholds.points"),
            "{fields:?}"
        );

        doc = serde_json::from_str(DEMO_PROGRAMME_JSON).unwrap();
        doc["multipliers"]["member_day"]["multipler"] = serde_json::json!(3);
        let err = Programme::parse_json(&doc.to_string()).unwrap_err();
        assert_eq!(err.errors[0].field, "multipliers.member_day.multipler");
        assert!(err.errors[0].reason.contains("multipler"), "{err}");

        let err = Programme::parse_json("{").unwrap_err();
        assert_eq!(err.errors[0].field, "programme");
    }

    // Fuzz target (proptest; cargo-fuzz needs nightly). Operators edit this document in the
    // console and by API: whatever they send, parsing never panics, a refusal names a field, and
    // a document that is accepted can be evaluated on any basket without panicking or overflowing.
    mod fuzz {
        use proptest::prelude::*;
        use serde_json::Value;
        use time::macros::{date, datetime};

        use super::*;
        use crate::loyalty::earning::{evaluate, EarnLine, EarnedSoFar, PurchaseFacts};
        use crate::member::Channel;

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                (-1_000i64..1_000).prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
                "[0-9]{1,3}(\\.[0-9]{1,30})?".prop_map(Value::String),
                "[a-z_]{0,12}".prop_map(Value::String),
                "\\PC{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(2, 8, 3, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z_]{1,10}", inner, 0..3)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Every JSON pointer of a document, so that a mutation can land anywhere in it.
        fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
            out.push(at.clone());
            match v {
                Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{k}"), out)),
                Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
                _ => {}
            }
        }

        fn demo_pointers() -> Vec<String> {
            let doc: Value = serde_json::from_str(DEMO_PROGRAMME_JSON).unwrap();
            let mut out = Vec::new();
            pointers(&doc, String::new(), &mut out);
            out
        }

        fn evaluate_everywhere(p: &Programme) {
            let lines = [
                EarnLine {
                    category: Some("apparel".into()),
                    amount: 99_999_999,
                    reward: false,
                },
                EarnLine {
                    category: None,
                    amount: 1,
                    reward: false,
                },
                EarnLine {
                    category: Some("gift_card".into()),
                    amount: 12_345,
                    reward: true,
                },
            ];
            let mut tiers: Vec<Option<&Tier>> = p.tiers.levels.iter().map(Some).collect();
            tiers.push(None);
            for tier in tiers {
                for (day, birth) in [(date!(2026 - 11 - 08), Some(11)), (date!(2026 - 02 - 28), None)] {
                    let facts = PurchaseFacts {
                        lines: &lines,
                        paid_amount: 100_012_345,
                        store_code: Some("SH01"),
                        channel: Channel::Pos,
                        at: datetime!(2026-11-08 10:00 UTC),
                        local_date: day,
                        birth_month: birth,
                        tier,
                        streak: 12,
                        plan: p.plans.first(),
                    };
                    let e = evaluate(
                        p,
                        &facts,
                        EarnedSoFar {
                            today: 0,
                            this_month: 0,
                        },
                    );
                    assert!(e.points >= 0, "{e:?}");
                    assert_eq!(e.items.iter().map(|i| i.points).sum::<i64>(), e.points);
                    assert_eq!(e.line_points.iter().sum::<i64>(), e.points);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
                if let Err(e) = Programme::parse_json(&text) {
                    prop_assert!(!e.errors.is_empty());
                }
            }

            /// One to three fields of the demo programme replaced by anything.
            #[test]
            fn mutated_documents_are_refused_by_field_or_safe_to_run(
                picks in prop::collection::vec((any::<prop::sample::Index>(), any_json()), 1..4),
            ) {
                let targets = demo_pointers();
                let mut doc: Value = serde_json::from_str(DEMO_PROGRAMME_JSON).unwrap();
                for (at, value) in picks {
                    let target = at.get(&targets);
                    if let Some(slot) = doc.pointer_mut(target) {
                        *slot = value;
                    }
                }
                match Programme::parse_json(&doc.to_string()) {
                    Ok(p) => {
                        evaluate_everywhere(&p);
                        // What was accepted reads back the same.
                        let again = Programme::parse_json(&serde_json::to_string(&p).unwrap());
                        prop_assert_eq!(again.ok(), Some(p));
                    }
                    Err(e) => {
                        prop_assert!(!e.errors.is_empty());
                        for f in &e.errors {
                            prop_assert!(!f.field.is_empty() && !f.reason.is_empty(), "{f:?}");
                        }
                    }
                }
            }
        }
    }
}
