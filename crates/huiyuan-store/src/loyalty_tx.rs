//! The loyalty engine's records (programme versions, point accounts, lots, the ledger, purchases
//! and refunds, point operations, tier history) and the readers analytics and exports use: the
//! part of [`crate::Tx`] that keeps them.

use async_trait::async_trait;
use huiyuan_domain::ids::{BrandId, MemberId};
use time::OffsetDateTime;

use crate::records::*;
use crate::{PostingWrites, Result};

/// The loyalty engine: programme versions, point accounts, lots, the ledger, purchases and refunds, point operations, tier history, and the readers analytics and exports use.
#[async_trait]
pub trait LoyaltyTx: Send {
    // Programme versions
    async fn insert_programme(&mut self, p: &ProgrammeRecord) -> Result<()>;
    async fn latest_programme_version(&mut self, brand: &BrandId) -> Result<Option<i64>>;
    async fn get_programme(&mut self, brand: &BrandId, version: i64) -> Result<Option<ProgrammeRecord>>;
    /// Newest first, at most `limit`.
    async fn list_programmes(&mut self, brand: &BrandId, limit: u32) -> Result<Vec<ProgrammeRecord>>;

    // Point accounts
    /// Creates the accounts that do not exist yet (never fails on an existing one).
    async fn ensure_accounts(&mut self, accounts: &[AccountRecord]) -> Result<()>;
    async fn get_account(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<AccountRecord>>;
    /// Reads the account and, on PostgreSQL, locks it until the transaction ends: every change
    /// to a member's points happens under this lock.
    async fn lock_account(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<AccountRecord>>;
    /// Reads and locks several members' accounts at once, in member order (so that two
    /// transactions locking overlapping sets cannot deadlock). Missing accounts are absent.
    async fn lock_accounts(&mut self, brand: &BrandId, members: &[MemberId]) -> Result<Vec<AccountRecord>>;
    async fn update_account(&mut self, account: &AccountRecord) -> Result<()>;
    /// Accounts in (brand, member) order after the cursor; all brands when `brand` is `None`.
    async fn list_accounts(
        &mut self,
        brand: Option<&BrandId>,
        after: Option<&(BrandId, MemberId)>,
        limit: u32,
    ) -> Result<Vec<AccountRecord>>;
    async fn accounts_due_for_review(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<AccountRecord>>;
    async fn point_totals(&mut self, brand: &BrandId) -> Result<PointTotals>;

    // Lots
    /// Inserts lots, several per statement.
    async fn insert_lots(&mut self, lots: &[LotRecord]) -> Result<()>;
    /// Writes `status`, `remaining` and `expiry_notified` of existing lots, several per statement.
    async fn update_lots(&mut self, lots: &[LotRecord]) -> Result<()>;
    /// A member's lots that still hold points, oldest first (earned, then ID).
    /// Lots by ID, whatever their state (a refund gives points back to the lots they came from).
    async fn get_lots(&mut self, brand: &BrandId, ids: &[String]) -> Result<Vec<LotRecord>>;
    async fn open_lots(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<LotRecord>>;
    /// The owners (brand, member) of up to `limit` pending lots that matured by `now`, in no
    /// particular order and with repeats: a plain index range scan, however many are due.
    async fn members_with_maturing_lots(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(BrandId, MemberId)>>;
    /// The owners of up to `limit` open lots that expired by `now`, in no particular order and
    /// with repeats (as [`Tx::members_with_maturing_lots`]).
    async fn members_with_expiring_lots(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(BrandId, MemberId)>>;
    /// Lots that expire before `until` and whose member was not yet reminded.
    async fn lots_to_remind(
        &mut self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<LotRecord>>;

    // Ledger (append-only)
    /// Entries newest first; `page.starting_after` is an entry ID.
    async fn list_entries(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<LedgerEntryRecord>>;
    /// The brand's entries in ID order after the cursor, up to 10,000: exports.
    async fn entries_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LedgerEntryRecord>>;
    /// A member's whole chain in order, for verification.
    async fn chain(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<LedgerEntryRecord>>;

    /// Writes what a posting transaction made, referenced rows first: on PostgreSQL in one
    /// statement (one round trip instead of one per table, which is most of a small group
    /// commit's time). Purchases whose order ID the brand already has are skipped; returns how
    /// many purchases were written. The events are new: an event ID already stored is an error,
    /// while an event whose dedupe key was used is skipped.
    async fn write_postings(&mut self, writes: &PostingWrites<'_>) -> Result<u64>;

    /// Whether [`Tx::write_postings_ahead`] lets the caller go on while the rows are written
    /// (an embedded database writes on its own thread, so a batch's rules for the next sales
    /// run on another core meanwhile). Callers that gain nothing otherwise (a network database
    /// wants one statement per group, not one per chunk) check this first.
    fn writes_ahead(&self) -> bool {
        false
    }

    /// [`Tx::write_postings`] for rows known before the rest of the transaction's, without
    /// waiting where [`Tx::writes_ahead`] says so. A failure, or a purchase skipped because
    /// its order ID was already there ([`StoreError::Stale`]: retry the transaction), is then
    /// answered by the transaction's next call, commit included; the transaction must then be
    /// dropped (rolled back).
    async fn write_postings_ahead(&mut self, writes: &PostingWrites<'_>) -> Result<()>;

    // Purchases and refunds
    async fn get_purchase(&mut self, brand: &BrandId, order_id: &str) -> Result<Option<PurchaseRecord>>;
    /// The purchases of these order IDs that exist.
    async fn get_purchases(&mut self, brand: &BrandId, order_ids: &[String]) -> Result<Vec<PurchaseRecord>>;
    /// Writes the refund columns: `points_reversed`, `refunded_amount`, `status`, `lines`.
    async fn update_purchase_refund(&mut self, p: &PurchaseRecord) -> Result<()>;
    async fn list_purchases(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<PurchaseRecord>>;
    /// The brand's purchases in ID order after the cursor, up to 10,000: exports.
    async fn purchases_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PurchaseRecord>>;
    /// Net points, spend and visits of a member's purchases since `since`.
    async fn purchase_totals(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        since: OffsetDateTime,
    ) -> Result<PurchaseTotals>;
    /// [`Tx::purchase_totals`] of several members since each of several instants, in one pass
    /// over their purchases: for each member with purchases since the earliest instant, one
    /// total per instant, in the order given, holding (at least) the sums asked for it.
    async fn purchase_totals_since(
        &mut self,
        brand: &BrandId,
        members: &[MemberId],
        sinces: &[(OffsetDateTime, Sums)],
    ) -> Result<Vec<(MemberId, Vec<PurchaseTotals>)>>;
    async fn move_purchases(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<u64>;
    /// Up to `limit` purchases of the brand's members after `after` (by member ID), ordered by
    /// member then time: the analytics' streaming reader. A page that is full may end inside a
    /// member's purchases; the caller resumes after the last member it kept.
    async fn purchase_facts(
        &mut self,
        brand: &BrandId,
        filter: &PurchaseFilter,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<PurchaseFact>>;
    /// Like [`Tx::purchase_facts`], with each purchase's lines: the recommender's reader.
    async fn purchase_baskets(
        &mut self,
        brand: &BrandId,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<PurchaseBasket>>;
    /// Up to `limit` of the brand's members after `after`, by ID, with when and where they
    /// enrolled; merged-away duplicates are left out.
    async fn member_enrolments(
        &mut self,
        brand: &BrandId,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberEnrolment>>;
    /// The brand's ledger movements summed per entry kind and time slot of `slot_seconds`
    /// (slots aligned on the Unix epoch): the points flows without reading every entry.
    async fn ledger_flows(
        &mut self,
        brand: &BrandId,
        slot_seconds: u32,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<LedgerFlow>>;
    /// The points the brand's members hold now: available plus pending, summed over accounts
    /// (equal to the sum of every ledger entry, which `ledger verify` proves).
    async fn points_outstanding(&mut self, brand: &BrandId) -> Result<i64>;
    /// Point accounts per tier code (`None`: no tier yet), merged-away members left out.
    async fn tier_counts(&mut self, brand: &BrandId) -> Result<Vec<(Option<String>, i64)>>;
    /// Records a refund; false when the brand already has this refund ID.
    async fn insert_refund(&mut self, r: &RefundRecord) -> Result<bool>;
    async fn get_refund(&mut self, brand: &BrandId, refund_id: &str) -> Result<Option<RefundRecord>>;

    // Idempotent point operations
    /// Records an operation; false when (kind, reference) was already used in the brand.
    async fn insert_operation(&mut self, op: &OperationRecord) -> Result<bool>;
    async fn get_operation(
        &mut self,
        brand: &BrandId,
        kind: &str,
        reference: &str,
    ) -> Result<Option<OperationRecord>>;
    async fn count_operations(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        kind: &str,
        since: Option<OffsetDateTime>,
    ) -> Result<i64>;

    // Tier history
    async fn insert_tier_change(&mut self, change: &TierChangeRecord) -> Result<()>;
    async fn list_tier_changes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<Vec<TierChangeRecord>>;
}
