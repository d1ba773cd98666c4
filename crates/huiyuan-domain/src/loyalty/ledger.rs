//! The points ledger's rules: entry kinds, the hash chain, oldest-first lot consumption.
//!
//! A member's account has three buckets: `available` (spendable), `pending` (earned but inside
//! the return window) and `debt` (reversals the balance could not cover). Every entry records
//! its change to each bucket, so each bucket equals the sum of its entries' changes.

use crate::chain::ChainHasher;
use serde::{Deserialize, Serialize};

/// What happened to a member's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Points from a purchase (pending first, when the programme has a return window).
    Earn,
    /// Points for an action: check-in, review, share, profile completed, referral.
    Action,
    /// Pending points whose return window closed.
    Activate,
    /// Points spent.
    Redeem,
    /// Points spent on a sale, given back because the sale was refunded.
    RedeemReversal,
    /// Points that reached their expiry date unspent.
    Expire,
    /// Points taken back because a purchase was refunded.
    RefundReversal,
    /// An operator's grant or deduction, with a reason.
    Adjustment,
    TransferOut,
    TransferIn,
    /// Points moved out of a member merged into another.
    MergeOut,
    MergeIn,
}

impl EntryKind {
    pub const ALL: [EntryKind; 12] = [
        EntryKind::Earn,
        EntryKind::Action,
        EntryKind::Activate,
        EntryKind::Redeem,
        EntryKind::RedeemReversal,
        EntryKind::Expire,
        EntryKind::RefundReversal,
        EntryKind::Adjustment,
        EntryKind::TransferOut,
        EntryKind::TransferIn,
        EntryKind::MergeOut,
        EntryKind::MergeIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Earn => "earn",
            EntryKind::Action => "action",
            EntryKind::Activate => "activate",
            EntryKind::Redeem => "redeem",
            EntryKind::RedeemReversal => "redeem_reversal",
            EntryKind::Expire => "expire",
            EntryKind::RefundReversal => "refund_reversal",
            EntryKind::Adjustment => "adjustment",
            EntryKind::TransferOut => "transfer_out",
            EntryKind::TransferIn => "transfer_in",
            EntryKind::MergeOut => "merge_out",
            EntryKind::MergeIn => "merge_in",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

crate::coded! {
    /// Where a lot of points stands: `Pending` inside the return window, `Active` (spendable
    /// while it has points left), `Closed` (spent, expired or reversed to zero).
    pub enum LotStatus {
        Pending = "pending",
        Active = "active",
        Closed = "closed",
    }
}

/// Changes to the three buckets of an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deltas {
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
}

/// The fields of an entry that its hash covers, in a fixed order.
#[derive(Debug, Clone)]
pub struct EntryContent<'a> {
    pub brand_id: &'a str,
    pub member_id: &'a str,
    pub seq: i64,
    pub entry_id: &'a str,
    pub kind: EntryKind,
    pub deltas: Deltas,
    pub lot_id: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub programme_version: Option<i64>,
    /// JSON detail (rules applied, reason, …) exactly as stored.
    pub detail: &'a str,
    /// Who made the change: an operator's grant must not be re-attributable unnoticed.
    pub actor: &'a str,
    pub created_at_ms: i64,
}

pub use crate::chain::{GENESIS_HASH, HASH_LEN};

/// SHA-256 over the canonical encoding of [`crate::chain`]: a version tag, each field, then the
/// previous entry's hash.
pub fn entry_hash(prev: &[u8], e: &EntryContent<'_>) -> [u8; HASH_LEN] {
    // v2: the actor is covered (v1, before any release, left it out).
    let mut h = ChainHasher::new("huiyuan-ledger-v2");
    h.text(e.brand_id)
        .text(e.member_id)
        .int(e.seq)
        .text(e.entry_id)
        .text(e.kind.as_str())
        .int(e.deltas.available)
        .int(e.deltas.pending)
        .int(e.deltas.debt)
        .opt_text(e.lot_id)
        .opt_text(e.reference)
        .opt_int(e.programme_version)
        .text(e.detail)
        .text(e.actor)
        .int(e.created_at_ms);
    h.finish(prev)
}

/// Takes `amount` from lots in the order given (the caller sorts them oldest first); returns
/// what to take from each and the part no lot could cover.
pub fn consume_oldest_first<K: Clone>(lots: &[(K, i64)], amount: i64) -> (Vec<(K, i64)>, i64) {
    let mut left = amount.max(0);
    let mut takes = Vec::new();
    for (key, remaining) in lots {
        if left == 0 {
            break;
        }
        let take = left.min((*remaining).max(0));
        if take > 0 {
            takes.push((key.clone(), take));
            left -= take;
        }
    }
    (takes, left)
}

/// How new points are split between repaying debt and the new lot: debt is repaid first.
pub fn repay_debt_first(points: i64, debt: i64) -> (i64, i64) {
    let repaid = points.clamp(0, debt.max(0));
    (repaid, points - repaid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn content(seq: i64, detail: &str) -> EntryContent<'_> {
        EntryContent {
            brand_id: "brd_1",
            member_id: "mem_1",
            seq,
            entry_id: "ple_1",
            kind: EntryKind::Earn,
            deltas: Deltas {
                available: 0,
                pending: 10,
                debt: 0,
            },
            lot_id: Some("lot_1"),
            reference: Some("order-1"),
            programme_version: Some(1),
            detail,
            actor: "operator opr_1",
            created_at_ms: 1,
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let base = entry_hash(&GENESIS_HASH, &content(1, "{}"));
        assert_ne!(base, entry_hash(&GENESIS_HASH, &content(2, "{}")));
        assert_ne!(base, entry_hash(&GENESIS_HASH, &content(1, "{ }")));
        assert_ne!(base, entry_hash(&[1; 32], &content(1, "{}")));
        let mut c = content(1, "{}");
        c.deltas.pending = 11;
        assert_ne!(base, entry_hash(&GENESIS_HASH, &c));
        let mut c = content(1, "{}");
        c.lot_id = None;
        assert_ne!(base, entry_hash(&GENESIS_HASH, &c));
        let mut c = content(1, "{}");
        c.actor = "operator opr_2";
        assert_ne!(base, entry_hash(&GENESIS_HASH, &c));
        // Moving bytes between adjacent fields changes the encoding (length prefixes).
        let mut a = content(1, "{}");
        a.reference = Some("ab");
        a.lot_id = Some("c");
        let mut b = content(1, "{}");
        b.reference = Some("b");
        b.lot_id = Some("ca");
        assert_ne!(entry_hash(&GENESIS_HASH, &a), entry_hash(&GENESIS_HASH, &b));
    }

    /// Stored ledgers are verified by recomputing their hashes: the encoding must never drift.
    #[test]
    fn the_encoding_is_pinned() {
        let hex: String = entry_hash(&GENESIS_HASH, &content(1, "{}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "935182f010acbd48b70bbad8b1a3e7db99425499d75eb98a3f5fb2d20c74b262"
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in EntryKind::ALL {
            assert_eq!(EntryKind::parse(k.as_str()), Some(k));
        }
    }

    proptest! {
        #[test]
        fn consumption_is_oldest_first_and_exact(
            lots in proptest::collection::vec(0i64..1_000, 0..10), amount in 0i64..6_000) {
            let keyed: Vec<(usize, i64)> = lots.iter().copied().enumerate().collect();
            let (takes, short) = consume_oldest_first(&keyed, amount);
            let taken: i64 = takes.iter().map(|t| t.1).sum();
            prop_assert_eq!(taken + short, amount);
            prop_assert_eq!(short, (amount - lots.iter().sum::<i64>()).max(0));
            // A lot is only touched when every older lot is used up.
            for (n, (i, take)) in takes.iter().enumerate() {
                prop_assert!(*take <= lots[*i]);
                if n + 1 < takes.len() { prop_assert_eq!(*take, lots[*i]); }
                for (older, size) in lots.iter().enumerate().take(*i) { if *size > 0 { prop_assert!(takes.iter().any(|t| t.0 == older)); } }
            }
        }

        #[test]
        fn debt_is_repaid_first(points in 0i64..10_000, debt in 0i64..10_000) {
            let (repaid, rest) = repay_debt_first(points, debt);
            prop_assert_eq!(repaid + rest, points);
            prop_assert_eq!(repaid, points.min(debt));
            prop_assert!(rest == 0 || repaid == debt);
        }
    }
}
