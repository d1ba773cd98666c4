//! The SQL of [`crate::AuditTx`]: the audit log (append-only) and idempotency keys.

use super::*;

#[async_trait]
impl AuditTx for SqlTx {
    async fn insert_audit(&mut self, a: &AuditRecord) -> Result<()> {
        self.exec(
            "INSERT INTO audit_events (id, brand_id, actor_kind, actor_id, action, target_kind, target_id, diff, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![v(a.id.as_str()), v(a.brand_id.as_str()), v(&a.actor_kind), v(&a.actor_id), v(&a.action), v(&a.target_kind), v(&a.target_id), v(&a.diff), v(a.request_id.clone()), v(a.created_at)],
        )
        .await
        .map(drop)
    }

    async fn list_audit(
        &mut self,
        brand: &BrandId,
        f: &AuditFilter,
        page: &Page,
    ) -> Result<Vec<AuditRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {AUDIT_COLS} FROM audit_events WHERE brand_id = "
        ));
        q.bind(brand.as_str());
        if let Some(t) = &f.target_id {
            q.push(" AND target_id = ").bind(t.as_str());
        }
        if let Some(a) = &f.actor_id {
            q.push(" AND actor_id = ").bind(a.as_str());
        }
        if let Some(a) = &f.action {
            q.push(" AND action = ").bind(a.as_str());
        }
        paginate(&mut q, "id", page);
        self.query_all(q, audit_row).await
    }

    async fn claim_idempotency_key(&mut self, c: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>> {
        let inserted = self
            .exec(
                "INSERT INTO idempotency_keys (brand_id, scope, idem_key, request_hash, status, body, created_at) \
                 VALUES ($1, $2, $3, $4, NULL, NULL, $5) ON CONFLICT DO NOTHING",
                vec![v(c.brand_id.as_str()), v(&c.scope), v(&c.key), v(&c.request_hash), v(c.created_at)],
            )
            .await?;
        if inserted == 1 {
            return Ok(None);
        }
        self.get_idempotency_key(&c.brand_id, &c.scope, &c.key)
            .await?
            .map(Some)
            .ok_or_else(|| StoreError::Database("idempotency key vanished while claimed".into()))
    }

    async fn get_idempotency_key(
        &mut self,
        brand: &BrandId,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        self.one(
            &format!("SELECT {IDEMPOTENCY_COLS} FROM idempotency_keys WHERE brand_id = $1 AND scope = $2 AND idem_key = $3"),
            vec![v(brand.as_str()), v(scope), v(key)],
            idempotency_row,
        )
        .await
    }

    async fn complete_idempotency_key(
        &mut self,
        brand: &BrandId,
        scope: &str,
        key: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        self.exec(
            "UPDATE idempotency_keys SET status = $4, body = $5 WHERE brand_id = $1 AND scope = $2 AND idem_key = $3",
            vec![v(brand.as_str()), v(scope), v(key), v(i64::from(status)), v(body)],
        )
        .await
        .map(drop)
    }

    async fn release_idempotency_key(&mut self, brand: &BrandId, scope: &str, key: &str) -> Result<()> {
        self.exec(
            "DELETE FROM idempotency_keys WHERE brand_id = $1 AND scope = $2 AND idem_key = $3 AND status IS NULL",
            vec![v(brand.as_str()), v(scope), v(key)],
        )
        .await
        .map(drop)
    }

    async fn purge_idempotency_keys(&mut self, created_before: OffsetDateTime) -> Result<u64> {
        self.exec(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            vec![v(created_before)],
        )
        .await
    }
}
