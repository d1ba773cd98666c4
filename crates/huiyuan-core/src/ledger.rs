//! The ledger verifier, for both hash-chained ledgers (points and the wallet, built the same
//! way): proves that no entry was altered, removed or reordered, and that every balance equals
//! the sum of its entries (and, for points, of its lots). The chains are written by their own
//! capabilities (`loyalty`, `commerce::wallet`); this module only reads them.

use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::wallet::WalletEntryKind;
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::loyalty::ledger::{Deltas, EntryKind, LotStatus, GENESIS_HASH};
use huiyuan_store::{AccountRecord, Tx, WalletRecord};
use serde::Serialize;

use crate::commerce::wallet::entry_hash;
use crate::loyalty::record_hash;
use crate::{Actor, Core, Result};

/// One thing wrong with a member's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerProblem {
    pub brand_id: BrandId,
    pub member_id: MemberId,
    /// The entry at fault, when one can be named.
    pub entry_id: Option<String>,
    pub seq: Option<i64>,
    pub problem: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    pub accounts: u64,
    pub entries: u64,
    /// Wallets (stored value) verified, and their entries.
    pub wallets: u64,
    pub wallet_entries: u64,
    /// Empty when everything verifies.
    pub problems: Vec<LedgerProblem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Accounts read per snapshot while verifying a whole database.
const ACCOUNTS_PER_READ: u32 = 500;

/// Checks one account against its chain and lots.
pub async fn verify_account(
    tx: &mut dyn Tx,
    account: &AccountRecord,
    report: &mut VerifyReport,
) -> Result<()> {
    let (brand, member) = (&account.brand_id, &account.member_id);
    let problem = |entry: Option<(&str, i64)>, text: String| LedgerProblem {
        brand_id: brand.clone(),
        member_id: member.clone(),
        entry_id: entry.map(|e| e.0.to_owned()),
        seq: entry.map(|e| e.1),
        problem: text,
    };
    let chain = tx.chain(brand, member).await?;
    let mut prev = GENESIS_HASH.to_vec();
    let mut sums = Deltas::default();
    let mut expected_seq = 1;
    for e in &chain {
        report.entries += 1;
        let at = Some((e.id.as_str(), e.seq));
        if e.seq != expected_seq {
            report.problems.push(problem(
                at,
                format!(
                    "expected entry #{expected_seq} here, found #{}: entries were removed or reordered",
                    e.seq
                ),
            ));
        }
        if e.prev_hash != prev {
            report.problems.push(problem(
                at,
                "does not link to the previous entry's hash: the chain was cut or reordered".into(),
            ));
        }
        let Some(kind) = EntryKind::parse(&e.kind) else {
            report
                .problems
                .push(problem(at, format!("unknown kind {:?}", e.kind)));
            prev = e.hash.clone();
            expected_seq = e.seq + 1;
            continue;
        };
        if record_hash(e, kind).as_slice() != e.hash.as_slice() {
            report.problems.push(problem(
                at,
                "content does not match its hash: the entry was altered".into(),
            ));
        }
        sums.available += e.available_delta;
        sums.pending += e.pending_delta;
        sums.debt += e.debt_delta;
        prev = e.hash.clone();
        expected_seq = e.seq + 1;
    }
    if account.last_seq != expected_seq - 1 || account.last_hash != prev {
        report.problems.push(problem(
            None,
            format!(
                "the account's chain head (#{}) is not the last entry (#{}): entries were removed or added",
                account.last_seq,
                expected_seq - 1
            ),
        ));
    }
    for (bucket, balance, sum) in [
        ("available", account.available, sums.available),
        ("pending", account.pending, sums.pending),
        ("debt", account.debt, sums.debt),
    ] {
        if balance != sum {
            report.problems.push(problem(
                None,
                format!("{bucket} balance {balance} ≠ sum of its entries {sum}"),
            ));
        }
        if balance < 0 {
            report
                .problems
                .push(problem(None, format!("{bucket} balance is negative ({balance})")));
        }
    }
    let lots = tx.open_lots(brand, member).await?;
    let lot_sum = |status: LotStatus| {
        lots.iter()
            .filter(|l| l.status == status)
            .map(|l| l.remaining)
            .sum::<i64>()
    };
    let (in_active, in_pending) = (lot_sum(LotStatus::Active), lot_sum(LotStatus::Pending));
    if in_active != account.available {
        report.problems.push(problem(
            None,
            format!(
                "available balance {} ≠ points left in active lots {in_active}",
                account.available
            ),
        ));
    }
    if in_pending != account.pending {
        report.problems.push(problem(
            None,
            format!(
                "pending balance {} ≠ points left in pending lots {in_pending}",
                account.pending
            ),
        ));
    }
    report.accounts += 1;
    Ok(())
}

fn add_wallet(report: &mut VerifyReport, (entries, problems): (u64, Vec<LedgerProblem>)) {
    report.wallets += 1;
    report.wallet_entries += entries;
    report.problems.extend(problems);
}

impl Core {
    /// Verifies every account of one brand (`Some`) or of the whole database (`None`), each
    /// batch in one read snapshot.
    pub async fn verify_ledgers(&self, brand: Option<&BrandId>) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut after: Option<(BrandId, MemberId)> = None;
        loop {
            let mut tx = self.storage.read().await?;
            let accounts = tx.list_accounts(brand, after.as_ref(), ACCOUNTS_PER_READ).await?;
            for a in &accounts {
                verify_account(&mut *tx, a, &mut report).await?;
            }
            match accounts.last() {
                Some(last) if accounts.len() == ACCOUNTS_PER_READ as usize => {
                    after = Some((last.brand_id.clone(), last.member_id.clone()))
                }
                _ => break,
            }
        }
        let mut after: Option<(BrandId, MemberId)> = None;
        loop {
            let mut tx = self.storage.read().await?;
            let wallets = tx.list_wallets(brand, after.as_ref(), ACCOUNTS_PER_READ).await?;
            for w in &wallets {
                add_wallet(&mut report, verify_wallet(&mut *tx, w).await?);
            }
            match wallets.last() {
                Some(last) if wallets.len() == ACCOUNTS_PER_READ as usize => {
                    after = Some((last.brand_id.clone(), last.member_id.clone()))
                }
                _ => return Ok(report),
            }
        }
    }

    /// The caller's brand's ledgers (`ledger.verify`), or one member's.
    pub async fn verify_brand_ledgers(
        &self,
        actor: &Actor,
        member: Option<&MemberId>,
    ) -> Result<VerifyReport> {
        actor.require(Permission::LedgerVerify)?;
        match member {
            None => self.verify_ledgers(Some(&actor.brand_id)).await,
            Some(m) => {
                let mut report = VerifyReport::default();
                let mut tx = self.storage.read().await?;
                let record = self.active_member(&mut *tx, &actor.brand_id, m, false).await?;
                if let Some(a) = tx.get_account(&actor.brand_id, &record.id).await? {
                    verify_account(&mut *tx, &a, &mut report).await?;
                }
                if let Some(w) = tx.get_wallet(&actor.brand_id, &record.id).await? {
                    add_wallet(&mut report, verify_wallet(&mut *tx, &w).await?);
                }
                Ok(report)
            }
        }
    }
}

/// Checks one wallet against its chain: links, order, hashes, and both balances as the sums of
/// their entries (and never negative).
pub(crate) async fn verify_wallet(tx: &mut dyn Tx, w: &WalletRecord) -> Result<(u64, Vec<LedgerProblem>)> {
    let problem = |entry: Option<(&str, i64)>, text: String| LedgerProblem {
        brand_id: w.brand_id.clone(),
        member_id: w.member_id.clone(),
        entry_id: entry.map(|e| e.0.to_owned()),
        seq: entry.map(|e| e.1),
        problem: format!("wallet: {text}"),
    };
    let chain = tx.wallet_chain(&w.brand_id, &w.member_id).await?;
    let mut problems = Vec::new();
    let mut prev = GENESIS_HASH.to_vec();
    let (mut principal, mut bonus, mut expected) = (0i64, 0i64, 1i64);
    for e in &chain {
        let at = Some((e.id.as_str(), e.seq));
        if e.seq != expected {
            problems.push(problem(
                at,
                format!(
                    "expected entry #{expected} here, found #{}: entries were removed or reordered",
                    e.seq
                ),
            ));
        }
        if e.prev_hash != prev {
            problems.push(problem(at, "does not link to the previous entry's hash".into()));
        }
        match WalletEntryKind::parse(&e.kind) {
            Some(kind) if entry_hash(e, kind).as_slice() == e.hash.as_slice() => {}
            Some(_) => problems.push(problem(
                at,
                "content does not match its hash: the entry was altered".into(),
            )),
            None => problems.push(problem(at, format!("unknown kind {:?}", e.kind))),
        }
        principal += e.principal_delta;
        bonus += e.bonus_delta;
        if principal < 0 || bonus < 0 {
            problems.push(problem(at, "a balance went negative here".into()));
        }
        prev = e.hash.clone();
        expected = e.seq + 1;
    }
    if w.last_seq != expected - 1 || w.last_hash != prev {
        problems.push(problem(
            None,
            format!(
                "the chain head (#{}) is not the last entry (#{})",
                w.last_seq,
                expected - 1
            ),
        ));
    }
    if w.principal != principal || w.bonus != bonus {
        problems.push(problem(
            None,
            format!(
                "balance {}/{} (principal/bonus) ≠ sum of its entries {principal}/{bonus}",
                w.principal, w.bonus
            ),
        ));
    }
    Ok((chain.len() as u64, problems))
}
