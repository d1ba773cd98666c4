//! The storage boundary of Huiyuan.
//!
//! [`Storage`] hands out transactions ([`Tx`]) whose methods are the only way the use cases touch
//! data. The SQL behind them is written once in [`sql`], in the subset of SQL that SQLite and
//! PostgreSQL share; each backend crate supplies a connection that binds [`sql::Value`]s in its
//! own native types, its own migrations, and the few places where the dialects differ
//! ([`sql::Dialect`]). `conformance` (behind the feature of that name, so the product does not
//! carry it) is the suite both backends must pass.

pub mod audit_tx;
pub mod brands_tx;
pub mod commerce;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod jobs_tx;
pub mod loyalty_tx;
pub mod members_tx;
pub mod records;
pub mod sql;
pub mod testing;

use async_trait::async_trait;

pub use audit_tx::AuditTx;
pub use brands_tx::BrandsTx;
pub use commerce::*;
pub use error::StoreError;
pub use jobs_tx::JobsTx;
pub use loyalty_tx::LoyaltyTx;
pub use members_tx::MembersTx;
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

/// One database transaction. Dropping it without [`Tx::commit`] rolls everything back. Its
/// queries are grouped by area, one trait each (all of them supertraits, so a `dyn Tx` has
/// every method): [`BrandsTx`], [`MembersTx`], [`AuditTx`], [`LoyaltyTx`], [`JobsTx`],
/// [`CommerceTx`].
#[async_trait]
pub trait Tx: BrandsTx + MembersTx + AuditTx + LoyaltyTx + JobsTx + CommerceTx + Send {
    async fn commit(self: Box<Self>) -> Result<()>;
}
