//! Imports through the API: the uploaded file is checked (a bad header is refused at once),
//! sealed with the brand's keys — it holds personal data — and kept with a background job
//! that imports it batch by batch under a lease, like bulk issuing. A crash resumes at the
//! last batch saved (the batch is idempotent). When the job ends the file is dropped; the
//! report and the rejected lines stay.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use huiyuan_domain::jobs::JobStatus;
use huiyuan_domain::loyalty::purchase::validate_reference;
use huiyuan_store::BulkJobRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::export::hex;
use super::import::{parse_file, ImportKind, ImportOptions, ImportReport, Rejection, IMPORT_BATCH};
use crate::jobs::{
    view, BulkFailure, BulkJobView, IMPORT_MEMBERS, IMPORT_TRANSACTIONS, ISSUE_COUPONS, LEASE,
};
use crate::{Actor, Core, CoreError, Result};

/// Rejected lines kept with a job (the count covers them all).
const KEPT_REJECTIONS: usize = 100_000;

/// What an import job works on, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImportJob {
    kind: ImportKind,
    options: ImportOptions,
    /// The file sealed with the brand's keys, base64; dropped when the job ends.
    file: Option<String>,
    report: ImportReport,
}

fn job_kind(kind: ImportKind) -> &'static str {
    match kind {
        ImportKind::Members => IMPORT_MEMBERS,
        ImportKind::Transactions => IMPORT_TRANSACTIONS,
    }
}

fn file_context(job_id: &str) -> String {
    format!("import-file:{job_id}")
}

fn corrupt(e: impl std::fmt::Display) -> CoreError {
    CoreError::Corrupt(e.to_string())
}

impl Core {
    /// Queues the import of a file and starts it in the background. Without a `reference`
    /// the file's SHA-256 is one, so uploading the same file twice returns the first job.
    pub async fn queue_import(
        &self,
        actor: &Actor,
        kind: ImportKind,
        reference: Option<&str>,
        options: ImportOptions,
        bytes: &[u8],
    ) -> Result<(BulkJobView, bool)> {
        actor.require(kind.permission())?;
        let reference = match reference {
            Some(r) => validate_reference("reference", r)?,
            None => {
                let digest = Sha256::digest(bytes);
                format!("sha256:{}", &hex(&digest)[..48])
            }
        };
        let brand = &actor.brand_id;
        let kind_name = job_kind(kind);
        {
            let mut tx = self.storage.read().await?;
            if let Some(existing) = tx.get_bulk_job_by_reference(brand, kind_name, &reference).await? {
                return Ok((view(&existing)?, false));
            }
        }
        // Checked now, so a wrong header or a missing column is answered at once.
        let ctx = self.import_context(brand).await?;
        let parsed = parse_file(kind, bytes, &options, &ctx)?;
        let mut job = self.new_bulk_job(actor, kind_name, &reference, parsed.items.len() as i64);
        let input = ImportJob {
            kind,
            options,
            file: Some(STANDARD.encode(self.keys.seal(&file_context(&job.id), bytes))),
            report: ImportReport {
                encoding: parsed.encoding.into(),
                ignored_columns: parsed.ignored_columns.clone(),
                ..ImportReport::default()
            },
        };
        job.input = serde_json::to_string(&input).map_err(corrupt)?;
        let mut tx = self.storage.write().await?;
        if let Some(existing) = tx.get_bulk_job_by_reference(brand, kind_name, &reference).await? {
            return Ok((view(&existing)?, false));
        }
        let requested = serde_json::json!({ "kind": kind.as_str(), "items": job.total,
            "bytes": bytes.len(), "reference": reference });
        let queued = self
            .queue_bulk_job(tx, actor, &job, "import.requested", requested)
            .await?;
        Ok((queued, true))
    }

    /// Every rejected line of an import job so far.
    pub async fn import_rejections(&self, actor: &Actor, job_id: &str) -> Result<Vec<Rejection>> {
        let job = self.bulk_job_record(actor, job_id).await?;
        if job.kind == ISSUE_COUPONS {
            return Err(CoreError::NotFound("import job"));
        }
        let failures: Vec<BulkFailure> = serde_json::from_str(&job.errors).map_err(corrupt)?;
        Ok(failures
            .into_iter()
            .map(|f| Rejection {
                line: f.item.trim_start_matches("line ").parse().unwrap_or(0),
                field: (f.code != "row").then_some(f.code),
                reason: f.message,
            })
            .collect())
    }

    pub(crate) async fn run_import_job(&self, job: &mut BulkJobRecord, owner: &str) -> Result<u64> {
        let mut input: ImportJob = serde_json::from_str(&job.input).map_err(corrupt)?;
        let mut failures: Vec<BulkFailure> = serde_json::from_str(&job.errors).map_err(corrupt)?;
        let actor = Actor {
            request_id: Some(job.id.clone()),
            ..Actor::system(job.brand_id.clone())
        };
        let items = match &input.file {
            None => Vec::new(),
            Some(sealed) => {
                let bytes = self
                    .keys
                    .open(&file_context(&job.id), &STANDARD.decode(sealed).map_err(corrupt)?)?;
                let ctx = self.import_context(&job.brand_id).await?;
                parse_file(input.kind, &bytes, &input.options, &ctx)
                    .map_err(|e| CoreError::Corrupt(format!("an accepted import no longer parses: {e:?}")))?
                    .items
            }
        };
        let mut handled = 0;
        loop {
            let from = (job.processed as usize).min(items.len());
            let chunk = &items[from..(from + IMPORT_BATCH).min(items.len())];
            let mut rejected = Vec::new();
            if !chunk.is_empty() {
                self.import_items(&actor, chunk, &input.options, &mut input.report, &mut rejected)
                    .await?;
            }
            job.processed += chunk.len() as i64;
            job.failed += rejected.len() as i64;
            job.succeeded = job.processed - job.failed;
            handled += chunk.len() as u64;
            for r in rejected {
                if failures.len() < KEPT_REJECTIONS {
                    failures.push(BulkFailure {
                        item: format!("line {}", r.line),
                        code: r.field.unwrap_or_else(|| "row".into()),
                        message: r.reason,
                    });
                }
            }
            let now = self.now();
            let done = job.processed as usize >= items.len();
            if done {
                job.status = JobStatus::Done;
                job.finished_at = Some(now);
                job.lease_owner = None;
                job.lease_until = None;
                input.file = None;
            } else {
                job.lease_owner = Some(owner.to_owned());
                job.lease_until = Some(now + LEASE);
            }
            job.updated_at = now;
            job.errors = serde_json::to_string(&failures).map_err(corrupt)?;
            job.input = serde_json::to_string(&input).map_err(corrupt)?;
            let mut tx = self.storage.write().await?;
            tx.save_bulk_job(job).await?;
            tx.commit().await?;
            if done {
                if items.len() >= IMPORT_BATCH {
                    self.refresh_statistics().await;
                }
                return Ok(handled);
            }
        }
    }
}
