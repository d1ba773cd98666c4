//! Rows and storage operations of coupons, wallets and till sales: a trait of its own
//! ([`CommerceTx`], a supertrait of [`crate::Tx`]) so that the loyalty engine's storage stays
//! readable. The SQL is in `sql/commerce.rs`, written once for both backends.

use async_trait::async_trait;
use huiyuan_domain::commerce::checkout::SaleStatus;
use huiyuan_domain::commerce::coupons::{CouponStatus, TemplateStatus};
use huiyuan_domain::commerce::plans::MembershipStatus;
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::jobs::JobStatus;
use time::OffsetDateTime;

use crate::{Page, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct CouponTemplateRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub name: String,
    /// The template as validated (`commerce::coupons::TemplateInput`), JSON.
    pub definition: String,
    /// Upper-case; unique in the brand.
    pub claim_code: Option<String>,
    pub stock: Option<i64>,
    /// Coupons issued so far (the stock's counter).
    pub issued: i64,
    pub points_price: Option<i64>,
    pub status: TemplateStatus,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CouponRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub template_id: String,
    /// `ABCD-EFGH-JKLM-NP`; unique in the brand.
    pub code: String,
    pub member_id: MemberId,
    pub status: CouponStatus,
    pub valid_from: OffsetDateTime,
    pub valid_until: OffsetDateTime,
    /// `direct`, `bulk`, `claim` or `reward`.
    pub source: String,
    /// What made it, unique per source in the brand: issuing again with it issues nothing.
    pub reference: String,
    pub issued_at: OffsetDateTime,
    pub redeemed_at: Option<OffsetDateTime>,
    pub redeemed_order_id: Option<String>,
    pub redeemed_store_id: Option<String>,
    pub redeemed_channel: Option<String>,
    /// What it took off the sale, minor units.
    pub discount: Option<i64>,
}

/// A coupon template's issued and redeemed coupons, for the usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CouponCounts {
    pub issued: i64,
    pub redeemed: i64,
    pub expired: i64,
    /// Sum of the redeemed coupons' discounts.
    pub discount: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WalletRecord {
    pub brand_id: BrandId,
    pub member_id: MemberId,
    /// Money the member paid in and has not spent, minor units (never negative).
    pub principal: i64,
    /// Money the brand gave as top-up bonuses, not spent (never negative).
    pub bonus: i64,
    pub last_seq: i64,
    pub last_hash: Vec<u8>,
    pub updated_at: OffsetDateTime,
}

/// One append-only, hash-chained entry of a wallet.
#[derive(Debug, Clone, PartialEq)]
pub struct WalletEntryRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub member_id: MemberId,
    pub seq: i64,
    /// A `WalletEntryKind`'s word, kept as stored: the entry's hash covers these bytes, and
    /// `ledger verify` reports a word it does not know instead of failing to read the chain.
    pub kind: String,
    pub principal_delta: i64,
    pub bonus_delta: i64,
    pub reference: String,
    pub detail: String,
    pub actor: String,
    pub created_at: OffsetDateTime,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// A top-up, kept for its refunds; its reference makes it idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct TopUpRecord {
    pub brand_id: BrandId,
    pub reference: String,
    pub member_id: MemberId,
    pub amount: i64,
    pub bonus: i64,
    /// Principal refunded so far.
    pub refunded: i64,
    /// Bonus clawed back (or kept back from refunds) so far.
    pub clawed: i64,
    pub created_at: OffsetDateTime,
}

/// A sale made through the till's checkout: what was paid with what, so a refund can reverse
/// exactly that. Its order ID is also the purchase's.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleRecord {
    pub brand_id: BrandId,
    pub order_id: String,
    pub member_id: MemberId,
    pub store_id: Option<String>,
    pub channel: String,
    /// The priced basket (`commerce::checkout::Priced`), JSON.
    pub priced: String,
    /// IDs of the coupons redeemed, JSON array.
    pub coupons: String,
    pub points_used: i64,
    /// The lots the points came from, JSON `[[lot, points], …]`.
    pub points_lots: String,
    pub wallet_principal: i64,
    pub wallet_bonus: i64,
    pub money: i64,
    pub status: SaleStatus,
    /// The answer of the commit (and, once refunded, of the refund), JSON.
    pub outcome: String,
    pub refund_outcome: Option<String>,
    pub created_at: OffsetDateTime,
    pub refunded_at: Option<OffsetDateTime>,
}

/// A bulk operation run in the background, with its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkJobRecord {
    pub id: String,
    pub brand_id: BrandId,
    /// `coupons.issue`.
    pub kind: String,
    /// The caller's reference: the same one again returns this job.
    pub reference: String,
    pub status: JobStatus,
    /// What to do, JSON (for `coupons.issue`: the template and the members).
    pub input: String,
    pub total: i64,
    /// Items handled so far, in input order: where a resumed job carries on.
    pub processed: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// The first failures, JSON `[{"item", "code", "message"}]`.
    pub errors: String,
    pub requested_by: String,
    pub lease_owner: Option<String>,
    pub lease_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// A pool of codes a partner brand gave out (異業聯盟).
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerPoolRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub name: String,
    pub partner: String,
    pub description: Option<String>,
    pub created_at: OffsetDateTime,
}

/// One partner code; handed to at most one member.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerCodeRecord {
    pub brand_id: BrandId,
    pub pool_id: String,
    pub code: String,
    /// Import order: codes are handed out oldest first.
    pub seq: i64,
    pub member_id: Option<MemberId>,
    pub reference: Option<String>,
    pub assigned_at: Option<OffsetDateTime>,
}

/// One term of a paid membership plan.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub member_id: MemberId,
    pub plan_code: String,
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub fee: i64,
    /// `money` or `wallet`.
    pub paid_with: String,
    pub status: MembershipStatus,
    /// The caller's reference: buying again with it buys nothing more.
    pub reference: String,
    /// The term this one renews.
    pub renewal_of: Option<String>,
    pub refunded_amount: i64,
    /// Its end, with no renewal, was announced (`membership.lapsed`).
    pub lapse_notified: bool,
    pub created_at: OffsetDateTime,
}

/// A plan's terms that ended in a period, and how many of them were renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalCount {
    pub plan_code: String,
    pub ended: i64,
    pub renewed: i64,
}

/// One use of a benefit, with the member's tier at the time.
#[derive(Debug, Clone, PartialEq)]
pub struct BenefitUseRecord {
    pub id: String,
    pub brand_id: BrandId,
    pub member_id: MemberId,
    /// `tier_discount`, `plan_discount`, `perk`, `plan_perk` or `partner_code`.
    pub benefit: String,
    /// The perk or the partner pool; empty for a discount.
    pub code: String,
    pub tier_code: String,
    /// The plan the benefit came from (`plan_discount`, `plan_perk`).
    pub plan_code: Option<String>,
    pub store_id: Option<String>,
    /// The sale, the partner code's hand-out, or the caller's reference of a perk's use.
    pub reference: String,
    pub used_at: OffsetDateTime,
}

/// Distinct members who used a benefit in a period, per holder: the tier they were in, or —
/// for a plan's benefits — the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitUseCount {
    pub benefit: String,
    pub code: String,
    pub holder: String,
    pub members: i64,
}

/// Storage of coupons, wallets and sales.
#[async_trait]
pub trait CommerceTx: Send {
    // Coupon templates
    async fn insert_coupon_template(&mut self, t: &CouponTemplateRecord) -> Result<()>;
    async fn get_coupon_template(
        &mut self,
        brand: &BrandId,
        id: &str,
    ) -> Result<Option<CouponTemplateRecord>>;
    async fn find_template_by_claim_code(
        &mut self,
        brand: &BrandId,
        code: &str,
    ) -> Result<Option<CouponTemplateRecord>>;
    /// Newest first.
    async fn list_coupon_templates(
        &mut self,
        brand: &BrandId,
        page: &Page,
    ) -> Result<Vec<CouponTemplateRecord>>;
    /// Counts `n` more coupons as issued unless that would pass the stock; false (nothing
    /// changed) when it would. On PostgreSQL the row stays locked until the transaction ends.
    async fn take_coupon_stock(&mut self, brand: &BrandId, id: &str, n: i64) -> Result<bool>;
    async fn set_template_status(
        &mut self,
        brand: &BrandId,
        id: &str,
        status: TemplateStatus,
    ) -> Result<bool>;
    /// The template's coupons by state, and the discount its redemptions gave.
    async fn coupon_counts(&mut self, brand: &BrandId, template: &str) -> Result<CouponCounts>;

    // Coupons
    /// Up to `limit` of the brand's coupons after the cursor (by ID): (ID, issued at, redeemed
    /// at). With a store or channel in `filter`, a redemption made elsewhere counts as none.
    async fn coupon_dates(
        &mut self,
        brand: &BrandId,
        filter: &crate::PurchaseFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, OffsetDateTime, Option<OffsetDateTime>)>>;
    /// Issues coupons; those whose (source, reference) the brand already has are skipped.
    /// Returns how many were written.
    async fn insert_coupons(&mut self, coupons: &[CouponRecord]) -> Result<u64>;
    async fn get_coupon_by_code(&mut self, brand: &BrandId, code: &str) -> Result<Option<CouponRecord>>;
    async fn get_coupon_by_reference(
        &mut self,
        brand: &BrandId,
        source: &str,
        reference: &str,
    ) -> Result<Option<CouponRecord>>;
    async fn get_coupons(&mut self, brand: &BrandId, ids: &[String]) -> Result<Vec<CouponRecord>>;
    /// A member's coupons, newest first; only those in `status` when given.
    async fn list_member_coupons(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        status: Option<CouponStatus>,
        page: &Page,
    ) -> Result<Vec<CouponRecord>>;
    /// The brand's redeemed coupons, latest redemption first; of one template when given.
    async fn list_redeemed_coupons(
        &mut self,
        brand: &BrandId,
        template: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CouponRecord>>;
    /// The brand's coupons in ID order after the cursor, up to 10,000: exports.
    async fn coupons_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CouponRecord>>;
    async fn count_member_coupons(
        &mut self,
        brand: &BrandId,
        template: &str,
        member: &MemberId,
    ) -> Result<i64>;
    /// Marks an issued coupon redeemed; false when it was not `issued` (already redeemed,
    /// expired or void): the one check that makes redemption happen at most once, whatever
    /// the concurrency.
    async fn redeem_coupon(&mut self, c: &CouponRecord) -> Result<bool>;
    /// Writes a coupon's state (restored after a refund, expired, void).
    async fn update_coupon_status(&mut self, c: &CouponRecord) -> Result<()>;
    /// Issued coupons whose validity ended by `now`, any brand, up to `limit`.
    async fn coupons_past_validity(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<CouponRecord>>;
    /// A merged member's coupons, till sales and partner codes go to the member who survives.
    async fn move_commerce(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<()>;

    // Wallets
    async fn get_wallet(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<WalletRecord>>;
    /// Reads the wallet and, on PostgreSQL, locks it until the transaction ends.
    async fn lock_wallet(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<WalletRecord>>;
    /// Creates the wallet unless it exists.
    async fn ensure_wallet(&mut self, w: &WalletRecord) -> Result<()>;
    async fn save_wallet(&mut self, w: &WalletRecord) -> Result<()>;
    async fn insert_wallet_entries(&mut self, entries: &[WalletEntryRecord]) -> Result<()>;
    /// Newest first.
    async fn list_wallet_entries(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<WalletEntryRecord>>;
    /// Every entry of a wallet, oldest first (the verifier's read).
    async fn wallet_chain(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<WalletEntryRecord>>;
    /// Wallets after the cursor, in (brand, member) order; of one brand when given.
    async fn list_wallets(
        &mut self,
        brand: Option<&BrandId>,
        after: Option<&(BrandId, MemberId)>,
        limit: u32,
    ) -> Result<Vec<WalletRecord>>;
    /// Records a top-up; false when the brand already has its reference.
    async fn insert_top_up(&mut self, t: &TopUpRecord) -> Result<bool>;
    async fn get_top_up(&mut self, brand: &BrandId, reference: &str) -> Result<Option<TopUpRecord>>;
    async fn update_top_up(&mut self, t: &TopUpRecord) -> Result<()>;

    // Sales
    /// Records a sale; false when the brand already has its order ID.
    async fn insert_sale(&mut self, s: &SaleRecord) -> Result<bool>;
    async fn get_sale(&mut self, brand: &BrandId, order_id: &str) -> Result<Option<SaleRecord>>;
    async fn update_sale(&mut self, s: &SaleRecord) -> Result<()>;

    // Bulk jobs
    /// Records a job; false when the brand already has one of this kind and reference.
    async fn insert_bulk_job(&mut self, j: &BulkJobRecord) -> Result<bool>;
    async fn get_bulk_job(&mut self, brand: &BrandId, id: &str) -> Result<Option<BulkJobRecord>>;
    async fn get_bulk_job_by_reference(
        &mut self,
        brand: &BrandId,
        kind: &str,
        reference: &str,
    ) -> Result<Option<BulkJobRecord>>;
    /// Takes the lease of the oldest unfinished job whose lease is free or lapsed at `now`
    /// (any brand); on PostgreSQL a job another process holds is skipped, not waited for.
    async fn claim_bulk_job(
        &mut self,
        now: OffsetDateTime,
        owner: &str,
        lease_until: OffsetDateTime,
    ) -> Result<Option<BulkJobRecord>>;
    /// Writes a job's progress, status and lease.
    /// Saves a job's progress, status, lease and input (an import drops its file when done).
    async fn save_bulk_job(&mut self, j: &BulkJobRecord) -> Result<()>;

    // Partner code pools
    async fn insert_partner_pool(&mut self, p: &PartnerPoolRecord) -> Result<()>;
    async fn get_partner_pool(&mut self, brand: &BrandId, id: &str) -> Result<Option<PartnerPoolRecord>>;
    /// Newest first.
    async fn list_partner_pools(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<PartnerPoolRecord>>;
    /// Adds codes to a pool; codes it already holds are skipped. Returns how many were added.
    async fn insert_partner_codes(&mut self, codes: &[PartnerCodeRecord]) -> Result<u64>;
    /// (codes in the pool, codes handed out, the highest import number).
    async fn partner_pool_counts(&mut self, pool: &str) -> Result<(i64, i64, i64)>;
    async fn get_partner_code_by_reference(
        &mut self,
        brand: &BrandId,
        pool: &str,
        reference: &str,
    ) -> Result<Option<PartnerCodeRecord>>;
    /// Hands the pool's oldest free code to the member; `None` when none is left. At most one
    /// member ever gets a code, whatever the concurrency.
    async fn assign_partner_code(
        &mut self,
        brand: &BrandId,
        pool: &str,
        member: &MemberId,
        reference: &str,
        at: OffsetDateTime,
    ) -> Result<Option<PartnerCodeRecord>>;
    async fn list_member_partner_codes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<Vec<PartnerCodeRecord>>;

    // Paid memberships
    /// Records a term; false when the brand already has its reference.
    async fn insert_membership(&mut self, m: &MembershipRecord) -> Result<bool>;
    async fn get_membership_by_reference(
        &mut self,
        brand: &BrandId,
        reference: &str,
    ) -> Result<Option<MembershipRecord>>;
    /// Every term of the members (of every plan), by start.
    async fn memberships_of(
        &mut self,
        brand: &BrandId,
        members: &[MemberId],
    ) -> Result<Vec<MembershipRecord>>;
    /// Writes a term's status, refund and lapse notice.
    async fn update_membership(&mut self, m: &MembershipRecord) -> Result<()>;
    /// Active terms that ended by `now` without a renewal and whose end was not announced yet
    /// (any brand), up to `limit`.
    async fn memberships_lapsed(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<MembershipRecord>>;
    /// Per plan, the active terms that ended in `[from, to)` and how many were renewed.
    async fn renewal_counts(
        &mut self,
        brand: &BrandId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<RenewalCount>>;
    /// Per plan, the members it covers at `at`, and of them those who earned points on a
    /// purchase in `[from, to)` while covered.
    async fn plan_members_and_buyers(
        &mut self,
        brand: &BrandId,
        at: OffsetDateTime,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(String, i64, i64)>>;

    // Benefit uses
    /// Records a use; false when the brand already has its (benefit, code, reference).
    async fn insert_benefit_use(&mut self, u: &BenefitUseRecord) -> Result<bool>;
    async fn get_benefit_use(
        &mut self,
        brand: &BrandId,
        benefit: &str,
        code: &str,
        reference: &str,
    ) -> Result<Option<BenefitUseRecord>>;
    /// Distinct members per benefit and holder who used it in `[from, to)`.
    async fn benefit_use_counts(
        &mut self,
        brand: &BrandId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<BenefitUseCount>>;
    /// Active members per tier code now (`None`: no points account yet, the lowest tier), and
    /// of them those who earned points on a purchase in `[from, to)`.
    async fn tier_members_and_buyers(
        &mut self,
        brand: &BrandId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(Option<String>, i64, i64)>>;
}
