//! Bulk issuing in the background: a job with a status URL and progress, handled a chunk of
//! members per transaction, resumable after a crash (each member's coupon is idempotent on
//! the job's reference, so a chunk done twice issues nothing twice).

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{BulkJobId, MemberId};
use huiyuan_domain::loyalty::purchase::validate_reference;
use huiyuan_domain::ValidationError;
use huiyuan_store::BulkJobRecord;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use crate::segments::SegmentFilter;
use crate::{Actor, Core, CoreError, Result};

/// Most members in one bulk request.
pub const MAX_BULK_MEMBERS: usize = 100_000;
/// Members issued to per transaction: short transactions leave the writer to the tills.
const CHUNK: usize = 200;
/// Failures kept in a job's report; the count covers them all.
const KEPT_ERRORS: usize = 100;
/// How long a process holds a job before another may take it over.
pub(crate) const LEASE: Duration = Duration::minutes(2);
pub const ISSUE_COUPONS: &str = "coupons.issue";

/// Issue a template's coupons to a list of members or to a segment (one of the two).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkIssueInput {
    #[serde(default)]
    pub member_ids: Vec<MemberId>,
    /// Everyone in the segment when the job is created (its members are fixed then).
    pub segment: Option<SegmentFilter>,
    /// The caller's reference for the whole run: sent again, it returns the same job.
    pub reference: String,
}

/// What the job works on, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IssueJob {
    template_id: String,
    member_ids: Vec<MemberId>,
}

/// One member the job could not issue to, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BulkFailure {
    pub item: String,
    pub code: String,
    pub message: String,
}

/// A background job and its progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkJobView {
    pub id: String,
    pub kind: String,
    pub reference: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
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
    pub import: Option<crate::transfer::import::ImportReport>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
}

pub(crate) fn view(j: &BulkJobRecord) -> Result<BulkJobView> {
    Ok(BulkJobView {
        import: crate::transfer::jobs::import_summary(j)?,
        id: j.id.clone(),
        kind: j.kind.clone(),
        reference: j.reference.clone(),
        status: j.status.clone(),
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
    /// Queues the issue of a template's coupons to members, and starts it in the background.
    /// The same reference returns the job already made. Returns the job (its status URL is
    /// `/v1/bulk-jobs/{id}`).
    pub async fn issue_coupons_bulk(
        &self,
        actor: &Actor,
        template_id: &str,
        input: BulkIssueInput,
    ) -> Result<(BulkJobView, bool)> {
        actor.require(Permission::CouponsIssue)?;
        validate_reference("reference", &input.reference)?;
        let brand = &actor.brand_id;
        let member_ids = match (&input.segment, input.member_ids.is_empty()) {
            (Some(_), false) => {
                return Err(
                    ValidationError::field("segment", "give member_ids or a segment, not both").into(),
                )
            }
            (None, true) => {
                return Err(ValidationError::field("member_ids", "give member IDs or a segment").into())
            }
            (None, false) if input.member_ids.len() > MAX_BULK_MEMBERS => {
                return Err(ValidationError::field(
                    "member_ids",
                    format!("must hold at most {MAX_BULK_MEMBERS} members"),
                )
                .into())
            }
            (None, false) => input.member_ids.clone(),
            (Some(segment), true) => {
                // A replayed request returns its job without resolving the segment again.
                let mut tx = self.storage.read().await?;
                if let Some(existing) = tx
                    .get_bulk_job_by_reference(brand, ISSUE_COUPONS, &input.reference)
                    .await?
                {
                    return Ok((view(&existing)?, false));
                }
                drop(tx);
                let (members, _) = self
                    .segment_members(brand, segment, MAX_BULK_MEMBERS, "segment")
                    .await?;
                if members.is_empty() {
                    return Err(ValidationError::field("segment", "holds no members now").into());
                }
                members
            }
        };
        let mut tx = self.storage.write().await?;
        if let Some(existing) = tx
            .get_bulk_job_by_reference(brand, ISSUE_COUPONS, &input.reference)
            .await?
        {
            return Ok((view(&existing)?, false));
        }
        let template = super::coupons::active_template(&mut *tx, brand, template_id).await?;
        let total = member_ids.len() as i64;
        let mut job = self.new_bulk_job(actor, ISSUE_COUPONS, &input.reference, total);
        job.input = serde_json::to_string(&IssueJob {
            template_id: template.id.clone(),
            member_ids,
        })
        .map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let requested = serde_json::json!({ "template_id": template.id, "members": job.total,
            "reference": job.reference, "segment": input.segment });
        let queued = self
            .queue_bulk_job(tx, actor, &job, "coupons.bulk_issue_requested", requested)
            .await?;
        Ok((queued, true))
    }

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
                "reference_reused",
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
            status: "queued".into(),
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
        actor.require(crate::transfer::jobs::permission_of(&job.kind))?;
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

    async fn run_bulk_job(&self, job: &mut BulkJobRecord, owner: &str) -> Result<u64> {
        if job.kind != ISSUE_COUPONS {
            return self.run_import_job(job, owner).await;
        }
        let input: IssueJob =
            serde_json::from_str(&job.input).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let mut errors: Vec<BulkFailure> =
            serde_json::from_str(&job.errors).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        let actor = Actor {
            request_id: Some(job.id.clone()),
            ..Actor::system(job.brand_id.clone())
        };
        let mut handled = 0;
        while (job.processed as usize) < input.member_ids.len() {
            let from = job.processed as usize;
            let chunk = &input.member_ids[from..(from + CHUNK).min(input.member_ids.len())];
            let mut tx = self.storage.write().await?;
            let mut stop = None;
            for member in chunk {
                let reference = format!("{}:{member}", job.reference);
                match self
                    .issue_in(&mut *tx, &actor, member, &input.template_id, "bulk", &reference)
                    .await
                {
                    Ok(_) => job.succeeded += 1,
                    Err(CoreError::Conflict {
                        code: "coupon_out_of_stock",
                        message,
                        ..
                    }) => {
                        stop = Some(message);
                        break;
                    }
                    Err(
                        e @ (CoreError::NotFound(_) | CoreError::Conflict { .. } | CoreError::Merged { .. }),
                    ) => {
                        job.failed += 1;
                        if errors.len() < KEPT_ERRORS {
                            errors.push(BulkFailure {
                                item: member.to_string(),
                                code: match &e {
                                    CoreError::NotFound(_) => "not_found".into(),
                                    CoreError::Merged { .. } => "member_merged".into(),
                                    CoreError::Conflict { code, .. } => (*code).into(),
                                    _ => "error".into(),
                                },
                                message: e.to_string(),
                            });
                        }
                    }
                    // Anything else (the database): this chunk is rolled back and the job is
                    // left for the next run.
                    Err(e) => return Err(e),
                }
                job.processed += 1;
                handled += 1;
            }
            let now = self.now();
            job.errors = serde_json::to_string(&errors).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            job.updated_at = now;
            job.lease_until = Some(now + LEASE);
            job.lease_owner = Some(owner.to_owned());
            if let Some(why) = stop {
                job.status = "failed".into();
                job.failed += job.total - job.processed;
                errors.push(BulkFailure {
                    item: "the rest".into(),
                    code: "coupon_out_of_stock".into(),
                    message: why,
                });
                job.errors = serde_json::to_string(&errors).map_err(|e| CoreError::Corrupt(e.to_string()))?;
                job.processed = job.total;
            } else if job.processed == job.total {
                job.status = "done".into();
            }
            if job.status != "running" {
                job.finished_at = Some(now);
                job.lease_owner = None;
                job.lease_until = None;
            }
            tx.save_bulk_job(job).await?;
            tx.commit().await?;
        }
        Ok(handled)
    }
}
