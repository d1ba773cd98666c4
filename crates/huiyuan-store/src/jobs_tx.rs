//! The event outbox and the maintenance jobs: the part of [`crate::Tx`] that keeps them.

use async_trait::async_trait;
use huiyuan_domain::ids::BrandId;
use time::OffsetDateTime;

use crate::records::*;
use crate::Result;

/// The event outbox and the maintenance jobs.
#[async_trait]
pub trait JobsTx: Send {
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
