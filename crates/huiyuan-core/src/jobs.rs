//! Background jobs: bulk coupon issues and file imports, queued with an audit record, claimed
//! under a lease so that one process at a time works on a job, handled a chunk per
//! transaction, resumed by the maintenance loop after a crash, and polled for progress. What a
//! job of each kind does lives with its capability (`commerce::bulk`, `files::import_jobs`); this
//! module holds what they share and hands each claimed job to its kind.

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::BulkJobId;
use huiyuan_domain::jobs::JobStatus;
use huiyuan_store::BulkJobRecord;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::files::import::{ImportKind, ImportReport};
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// The kinds of job, as stored.
pub const ISSUE_COUPONS: &str = "coupons.issue";
pub const IMPORT_MEMBERS: &str = "members.import";
pub const IMPORT_TRANSACTIONS: &str = "transactions.import";

/// How long a process holds a job before another may take it over.
pub(crate) const LEASE: Duration = Duration::minutes(2);

/// Who may see a job: whoever may start one of its kind.
pub(crate) fn permission_of(kind: &str) -> Permission {
    match kind {
        IMPORT_MEMBERS => ImportKind::Members.permission(),
        IMPORT_TRANSACTIONS => ImportKind::Transactions.permission(),
        _ => Permission::CouponsIssue,
    }
}

/// Only the report of a stored import job: a progress poll must not copy out the sealed file
/// (up to the upload limit) that sits beside it until the job ends.
#[derive(Deserialize)]
struct ImportSummary {
    report: ImportReport,
}

fn import_summary(job: &BulkJobRecord) -> Result<Option<ImportReport>> {
    if job.kind == ISSUE_COUPONS {
        return Ok(None);
    }
    let summary: ImportSummary =
        serde_json::from_str(&job.input).map_err(|e| CoreError::Corrupt(e.to_string()))?;
    Ok(Some(summary.report))
}

/// One item a job could not handle (a member, a line of a file), and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkFailure {
    pub item: String,
    pub code: String,
    pub message: String,
}

/// A background job and its progress.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkJobView {
    pub id: String,
    pub kind: String,
    pub reference: String,
    pub status: JobStatus,
    pub total: i64,
    pub processed: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Share done, 0–1.
    pub progress: f64,
    /// The first failures (the count above covers them all). For an import: `item` is
    /// `line N`, `code` the field at fault (or `row`).
    pub errors: Vec<BulkFailure>,
    /// For an import: what it did so far.
    pub import: Option<ImportReport>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub finished_at: Option<OffsetDateTime>,
}

pub(crate) fn view(j: &BulkJobRecord) -> Result<BulkJobView> {
    Ok(BulkJobView {
        import: import_summary(j)?,
        id: j.id.clone(),
        kind: j.kind.clone(),
        reference: j.reference.clone(),
        status: j.status,
        total: j.total,
        processed: j.processed,
        succeeded: j.succeeded,
        failed: j.failed,
        progress: if j.total == 0 {
            1.0
        } else {
            j.processed as f64 / j.total as f64
        },
        errors: serde_json::from_str(&j.errors).map_err(|e| CoreError::Corrupt(e.to_string()))?,
        created_at: j.created_at,
        finished_at: j.finished_at,
    })
}

impl Core {
    /// Stores a job made by [`Core::new_bulk_job`] with its audit record, commits, and starts
    /// it. Its reference taken by a concurrent request in the meantime is a conflict to retry
    /// (the retry then finds that job).
    pub(crate) async fn queue_bulk_job(
        &self,
        mut tx: Box<dyn huiyuan_store::Tx>,
        actor: &Actor,
        job: &BulkJobRecord,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<BulkJobView> {
        if !tx.insert_bulk_job(job).await? {
            return Err(CoreError::conflict(
                ErrorCode::ReferenceReused,
                "this reference is being used concurrently; retry",
            ));
        }
        self.audit(&mut *tx, actor, action, ("bulk_job", job.id.as_str()), detail)
            .await?;
        tx.commit().await?;
        self.start_bulk_jobs();
        view(job)
    }

    /// A queued job of the caller's, its `input` still to fill in.
    pub(crate) fn new_bulk_job(
        &self,
        actor: &Actor,
        kind: &str,
        reference: &str,
        total: i64,
    ) -> BulkJobRecord {
        let now = self.now();
        BulkJobRecord {
            id: self.new_id(BulkJobId::generate).to_string(),
            brand_id: actor.brand_id.clone(),
            kind: kind.into(),
            reference: reference.into(),
            status: JobStatus::Queued,
            input: String::new(),
            total,
            processed: 0,
            succeeded: 0,
            failed: 0,
            errors: "[]".into(),
            requested_by: actor.label(),
            lease_owner: None,
            lease_until: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }

    /// Starts the queued jobs now, on a task of their own; the maintenance loop takes over what
    /// is left if this process stops.
    pub(crate) fn start_bulk_jobs(&self) {
        if !self.config.background {
            return;
        }
        let core = self.clone();
        tokio::spawn(async move {
            if let Err(e) = core.run_bulk_jobs(&format!("bulk {}", std::process::id())).await {
                tracing::warn!(error = %e, "a bulk job stopped; the maintenance loop will resume it");
            }
        });
    }

    /// A job of the caller's brand, for whoever may start its kind.
    pub async fn bulk_job(&self, actor: &Actor, id: &str) -> Result<BulkJobView> {
        view(&self.bulk_job_record(actor, id).await?)
    }

    pub(crate) async fn bulk_job_record(&self, actor: &Actor, id: &str) -> Result<BulkJobRecord> {
        let mut tx = self.storage.read().await?;
        let job = tx
            .get_bulk_job(&actor.brand_id, id)
            .await?
            .ok_or(CoreError::NotFound("bulk job"))?;
        actor.require(permission_of(&job.kind))?;
        Ok(job)
    }

    /// Runs every unfinished job whose lease is free (all brands), chunk by chunk; returns the
    /// items handled. Several processes may call it: each job has one holder at a time.
    pub async fn run_bulk_jobs(&self, owner: &str) -> Result<u64> {
        let mut handled = 0;
        loop {
            let now = self.now();
            let mut tx = self.storage.write().await?;
            let claimed = tx.claim_bulk_job(now, owner, now + LEASE).await?;
            tx.commit().await?;
            let Some(mut job) = claimed else {
                return Ok(handled);
            };
            handled += self.run_bulk_job(&mut job, owner).await?;
        }
    }

    /// Hands a claimed job to the capability that knows its kind.
    async fn run_bulk_job(&self, job: &mut BulkJobRecord, owner: &str) -> Result<u64> {
        match job.kind.as_str() {
            ISSUE_COUPONS => self.run_issue_job(job, owner).await,
            _ => self.run_import_job(job, owner).await,
        }
    }
}
