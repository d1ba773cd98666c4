//! Stored value (儲值): top-ups with bonus rules, payments and refunds, with the principal (money
//! the member paid) and the bonus (money the brand gave) kept apart, and the wallet's own
//! append-only, hash-chained ledger.
//!
//! Rules of the money:
//! - A payment takes principal and bonus **in proportion to the balances**, so neither is
//!   spent down first and a refund of the sale returns each to where it came from.
//! - Refunding (part of) a top-up returns its principal and claws back its bonus in the same
//!   proportion, counted cumulatively so partial refunds never claw back more than was given.
//!   Bonus already spent cannot be clawed back from the wallet: its value is kept back from
//!   the money returned (the member pays for the bonus they used).
//! - No bucket ever goes negative; a zero balance pays nothing (a zero-balance wallet in a sale
//!   or a refund is refused, not accepted as a no-op).

use serde::{Deserialize, Serialize};

use crate::chain::{ChainHasher, HASH_LEN};
use crate::error::Validator;
use crate::money::MAX_AMOUNT;
use crate::ValidationError;

/// A bonus for topping up at least `min_top_up` [top up 1,000, get 100].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopUpBonus {
    pub min_top_up: i64,
    pub bonus: i64,
}

/// The brand's stored-value rules (part of the programme).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct WalletRules {
    /// The best bonus whose threshold a top-up reaches applies (they do not add up).
    pub bonuses: Vec<TopUpBonus>,
    /// Smallest top-up, minor units.
    pub min_top_up: i64,
    /// Largest balance (principal + bonus) a wallet may hold; none: no limit.
    pub max_balance: Option<i64>,
}

impl WalletRules {
    pub fn validate(&self, v: &mut Validator, field: &str) {
        for (i, b) in self.bonuses.iter().enumerate() {
            if !(1..=MAX_AMOUNT).contains(&b.min_top_up) {
                v.push(
                    format!("{field}.bonuses[{i}].min_top_up"),
                    "must be a positive amount",
                );
            }
            if !(0..=b.min_top_up).contains(&b.bonus) {
                v.push(
                    format!("{field}.bonuses[{i}].bonus"),
                    "must be between 0 and the top-up it rewards",
                );
            }
        }
        if !(0..=MAX_AMOUNT).contains(&self.min_top_up) {
            v.push(format!("{field}.min_top_up"), "must not be negative");
        }
        if self.max_balance.is_some_and(|m| !(1..=MAX_AMOUNT).contains(&m)) {
            v.push(
                format!("{field}.max_balance"),
                "must be a positive amount when given",
            );
        }
    }

    /// The bonus a top-up of `amount` earns.
    pub fn bonus_for(&self, amount: i64) -> i64 {
        self.bonuses
            .iter()
            .filter(|b| amount >= b.min_top_up)
            .map(|b| b.bonus)
            .max()
            .unwrap_or(0)
    }

    /// Checks a top-up against the rules and the wallet's balance; returns its bonus.
    pub fn top_up(&self, amount: i64, balance: i64) -> Result<i64, ValidationError> {
        if !(1..=MAX_AMOUNT).contains(&amount) || amount < self.min_top_up {
            return Err(ValidationError::field(
                "amount",
                format!(
                    "must be at least {} and at most {MAX_AMOUNT} minor units",
                    self.min_top_up.max(1)
                ),
            ));
        }
        let bonus = self.bonus_for(amount);
        if let Some(max) = self.max_balance {
            if balance + amount + bonus > max {
                return Err(ValidationError::field(
                    "amount",
                    format!(
                        "would bring the balance to {}; the most a wallet may hold is {}",
                        super::money(balance + amount + bonus),
                        super::money(max)
                    ),
                ));
            }
        }
        Ok(bonus)
    }
}

/// A wallet's two buckets, minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Balance {
    pub principal: i64,
    pub bonus: i64,
}

impl Balance {
    pub fn total(self) -> i64 {
        self.principal + self.bonus
    }
}

/// How much of a payment of `amount` comes from principal and from bonus: in proportion to the
/// balances, the remainder (by rounding) from the larger bucket. `None` when the wallet holds
/// less than `amount` or `amount` is not positive.
pub fn split_payment(balance: Balance, amount: i64) -> Option<Balance> {
    let total = balance.total();
    if amount <= 0 || amount > total {
        return None;
    }
    let from_bonus = (i128::from(amount) * i128::from(balance.bonus) / i128::from(total)) as i64;
    let from_principal = amount - from_bonus;
    // Integer division rounds the bonus share down; the principal's share is then at most its
    // proportional share rounded up, which the balance always covers.
    debug_assert!(from_principal <= balance.principal && from_bonus <= balance.bonus);
    Some(Balance {
        principal: from_principal,
        bonus: from_bonus,
    })
}

/// What refunding part of a top-up does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpRefund {
    /// Principal taken out of the wallet.
    pub principal: i64,
    /// Bonus taken out of the wallet.
    pub bonus_clawed_back: i64,
    /// Bonus already spent, whose value is kept back from the money returned.
    pub bonus_kept_back: i64,
    /// Money returned to the member: `principal - bonus_kept_back`.
    pub money_returned: i64,
}

/// Why a top-up cannot be refunded (as asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRefused {
    /// More than what is left of the top-up.
    MoreThanTopUp { left: i64 },
    /// The wallet no longer holds that much principal (it was spent).
    PrincipalSpent { principal: i64 },
}

/// A refund of `amount` of a top-up of `top_up` principal that earned `bonus`, of which
/// `refunded` principal and `clawed` bonus (kept back included) were already refunded, from a
/// wallet holding `balance`.
pub fn refund_top_up(
    top_up: i64,
    bonus: i64,
    refunded: i64,
    clawed: i64,
    amount: i64,
    balance: Balance,
) -> Result<TopUpRefund, RefundRefused> {
    let left = top_up - refunded;
    if amount <= 0 || amount > left {
        return Err(RefundRefused::MoreThanTopUp { left });
    }
    if amount > balance.principal {
        return Err(RefundRefused::PrincipalSpent {
            principal: balance.principal,
        });
    }
    // Cumulative: after this refund, the share of the bonus given back matches the share of the
    // principal refunded; a full refund claws back exactly what is left of the bonus.
    let owed_after = if refunded + amount == top_up {
        bonus
    } else {
        (i128::from(bonus) * i128::from(refunded + amount) / i128::from(top_up)) as i64
    };
    let claw = (owed_after - clawed).max(0);
    let from_wallet = claw.min(balance.bonus);
    let kept_back = (claw - from_wallet).min(amount);
    Ok(TopUpRefund {
        principal: amount,
        bonus_clawed_back: from_wallet,
        bonus_kept_back: kept_back,
        money_returned: amount - kept_back,
    })
}

/// What happened to a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WalletEntryKind {
    /// Money paid in (principal) and its bonus.
    TopUp,
    /// A sale paid from the wallet.
    Pay,
    /// A refunded sale's wallet payment returned.
    PayRefund,
    /// Part or all of a top-up refunded, its bonus clawed back.
    TopUpRefund,
    /// The balance of a member merged into another, moved out…
    MergeOut,
    /// …and into the member who survives.
    MergeIn,
}

impl WalletEntryKind {
    pub const ALL: [WalletEntryKind; 6] = [
        WalletEntryKind::TopUp,
        WalletEntryKind::Pay,
        WalletEntryKind::PayRefund,
        WalletEntryKind::TopUpRefund,
        WalletEntryKind::MergeOut,
        WalletEntryKind::MergeIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WalletEntryKind::TopUp => "top_up",
            WalletEntryKind::Pay => "pay",
            WalletEntryKind::PayRefund => "pay_refund",
            WalletEntryKind::TopUpRefund => "top_up_refund",
            WalletEntryKind::MergeOut => "merge_out",
            WalletEntryKind::MergeIn => "merge_in",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The fields of a wallet entry that its hash covers.
#[derive(Debug, Clone)]
pub struct WalletEntryContent<'a> {
    pub brand_id: &'a str,
    pub member_id: &'a str,
    pub seq: i64,
    pub entry_id: &'a str,
    pub kind: WalletEntryKind,
    pub principal_delta: i64,
    pub bonus_delta: i64,
    pub reference: &'a str,
    pub detail: &'a str,
    pub actor: &'a str,
    pub created_at_ms: i64,
}

/// SHA-256 over the canonical encoding of [`crate::chain`], chained to the previous entry.
pub fn wallet_entry_hash(prev: &[u8], e: &WalletEntryContent<'_>) -> [u8; HASH_LEN] {
    let mut h = ChainHasher::new("huiyuan-wallet-v1");
    h.text(e.brand_id)
        .text(e.member_id)
        .int(e.seq)
        .text(e.entry_id)
        .text(e.kind.as_str())
        .int(e.principal_delta)
        .int(e.bonus_delta)
        .text(e.reference)
        .text(e.detail)
        .text(e.actor)
        .int(e.created_at_ms);
    h.finish(prev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn demo_rules() -> WalletRules {
        WalletRules {
            bonuses: vec![
                TopUpBonus {
                    min_top_up: 50_000,
                    bonus: 3_000,
                },
                TopUpBonus {
                    min_top_up: 100_000,
                    bonus: 10_000,
                },
            ],
            min_top_up: 1_000,
            max_balance: Some(1_000_000),
        }
    }

    #[test]
    fn the_best_bonus_applies_and_limits_hold() {
        let r = demo_rules();
        assert_eq!(r.bonus_for(100_000), 10_000);
        assert_eq!(r.bonus_for(99_999), 3_000);
        assert_eq!(r.bonus_for(49_999), 0);
        assert_eq!(r.top_up(100_000, 0), Ok(10_000));
        assert_eq!(r.top_up(999, 0).unwrap_err().errors[0].field, "amount");
        assert!(r.top_up(100_000, 900_000).is_err());
    }

    #[test]
    fn a_top_up_refund_claws_back_its_bonus_in_proportion() {
        let full = Balance {
            principal: 100_000,
            bonus: 10_000,
        };
        // Half the top-up: half the bonus.
        let r = refund_top_up(100_000, 10_000, 0, 0, 50_000, full).unwrap();
        assert_eq!(
            (r.principal, r.bonus_clawed_back, r.money_returned),
            (50_000, 5_000, 50_000)
        );
        // The rest: exactly the rest of the bonus.
        let after = Balance {
            principal: 50_000,
            bonus: 5_000,
        };
        let r = refund_top_up(100_000, 10_000, 50_000, 5_000, 50_000, after).unwrap();
        assert_eq!((r.bonus_clawed_back, r.money_returned), (5_000, 50_000));
        // Bonus spent: its value is kept back from the money returned.
        let spent = Balance {
            principal: 100_000,
            bonus: 2_000,
        };
        let r = refund_top_up(100_000, 10_000, 0, 0, 100_000, spent).unwrap();
        assert_eq!(
            (r.bonus_clawed_back, r.bonus_kept_back, r.money_returned),
            (2_000, 8_000, 92_000)
        );
        assert_eq!(
            refund_top_up(100_000, 10_000, 0, 0, 100_001, full),
            Err(RefundRefused::MoreThanTopUp { left: 100_000 })
        );
        assert_eq!(
            refund_top_up(
                100_000,
                10_000,
                0,
                0,
                60_000,
                Balance {
                    principal: 50_000,
                    bonus: 0
                }
            ),
            Err(RefundRefused::PrincipalSpent { principal: 50_000 })
        );
    }

    #[test]
    fn zero_and_oversized_payments_are_refused() {
        let b = Balance {
            principal: 100,
            bonus: 10,
        };
        assert_eq!(split_payment(b, 0), None);
        assert_eq!(split_payment(b, 111), None);
        assert_eq!(split_payment(Balance::default(), 1), None);
        assert_eq!(
            split_payment(b, 110),
            Some(Balance {
                principal: 100,
                bonus: 10
            })
        );
    }

    proptest! {
        #[test]
        fn payments_split_in_proportion_within_the_buckets(
            principal in 0i64..1_000_000, bonus in 0i64..1_000_000, amount in 1i64..2_000_000) {
            let b = Balance { principal, bonus };
            match split_payment(b, amount) {
                None => prop_assert!(amount > b.total()),
                Some(s) => {
                    prop_assert_eq!(s.principal + s.bonus, amount);
                    prop_assert!(s.principal >= 0 && s.principal <= principal);
                    prop_assert!(s.bonus >= 0 && s.bonus <= bonus);
                    // Within one minor unit of the exact proportion.
                    let exact = amount as f64 * bonus as f64 / (principal + bonus) as f64;
                    prop_assert!((s.bonus as f64 - exact).abs() < 1.0);
                }
            }
        }

        #[test]
        fn partial_refunds_never_claw_back_more_than_the_bonus(
            top_up in 1i64..1_000_000, bonus_share in 0i64..=100,
            parts in prop::collection::vec(1i64..400_000, 1..6)) {
            let bonus = top_up * bonus_share / 100;
            let mut balance = Balance { principal: top_up, bonus };
            let (mut refunded, mut clawed) = (0, 0);
            for part in parts {
                let amount = part.min(top_up - refunded);
                if amount == 0 { break; }
                let r = refund_top_up(top_up, bonus, refunded, clawed, amount, balance).unwrap();
                balance.principal -= r.principal;
                balance.bonus -= r.bonus_clawed_back;
                refunded += r.principal;
                clawed += r.bonus_clawed_back + r.bonus_kept_back;
                prop_assert!(balance.principal >= 0 && balance.bonus >= 0);
                prop_assert!(clawed <= bonus);
            }
            if refunded == top_up { prop_assert_eq!(clawed, bonus); prop_assert_eq!(balance, Balance::default()); }
        }
    }
}
