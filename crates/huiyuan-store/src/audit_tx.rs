//! The audit log (append-only) and idempotency keys: the part of [`crate::Tx`] that keeps them.

use async_trait::async_trait;
use huiyuan_domain::ids::BrandId;
use time::OffsetDateTime;

use crate::records::*;
use crate::Result;

/// The audit log (append-only) and idempotency keys.
#[async_trait]
pub trait AuditTx: Send {
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
    async fn get_idempotency_key(
        &mut self,
        brand: &BrandId,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>>;
    async fn release_idempotency_key(&mut self, brand: &BrandId, scope: &str, key: &str) -> Result<()>;
    async fn purge_idempotency_keys(&mut self, created_before: OffsetDateTime) -> Result<u64>;
}
