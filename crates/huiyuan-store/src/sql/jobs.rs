//! The SQL of [`crate::JobsTx`]: the event outbox and the maintenance jobs.

use super::*;

#[async_trait]
impl JobsTx for SqlTx {
    async fn insert_event(&mut self, e: &OutboxRecord) -> Result<bool> {
        Ok(self.insert_events(std::slice::from_ref(e)).await? == 1)
    }

    async fn insert_events(&mut self, events: &[OutboxRecord]) -> Result<u64> {
        self.insert_parts(event_inserts(events, SKIP_EXISTING)).await
    }

    async fn list_events(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {EVENT_COLS} FROM outbox_events WHERE brand_id = "
        ));
        q.bind(brand.as_str());
        if let Some(after) = after {
            q.push(" AND id > ").bind(after);
        }
        q.push(" ORDER BY id LIMIT ")
            .bind(i64::from(limit.clamp(1, 1000)));
        self.query_all(q, event_row).await
    }

    async fn ensure_job(&mut self, name: &str, due_at: OffsetDateTime) -> Result<()> {
        self.exec(
            "INSERT INTO jobs (name, due_at, runs) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
            vec![v(name), v(due_at)],
        )
        .await
        .map(drop)
    }

    async fn claim_job(
        &mut self,
        name: &str,
        owner: &str,
        now: OffsetDateTime,
        due_by: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<bool> {
        let skip = self.conn.dialect().for_update_skip_locked();
        let free = self
            .rows(
                &format!(
                    "SELECT name FROM jobs WHERE name = $1 AND due_at <= $3 \
                     AND (lease_until IS NULL OR lease_until < $2){skip}"
                ),
                vec![v(name), v(now), v(due_by)],
            )
            .await?;
        if free.is_empty() {
            return Ok(false);
        }
        let changed = self
            .exec(
                "UPDATE jobs SET lease_owner = $2, lease_until = $3, last_started_at = $4, runs = runs + 1 \
                 WHERE name = $1 AND (lease_until IS NULL OR lease_until < $4)",
                vec![v(name), v(owner), v(lease_until), v(now)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn finish_job(
        &mut self,
        name: &str,
        owner: &str,
        finished_at: OffsetDateTime,
        next_due: OffsetDateTime,
        error: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, last_finished_at = $3, due_at = $4, last_error = $5 \
             WHERE name = $1 AND lease_owner = $2",
            vec![v(name), v(owner), v(finished_at), v(next_due), v(error)],
        )
        .await
        .map(drop)
    }

    async fn list_jobs(&mut self) -> Result<Vec<JobRecord>> {
        self.all(
            &format!("SELECT {JOB_COLS} FROM jobs ORDER BY name"),
            vec![],
            job_row,
        )
        .await
    }
}
