//! Bulk issuing in the background: a job with a status URL and progress, handled a chunk of
//! members per transaction, resumable after a crash (each member's coupon is idempotent on
//! the job's reference, so a chunk done twice issues nothing twice).

use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::jobs::JobStatus;
use huiyuan_domain::loyalty::purchase::validate_reference;
use huiyuan_domain::ValidationError;
use huiyuan_store::BulkJobRecord;
use serde::{Deserialize, Serialize};

use crate::jobs::{view, BulkFailure, BulkJobView, ISSUE_COUPONS, LEASE};
use crate::segments::SegmentFilter;
use crate::{Actor, Core, CoreError, ErrorCode, Result};

/// Most members in one bulk request.
pub const MAX_BULK_MEMBERS: usize = 100_000;
/// Members issued to per transaction: short transactions leave the writer to the tills.
const CHUNK: usize = 200;
/// Failures kept in a job's report; the count covers them all.
const KEPT_ERRORS: usize = 100;
/// Issue a template's coupons to a list of members or to a segment (one of the two).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    /// Issues a bulk job's coupons, a chunk of members per transaction, from where it stopped.
    pub(crate) async fn run_issue_job(&self, job: &mut BulkJobRecord, owner: &str) -> Result<u64> {
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
                        code: ErrorCode::CouponOutOfStock,
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
                                    CoreError::NotFound(_) => ErrorCode::NotFound.as_str().into(),
                                    CoreError::Merged { .. } => ErrorCode::MemberMerged.as_str().into(),
                                    CoreError::Conflict { code, .. } => code.as_str().into(),
                                    _ => ErrorCode::Internal.as_str().into(),
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
                job.status = JobStatus::Failed;
                job.failed += job.total - job.processed;
                errors.push(BulkFailure {
                    item: "the rest".into(),
                    code: ErrorCode::CouponOutOfStock.as_str().into(),
                    message: why,
                });
                job.errors = serde_json::to_string(&errors).map_err(|e| CoreError::Corrupt(e.to_string()))?;
                job.processed = job.total;
            } else if job.processed == job.total {
                job.status = JobStatus::Done;
            }
            if job.status != JobStatus::Running {
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
