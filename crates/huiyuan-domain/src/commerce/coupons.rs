//! Coupon templates, what a coupon takes off a basket, and why one cannot be used.
//!
//! A template is the offer and its rules; a coupon is one issued instance with its own code,
//! owner and validity. The discount is a pure function of the template's terms and the basket
//! as priced so far, so the till's quote and its commit compute it the same way.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::money;
use crate::error::Validator;
use crate::member::{validate_text, Channel};
use crate::{ErrorCode, ValidationError};

crate::coded! {
    /// Where a coupon a member holds stands. Only an `Issued` coupon can be redeemed; a
    /// redemption refunded puts it back to `Issued` while it is still valid.
    pub enum CouponStatus {
        Issued = "issued",
        Redeemed = "redeemed",
        Expired = "expired",
        Void = "void",
    }
}

crate::coded! {
    /// Whether coupons can still be issued from a template. Coupons already issued from an
    /// archived one stay valid.
    pub enum TemplateStatus {
        Active = "active",
        Archived = "archived",
    }
}

/// Largest discount amount a template may state, minor units (1 million yuan).
pub const MAX_COUPON_AMOUNT: i64 = 100_000_000;
/// Longest validity a template may give, in days after issue.
pub const MAX_VALID_DAYS: u16 = 3_660;

/// What a coupon takes off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Offer {
    /// A fixed amount off the eligible lines [立減 20].
    FixedAmount { amount: i64 },
    /// A percentage off the eligible lines [9折 is 10% off], optionally capped.
    Percentage {
        #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10"))]
        percent: Decimal,
        max_discount: Option<i64>,
    },
    /// An amount off once the eligible lines reach a threshold [滿100減20].
    Threshold { min_spend: i64, amount: i64 },
    /// One unit of a product free: the basket must hold it.
    FreeItem { sku: String },
    /// The basket's shipping fee waived.
    FreeShipping,
}

/// When an issued coupon can be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Validity {
    /// The same window for every coupon of the template.
    Window {
        #[serde(with = "time::serde::rfc3339")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        starts_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        ends_at: OffsetDateTime,
    },
    /// From issue, for this many days.
    DaysAfterIssue { days: u16 },
}

impl Validity {
    /// The window of a coupon issued at `issued_at`: [from, until).
    pub fn window(&self, issued_at: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        match self {
            Validity::Window { starts_at, ends_at } => (*starts_at, *ends_at),
            Validity::DaysAfterIssue { days } => (issued_at, issued_at + Duration::days(i64::from(*days))),
        }
    }
}

/// Where and for whom a coupon can be used. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Store codes.
    pub stores: Vec<String>,
    pub channels: Vec<Channel>,
    /// Only lines of these categories count (and are discounted).
    pub categories: Vec<String>,
    /// Tier codes.
    pub tiers: Vec<String>,
    /// The eligible lines must add up to at least this, minor units.
    pub min_spend: i64,
    /// At most this many coupons of the template per member (issued, whatever their state).
    pub per_member: Option<u32>,
}

/// A coupon template as an operator writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    pub name: String,
    pub description: Option<String>,
    pub offer: Offer,
    pub validity: Validity,
    #[serde(default)]
    pub limits: Limits,
    /// Whether it combines with other coupons on one sale (non-stackable coupons go alone).
    #[serde(default)]
    pub stackable: bool,
    /// How many coupons may ever be issued; none: unlimited.
    pub stock: Option<i64>,
    /// What one redemption costs the brand, minor units, for campaign accounting.
    #[serde(default)]
    pub cost_per_redemption: i64,
    /// A public code members type to claim one coupon each (線上領券); unique in the brand.
    pub claim_code: Option<String>,
    /// The price in points when the template is in the rewards catalogue [1,000 points → 50 yuan].
    pub points_price: Option<i64>,
}

/// The parts of a template that decide whether and how much a coupon takes off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Terms {
    pub offer: Offer,
    pub limits: Limits,
    pub stackable: bool,
}

/// Checks a template; returns it normalised (trimmed texts, upper-case claim code).
pub fn validate_template(t: &TemplateInput) -> Result<TemplateInput, ValidationError> {
    let mut v = Validator::default();
    let name = v.check(validate_text("name", &t.name, 100)).unwrap_or_default();
    let description = t
        .description
        .as_deref()
        .and_then(|d| v.check(validate_text("description", d, 1_000)));
    let amount_ok = |a: i64| (1..=MAX_COUPON_AMOUNT).contains(&a);
    let mut offer = t.offer.clone();
    match &mut offer {
        Offer::FixedAmount { amount } if !amount_ok(*amount) => v.push(
            "offer.amount",
            format!("must be between 1 and {MAX_COUPON_AMOUNT} minor units"),
        ),
        Offer::Percentage {
            percent,
            max_discount,
        } => {
            if *percent <= Decimal::ZERO || *percent > Decimal::ONE_HUNDRED || percent.scale() > 2 {
                v.push(
                    "offer.percent",
                    "must be above 0 and at most 100, with at most two decimals",
                );
            }
            if max_discount.is_some_and(|m| !amount_ok(m)) {
                v.push(
                    "offer.max_discount",
                    format!("must be between 1 and {MAX_COUPON_AMOUNT} minor units"),
                );
            }
        }
        Offer::Threshold { min_spend, amount } => {
            if !amount_ok(*amount) {
                v.push(
                    "offer.amount",
                    format!("must be between 1 and {MAX_COUPON_AMOUNT} minor units"),
                );
            }
            if !(1..=MAX_COUPON_AMOUNT).contains(min_spend) || *min_spend < *amount {
                v.push(
                    "offer.min_spend",
                    "must be positive and at least the amount taken off",
                );
            }
        }
        Offer::FreeItem { sku } => {
            if let Some(s) = v.check(validate_text("offer.sku", sku, 64)) {
                *sku = s;
            }
        }
        _ => {}
    }
    match &t.validity {
        Validity::Window { starts_at, ends_at } if ends_at <= starts_at => {
            v.push("validity.ends_at", "must be after starts_at")
        }
        Validity::DaysAfterIssue { days } if !(1..=MAX_VALID_DAYS).contains(days) => {
            v.push("validity.days", format!("must be between 1 and {MAX_VALID_DAYS}"))
        }
        _ => {}
    }
    let mut limits = t.limits.clone();
    for (field, list) in [
        ("limits.stores", &mut limits.stores),
        ("limits.categories", &mut limits.categories),
        ("limits.tiers", &mut limits.tiers),
    ] {
        for (i, item) in list.iter_mut().enumerate() {
            if let Some(s) = v.check(validate_text(&format!("{field}[{i}]"), item, 64)) {
                *item = s;
            }
        }
    }
    if !(0..=MAX_COUPON_AMOUNT).contains(&limits.min_spend) {
        v.push(
            "limits.min_spend",
            format!("must be between 0 and {MAX_COUPON_AMOUNT} minor units"),
        );
    }
    if limits.per_member == Some(0) {
        v.push("limits.per_member", "must be at least 1 when given");
    }
    if t.stock.is_some_and(|s| s < 1) {
        v.push("stock", "must be at least 1 when given");
    }
    if !(0..=MAX_COUPON_AMOUNT).contains(&t.cost_per_redemption) {
        v.push("cost_per_redemption", "must not be negative");
    }
    let claim_code = t.claim_code.as_deref().and_then(|c| {
        let c = c.trim().to_uppercase();
        if (4..=32).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            Some(c)
        } else {
            v.push("claim_code", "must be 4 to 32 letters, digits or dashes");
            None
        }
    });
    if t.points_price
        .is_some_and(|p| !(1..=crate::loyalty::purchase::MAX_POINTS).contains(&p))
    {
        v.push("points_price", "must be a positive number of points when given");
    }
    v.finish()?;
    Ok(TemplateInput {
        name,
        description,
        offer,
        validity: t.validity.clone(),
        limits,
        stackable: t.stackable,
        stock: t.stock,
        cost_per_redemption: t.cost_per_redemption,
        claim_code,
        points_price: t.points_price,
    })
}

/// A basket line as priced so far: its amount after the tier discount and earlier coupons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: i64,
    /// What the line costs now, minor units.
    pub amount: i64,
    /// A reward line (paid with points or a coupon) never counts towards a coupon.
    pub reward: bool,
}

/// Where, when and by whom a coupon would be used.
#[derive(Debug, Clone, Copy)]
pub struct Occasion<'a> {
    pub store_code: Option<&'a str>,
    pub channel: Channel,
    pub tier_code: &'a str,
    pub at: OffsetDateTime,
    /// The basket's shipping fee, minor units.
    pub shipping: i64,
}

/// Why a coupon cannot be used on this basket: said so a clerk can act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Ineligible {
    NotYetValid {
        #[serde(with = "time::serde::rfc3339")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        valid_from: OffsetDateTime,
    },
    Expired {
        #[serde(with = "time::serde::rfc3339")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        valid_until: OffsetDateTime,
    },
    Store {
        stores: Vec<String>,
    },
    Channel {
        channels: Vec<Channel>,
    },
    Tier {
        tiers: Vec<String>,
    },
    /// The eligible lines fall short of the minimum spend.
    MinSpend {
        min_spend: i64,
        eligible: i64,
    },
    /// No line of the template's categories.
    NoEligibleLines {
        categories: Vec<String>,
    },
    /// The free item is not in the basket.
    ItemMissing {
        sku: String,
    },
    NoShipping,
    /// A non-stackable coupon cannot share the sale with another coupon.
    NotStackable,
}

impl Ineligible {
    pub fn code(&self) -> ErrorCode {
        match self {
            Ineligible::NotYetValid { .. } => ErrorCode::CouponNotYetValid,
            Ineligible::Expired { .. } => ErrorCode::CouponExpired,
            Ineligible::Store { .. } => ErrorCode::CouponNotForStore,
            Ineligible::Channel { .. } => ErrorCode::CouponNotForChannel,
            Ineligible::Tier { .. } => ErrorCode::CouponNotForTier,
            Ineligible::MinSpend { .. } => ErrorCode::CouponMinSpend,
            Ineligible::NoEligibleLines { .. } => ErrorCode::CouponNoEligibleLines,
            Ineligible::ItemMissing { .. } => ErrorCode::CouponItemMissing,
            Ineligible::NoShipping => ErrorCode::CouponNoShipping,
            Ineligible::NotStackable => ErrorCode::CouponNotStackable,
        }
    }

    /// In words, with amounts in major units: "minimum spend 100.00, basket 80.00".
    pub fn message(&self) -> String {
        let at = |t: &OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        match self {
            Ineligible::NotYetValid { valid_from } => format!("valid from {}", at(valid_from)),
            Ineligible::Expired { valid_until } => format!("expired at {}", at(valid_until)),
            Ineligible::Store { stores } => format!("only at stores {}", stores.join(", ")),
            Ineligible::Channel { channels } => format!(
                "only on {}",
                channels
                    .iter()
                    .map(|c| format!("{c:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ineligible::Tier { tiers } => format!("only for tiers {}", tiers.join(", ")),
            Ineligible::MinSpend { min_spend, eligible } => {
                format!("minimum spend {}, basket {}", money(*min_spend), money(*eligible))
            }
            Ineligible::NoEligibleLines { categories } => {
                format!("only for {}; the basket has none", categories.join(", "))
            }
            Ineligible::ItemMissing { sku } => format!("the free item {sku} is not in the basket"),
            Ineligible::NoShipping => "the sale has no shipping fee".into(),
            Ineligible::NotStackable => "cannot be combined with another coupon".into(),
        }
    }
}

/// What a coupon takes off this basket, minor units, with the share of each line (by index;
/// the shipping fee's share for free shipping is returned apart), or why it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    pub total: i64,
    /// (line index, amount) for each line the discount comes off.
    pub lines: Vec<(usize, i64)>,
    /// Taken off the shipping fee.
    pub shipping: i64,
}

/// The discount of a coupon valid in `[valid_from, valid_until)` on a basket.
pub fn discount(
    terms: &Terms,
    valid_from: OffsetDateTime,
    valid_until: OffsetDateTime,
    lines: &[PricedLine],
    occasion: &Occasion<'_>,
) -> Result<Discount, Ineligible> {
    if occasion.at < valid_from {
        return Err(Ineligible::NotYetValid { valid_from });
    }
    if occasion.at >= valid_until {
        return Err(Ineligible::Expired { valid_until });
    }
    let limits = &terms.limits;
    if !limits.stores.is_empty()
        && !occasion
            .store_code
            .is_some_and(|s| limits.stores.iter().any(|x| x == s))
    {
        return Err(Ineligible::Store {
            stores: limits.stores.clone(),
        });
    }
    if !limits.channels.is_empty() && !limits.channels.contains(&occasion.channel) {
        return Err(Ineligible::Channel {
            channels: limits.channels.clone(),
        });
    }
    if !limits.tiers.is_empty() && !limits.tiers.iter().any(|t| t == occasion.tier_code) {
        return Err(Ineligible::Tier {
            tiers: limits.tiers.clone(),
        });
    }
    // The lines the coupon applies to: non-reward lines, of its categories when it has any.
    let eligible: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            !l.reward
                && (limits.categories.is_empty()
                    || l.category.as_ref().is_some_and(|c| limits.categories.contains(c)))
        })
        .map(|(i, _)| i)
        .collect();
    if eligible.is_empty() && !matches!(terms.offer, Offer::FreeShipping) {
        return Err(Ineligible::NoEligibleLines {
            categories: limits.categories.clone(),
        });
    }
    let base: i64 = eligible.iter().map(|&i| lines[i].amount).sum();
    if base < limits.min_spend {
        return Err(Ineligible::MinSpend {
            min_spend: limits.min_spend,
            eligible: base,
        });
    }
    let spread = |total: i64| Discount {
        total,
        lines: allocate(
            total,
            &eligible.iter().map(|&i| (i, lines[i].amount)).collect::<Vec<_>>(),
        ),
        shipping: 0,
    };
    Ok(match &terms.offer {
        Offer::FixedAmount { amount } => spread((*amount).min(base)),
        Offer::Percentage {
            percent,
            max_discount,
        } => {
            // Floor: a percentage never takes off more than it says.
            let off = (Decimal::from(base) * percent / Decimal::ONE_HUNDRED).floor();
            let off = i64::try_from(off.mantissa() / 10i128.pow(off.scale())).unwrap_or(base);
            spread(off.min(max_discount.unwrap_or(i64::MAX)).min(base))
        }
        Offer::Threshold { min_spend, amount } => {
            if base < *min_spend {
                return Err(Ineligible::MinSpend {
                    min_spend: *min_spend,
                    eligible: base,
                });
            }
            spread((*amount).min(base))
        }
        Offer::FreeItem { sku } => {
            let Some(&i) = eligible
                .iter()
                .find(|&&i| lines[i].sku == *sku && lines[i].amount > 0)
            else {
                return Err(Ineligible::ItemMissing { sku: sku.clone() });
            };
            // One unit: the line's amount shared by its quantity (the first unit takes the rest).
            let line = &lines[i];
            let unit = line.amount / line.quantity.max(1) + line.amount % line.quantity.max(1);
            Discount {
                total: unit,
                lines: vec![(i, unit)],
                shipping: 0,
            }
        }
        Offer::FreeShipping => {
            if occasion.shipping <= 0 {
                return Err(Ineligible::NoShipping);
            }
            Discount {
                total: occasion.shipping,
                lines: Vec::new(),
                shipping: occasion.shipping,
            }
        }
    })
}

/// Shares `total` among lines in proportion to their amounts, by largest remainder, so the
/// shares add up exactly and no line gets more than its amount. `(index, amount)` in, the
/// non-zero `(index, share)` out.
pub fn allocate(total: i64, lines: &[(usize, i64)]) -> Vec<(usize, i64)> {
    let sum: i64 = lines.iter().map(|l| l.1.max(0)).sum();
    if total <= 0 || sum <= 0 {
        return Vec::new();
    }
    let total = total.min(sum);
    let mut shares: Vec<(usize, i64, i128)> = lines
        .iter()
        .map(|&(i, amount)| {
            let exact = i128::from(total) * i128::from(amount.max(0));
            (i, (exact / i128::from(sum)) as i64, exact % i128::from(sum))
        })
        .collect();
    let mut left = total - shares.iter().map(|s| s.1).sum::<i64>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Largest remainder first; ties to the earlier line, so the split is deterministic.
    order.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for k in order {
        if left == 0 {
            break;
        }
        if shares[k].1 < lines[k].1 {
            shares[k].1 += 1;
            left -= 1;
        }
    }
    shares
        .into_iter()
        .filter(|s| s.1 > 0)
        .map(|(i, share, _)| (i, share))
        .collect()
}

/// The alphabet of coupon codes: digits and capitals without the look-alikes 0/O and 1/I.
pub const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Random characters in a code: 13 × 5 bits = 65 bits of entropy; a check character follows.
pub const CODE_RANDOM_CHARS: usize = 13;

/// A coupon code from 65 random bits: 13 characters of [`CODE_ALPHABET`] and a check character
/// (Luhn mod 32), shown in groups of four (`ABCD-EFGH-JKLM-NP`).
pub fn code_from_random(random: u128) -> String {
    let mut chars: Vec<u8> = (0..CODE_RANDOM_CHARS)
        .map(|i| CODE_ALPHABET[((random >> (5 * i)) & 31) as usize])
        .collect();
    chars.push(CODE_ALPHABET[check_value(&chars)]);
    code_from_chars(&chars)
}

/// Normalises a typed or scanned code (case, spaces, dashes) and checks its check character:
/// a mistyped character or two swapped neighbours are refused before any lookup.
pub fn normalise_code(input: &str) -> Result<String, ValidationError> {
    let chars: Vec<u8> = input
        .bytes()
        .filter(|b| !matches!(b, b'-' | b' '))
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if chars.len() != CODE_RANDOM_CHARS + 1 || !chars.iter().all(|b| CODE_ALPHABET.contains(b)) {
        return Err(ValidationError::field(
            "code",
            "is not a coupon code (14 characters of 2–9 and A–Z without I and O)",
        ));
    }
    let (body, check) = chars.split_at(CODE_RANDOM_CHARS);
    if CODE_ALPHABET[check_value(body)] != check[0] {
        return Err(ValidationError::field(
            "code",
            "has a typo: its check character does not match",
        ));
    }
    Ok(code_from_chars(&chars))
}

/// The characters in groups of four joined by dashes.
fn code_from_chars(chars: &[u8]) -> String {
    chars
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Luhn mod N over the alphabet's positions: the value whose character completes the code.
fn check_value(body: &[u8]) -> usize {
    let n = CODE_ALPHABET.len();
    let mut sum = 0;
    // From the right, doubling every other value starting with the rightmost, as Luhn does
    // when the check character is to be appended.
    for (i, b) in body.iter().rev().enumerate() {
        let mut v = CODE_ALPHABET.iter().position(|c| c == b).unwrap_or(0);
        if i % 2 == 0 {
            v *= 2;
            v = v / n + v % n;
        }
        sum += v;
    }
    (n - sum % n) % n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn line(sku: &str, category: &str, amount: i64) -> PricedLine {
        PricedLine {
            sku: sku.into(),
            category: Some(category.into()),
            quantity: 1,
            amount,
            reward: false,
        }
    }

    fn terms(offer: Offer) -> Terms {
        Terms {
            offer,
            limits: Limits::default(),
            stackable: false,
        }
    }

    fn occasion() -> Occasion<'static> {
        Occasion {
            store_code: Some("SH01"),
            channel: Channel::Pos,
            tier_code: "silver",
            at: datetime!(2026-06-01 12:00 UTC),
            shipping: 0,
        }
    }

    const FROM: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
    const UNTIL: OffsetDateTime = datetime!(2027-01-01 00:00 UTC);

    #[test]
    fn threshold_takes_off_at_the_threshold_and_names_the_shortfall() {
        let t = terms(Offer::Threshold {
            min_spend: 10_000,
            amount: 2_000,
        });
        let basket = [line("TEE", "apparel", 6_000), line("CAP", "apparel", 4_000)];
        let d = discount(&t, FROM, UNTIL, &basket, &occasion()).unwrap();
        assert_eq!(d.total, 2_000);
        assert_eq!(d.lines, vec![(0, 1_200), (1, 800)]);
        let short = [line("TEE", "apparel", 8_000)];
        let err = discount(&t, FROM, UNTIL, &short, &occasion()).unwrap_err();
        assert_eq!(
            err,
            Ineligible::MinSpend {
                min_spend: 10_000,
                eligible: 8_000
            }
        );
        assert_eq!(err.message(), "minimum spend 100.00, basket 80.00");
    }

    #[test]
    fn limits_refuse_with_a_reason() {
        let mut t = terms(Offer::FixedAmount { amount: 500 });
        let basket = [line("TEE", "apparel", 6_000)];
        t.limits.stores = vec!["BJ01".into()];
        assert_eq!(
            discount(&t, FROM, UNTIL, &basket, &occasion())
                .unwrap_err()
                .code(),
            ErrorCode::CouponNotForStore
        );
        t.limits.stores.clear();
        t.limits.tiers = vec!["gold".into()];
        assert_eq!(
            discount(&t, FROM, UNTIL, &basket, &occasion())
                .unwrap_err()
                .code(),
            ErrorCode::CouponNotForTier
        );
        t.limits.tiers.clear();
        t.limits.categories = vec!["shoes".into()];
        assert_eq!(
            discount(&t, FROM, UNTIL, &basket, &occasion())
                .unwrap_err()
                .code(),
            ErrorCode::CouponNoEligibleLines
        );
        t.limits.categories.clear();
        assert!(matches!(
            discount(&t, UNTIL, UNTIL + Duration::days(1), &basket, &occasion()),
            Err(Ineligible::NotYetValid { .. })
        ));
        assert!(matches!(
            discount(&t, FROM - Duration::days(9), FROM, &basket, &occasion()),
            Err(Ineligible::Expired { .. })
        ));
    }

    #[test]
    fn percentage_floors_and_caps_and_category_limits_choose_the_lines() {
        let mut t = terms(Offer::Percentage {
            percent: Decimal::new(15, 0),
            max_discount: Some(1_000),
        });
        t.limits.categories = vec!["apparel".into()];
        let basket = [line("TEE", "apparel", 3_333), line("MUG", "home", 5_000)];
        // 15% of 33.33 is 4.9995: 4.99 off, only from the apparel line.
        let d = discount(&t, FROM, UNTIL, &basket, &occasion()).unwrap();
        assert_eq!((d.total, d.lines.clone()), (499, vec![(0, 499)]));
        let big = [line("COAT", "apparel", 100_000)];
        assert_eq!(discount(&t, FROM, UNTIL, &big, &occasion()).unwrap().total, 1_000);
    }

    #[test]
    fn a_fixed_amount_never_exceeds_the_basket_and_rewards_do_not_count() {
        let t = terms(Offer::FixedAmount { amount: 5_000 });
        let mut gift = line("GIFT", "apparel", 9_999);
        gift.reward = true;
        let basket = [line("SOCK", "apparel", 1_200), gift];
        let d = discount(&t, FROM, UNTIL, &basket, &occasion()).unwrap();
        assert_eq!((d.total, d.lines), (1_200, vec![(0, 1_200)]));
    }

    #[test]
    fn free_item_takes_one_unit_and_free_shipping_the_fee() {
        let t = terms(Offer::FreeItem { sku: "SOCK".into() });
        let mut socks = line("SOCK", "apparel", 3_001);
        socks.quantity = 3;
        let d = discount(&t, FROM, UNTIL, &[socks], &occasion()).unwrap();
        assert_eq!(d.total, 1_001);
        assert_eq!(
            discount(&t, FROM, UNTIL, &[line("TEE", "apparel", 100)], &occasion()).unwrap_err(),
            Ineligible::ItemMissing { sku: "SOCK".into() }
        );
        let ship = terms(Offer::FreeShipping);
        let mut o = occasion();
        assert_eq!(
            discount(&ship, FROM, UNTIL, &[line("TEE", "apparel", 100)], &o).unwrap_err(),
            Ineligible::NoShipping
        );
        o.shipping = 800;
        let d = discount(&ship, FROM, UNTIL, &[line("TEE", "apparel", 100)], &o).unwrap();
        assert_eq!((d.total, d.shipping), (800, 800));
    }

    #[test]
    fn templates_are_validated_field_by_field() {
        let bad = TemplateInput {
            name: " ".into(),
            description: None,
            offer: Offer::Threshold {
                min_spend: 1_000,
                amount: 2_000,
            },
            validity: Validity::DaysAfterIssue { days: 0 },
            limits: Limits {
                per_member: Some(0),
                ..Limits::default()
            },
            stackable: false,
            stock: Some(0),
            cost_per_redemption: -1,
            claim_code: Some("x!".into()),
            points_price: Some(0),
        };
        let fields: Vec<String> = validate_template(&bad)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        for f in [
            "name",
            "offer.min_spend",
            "validity.days",
            "limits.per_member",
            "stock",
            "cost_per_redemption",
            "claim_code",
            "points_price",
        ] {
            assert!(fields.contains(&f.to_owned()), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn codes_round_trip_and_catch_typos() {
        let code = code_from_random(0x1234_5678_9abc_def0_1234);
        assert_eq!(code.len(), 14 + 3);
        assert_eq!(
            normalise_code(&code.to_lowercase().replace('-', " ")).unwrap(),
            code
        );
        // Every single-character change is caught.
        let plain: Vec<u8> = code.bytes().filter(|b| *b != b'-').collect();
        for i in 0..plain.len() {
            for &c in CODE_ALPHABET {
                if c == plain[i] {
                    continue;
                }
                let mut typo = plain.clone();
                typo[i] = c;
                assert!(normalise_code(std::str::from_utf8(&typo).unwrap()).is_err());
            }
        }
        assert!(normalise_code("ABCD").is_err());
        assert!(normalise_code("0OIL-0OIL-0OIL-00").is_err());
    }

    proptest! {
        #[test]
        fn allocation_adds_up_and_never_exceeds_a_line(
            total in 0i64..1_000_000, amounts in prop::collection::vec(0i64..100_000, 1..12)) {
            let lines: Vec<(usize, i64)> = amounts.iter().copied().enumerate().collect();
            let shares = allocate(total, &lines);
            let sum: i64 = amounts.iter().sum();
            prop_assert_eq!(shares.iter().map(|s| s.1).sum::<i64>(), total.min(sum));
            for (i, share) in shares {
                prop_assert!(share > 0 && share <= amounts[i]);
            }
        }

        #[test]
        fn a_discount_never_exceeds_what_it_applies_to(
            amounts in prop::collection::vec(0i64..50_000, 1..6),
            offer in prop_oneof![
                (1i64..100_000).prop_map(|amount| Offer::FixedAmount { amount }),
                (1u32..=100, prop::option::of(1i64..10_000)).prop_map(|(p, max_discount)| Offer::Percentage { percent: Decimal::from(p), max_discount }),
                (1i64..50_000, 1i64..50_000).prop_map(|(a, b)| Offer::Threshold { min_spend: a.max(b), amount: a.min(b) }),
            ],
        ) {
            let basket: Vec<PricedLine> = amounts.iter().map(|&a| line("X", "c", a)).collect();
            if let Ok(d) = discount(&terms(offer), FROM, UNTIL, &basket, &occasion()) {
                prop_assert!(d.total <= amounts.iter().sum::<i64>());
                prop_assert_eq!(d.lines.iter().map(|l| l.1).sum::<i64>(), d.total);
                for (i, share) in d.lines { prop_assert!(share <= amounts[i]); }
            }
        }

        #[test]
        fn every_code_made_is_accepted(random in any::<u128>()) {
            let code = code_from_random(random);
            prop_assert_eq!(normalise_code(&code).unwrap(), code);
        }
    }
}
