//! The loyalty engine's use cases: programme versions, purchases and refunds, points
//! operations, tiers, the jobs that mature and expire points, and the ledger verifier.
//!
//! Every change to a member's points happens under their account lock ([`Tx::lock_account`])
//! and goes through [`Posting`], which appends the hash-chained ledger entry and keeps the
//! account's buckets equal to the sums of the entries.

pub mod calendar;
pub mod ingest;
pub mod jobs;
pub mod points;
pub mod programme;
pub mod purchases;
pub mod tiers;
pub mod transfers;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use huiyuan_domain::ids::{BrandId, EntryId, EventId, LotId, MemberId};
use huiyuan_domain::loyalty::ledger::{
    consume_oldest_first, entry_hash, repay_debt_first, Deltas, EntryContent, EntryKind, LotStatus,
    GENESIS_HASH, HASH_LEN,
};
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_store::{
    AccountRecord, LedgerEntryRecord, LotRecord, OutboxRecord, PostingWrites, PurchaseRecord, Sums,
    TierChangeRecord, Tx,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::{Core, CoreError, ErrorCode, Result};
use calendar::BrandCalendar;

/// A brand's current programme, parsed, with its time zone.
pub struct LoyaltyContext {
    pub version: i64,
    pub programme: Programme,
    pub calendar: BrandCalendar,
}

impl LoyaltyContext {
    /// The purchase sums tier qualification looks at: those some tier's thresholds name.
    pub fn tier_sums(&self) -> Sums {
        self.programme
            .tiers
            .levels
            .iter()
            .fold(Sums::default(), |sums, tier| {
                sums.union(Sums {
                    points: tier.thresholds.points.is_some(),
                    spend: tier.thresholds.spend.is_some(),
                    visits: tier.thresholds.visits.is_some(),
                })
            })
    }

    /// When points earned at `at` expire: the start of the local day the expiry policy names.
    pub fn expires_at(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        huiyuan_domain::loyalty::tiers::expiry_date(self.programme.expiry, self.calendar.date_of(at))
            .map(|d| self.calendar.start_of(d))
    }
}

/// Parsed programmes by brand, refreshed whenever a newer version is stored (by any node).
#[derive(Default, Clone)]
pub struct ProgrammeCache(Arc<Mutex<HashMap<BrandId, Arc<LoyaltyContext>>>>);

impl ProgrammeCache {
    fn get(&self, brand: &BrandId, version: i64) -> Option<Arc<LoyaltyContext>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(brand).filter(|c| c.version == version).cloned()
    }
    fn put(&self, brand: &BrandId, ctx: Arc<LoyaltyContext>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(brand.clone(), ctx);
    }
    pub(crate) fn forget(&self, brand: &BrandId) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(brand);
    }
}

impl Core {
    /// The brand's current programme; a conflict error when it has none yet.
    pub(crate) async fn loyalty_context(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
    ) -> Result<Arc<LoyaltyContext>> {
        let version = tx.latest_programme_version(brand).await?.ok_or_else(|| {
            CoreError::conflict(
                ErrorCode::NoProgramme,
                "the brand has no loyalty programme yet; publish one with PUT /v1/programme",
            )
        })?;
        if let Some(ctx) = self.programmes.get(brand, version) {
            return Ok(ctx);
        }
        let record = tx
            .get_programme(brand, version)
            .await?
            .ok_or_else(|| CoreError::Corrupt("programme version vanished".into()))?;
        let programme = Programme::parse_json(&record.document)
            .map_err(|e| CoreError::Corrupt(format!("stored programme {version} is invalid: {e}")))?;
        let brand_record = tx.get_brand(brand).await?.ok_or(CoreError::NotFound("brand"))?;
        let ctx = Arc::new(LoyaltyContext {
            version,
            programme,
            calendar: BrandCalendar::new(&brand_record.timezone)?,
        });
        self.programmes.put(brand, ctx.clone());
        Ok(ctx)
    }

    /// Locks a member's account, creating it on first use.
    pub(crate) async fn lock_account(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<AccountRecord> {
        if let Some(a) = tx.lock_account(brand, member).await? {
            return Ok(a);
        }
        tx.ensure_accounts(&[new_account(brand, member, self.now())])
            .await?;
        tx.lock_account(brand, member)
            .await?
            .ok_or_else(|| CoreError::Corrupt("point account vanished".into()))
    }

    /// Appends an event to the outbox in the caller's transaction.
    pub(crate) async fn emit(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        event_type: &str,
        subject: &str,
        payload: serde_json::Value,
        dedupe_key: Option<String>,
    ) -> Result<bool> {
        let mut record = self.event(brand, event_type, subject, payload);
        record.dedupe_key = dedupe_key;
        Ok(tx.insert_event(&record).await?)
    }

    /// An outbox event, for the caller to write (with others) in its transaction.
    pub(crate) fn event(
        &self,
        brand: &BrandId,
        event_type: &str,
        subject: &str,
        payload: serde_json::Value,
    ) -> OutboxRecord {
        OutboxRecord {
            id: self.new_id(EventId::generate).to_string(),
            brand_id: brand.clone(),
            event_type: event_type.into(),
            subject: subject.into(),
            payload: payload.to_string(),
            dedupe_key: None,
            created_at: self.now(),
        }
    }
}

/// Where points taken from a member came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Taken {
    pub from_available: i64,
    pub from_pending: i64,
    /// (lot, points) in the order they were consumed.
    pub lots: Vec<(String, i64)>,
}

impl Taken {
    pub fn total(&self) -> i64 {
        self.from_available + self.from_pending
    }
    pub fn lots_json(&self) -> serde_json::Value {
        json!(self
            .lots
            .iter()
            .map(|(lot, points)| json!({ "lot": lot, "points": points }))
            .collect::<Vec<_>>())
    }
}

/// The hash of a stored entry, as written and as verified: one function for both, so the
/// writer and the verifier can never encode an entry differently.
pub(crate) fn record_hash(e: &LedgerEntryRecord, kind: EntryKind) -> [u8; HASH_LEN] {
    entry_hash(
        &e.prev_hash,
        &EntryContent {
            brand_id: e.brand_id.as_str(),
            member_id: e.member_id.as_str(),
            seq: e.seq,
            entry_id: &e.id,
            kind,
            deltas: Deltas {
                available: e.available_delta,
                pending: e.pending_delta,
                debt: e.debt_delta,
            },
            lot_id: e.lot_id.as_deref(),
            reference: e.reference.as_deref(),
            programme_version: e.programme_version,
            detail: &e.detail,
            actor: &e.actor,
            created_at_ms: (e.created_at.unix_timestamp_nanos() / 1_000_000) as i64,
        },
    )
}

/// A member's account before their first posting: empty buckets, the genesis chain head, the
/// entry tier.
pub(crate) fn new_account(brand: &BrandId, member: &MemberId, now: OffsetDateTime) -> AccountRecord {
    AccountRecord {
        brand_id: brand.clone(),
        member_id: member.clone(),
        available: 0,
        pending: 0,
        debt: 0,
        last_seq: 0,
        last_hash: GENESIS_HASH.to_vec(),
        tier_code: None,
        tier_since: None,
        tier_review_at: None,
        tier_grace_until: None,
        updated_at: now,
    }
}

/// Where new points come from and when they mature and expire.
pub(crate) struct NewLot<'a> {
    pub source: EntryKind,
    pub reference: Option<&'a str>,
    pub earned_at: OffsetDateTime,
    /// Pending until then (when in the future).
    pub matures_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
}

/// Rows a transaction will write, gathered so that each table gets a few multi-row
/// statements instead of one per row: what lets a batch of purchases commit in milliseconds.
#[derive(Default)]
pub(crate) struct Writes {
    pub purchases: Vec<PurchaseRecord>,
    pub new_lots: Vec<LotRecord>,
    pub changed_lots: Vec<LotRecord>,
    pub entries: Vec<LedgerEntryRecord>,
    pub accounts: Vec<AccountRecord>,
    pub tier_changes: Vec<TierChangeRecord>,
    pub events: Vec<OutboxRecord>,
    /// How many of the new rows [`Writes::send_ahead`] already handed to the database.
    sent: Sent,
}

/// Counts of rows already written ahead, per kind (only new rows are sent ahead).
#[derive(Default, Clone, Copy)]
struct Sent {
    purchases: usize,
    new_lots: usize,
    entries: usize,
    tier_changes: usize,
    events: usize,
}

impl Writes {
    /// Empty, with room for `sales` sales' rows by `members` members.
    pub fn with_capacity(sales: usize, members: usize) -> Self {
        Self {
            purchases: Vec::with_capacity(sales),
            new_lots: Vec::with_capacity(sales),
            changed_lots: Vec::new(),
            entries: Vec::with_capacity(sales),
            accounts: Vec::with_capacity(members),
            tier_changes: Vec::new(),
            events: Vec::with_capacity(2 * sales),
            sent: Sent::default(),
        }
    }

    /// New rows gathered since the last send (all of them if nothing was sent), with the
    /// changed lots and accounts when `with_updates`.
    fn unsent(&self, with_updates: bool) -> PostingWrites<'_> {
        let sent = self.sent;
        PostingWrites {
            purchases: &self.purchases[sent.purchases..],
            new_lots: &self.new_lots[sent.new_lots..],
            changed_lots: if with_updates { &self.changed_lots } else { &[] },
            entries: &self.entries[sent.entries..],
            accounts: if with_updates { &self.accounts } else { &[] },
            tier_changes: &self.tier_changes[sent.tier_changes..],
            events: &self.events[sent.events..],
        }
    }

    /// Hands the new rows gathered so far to the database, which (where
    /// [`Tx::writes_ahead`]) writes them while the caller works out the next ones; the rest
    /// goes with [`Writes::flush`]. Only new rows go ahead: a changed lot or an account may
    /// change again before the flush.
    pub async fn send_ahead(&mut self, tx: &mut dyn Tx) -> Result<()> {
        tx.write_postings_ahead(&self.unsent(false)).await?;
        self.sent = Sent {
            purchases: self.purchases.len(),
            new_lots: self.new_lots.len(),
            entries: self.entries.len(),
            tier_changes: self.tier_changes.len(),
            events: self.events.len(),
        };
        Ok(())
    }

    /// Writes everything, referenced rows first (one statement on PostgreSQL). Purchases were
    /// checked under the account locks; one that is nevertheless already there (the same order
    /// recorded for another member at the same moment) fails the whole transaction, which the
    /// caller retries.
    pub async fn flush(self, tx: &mut dyn Tx) -> Result<()> {
        let unsent = self.unsent(true);
        let written = tx.write_postings(&unsent).await?;
        if written != unsent.purchases.len() as u64 {
            return Err(CoreError::conflict(
                ErrorCode::OrderIdRace,
                "an order in this request was recorded at the same moment by another request; retry",
            ));
        }
        Ok(())
    }
}

/// Changes to one member's points inside one transaction, under their account lock. Nothing
/// is written until [`Posting::save`] (or [`Posting::stage`] and [`Writes::flush`]).
pub(crate) struct Posting<'c> {
    core: &'c Core,
    pub account: AccountRecord,
    /// The member's lots that still hold points, oldest first, as changed so far; `None`
    /// until something needs them (earning alone does not).
    lots: Option<Vec<LotRecord>>,
    /// Lots made by this posting while `lots` was not loaded.
    new_lots: Vec<LotRecord>,
    /// IDs of every lot this posting made.
    created: Vec<String>,
    dirty_lots: Vec<String>,
    /// Who the entries name; a batch of sales may change it between sales.
    pub actor: String,
    /// Entries appended by this posting, oldest first.
    pub entries: Vec<LedgerEntryRecord>,
    /// Events of what the posting did on its own (points it expired), written with it.
    events: Vec<OutboxRecord>,
}

impl<'c> Posting<'c> {
    pub async fn open(
        core: &'c Core,
        tx: &mut dyn Tx,
        brand: &BrandId,
        member: &MemberId,
        actor: &str,
    ) -> Result<Self> {
        let account = core.lock_account(tx, brand, member).await?;
        Ok(Self::with_account(core, account, actor))
    }

    /// A posting on an account the caller has locked.
    pub fn with_account(core: &'c Core, account: AccountRecord, actor: &str) -> Self {
        Self {
            core,
            account,
            lots: None,
            new_lots: Vec::new(),
            created: Vec::new(),
            dirty_lots: Vec::new(),
            actor: actor.into(),
            entries: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Expires every lot whose expiry has passed, as the expiry job does (with its
    /// `points.expired` event), and returns how many lots it closed. Whatever spends points calls
    /// this first: the job runs every few minutes, and in between, or for a sale imported
    /// after its points' life had ended, expired points must not be spendable.
    pub async fn expire_due(&mut self, tx: &mut dyn Tx) -> Result<usize> {
        let now = self.core.now();
        let due: Vec<String> = self
            .lots(tx)
            .await?
            .iter()
            .filter(|l| l.status != LotStatus::Closed && l.expires_at.is_some_and(|e| e <= now))
            .map(|l| l.id.clone())
            .collect();
        let mut points = 0;
        for lot in &due {
            points += self.expire(tx, lot).await?;
        }
        if points > 0 {
            let member = &self.account.member_id;
            self.events.push(self.core.event(
                &self.account.brand_id,
                "points.expired",
                member.as_str(),
                json!({ "member_id": member, "points": points }),
            ));
        }
        Ok(due.len())
    }

    /// The member's open lots, oldest first, with this posting's changes and new lots.
    pub async fn lots(&mut self, tx: &mut dyn Tx) -> Result<&mut Vec<LotRecord>> {
        if self.lots.is_none() {
            let mut lots = tx
                .open_lots(&self.account.brand_id, &self.account.member_id)
                .await?;
            lots.extend(std::mem::take(&mut self.new_lots));
            lots.sort_by(|a, b| (a.earned_at, &a.id).cmp(&(b.earned_at, &b.id)));
            self.lots = Some(lots);
        }
        Ok(self.lots.get_or_insert_with(Vec::new))
    }

    /// Adds a lot this posting made (kept in age order when the lots are loaded).
    pub fn add_lot(&mut self, lot: LotRecord) {
        self.created.push(lot.id.clone());
        match &mut self.lots {
            Some(lots) => {
                lots.push(lot);
                lots.sort_by(|a, b| (a.earned_at, &a.id).cmp(&(b.earned_at, &b.id)));
            }
            None => self.new_lots.push(lot),
        }
    }

    fn touch(&mut self, lot_id: &str) {
        if !self.dirty_lots.iter().any(|l| l == lot_id) {
            self.dirty_lots.push(lot_id.to_owned());
        }
    }

    /// Appends an entry and applies its deltas; refuses any change that would leave a bucket
    /// negative (a bug, never a member's problem: callers check balances first).
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        kind: EntryKind,
        deltas: Deltas,
        lot_id: Option<&str>,
        reference: Option<&str>,
        programme_version: Option<i64>,
        detail: serde_json::Value,
    ) -> Result<LedgerEntryRecord> {
        let a = &mut self.account;
        let (available, pending, debt) = (
            a.available + deltas.available,
            a.pending + deltas.pending,
            a.debt + deltas.debt,
        );
        if available < 0 || pending < 0 || debt < 0 {
            return Err(CoreError::Corrupt(format!(
                "{} on {} would leave a negative bucket ({available}/{pending}/{debt})",
                kind.as_str(),
                a.member_id
            )));
        }
        let now = self.core.now();
        let id = self.core.new_id(EntryId::generate).to_string();
        let detail = detail.to_string();
        let seq = a.last_seq + 1;
        let mut entry = LedgerEntryRecord {
            id,
            brand_id: a.brand_id.clone(),
            member_id: a.member_id.clone(),
            seq,
            kind: kind.as_str().into(),
            available_delta: deltas.available,
            pending_delta: deltas.pending,
            debt_delta: deltas.debt,
            lot_id: lot_id.map(str::to_owned),
            reference: reference.map(str::to_owned),
            programme_version,
            detail,
            actor: self.actor.clone(),
            created_at: now,
            prev_hash: a.last_hash.clone(),
            hash: Vec::new(),
        };
        let hash = record_hash(&entry, kind);
        entry.hash = hash.to_vec();
        a.available = available;
        a.pending = pending;
        a.debt = debt;
        a.last_seq = seq;
        a.last_hash = hash.to_vec();
        a.updated_at = now;
        self.entries.push(entry.clone());
        Ok(entry)
    }

    /// Adds points: debt is repaid first, the rest becomes a lot (pending until `matures_at`).
    ///
    /// Appends the entry (of the lot's `source` kind) with `debt_repaid` — and, for points that
    /// have a return window, `matures_at` — added to `detail`. Returns the debt repaid and
    /// whether the rest is pending.
    pub fn credit(
        &mut self,
        points: i64,
        new: NewLot<'_>,
        programme_version: Option<i64>,
        mut detail: serde_json::Value,
    ) -> Result<(i64, bool)> {
        let NewLot {
            source,
            reference,
            earned_at,
            matures_at,
            expires_at,
        } = new;
        let (repaid, rest) = repay_debt_first(points, self.account.debt);
        let now = self.core.now();
        let pending = matures_at.is_some_and(|m| m > now);
        let lot_id = if rest > 0 {
            let lot = LotRecord {
                id: self.core.new_id(LotId::generate).to_string(),
                brand_id: self.account.brand_id.clone(),
                member_id: self.account.member_id.clone(),
                status: if pending {
                    LotStatus::Pending
                } else {
                    LotStatus::Active
                },
                source: source.as_str().into(),
                reference: reference.map(str::to_owned),
                amount: rest,
                remaining: rest,
                earned_at,
                matures_at: if pending { matures_at } else { None },
                expires_at,
                expiry_notified: false,
            };
            let id = lot.id.clone();
            self.add_lot(lot);
            Some(id)
        } else {
            None
        };
        detail["debt_repaid"] = json!(repaid);
        if let Some(m) = matures_at {
            detail["matures_at"] = json!(pending.then(|| crate::views::rfc3339(m)));
        }
        let deltas = Deltas {
            available: if pending { 0 } else { rest },
            pending: if pending { rest } else { 0 },
            debt: -repaid,
        };
        self.append(
            source,
            deltas,
            lot_id.as_deref(),
            reference,
            programme_version,
            detail,
        )?;
        Ok((repaid, pending))
    }

    /// Spends available points oldest first (redemptions, deductions) and appends the entry,
    /// with the lots consumed added to `detail`. The caller checks the balance first.
    pub async fn spend(
        &mut self,
        tx: &mut dyn Tx,
        kind: EntryKind,
        points: i64,
        reference: &str,
        programme_version: Option<i64>,
        mut detail: serde_json::Value,
    ) -> Result<Taken> {
        let taken = self.take_points(tx, points, |_| false, true).await?;
        detail["lots"] = taken.lots_json();
        let deltas = Deltas {
            available: -taken.from_available,
            pending: 0,
            debt: 0,
        };
        self.append(kind, deltas, None, Some(reference), programme_version, detail)?;
        Ok(taken)
    }

    /// Gives back points a refunded sale had spent, to the lots they came from (expired lots
    /// too: the expiry job takes those again), after repaying any debt first, and appends the
    /// `redeem_reversal` entry. Returns the debt repaid.
    pub async fn restore(
        &mut self,
        tx: &mut dyn Tx,
        lots_taken: &[(String, i64)],
        reference: &str,
        programme_version: Option<i64>,
        mut detail: serde_json::Value,
    ) -> Result<i64> {
        let total: i64 = lots_taken.iter().map(|(_, n)| n.max(&0)).sum();
        if total == 0 {
            return Ok(0);
        }
        let (repaid, mut rest) = repay_debt_first(total, self.account.debt);
        let brand = self.account.brand_id.clone();
        let ids: Vec<String> = lots_taken.iter().map(|(id, _)| id.clone()).collect();
        // Closed lots are not among the open ones: fetch them, to reopen them.
        let loaded_ids: Vec<String> = self.lots(tx).await?.iter().map(|l| l.id.clone()).collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !loaded_ids.contains(id))
            .cloned()
            .collect();
        let fetched = if missing.is_empty() {
            Vec::new()
        } else {
            tx.get_lots(&brand, &missing).await?
        };
        let member = self.account.member_id.clone();
        let core = self.core;
        let lots = self.lots(tx).await?;
        lots.extend(fetched);
        lots.sort_by(|a, b| (a.earned_at, &a.id).cmp(&(b.earned_at, &b.id)));
        let mut restored = Vec::new();
        let mut copies = Vec::new();
        for (id, n) in lots_taken {
            let give = rest.min(*n);
            if give <= 0 {
                continue;
            }
            let lot = lots
                .iter_mut()
                .find(|l| &l.id == id)
                .ok_or_else(|| CoreError::Corrupt(format!("lot {id} of a sale vanished")))?;
            rest -= give;
            if lot.member_id != member {
                // The lot stayed with a member merged away since: a new lot of this member,
                // with the same age and expiry, takes the points.
                copies.push(LotRecord {
                    id: core.new_id(LotId::generate).to_string(),
                    member_id: member.clone(),
                    status: LotStatus::Active,
                    source: EntryKind::RedeemReversal.as_str().into(),
                    reference: Some(reference.to_owned()),
                    amount: give,
                    remaining: give,
                    matures_at: None,
                    expiry_notified: false,
                    ..lot.clone()
                });
                continue;
            }
            lot.remaining += give;
            // Closed (spent) or expired meanwhile: active again; an expired lot is expired
            // again, with its own entry, by the next expiry run.
            if lot.status != LotStatus::Active {
                lot.status = LotStatus::Active;
            }
            restored.push((id.clone(), give));
        }
        for (id, _) in &restored {
            self.touch(id);
        }
        for copy in copies {
            restored.push((copy.id.clone(), copy.amount));
            self.add_lot(copy);
        }
        detail["lots"] = json!(restored
            .iter()
            .map(|(lot, points)| json!({ "lot": lot, "points": points }))
            .collect::<Vec<_>>());
        detail["debt_repaid"] = json!(repaid);
        self.append(
            EntryKind::RedeemReversal,
            Deltas {
                available: total - repaid,
                pending: 0,
                debt: -repaid,
            },
            None,
            Some(reference),
            programme_version,
            detail,
        )?;
        Ok(repaid)
    }

    /// Takes points from lots oldest first: from `preferred` lots first (a refunded order's own
    /// lots), then, when `any_active`, from any active lot. Returns what was taken; the caller
    /// decides what to do with the shortfall.
    pub async fn take_points(
        &mut self,
        tx: &mut dyn Tx,
        amount: i64,
        preferred: impl Fn(&LotRecord) -> bool,
        any_active: bool,
    ) -> Result<Taken> {
        let lots = self.lots(tx).await?;
        let mut order: Vec<(usize, i64)> = Vec::new();
        // A refunded order's own points: pending ones first (never spendable yet), then active.
        for want_pending in [true, false] {
            for (i, l) in lots.iter().enumerate() {
                if preferred(l) && (l.status == LotStatus::Pending) == want_pending && l.remaining > 0 {
                    order.push((i, l.remaining));
                }
            }
        }
        if any_active {
            for (i, l) in lots.iter().enumerate() {
                if l.status == LotStatus::Active && l.remaining > 0 && !order.iter().any(|(j, _)| *j == i) {
                    order.push((i, l.remaining));
                }
            }
        }
        let (takes, _short) = consume_oldest_first(&order, amount);
        let mut taken = Taken::default();
        let mut touched = Vec::new();
        for (i, take) in takes {
            let lot = &mut lots[i];
            lot.remaining -= take;
            if lot.status == LotStatus::Pending {
                taken.from_pending += take;
            } else {
                taken.from_available += take;
            }
            if lot.remaining == 0 {
                lot.status = LotStatus::Closed;
            }
            taken.lots.push((lot.id.clone(), take));
            touched.push(lot.id.clone());
        }
        for id in touched {
            self.touch(&id);
        }
        Ok(taken)
    }

    /// Writes the entries, the new and changed lots and the account. Must be called before
    /// commit.
    pub async fn save(self, tx: &mut dyn Tx) -> Result<()> {
        let mut writes = Writes::default();
        self.stage(&mut writes);
        writes.flush(tx).await
    }

    /// Moves the entries and new lots made so far into `writes`, to be written ahead of the
    /// rest ([`Writes::send_ahead`]); a lot moved there counts as stored from then on. Lots
    /// made after the lots were loaded stay, as they are kept in age order with the others.
    pub fn hand_over_new_rows(&mut self, writes: &mut Writes) {
        writes.entries.append(&mut self.entries);
        if self.lots.is_none() {
            // Until the lots are loaded, every lot this posting made is in `new_lots`.
            self.created.clear();
            writes.new_lots.append(&mut self.new_lots);
        }
    }

    /// Adds what [`Posting::save`] would write to `writes`, for one flush of many postings.
    pub fn stage(self, writes: &mut Writes) {
        match self.lots {
            None => writes.new_lots.extend(self.new_lots),
            Some(lots) => {
                for lot in lots {
                    if self.created.contains(&lot.id) {
                        writes.new_lots.push(lot);
                    } else if self.dirty_lots.contains(&lot.id) {
                        writes.changed_lots.push(lot);
                    }
                }
            }
        }
        writes.entries.extend(self.entries);
        writes.events.extend(self.events);
        writes.accounts.push(self.account);
    }

    /// Moves a pending lot to active (its return window closed).
    pub async fn activate(&mut self, tx: &mut dyn Tx, lot_id: &str) -> Result<()> {
        let lots = self.lots(tx).await?;
        let Some(lot) = lots
            .iter_mut()
            .find(|l| l.id == lot_id && l.status == LotStatus::Pending)
        else {
            return Ok(());
        };
        let points = lot.remaining;
        lot.status = if points > 0 {
            LotStatus::Active
        } else {
            LotStatus::Closed
        };
        let reference = lot.reference.clone();
        self.touch(lot_id);
        if points > 0 {
            self.append(
                EntryKind::Activate,
                Deltas {
                    available: points,
                    pending: -points,
                    debt: 0,
                },
                Some(lot_id),
                reference.as_deref(),
                None,
                json!({ "reason": "return window closed" }),
            )?;
        }
        Ok(())
    }

    /// Expires what is left of a lot.
    pub async fn expire(&mut self, tx: &mut dyn Tx, lot_id: &str) -> Result<i64> {
        let lots = self.lots(tx).await?;
        let Some(lot) = lots
            .iter_mut()
            .find(|l| l.id == lot_id && l.status != LotStatus::Closed)
        else {
            return Ok(0);
        };
        let points = lot.remaining;
        let was_pending = lot.status == LotStatus::Pending;
        let expires_at = lot.expires_at;
        lot.remaining = 0;
        lot.status = LotStatus::Closed;
        self.touch(lot_id);
        if points > 0 {
            let deltas = if was_pending {
                Deltas {
                    available: 0,
                    pending: -points,
                    debt: 0,
                }
            } else {
                Deltas {
                    available: -points,
                    pending: 0,
                    debt: 0,
                }
            };
            self.append(
                EntryKind::Expire,
                deltas,
                Some(lot_id),
                None,
                None,
                json!({ "expired_at": expires_at.map(crate::views::rfc3339) }),
            )?;
        }
        Ok(points)
    }
}

/// The default interval between runs of the maintenance jobs.
pub(crate) fn job_interval(name: &str) -> Duration {
    match name {
        jobs::MATURE | jobs::EXPIRE => Duration::minutes(5),
        jobs::REMIND => Duration::hours(1),
        jobs::BIRTHDAYS => Duration::hours(6),
        jobs::COUPONS_EXPIRE => Duration::minutes(5),
        jobs::BULK => Duration::minutes(1),
        jobs::PLANS_LAPSE => Duration::minutes(15),
        _ => Duration::hours(1),
    }
}
