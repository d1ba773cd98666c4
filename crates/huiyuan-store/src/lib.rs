//! The storage boundary of Huiyuan.
//!
//! [`Storage`] hands out transactions ([`Tx`]) whose methods are the only way the use cases touch
//! data. The SQL behind them is written once in [`sql`], in the subset of SQL that SQLite and
//! PostgreSQL share; each backend crate supplies a connection that binds [`sql::Value`]s in its
//! own native types, its own migrations, and the few places where the dialects differ
//! ([`sql::Dialect`]). [`conformance`] is the suite both backends must pass.

pub mod commerce;
pub mod conformance;
pub mod error;
pub mod records;
pub mod sql;

use async_trait::async_trait;
use huiyuan_domain::ids::{ApiKeyId, BrandId, MemberId, OperatorId, StoreId};
use time::OffsetDateTime;

pub use commerce::*;
pub use error::StoreError;
pub use records::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A storage backend: SQLite embedded, or PostgreSQL shared by several nodes.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A transaction for writes. On SQLite writers are serialised; on PostgreSQL rows that a
    /// use case must not see change under it are locked with [`Tx::lock_member`].
    ///
    /// Never open a second write transaction while holding one: on SQLite the second waits for
    /// the first forever. After an error other than those a method documents as recoverable
    /// ([`Tx::insert_identity`], [`Tx::claim_idempotency_key`]), drop the transaction: PostgreSQL
    /// has already aborted it.
    async fn write(&self) -> Result<Box<dyn Tx>>;
    /// A transaction for reads: a consistent snapshot that never blocks writers.
    async fn read(&self) -> Result<Box<dyn Tx>>;
    /// Is the database reachable, and are all migrations this binary knows applied?
    async fn health(&self) -> Result<Health>;
    /// `sqlite` or `postgres`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;
    /// Waits for open connections to finish and closes them (SQLite checkpoints its WAL).
    async fn close(&self);
    /// Brings the query planner's statistics up to date. Call it after a bulk load (an import,
    /// the demo, a benchmark's setup): until the database's own maintenance catches up, the
    /// planner takes a brand that just grew for a small one and scans all its rows where one
    /// index probe per member would do (measured: half the throughput of single purchases on
    /// PostgreSQL right after a load of 2,000 members).
    async fn refresh_statistics(&self) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub reachable: bool,
    pub migrations_current: bool,
}

/// The rows of one posting transaction (sales, maturations, expiries, upgrades), for
/// [`Tx::write_postings`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PostingWrites<'a> {
    pub purchases: &'a [PurchaseRecord],
    pub new_lots: &'a [LotRecord],
    /// Existing lots whose status, remaining points or reminder flag changed; none of them
    /// among `new_lots`.
    pub changed_lots: &'a [LotRecord],
    pub entries: &'a [LedgerEntryRecord],
    /// Accounts the transaction holds locked.
    pub accounts: &'a [AccountRecord],
    pub tier_changes: &'a [TierChangeRecord],
    pub events: &'a [OutboxRecord],
}

/// One database transaction. Dropping it without [`Tx::commit`] rolls everything back.
#[async_trait]
pub trait Tx: CommerceTx + Send {
    async fn commit(self: Box<Self>) -> Result<()>;

    // Brands
    async fn insert_brand(&mut self, brand: &BrandRecord) -> Result<()>;
    async fn get_brand(&mut self, id: &BrandId) -> Result<Option<BrandRecord>>;
    async fn get_brand_by_slug(&mut self, slug: &str) -> Result<Option<BrandRecord>>;
    async fn list_brands(&mut self) -> Result<Vec<BrandRecord>>;
    async fn update_brand(&mut self, brand: &BrandRecord) -> Result<()>;

    // Stores (shops)
    async fn insert_store(&mut self, store: &StoreRecord) -> Result<()>;
    async fn update_store(&mut self, store: &StoreRecord) -> Result<()>;
    async fn get_store(&mut self, brand: &BrandId, id: &StoreId) -> Result<Option<StoreRecord>>;
    async fn list_stores(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<StoreRecord>>;

    // Operators and their sessions
    async fn insert_operator(&mut self, op: &OperatorRecord) -> Result<()>;
    async fn update_operator(&mut self, op: &OperatorRecord) -> Result<()>;
    async fn get_operator(&mut self, brand: &BrandId, id: &OperatorId) -> Result<Option<OperatorRecord>>;
    async fn find_operator_by_username(&mut self, username: &str) -> Result<Option<OperatorRecord>>;
    async fn list_operators(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<OperatorRecord>>;
    async fn insert_session(&mut self, session: &SessionRecord) -> Result<()>;
    async fn find_session(&mut self, token_hash: &[u8]) -> Result<Option<SessionRecord>>;
    async fn delete_session(&mut self, token_hash: &[u8]) -> Result<bool>;
    async fn delete_sessions_of(&mut self, operator: &OperatorId) -> Result<u64>;

    // API keys
    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> Result<()>;
    async fn find_api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKeyRecord>>;
    async fn get_api_key(&mut self, brand: &BrandId, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>>;
    async fn list_api_keys(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<ApiKeyRecord>>;
    async fn revoke_api_key(&mut self, brand: &BrandId, id: &ApiKeyId, at: OffsetDateTime) -> Result<bool>;

    // Members
    async fn insert_member(&mut self, member: &MemberRecord) -> Result<()>;
    /// Replaces the row when `member.version - 1` is the stored version (optimistic check).
    async fn update_member(&mut self, member: &MemberRecord) -> Result<()>;
    async fn get_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>>;
    /// The brand's members among `ids` (those that exist).
    async fn get_members(&mut self, brand: &BrandId, ids: &[MemberId]) -> Result<Vec<MemberRecord>>;
    /// Reads the member and, on PostgreSQL, locks the row until the transaction ends.
    async fn lock_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>>;
    async fn list_members(
        &mut self,
        brand: &BrandId,
        filter: &MemberFilter,
        page: &Page,
    ) -> Result<Vec<MemberRecord>>;
    async fn count_members(&mut self, brand: &BrandId) -> Result<i64>;
    /// The brand's members (every status) in ID order after the cursor, up to 10,000: exports.
    async fn members_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemberRecord>>;
    /// Active members matching a segment's stored attributes, by ID after the cursor.
    async fn segment_members(
        &mut self,
        brand: &BrandId,
        segment: &SegmentQuery,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>>;
    /// Active members whose birthday falls in `month`, in ID order after the cursor.
    async fn members_born_in(
        &mut self,
        brand: &BrandId,
        month: u8,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>>;

    /// Claims an identity; [`StoreError::Conflict`] when the brand already has it, after which
    /// the transaction can still be used (to look up the owner).
    async fn insert_identity(&mut self, identity: &IdentityRecord) -> Result<()>;
    async fn find_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<Option<MemberId>>;
    async fn list_identities(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<IdentityRecord>>;
    async fn delete_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<bool>;
    async fn delete_identities_of(&mut self, brand: &BrandId, member: &MemberId) -> Result<u64>;
    async fn move_identities(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<u64>;

    async fn replace_name_prefixes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        hashes: &[Vec<u8>],
    ) -> Result<()>;

    async fn add_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()>;
    async fn remove_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()>;
    async fn list_tags(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<String>>;
    async fn move_tags(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<()>;

    // Dynamic member codes
    async fn insert_member_code(&mut self, code: &MemberCodeRecord) -> Result<()>;
    async fn find_member_code_by_nonce(
        &mut self,
        brand: &BrandId,
        nonce: &str,
    ) -> Result<Option<MemberCodeRecord>>;
    async fn find_member_code_by_hash(
        &mut self,
        brand: &BrandId,
        code_hash: &[u8],
    ) -> Result<Option<MemberCodeRecord>>;
    /// Marks a code used; false when it was already used (the caller lost the race).
    async fn use_member_code(
        &mut self,
        brand: &BrandId,
        nonce: &str,
        at: OffsetDateTime,
        by: &str,
    ) -> Result<bool>;
    async fn purge_member_codes(&mut self, expired_before: OffsetDateTime) -> Result<u64>;

    // Audit log (append-only: there is no update or delete)
    async fn insert_audit(&mut self, event: &AuditRecord) -> Result<()>;
    async fn list_audit(
        &mut self,
        brand: &BrandId,
        filter: &AuditFilter,
        page: &Page,
    ) -> Result<Vec<AuditRecord>>;

    // Idempotency keys
    /// Claims a key for a request; returns the existing record when the key was seen before.
    async fn claim_idempotency_key(&mut self, claim: &IdempotencyRecord)
        -> Result<Option<IdempotencyRecord>>;
    async fn complete_idempotency_key(
        &mut self,
        brand: &BrandId,
        scope: &str,
        key: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()>;
    async fn release_idempotency_key(&mut self, brand: &BrandId, scope: &str, key: &str) -> Result<()>;
    async fn purge_idempotency_keys(&mut self, created_before: OffsetDateTime) -> Result<u64>;
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

    // Outbox
    /// Appends an event; false when its dedupe key was already used (nothing written).
    async fn insert_event(&mut self, event: &OutboxRecord) -> Result<bool>;
    /// Appends events, several per statement; those whose dedupe key was used are skipped.
    async fn insert_events(&mut self, events: &[OutboxRecord]) -> Result<u64>;
    /// Events oldest first after the given event ID.
    async fn list_events(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>>;

    // Jobs
    /// Creates the job unless it exists.
    async fn ensure_job(&mut self, name: &str, due_at: OffsetDateTime) -> Result<()>;
    /// Takes the lease of a job due by `due_by` whose lease is free or lapsed at `now`; false
    /// when another process holds it or it is not due. On PostgreSQL a locked job row is
    /// skipped, not waited for.
    async fn claim_job(
        &mut self,
        name: &str,
        owner: &str,
        now: OffsetDateTime,
        due_by: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool>;
    /// Releases the lease and sets the next due time.
    async fn finish_job(
        &mut self,
        name: &str,
        owner: &str,
        finished_at: OffsetDateTime,
        next_due: OffsetDateTime,
        error: Option<&str>,
    ) -> Result<()>;
    async fn list_jobs(&mut self) -> Result<Vec<JobRecord>>;
}
