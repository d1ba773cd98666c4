//! The audit log: every write says who did what to which record, with personal data masked.

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::AuditEventId;
use huiyuan_store::{AuditFilter, AuditRecord, Page, Tx};

use crate::views::AuditView;
use crate::{Actor, Core, Result};

impl Core {
    /// Appends an audit entry inside the caller's transaction, so it commits with the change.
    pub(crate) async fn audit(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        action: &str,
        target: (&str, &str),
        diff: serde_json::Value,
    ) -> Result<()> {
        let record = AuditRecord {
            id: self.new_id(AuditEventId::generate),
            brand_id: actor.brand_id.clone(),
            actor_kind: actor.kind.as_str().into(),
            actor_id: actor.id.clone(),
            action: action.into(),
            target_kind: target.0.into(),
            target_id: target.1.into(),
            diff: diff.to_string(),
            request_id: actor.request_id.clone(),
            created_at: self.now(),
        };
        tx.insert_audit(&record).await?;
        Ok(())
    }

    /// A change that other systems follow (an outbox event) and auditors read (an audit
    /// entry), under one name, in the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn announce(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        name: &str,
        subject: &str,
        target: (&str, &str),
        event: serde_json::Value,
        diff: serde_json::Value,
    ) -> Result<()> {
        self.emit(tx, &actor.brand_id, name, subject, event, None).await?;
        self.audit(tx, actor, name, target, diff).await
    }

    pub async fn list_audit(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        page: &Page,
    ) -> Result<Vec<AuditView>> {
        actor.require(Permission::AuditRead)?;
        let mut tx = self.storage.read().await?;
        let records = tx.list_audit(&actor.brand_id, filter, page).await?;
        Ok(records.into_iter().map(audit_view).collect())
    }
}

pub(crate) fn audit_view(r: AuditRecord) -> AuditView {
    AuditView {
        id: r.id,
        actor_kind: r.actor_kind,
        actor_id: r.actor_id,
        action: r.action,
        target_kind: r.target_kind,
        target_id: r.target_id,
        diff: serde_json::from_str(&r.diff).unwrap_or(serde_json::Value::String(r.diff)),
        request_id: r.request_id,
        created_at: r.created_at,
    }
}
