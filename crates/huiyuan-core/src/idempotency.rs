//! `Idempotency-Key` bookkeeping: the first request with a key runs, later ones with the same
//! key and body get the stored response, and the same key with another body is refused.

use huiyuan_domain::ValidationError;
use huiyuan_store::IdempotencyRecord;

use crate::{Actor, Core, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First sight of this key: run the request, then [`Core::complete_idempotency`].
    Proceed,
    /// Seen and finished: answer with the stored response.
    Replay { status: u16, body: Vec<u8> },
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

fn scope(actor: &Actor) -> String {
    format!("{}:{}", actor.kind.as_str(), actor.id)
}

pub fn validate_key(key: &str) -> Result<(), ValidationError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::field(
            "Idempotency-Key",
            "must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(())
}

impl Core {
    /// `request_hash` identifies the request (method, path, body).
    pub async fn claim_idempotency(
        &self,
        actor: &Actor,
        key: &str,
        request_hash: Vec<u8>,
    ) -> Result<IdempotencyClaim> {
        validate_key(key)?;
        let claim = IdempotencyRecord {
            brand_id: actor.brand_id.clone(),
            scope: scope(actor),
            key: key.to_owned(),
            request_hash,
            status: None,
            body: None,
            created_at: self.now(),
        };
        let mut tx = self.storage.write().await?;
        let existing = tx.claim_idempotency_key(&claim).await?;
        tx.commit().await?;
        Ok(match existing {
            None => IdempotencyClaim::Proceed,
            Some(e) if e.request_hash != claim.request_hash => IdempotencyClaim::Mismatch,
            Some(IdempotencyRecord {
                status: Some(status),
                body,
                ..
            }) => IdempotencyClaim::Replay {
                status,
                body: body.unwrap_or_default(),
            },
            Some(_) => IdempotencyClaim::InProgress,
        })
    }

    /// Sets `key` for `actor` as a marker that can be set once (a sign-in link used, a member
    /// session ended); true when this call set it, false when it was set already.
    pub(crate) async fn mark_once(&self, actor: &Actor, key: &str, request_hash: &[u8]) -> Result<bool> {
        if self.claim_idempotency(actor, key, request_hash.to_vec()).await? != IdempotencyClaim::Proceed {
            return Ok(false);
        }
        self.complete_idempotency(actor, key, 200, b"").await?;
        Ok(true)
    }

    /// Whether `key` was claimed for `actor` (and not released): a marker set by
    /// [`Core::mark_once`], such as a member session ended.
    pub(crate) async fn idempotency_key_used(&self, actor: &Actor, key: &str) -> Result<bool> {
        let mut tx = self.storage.read().await?;
        Ok(tx
            .get_idempotency_key(&actor.brand_id, &scope(actor), key)
            .await?
            .is_some())
    }

    pub async fn complete_idempotency(
        &self,
        actor: &Actor,
        key: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        let mut tx = self.storage.write().await?;
        tx.complete_idempotency_key(&actor.brand_id, &scope(actor), key, status, body)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets an unfinished claim (the request failed before changing anything), so a retry runs.
    pub async fn release_idempotency(&self, actor: &Actor, key: &str) -> Result<()> {
        let mut tx = self.storage.write().await?;
        tx.release_idempotency_key(&actor.brand_id, &scope(actor), key)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
