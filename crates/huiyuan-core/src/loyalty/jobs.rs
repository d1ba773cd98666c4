//! Durable, idempotent maintenance jobs: pending → active, expiry, reminders, birthday months,
//! tier reviews, coupon expiry, resuming bulk jobs, lapsed paid memberships.
//!
//! Each job has a row in `jobs` holding its next due time and a lease; a process runs a job
//! only after taking the lease (on PostgreSQL, `FOR UPDATE SKIP LOCKED`), so several server
//! processes on one database run each job once. Work is done in small transactions under the
//! member's account lock and re-checks its condition there, so a crash and a re-run never
//! double-expire: the lot that was expired is already closed.

use std::collections::BTreeMap;

use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::loyalty::ledger::LotStatus;
use huiyuan_store::Tx;
use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::points::EXPIRING_SOON;
use super::{job_interval, Posting, Writes};
use huiyuan_domain::access::Permission;

use crate::{Actor, Core, CoreError, Result};

pub const MATURE: &str = "points.mature";
pub const EXPIRE: &str = "points.expire";
pub const REMIND: &str = "points.remind_expiring";
pub const BIRTHDAYS: &str = "members.birthday_month";
pub const TIER_REVIEW: &str = "tiers.review";
pub const COUPONS_EXPIRE: &str = "coupons.expire";
/// Bulk jobs whose process stopped: taken over once their lease lapses.
pub const BULK: &str = "bulk.resume";
/// Paid membership terms that ended without a renewal.
pub const PLANS_LAPSE: &str = "plans.lapse";
pub const ALL: [&str; 8] = [
    MATURE,
    EXPIRE,
    REMIND,
    BIRTHDAYS,
    TIER_REVIEW,
    COUPONS_EXPIRE,
    BULK,
    PLANS_LAPSE,
];

/// Members handled per transaction: short transactions keep the SQLite writer free for sales.
const MEMBERS_PER_TX: u32 = 200;
/// Due lots listed per round (their members are then handled [`MEMBERS_PER_TX`] at a time).
const LOTS_PER_LISTING: u32 = 5_000;
/// How long a lease lasts; a process that dies mid-job loses it after this.
const LEASE: Duration = Duration::minutes(10);

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRun {
    pub job: String,
    /// False when another process holds the lease or the job was not due.
    pub ran: bool,
    /// Lots matured or expired, events emitted, accounts reviewed.
    pub processed: u64,
    pub error: Option<String>,
}

const SYSTEM: &str = "system jobs";

impl Core {
    /// Runs every due job (all of them when `force`), each under its lease.
    pub async fn run_jobs(&self, owner: &str, force: bool) -> Result<Vec<JobRun>> {
        let mut runs = Vec::new();
        for name in ALL {
            runs.push(self.run_job(name, owner, force).await?);
        }
        Ok(runs)
    }

    /// An operator's "run the jobs now" (`jobs.run`): every job, under the usual leases.
    pub async fn run_jobs_now(&self, actor: &Actor) -> Result<Vec<JobRun>> {
        actor.require(Permission::JobsRun)?;
        self.run_jobs(&format!("api {}", actor.id), true).await
    }

    /// Runs one job (by its name in [`ALL`]) when due, or now when `force`, under its lease.
    pub async fn run_job(&self, name: &str, owner: &str, force: bool) -> Result<JobRun> {
        let now = self.now();
        let mut tx = self.storage.write().await?;
        tx.ensure_job(name, now).await?;
        // `force` runs a job whatever its due time; the lease still guards against others.
        let due_by = if force { now + Duration::days(36_500) } else { now };
        let claimed = tx.claim_job(name, owner, now, due_by, now + LEASE).await?;
        tx.commit().await?;
        if !claimed {
            return Ok(JobRun {
                job: name.into(),
                ran: false,
                processed: 0,
                error: None,
            });
        }
        let result = match name {
            MATURE => self.mature_points().await,
            EXPIRE => self.expire_points().await,
            REMIND => self.remind_expiring().await,
            BIRTHDAYS => self.birthday_months().await,
            TIER_REVIEW => self.review_tiers().await,
            COUPONS_EXPIRE => self.expire_coupons().await,
            BULK => self.run_bulk_jobs(owner).await,
            PLANS_LAPSE => self.lapse_memberships().await,
            other => Err(CoreError::Corrupt(format!("unknown job {other}"))),
        };
        let error = result.as_ref().err().map(ToString::to_string);
        let mut tx = self.storage.write().await?;
        let finished = self.now();
        tx.finish_job(
            name,
            owner,
            finished,
            finished + job_interval(name),
            error.as_deref(),
        )
        .await?;
        tx.commit().await?;
        if let Some(e) = &error {
            tracing::warn!(job = name, error = %e, "job failed; it will run again when next due");
        }
        Ok(JobRun {
            job: name.into(),
            ran: true,
            processed: result.unwrap_or(0),
            error,
        })
    }

    /// Runs `work` for the members the lister names, [`MEMBERS_PER_TX`] to a transaction
    /// (locked in (brand, member) order, their changes written together), until the lister
    /// finds nothing more.
    async fn per_member<L, W>(&self, list: L, work: W) -> Result<u64>
    where
        L: for<'a> Fn(
            &'a mut dyn Tx,
            OffsetDateTime,
        ) -> futures_like::BoxFut<'a, Result<Vec<(BrandId, MemberId)>>>,
        W: for<'a> Fn(
            &'a Core,
            &'a mut dyn Tx,
            &'a BrandId,
            &'a MemberId,
            &'a mut Writes,
        ) -> futures_like::BoxFut<'a, Result<u64>>,
    {
        let mut total = 0;
        let mut rounds = 0;
        loop {
            let now = self.now();
            let mut members = {
                let mut tx = self.storage.read().await?;
                list(&mut *tx, now).await?
            };
            if members.is_empty() {
                return Ok(total);
            }
            members.sort();
            members.dedup();
            let mut done = 0;
            for chunk in members.chunks(MEMBERS_PER_TX as usize) {
                let mut tx = self.storage.write().await?;
                let mut writes = Writes::default();
                for (brand, member) in chunk {
                    done += work(self, &mut *tx, brand, member, &mut writes).await?;
                }
                writes.flush(&mut *tx).await?;
                tx.commit().await?;
            }
            total += done;
            rounds += 1;
            // Nothing changed although members were listed: stop rather than spin.
            if done == 0 || rounds > 1_000_000 {
                return Ok(total);
            }
        }
    }

    async fn mature_points(&self) -> Result<u64> {
        self.per_member(
            |tx, now| {
                Box::pin(async move { Ok(tx.members_with_maturing_lots(now, LOTS_PER_LISTING).await?) })
            },
            |core, tx, brand, member, writes| {
                Box::pin(async move {
                    let now = core.now();
                    let mut posting = Posting::open(core, tx, brand, member, SYSTEM).await?;
                    let due: Vec<String> = posting
                        .lots(tx)
                        .await?
                        .iter()
                        .filter(|l| l.status == LotStatus::Pending && l.matures_at.is_some_and(|m| m <= now))
                        .map(|l| l.id.clone())
                        .collect();
                    for lot in &due {
                        posting.activate(tx, lot).await?;
                    }
                    let n = due.len() as u64;
                    if n > 0 {
                        writes.events.push(core.event(
                            brand,
                            "points.activated",
                            member.as_str(),
                            json!({ "member_id": member, "lots": due }),
                        ));
                    }
                    posting.stage(writes);
                    Ok(n)
                })
            },
        )
        .await
    }

    async fn expire_points(&self) -> Result<u64> {
        self.per_member(
            |tx, now| {
                Box::pin(async move { Ok(tx.members_with_expiring_lots(now, LOTS_PER_LISTING).await?) })
            },
            |core, tx, brand, member, writes| {
                Box::pin(async move {
                    let mut posting = Posting::open(core, tx, brand, member, SYSTEM).await?;
                    let lots = posting.expire_due(tx).await?;
                    posting.stage(writes);
                    Ok(lots as u64)
                })
            },
        )
        .await
    }

    /// One "points expiring soon" event per member and expiry date, at most once (the lots are
    /// marked, and the event's dedupe key guards a re-run after a crash).
    async fn remind_expiring(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let now = self.now();
            let mut tx = self.storage.write().await?;
            let lots = tx.lots_to_remind(now, now + EXPIRING_SOON, 1_000).await?;
            if lots.is_empty() {
                tx.commit().await?;
                return Ok(total);
            }
            let mut by_member: BTreeMap<(BrandId, MemberId), Vec<String>> = BTreeMap::new();
            for l in &lots {
                by_member
                    .entry((l.brand_id.clone(), l.member_id.clone()))
                    .or_default()
                    .push(l.id.clone());
            }
            for ((brand, member), ids) in by_member {
                let mut posting = Posting::open(self, &mut *tx, &brand, &member, SYSTEM).await?;
                let mut expiring: BTreeMap<String, i64> = BTreeMap::new();
                let mut marked = Vec::new();
                for lot in posting.lots(&mut *tx).await?.iter_mut() {
                    if ids.contains(&lot.id) && !lot.expiry_notified {
                        lot.expiry_notified = true;
                        if let Some(at) = lot.expires_at {
                            *expiring.entry(crate::views::rfc3339(at)).or_default() += lot.remaining;
                        }
                        marked.push(lot.clone());
                    }
                }
                tx.update_lots(&marked).await?;
                for (at, points) in expiring {
                    let key = format!("expiring:{member}:{at}");
                    if self
                        .emit(
                            &mut *tx,
                            &brand,
                            "points.expiring_soon",
                            member.as_str(),
                            json!({ "member_id": member, "points": points, "expires_at": at }),
                            Some(key),
                        )
                        .await?
                    {
                        total += 1;
                    }
                }
                // The account itself is unchanged: it was opened for its lock alone.
            }
            tx.commit().await?;
        }
    }

    /// On the first run in each local month: one `member.birthday_month` event per member born
    /// in it (the dedupe key makes re-runs harmless).
    async fn birthday_months(&self) -> Result<u64> {
        let brands = {
            let mut tx = self.storage.read().await?;
            tx.list_brands().await?
        };
        let mut total = 0;
        for brand in brands {
            let calendar = super::calendar::BrandCalendar::new(&brand.timezone)?;
            let today = calendar.date_of(self.now());
            let month = u8::from(today.month());
            let mut after: Option<MemberId> = None;
            loop {
                let mut tx = self.storage.write().await?;
                let members = tx
                    .members_born_in(&brand.id, month, after.as_ref(), 1_000)
                    .await?;
                for m in &members {
                    let key = format!("birthday:{m}:{}-{month:02}", today.year());
                    if self
                        .emit(
                            &mut *tx,
                            &brand.id,
                            "member.birthday_month",
                            m.as_str(),
                            json!({ "member_id": m, "year": today.year(), "month": month }),
                            Some(key),
                        )
                        .await?
                    {
                        total += 1;
                    }
                }
                tx.commit().await?;
                match members.last() {
                    Some(last) if members.len() == 1_000 => after = Some(last.clone()),
                    _ => break,
                }
            }
        }
        Ok(total)
    }

    async fn review_tiers(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let now = self.now();
            let mut tx = self.storage.write().await?;
            let due = tx.accounts_due_for_review(now, MEMBERS_PER_TX).await?;
            if due.is_empty() {
                tx.commit().await?;
                return Ok(total);
            }
            for a in &due {
                let ctx = self.loyalty_context(&mut *tx, &a.brand_id).await?;
                let mut account = self.lock_account(&mut *tx, &a.brand_id, &a.member_id).await?;
                if account.tier_review_at.is_some_and(|r| r <= now) {
                    self.review_tier(&mut *tx, &ctx, &mut account).await?;
                    // A review always moves the next review into the future or clears it.
                    if account.tier_review_at.is_some_and(|r| r <= now) {
                        account.tier_review_at = Some(now + Duration::days(1));
                    }
                    tx.update_account(&account).await?;
                    total += 1;
                }
            }
            tx.commit().await?;
        }
    }
}

/// Boxed futures for the job helpers' closures (no extra crate needed for one alias).
mod futures_like {
    pub type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}
