//! The SQL of [`CommerceTx`]: coupons, wallets and sales, written once for both backends.

use async_trait::async_trait;
use huiyuan_domain::ids::{BrandId, MemberId};
use time::OffsetDateTime;

use super::{by_member_after, paginate, v, Query, Row, SqlTx, Value};
use crate::commerce::*;
use crate::{Page, Result, StoreError};
use huiyuan_domain::commerce::checkout::SaleStatus;
use huiyuan_domain::commerce::coupons::{CouponStatus, TemplateStatus};
use huiyuan_domain::commerce::plans::MembershipStatus;
use huiyuan_domain::jobs::JobStatus;

const TEMPLATE_COLS: &str =
    "id, brand_id, name, definition, claim_code, stock, issued, points_price, status, created_at";
fn template_row(r: &Row) -> Result<CouponTemplateRecord> {
    Ok(CouponTemplateRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        name: r.text("name")?,
        definition: r.text("definition")?,
        claim_code: r.opt_text("claim_code")?,
        stock: r.opt_i64("stock")?,
        issued: r.i64("issued")?,
        points_price: r.opt_i64("points_price")?,
        status: r.word("status", TemplateStatus::parse)?,
        created_at: r.time("created_at")?,
    })
}

const COUPON_COLS: &str =
    "id, brand_id, template_id, code, member_id, status, valid_from, valid_until, source, \
     reference, issued_at, redeemed_at, redeemed_order_id, redeemed_store_id, redeemed_channel, discount";
fn coupon_row(r: &Row) -> Result<CouponRecord> {
    Ok(CouponRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        template_id: r.text("template_id")?,
        code: r.text("code")?,
        member_id: r.parsed("member_id")?,
        status: r.word("status", CouponStatus::parse)?,
        valid_from: r.time("valid_from")?,
        valid_until: r.time("valid_until")?,
        source: r.text("source")?,
        reference: r.text("reference")?,
        issued_at: r.time("issued_at")?,
        redeemed_at: r.opt_time("redeemed_at")?,
        redeemed_order_id: r.opt_text("redeemed_order_id")?,
        redeemed_store_id: r.opt_text("redeemed_store_id")?,
        redeemed_channel: r.opt_text("redeemed_channel")?,
        discount: r.opt_i64("discount")?,
    })
}
fn coupon_values(c: &CouponRecord) -> Vec<Value> {
    vec![
        v(&c.id),
        v(c.brand_id.as_str()),
        v(&c.template_id),
        v(&c.code),
        v(c.member_id.as_str()),
        v(c.status.as_str()),
        v(c.valid_from),
        v(c.valid_until),
        v(&c.source),
        v(&c.reference),
        v(c.issued_at),
        v(c.redeemed_at),
        v(c.redeemed_order_id.as_deref()),
        v(c.redeemed_store_id.as_deref()),
        v(c.redeemed_channel.as_deref()),
        v(c.discount),
    ]
}

const WALLET_COLS: &str = "brand_id, member_id, principal, bonus, last_seq, last_hash, updated_at";
fn wallet_row(r: &Row) -> Result<WalletRecord> {
    Ok(WalletRecord {
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        principal: r.i64("principal")?,
        bonus: r.i64("bonus")?,
        last_seq: r.i64("last_seq")?,
        last_hash: r.bytes("last_hash")?,
        updated_at: r.time("updated_at")?,
    })
}
fn wallet_values(w: &WalletRecord) -> Vec<Value> {
    vec![
        v(w.brand_id.as_str()),
        v(w.member_id.as_str()),
        v(w.principal),
        v(w.bonus),
        v(w.last_seq),
        v(&w.last_hash),
        v(w.updated_at),
    ]
}

const WALLET_ENTRY_COLS: &str =
    "id, brand_id, member_id, seq, kind, principal_delta, bonus_delta, reference, \
     detail, actor, created_at, prev_hash, hash";
fn wallet_entry_row(r: &Row) -> Result<WalletEntryRecord> {
    Ok(WalletEntryRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        seq: r.i64("seq")?,
        kind: r.text("kind")?,
        principal_delta: r.i64("principal_delta")?,
        bonus_delta: r.i64("bonus_delta")?,
        reference: r.text("reference")?,
        detail: r.text("detail")?,
        actor: r.text("actor")?,
        created_at: r.time("created_at")?,
        prev_hash: r.bytes("prev_hash")?,
        hash: r.bytes("hash")?,
    })
}

const TOP_UP_COLS: &str = "brand_id, reference, member_id, amount, bonus, refunded, clawed, created_at";
fn top_up_row(r: &Row) -> Result<TopUpRecord> {
    Ok(TopUpRecord {
        brand_id: r.parsed("brand_id")?,
        reference: r.text("reference")?,
        member_id: r.parsed("member_id")?,
        amount: r.i64("amount")?,
        bonus: r.i64("bonus")?,
        refunded: r.i64("refunded")?,
        clawed: r.i64("clawed")?,
        created_at: r.time("created_at")?,
    })
}

const SALE_COLS: &str = "brand_id, order_id, member_id, store_id, channel, priced, coupons, points_used, \
     points_lots, wallet_principal, wallet_bonus, money, status, outcome, refund_outcome, created_at, refunded_at";
fn sale_row(r: &Row) -> Result<SaleRecord> {
    Ok(SaleRecord {
        brand_id: r.parsed("brand_id")?,
        order_id: r.text("order_id")?,
        member_id: r.parsed("member_id")?,
        store_id: r.opt_text("store_id")?,
        channel: r.text("channel")?,
        priced: r.text("priced")?,
        coupons: r.text("coupons")?,
        points_used: r.i64("points_used")?,
        points_lots: r.text("points_lots")?,
        wallet_principal: r.i64("wallet_principal")?,
        wallet_bonus: r.i64("wallet_bonus")?,
        money: r.i64("money")?,
        status: r.word("status", SaleStatus::parse)?,
        outcome: r.text("outcome")?,
        refund_outcome: r.opt_text("refund_outcome")?,
        created_at: r.time("created_at")?,
        refunded_at: r.opt_time("refunded_at")?,
    })
}

const BULK_COLS: &str =
    "id, brand_id, kind, reference, status, input, total, processed, succeeded, failed, errors, \
     requested_by, lease_owner, lease_until, created_at, updated_at, finished_at";
fn bulk_row(r: &Row) -> Result<BulkJobRecord> {
    Ok(BulkJobRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        kind: r.text("kind")?,
        reference: r.text("reference")?,
        status: r.word("status", JobStatus::parse)?,
        input: r.text("input")?,
        total: r.i64("total")?,
        processed: r.i64("processed")?,
        succeeded: r.i64("succeeded")?,
        failed: r.i64("failed")?,
        errors: r.text("errors")?,
        requested_by: r.text("requested_by")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_until: r.opt_time("lease_until")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        finished_at: r.opt_time("finished_at")?,
    })
}

const POOL_COLS: &str = "id, brand_id, name, partner, description, created_at";
fn pool_row(r: &Row) -> Result<PartnerPoolRecord> {
    Ok(PartnerPoolRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        name: r.text("name")?,
        partner: r.text("partner")?,
        description: r.opt_text("description")?,
        created_at: r.time("created_at")?,
    })
}

const PARTNER_CODE_COLS: &str = "brand_id, pool_id, code, seq, member_id, reference, assigned_at";
fn partner_code_row(r: &Row) -> Result<PartnerCodeRecord> {
    Ok(PartnerCodeRecord {
        brand_id: r.parsed("brand_id")?,
        pool_id: r.text("pool_id")?,
        code: r.text("code")?,
        seq: r.i64("seq")?,
        member_id: r.opt_parsed("member_id")?,
        reference: r.opt_text("reference")?,
        assigned_at: r.opt_time("assigned_at")?,
    })
}

const MEMBERSHIP_COLS: &str =
    "id, brand_id, member_id, plan_code, starts_at, ends_at, fee, paid_with, status, \
     reference, renewal_of, refunded_amount, lapse_notified, created_at";
fn membership_row(r: &Row) -> Result<MembershipRecord> {
    Ok(MembershipRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        plan_code: r.text("plan_code")?,
        starts_at: r.time("starts_at")?,
        ends_at: r.time("ends_at")?,
        fee: r.i64("fee")?,
        paid_with: r.text("paid_with")?,
        status: r.word("status", MembershipStatus::parse)?,
        reference: r.text("reference")?,
        renewal_of: r.opt_text("renewal_of")?,
        refunded_amount: r.i64("refunded_amount")?,
        lapse_notified: r.bool("lapse_notified")?,
        created_at: r.time("created_at")?,
    })
}

#[async_trait]
impl CommerceTx for SqlTx {
    async fn insert_coupon_template(&mut self, t: &CouponTemplateRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO coupon_templates ({TEMPLATE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            vec![
                v(&t.id),
                v(t.brand_id.as_str()),
                v(&t.name),
                v(&t.definition),
                v(t.claim_code.as_deref()),
                v(t.stock),
                v(t.issued),
                v(t.points_price),
                v(t.status.as_str()),
                v(t.created_at),
            ],
        )
        .await
        .map(drop)
    }

    async fn get_coupon_template(
        &mut self,
        brand: &BrandId,
        id: &str,
    ) -> Result<Option<CouponTemplateRecord>> {
        self.one(
            &format!("SELECT {TEMPLATE_COLS} FROM coupon_templates WHERE brand_id = $1 AND id = $2"),
            vec![v(brand.as_str()), v(id)],
            template_row,
        )
        .await
    }

    async fn find_template_by_claim_code(
        &mut self,
        brand: &BrandId,
        code: &str,
    ) -> Result<Option<CouponTemplateRecord>> {
        self.one(
            &format!("SELECT {TEMPLATE_COLS} FROM coupon_templates WHERE brand_id = $1 AND claim_code = $2"),
            vec![v(brand.as_str()), v(code)],
            template_row,
        )
        .await
    }

    async fn list_coupon_templates(
        &mut self,
        brand: &BrandId,
        page: &Page,
    ) -> Result<Vec<CouponTemplateRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {TEMPLATE_COLS} FROM coupon_templates WHERE brand_id = "
        ));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, template_row).await
    }

    async fn take_coupon_stock(&mut self, brand: &BrandId, id: &str, n: i64) -> Result<bool> {
        let changed = self
            .exec(
                "UPDATE coupon_templates SET issued = issued + $3 \
                 WHERE brand_id = $1 AND id = $2 AND (stock IS NULL OR issued + $3 <= stock)",
                vec![v(brand.as_str()), v(id), v(n)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn set_template_status(
        &mut self,
        brand: &BrandId,
        id: &str,
        status: TemplateStatus,
    ) -> Result<bool> {
        let changed = self
            .exec(
                "UPDATE coupon_templates SET status = $3 WHERE brand_id = $1 AND id = $2",
                vec![v(brand.as_str()), v(id), v(status.as_str())],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn coupon_counts(&mut self, brand: &BrandId, template: &str) -> Result<CouponCounts> {
        let rows = self
            .rows(
                "SELECT COUNT(*) AS issued, \
                 COUNT(CASE WHEN status = 'redeemed' THEN 1 END) AS redeemed, \
                 COUNT(CASE WHEN status = 'expired' THEN 1 END) AS expired, \
                 CAST(COALESCE(SUM(CASE WHEN status = 'redeemed' THEN discount END), 0) AS BIGINT) AS discount \
                 FROM coupons WHERE brand_id = $1 AND template_id = $2",
                vec![v(brand.as_str()), v(template)],
            )
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("an aggregate returned no row".into()))?;
        Ok(CouponCounts {
            issued: r.i64("issued")?,
            redeemed: r.i64("redeemed")?,
            expired: r.i64("expired")?,
            discount: r.i64("discount")?,
        })
    }

    async fn coupon_dates(
        &mut self,
        brand: &BrandId,
        filter: &crate::PurchaseFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, OffsetDateTime, Option<OffsetDateTime>)>> {
        let mut q = Query::new("SELECT id, issued_at, CASE WHEN status = 'redeemed'");
        if let Some(store) = &filter.store_id {
            q.push(" AND redeemed_store_id = ").bind(store.as_str());
        }
        if let Some(channel) = &filter.channel {
            q.push(" AND redeemed_channel = ").bind(channel.as_str());
        }
        q.push(" THEN redeemed_at END AS redeemed_at FROM coupons WHERE brand_id = ")
            .bind(brand.as_str());
        if let Some(a) = after {
            q.push(" AND id > ").bind(a);
        }
        q.push(" ORDER BY id LIMIT ")
            .bind(i64::from(limit.clamp(1, 100_000)));
        self.query_all(q, |r| {
            Ok((r.text("id")?, r.time("issued_at")?, r.opt_time("redeemed_at")?))
        })
        .await
    }

    async fn insert_coupons(&mut self, coupons: &[CouponRecord]) -> Result<u64> {
        self.insert_rows(
            &format!("coupons ({COUPON_COLS})"),
            coupons.iter().map(coupon_values).collect(),
            " ON CONFLICT DO NOTHING",
        )
        .await
    }

    async fn get_coupon_by_code(&mut self, brand: &BrandId, code: &str) -> Result<Option<CouponRecord>> {
        self.one(
            &format!("SELECT {COUPON_COLS} FROM coupons WHERE brand_id = $1 AND code = $2"),
            vec![v(brand.as_str()), v(code)],
            coupon_row,
        )
        .await
    }

    async fn get_coupon_by_reference(
        &mut self,
        brand: &BrandId,
        source: &str,
        reference: &str,
    ) -> Result<Option<CouponRecord>> {
        self.one(
            &format!(
                "SELECT {COUPON_COLS} FROM coupons WHERE brand_id = $1 AND source = $2 AND reference = $3"
            ),
            vec![v(brand.as_str()), v(source), v(reference)],
            coupon_row,
        )
        .await
    }

    async fn get_coupons(&mut self, brand: &BrandId, ids: &[String]) -> Result<Vec<CouponRecord>> {
        self.select_in(
            &format!("SELECT {COUPON_COLS} FROM coupons WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "id",
            ids.to_vec(),
            " ORDER BY id",
            coupon_row,
        )
        .await
    }

    async fn list_member_coupons(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        status: Option<CouponStatus>,
        page: &Page,
    ) -> Result<Vec<CouponRecord>> {
        let mut q = Query::new(&format!("SELECT {COUPON_COLS} FROM coupons WHERE brand_id = "));
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        if let Some(s) = status {
            q.push(" AND status = ").bind(s.as_str());
        }
        paginate(&mut q, "id", page);
        self.query_all(q, coupon_row).await
    }

    async fn list_redeemed_coupons(
        &mut self,
        brand: &BrandId,
        template: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CouponRecord>> {
        let mut q = Query::new(&format!("SELECT {COUPON_COLS} FROM coupons WHERE brand_id = "));
        q.bind(brand.as_str()).push(" AND status = 'redeemed'");
        if let Some(t) = template {
            q.push(" AND template_id = ").bind(t);
        }
        q.push(" ORDER BY redeemed_at DESC, id DESC LIMIT ")
            .bind(i64::from(limit.min(500)));
        self.query_all(q, coupon_row).await
    }

    async fn coupons_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CouponRecord>> {
        self.in_id_order(("coupons", "c", COUPON_COLS), brand, after, limit, coupon_row)
            .await
    }

    async fn count_member_coupons(
        &mut self,
        brand: &BrandId,
        template: &str,
        member: &MemberId,
    ) -> Result<i64> {
        let rows = self
            .rows(
                "SELECT COUNT(*) AS n FROM coupons WHERE brand_id = $1 AND template_id = $2 AND member_id = $3",
                vec![v(brand.as_str()), v(template), v(member.as_str())],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r.i64("n"))
    }

    async fn redeem_coupon(&mut self, c: &CouponRecord) -> Result<bool> {
        let changed = self
            .exec(
                "UPDATE coupons SET status = 'redeemed', redeemed_at = $3, redeemed_order_id = $4, \
                 redeemed_store_id = $5, redeemed_channel = $6, discount = $7 \
                 WHERE brand_id = $1 AND id = $2 AND status = 'issued'",
                vec![
                    v(c.brand_id.as_str()),
                    v(&c.id),
                    v(c.redeemed_at),
                    v(c.redeemed_order_id.as_deref()),
                    v(c.redeemed_store_id.as_deref()),
                    v(c.redeemed_channel.as_deref()),
                    v(c.discount),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn update_coupon_status(&mut self, c: &CouponRecord) -> Result<()> {
        self.exec(
            "UPDATE coupons SET status = $3, redeemed_at = $4, redeemed_order_id = $5, redeemed_store_id = $6, \
             redeemed_channel = $7, discount = $8 WHERE brand_id = $1 AND id = $2",
            vec![
                v(c.brand_id.as_str()),
                v(&c.id),
                v(c.status.as_str()),
                v(c.redeemed_at),
                v(c.redeemed_order_id.as_deref()),
                v(c.redeemed_store_id.as_deref()),
                v(c.redeemed_channel.as_deref()),
                v(c.discount),
            ],
        )
        .await
        .map(drop)
    }

    async fn coupons_past_validity(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<CouponRecord>> {
        let lock = self.conn.dialect().for_update_skip_locked();
        self.all(
            &format!(
                "SELECT {COUPON_COLS} FROM coupons WHERE status = 'issued' AND valid_until <= $1 LIMIT $2{lock}"
            ),
            vec![v(now), v(i64::from(limit.clamp(1, 10_000)))],
            coupon_row,
        )
        .await
    }

    async fn move_commerce(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<()> {
        for table in ["coupons", "sales", "partner_codes"] {
            self.exec(
                &format!("UPDATE {table} SET member_id = $3 WHERE brand_id = $1 AND member_id = $2"),
                vec![v(brand.as_str()), v(from.as_str()), v(to.as_str())],
            )
            .await?;
        }
        Ok(())
    }

    async fn get_wallet(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<WalletRecord>> {
        self.one(
            &format!("SELECT {WALLET_COLS} FROM wallets WHERE brand_id = $1 AND member_id = $2"),
            vec![v(brand.as_str()), v(member.as_str())],
            wallet_row,
        )
        .await
    }

    async fn lock_wallet(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<WalletRecord>> {
        let lock = self.conn.dialect().for_update();
        self.one(
            &format!("SELECT {WALLET_COLS} FROM wallets WHERE brand_id = $1 AND member_id = $2{lock}"),
            vec![v(brand.as_str()), v(member.as_str())],
            wallet_row,
        )
        .await
    }

    async fn ensure_wallet(&mut self, w: &WalletRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO wallets ({WALLET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"),
            wallet_values(w),
        )
        .await
        .map(drop)
    }

    async fn save_wallet(&mut self, w: &WalletRecord) -> Result<()> {
        let changed = self
            .exec(
                "UPDATE wallets SET principal = $3, bonus = $4, last_seq = $5, last_hash = $6, updated_at = $7 \
                 WHERE brand_id = $1 AND member_id = $2",
                wallet_values(w),
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Database("wallet vanished".into()));
        }
        Ok(())
    }

    async fn insert_wallet_entries(&mut self, entries: &[WalletEntryRecord]) -> Result<()> {
        self.insert_rows(
            &format!("wallet_entries ({WALLET_ENTRY_COLS})"),
            entries
                .iter()
                .map(|e| {
                    vec![
                        v(&e.id),
                        v(e.brand_id.as_str()),
                        v(e.member_id.as_str()),
                        v(e.seq),
                        v(&e.kind),
                        v(e.principal_delta),
                        v(e.bonus_delta),
                        v(&e.reference),
                        v(&e.detail),
                        v(&e.actor),
                        v(e.created_at),
                        v(&e.prev_hash),
                        v(&e.hash),
                    ]
                })
                .collect(),
            "",
        )
        .await
        .map(drop)
    }

    async fn list_wallet_entries(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<WalletEntryRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {WALLET_ENTRY_COLS} FROM wallet_entries WHERE brand_id = "
        ));
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, wallet_entry_row).await
    }

    async fn wallet_chain(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<WalletEntryRecord>> {
        self.all(
            &format!("SELECT {WALLET_ENTRY_COLS} FROM wallet_entries WHERE brand_id = $1 AND member_id = $2 ORDER BY seq"),
            vec![v(brand.as_str()), v(member.as_str())],
            wallet_entry_row,
        )
        .await
    }

    async fn list_wallets(
        &mut self,
        brand: Option<&BrandId>,
        after: Option<&(BrandId, MemberId)>,
        limit: u32,
    ) -> Result<Vec<WalletRecord>> {
        let mut q = Query::new(&format!("SELECT {WALLET_COLS} FROM wallets WHERE 1 = 1"));
        by_member_after(&mut q, brand, after, limit);
        self.query_all(q, wallet_row).await
    }

    async fn insert_top_up(&mut self, t: &TopUpRecord) -> Result<bool> {
        let inserted = self
            .exec(
                &format!("INSERT INTO wallet_top_ups ({TOP_UP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"),
                vec![
                    v(t.brand_id.as_str()),
                    v(&t.reference),
                    v(t.member_id.as_str()),
                    v(t.amount),
                    v(t.bonus),
                    v(t.refunded),
                    v(t.clawed),
                    v(t.created_at),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_top_up(&mut self, brand: &BrandId, reference: &str) -> Result<Option<TopUpRecord>> {
        self.one(
            &format!("SELECT {TOP_UP_COLS} FROM wallet_top_ups WHERE brand_id = $1 AND reference = $2"),
            vec![v(brand.as_str()), v(reference)],
            top_up_row,
        )
        .await
    }

    async fn update_top_up(&mut self, t: &TopUpRecord) -> Result<()> {
        self.exec(
            "UPDATE wallet_top_ups SET refunded = $3, clawed = $4 WHERE brand_id = $1 AND reference = $2",
            vec![
                v(t.brand_id.as_str()),
                v(&t.reference),
                v(t.refunded),
                v(t.clawed),
            ],
        )
        .await
        .map(drop)
    }

    async fn insert_sale(&mut self, s: &SaleRecord) -> Result<bool> {
        let inserted = self
            .insert_rows(
                &format!("sales ({SALE_COLS})"),
                vec![sale_values(s)],
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_sale(&mut self, brand: &BrandId, order_id: &str) -> Result<Option<SaleRecord>> {
        self.one(
            &format!("SELECT {SALE_COLS} FROM sales WHERE brand_id = $1 AND order_id = $2"),
            vec![v(brand.as_str()), v(order_id)],
            sale_row,
        )
        .await
    }

    async fn insert_bulk_job(&mut self, j: &BulkJobRecord) -> Result<bool> {
        let inserted = self
            .insert_rows(
                &format!("bulk_jobs ({BULK_COLS})"),
                vec![vec![
                    v(&j.id),
                    v(j.brand_id.as_str()),
                    v(&j.kind),
                    v(&j.reference),
                    v(j.status.as_str()),
                    v(&j.input),
                    v(j.total),
                    v(j.processed),
                    v(j.succeeded),
                    v(j.failed),
                    v(&j.errors),
                    v(&j.requested_by),
                    v(j.lease_owner.as_deref()),
                    v(j.lease_until),
                    v(j.created_at),
                    v(j.updated_at),
                    v(j.finished_at),
                ]],
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_bulk_job(&mut self, brand: &BrandId, id: &str) -> Result<Option<BulkJobRecord>> {
        self.one(
            &format!("SELECT {BULK_COLS} FROM bulk_jobs WHERE brand_id = $1 AND id = $2"),
            vec![v(brand.as_str()), v(id)],
            bulk_row,
        )
        .await
    }

    async fn get_bulk_job_by_reference(
        &mut self,
        brand: &BrandId,
        kind: &str,
        reference: &str,
    ) -> Result<Option<BulkJobRecord>> {
        self.one(
            &format!(
                "SELECT {BULK_COLS} FROM bulk_jobs WHERE brand_id = $1 AND kind = $2 AND reference = $3"
            ),
            vec![v(brand.as_str()), v(kind), v(reference)],
            bulk_row,
        )
        .await
    }

    async fn claim_bulk_job(
        &mut self,
        now: OffsetDateTime,
        owner: &str,
        lease_until: OffsetDateTime,
    ) -> Result<Option<BulkJobRecord>> {
        let skip = self.conn.dialect().for_update_skip_locked();
        let free = "status IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < $1)";
        let Some(id) = self
            .one(
                &format!("SELECT id FROM bulk_jobs WHERE {free} ORDER BY created_at LIMIT 1{skip}"),
                vec![v(now)],
                |r| r.text("id"),
            )
            .await?
        else {
            return Ok(None);
        };
        let taken = self
            .exec(
                &format!("UPDATE bulk_jobs SET status = 'running', lease_owner = $2, lease_until = $3 WHERE {free} AND id = $4"),
                vec![v(now), v(owner), v(lease_until), v(&id)],
            )
            .await?;
        if taken != 1 {
            return Ok(None);
        }
        self.one(
            &format!("SELECT {BULK_COLS} FROM bulk_jobs WHERE id = $1"),
            vec![v(&id)],
            bulk_row,
        )
        .await
    }

    async fn save_bulk_job(&mut self, j: &BulkJobRecord) -> Result<()> {
        self.exec(
            "UPDATE bulk_jobs SET status = $2, processed = $3, succeeded = $4, failed = $5, errors = $6, \
             lease_owner = $7, lease_until = $8, updated_at = $9, finished_at = $10, input = $11 WHERE id = $1",
            vec![
                v(&j.id),
                v(j.status.as_str()),
                v(j.processed),
                v(j.succeeded),
                v(j.failed),
                v(&j.errors),
                v(j.lease_owner.as_deref()),
                v(j.lease_until),
                v(j.updated_at),
                v(j.finished_at),
                v(&j.input),
            ],
        )
        .await
        .map(drop)
    }

    async fn insert_partner_pool(&mut self, p: &PartnerPoolRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO partner_pools ({POOL_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            vec![
                v(&p.id),
                v(p.brand_id.as_str()),
                v(&p.name),
                v(&p.partner),
                v(p.description.as_deref()),
                v(p.created_at),
            ],
        )
        .await
        .map(drop)
    }

    async fn get_partner_pool(&mut self, brand: &BrandId, id: &str) -> Result<Option<PartnerPoolRecord>> {
        self.one(
            &format!("SELECT {POOL_COLS} FROM partner_pools WHERE brand_id = $1 AND id = $2"),
            vec![v(brand.as_str()), v(id)],
            pool_row,
        )
        .await
    }

    async fn list_partner_pools(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<PartnerPoolRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {POOL_COLS} FROM partner_pools WHERE brand_id = "
        ));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, pool_row).await
    }

    async fn insert_partner_codes(&mut self, codes: &[PartnerCodeRecord]) -> Result<u64> {
        self.insert_rows(
            &format!("partner_codes ({PARTNER_CODE_COLS})"),
            codes
                .iter()
                .map(|c| {
                    vec![
                        v(c.brand_id.as_str()),
                        v(&c.pool_id),
                        v(&c.code),
                        v(c.seq),
                        v(c.member_id.as_ref().map(MemberId::as_str)),
                        v(c.reference.as_deref()),
                        v(c.assigned_at),
                    ]
                })
                .collect(),
            " ON CONFLICT DO NOTHING",
        )
        .await
    }

    async fn partner_pool_counts(&mut self, pool: &str) -> Result<(i64, i64, i64)> {
        let rows = self
            .rows(
                "SELECT COUNT(*) AS total, COUNT(member_id) AS assigned, COALESCE(MAX(seq), 0) AS last \
                 FROM partner_codes WHERE pool_id = $1",
                vec![v(pool)],
            )
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("an aggregate returned no row".into()))?;
        Ok((r.i64("total")?, r.i64("assigned")?, r.i64("last")?))
    }

    async fn get_partner_code_by_reference(
        &mut self,
        brand: &BrandId,
        pool: &str,
        reference: &str,
    ) -> Result<Option<PartnerCodeRecord>> {
        self.one(
            &format!(
                "SELECT {PARTNER_CODE_COLS} FROM partner_codes WHERE brand_id = $1 AND pool_id = $2 AND reference = $3"
            ),
            vec![v(brand.as_str()), v(pool), v(reference)],
            partner_code_row,
        )
        .await
    }

    async fn assign_partner_code(
        &mut self,
        brand: &BrandId,
        pool: &str,
        member: &MemberId,
        reference: &str,
        at: OffsetDateTime,
    ) -> Result<Option<PartnerCodeRecord>> {
        let skip = self.conn.dialect().for_update_skip_locked();
        // A few tries: on PostgreSQL another transaction may take the code between the pick
        // (which skips locked rows) and the guarded update.
        for _ in 0..5 {
            let Some(code) = self
                .one(
                    &format!(
                        "SELECT code FROM partner_codes WHERE pool_id = $1 AND member_id IS NULL \
                         ORDER BY seq LIMIT 1{skip}"
                    ),
                    vec![v(pool)],
                    |r| r.text("code"),
                )
                .await?
            else {
                return Ok(None);
            };
            let taken = self
                .exec(
                    "UPDATE partner_codes SET member_id = $3, reference = $4, assigned_at = $5 \
                     WHERE pool_id = $1 AND code = $2 AND member_id IS NULL",
                    vec![v(pool), v(&code), v(member.as_str()), v(reference), v(at)],
                )
                .await?;
            if taken == 1 {
                return self.get_partner_code_by_reference(brand, pool, reference).await;
            }
        }
        Err(StoreError::Stale)
    }

    async fn list_member_partner_codes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<Vec<PartnerCodeRecord>> {
        self.all(
            &format!(
                "SELECT {PARTNER_CODE_COLS} FROM partner_codes WHERE brand_id = $1 AND member_id = $2 ORDER BY assigned_at"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            partner_code_row,
        )
        .await
    }

    async fn insert_membership(&mut self, m: &MembershipRecord) -> Result<bool> {
        let inserted = self
            .insert_rows(
                &format!("memberships ({MEMBERSHIP_COLS})"),
                vec![vec![
                    v(&m.id),
                    v(m.brand_id.as_str()),
                    v(m.member_id.as_str()),
                    v(&m.plan_code),
                    v(m.starts_at),
                    v(m.ends_at),
                    v(m.fee),
                    v(&m.paid_with),
                    v(m.status.as_str()),
                    v(&m.reference),
                    v(m.renewal_of.as_deref()),
                    v(m.refunded_amount),
                    v(m.lapse_notified),
                    v(m.created_at),
                ]],
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_membership_by_reference(
        &mut self,
        brand: &BrandId,
        reference: &str,
    ) -> Result<Option<MembershipRecord>> {
        self.one(
            &format!("SELECT {MEMBERSHIP_COLS} FROM memberships WHERE brand_id = $1 AND reference = $2"),
            vec![v(brand.as_str()), v(reference)],
            membership_row,
        )
        .await
    }

    async fn memberships_of(
        &mut self,
        brand: &BrandId,
        members: &[MemberId],
    ) -> Result<Vec<MembershipRecord>> {
        self.select_in(
            &format!("SELECT {MEMBERSHIP_COLS} FROM memberships WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "member_id",
            members.iter().map(|m| m.as_str().to_owned()).collect(),
            " ORDER BY starts_at, id",
            membership_row,
        )
        .await
    }

    async fn update_membership(&mut self, m: &MembershipRecord) -> Result<()> {
        self.exec(
            "UPDATE memberships SET status = $2, refunded_amount = $3, lapse_notified = $4 WHERE id = $1",
            vec![
                v(&m.id),
                v(m.status.as_str()),
                v(m.refunded_amount),
                v(m.lapse_notified),
            ],
        )
        .await
        .map(drop)
    }

    async fn memberships_lapsed(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<MembershipRecord>> {
        let skip = self.conn.dialect().for_update_skip_locked();
        self.all(
            &format!(
                "SELECT {MEMBERSHIP_COLS} FROM memberships m WHERE status = 'active' AND ends_at <= $1 \
                 AND lapse_notified = $2 AND NOT EXISTS (SELECT 1 FROM memberships n \
                 WHERE n.renewal_of = m.id AND n.status = 'active') ORDER BY ends_at LIMIT $3{skip}"
            ),
            vec![v(now), v(false), v(i64::from(limit.clamp(1, 10_000)))],
            membership_row,
        )
        .await
    }

    async fn renewal_counts(
        &mut self,
        brand: &BrandId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<RenewalCount>> {
        self.all(
            "SELECT plan_code, COUNT(*) AS ended, COUNT(CASE WHEN EXISTS (SELECT 1 FROM memberships n \
             WHERE n.renewal_of = m.id AND n.status = 'active') THEN 1 END) AS renewed \
             FROM memberships m WHERE brand_id = $1 AND status = 'active' AND ends_at >= $2 AND ends_at < $3 \
             GROUP BY plan_code ORDER BY plan_code",
            vec![v(brand.as_str()), v(from), v(to)],
            |r| {
                Ok(RenewalCount {
                    plan_code: r.text("plan_code")?,
                    ended: r.i64("ended")?,
                    renewed: r.i64("renewed")?,
                })
            },
        )
        .await
    }

    async fn plan_members_and_buyers(
        &mut self,
        brand: &BrandId,
        at: OffsetDateTime,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(String, i64, i64)>> {
        let mut out: Vec<(String, i64, i64)> = self
            .all(
                "SELECT plan_code, COUNT(DISTINCT member_id) AS n FROM memberships WHERE brand_id = $1 \
                 AND status = 'active' AND starts_at <= $2 AND ends_at > $2 GROUP BY plan_code ORDER BY plan_code",
                vec![v(brand.as_str()), v(at)],
                |r| Ok((r.text("plan_code")?, r.i64("n")?, 0)),
            )
            .await?;
        // Of the members covered now, those who bought while covered by that plan.
        let buyers = self
            .all(
                "SELECT m.plan_code, COUNT(DISTINCT p.member_id) AS n FROM memberships m \
                 JOIN purchases p ON p.brand_id = m.brand_id AND p.member_id = m.member_id \
                 AND p.occurred_at >= m.starts_at AND p.occurred_at < m.ends_at \
                 WHERE m.brand_id = $1 AND m.status = 'active' AND p.points > 0 \
                 AND p.occurred_at >= $3 AND p.occurred_at < $4 AND EXISTS (SELECT 1 FROM memberships c \
                 WHERE c.brand_id = m.brand_id AND c.member_id = m.member_id AND c.plan_code = m.plan_code \
                 AND c.status = 'active' AND c.starts_at <= $2 AND c.ends_at > $2) GROUP BY m.plan_code",
                vec![v(brand.as_str()), v(at), v(from), v(to)],
                |r| Ok((r.text("plan_code")?, r.i64("n")?)),
            )
            .await?;
        for (plan, n) in buyers {
            if let Some(row) = out.iter_mut().find(|r| r.0 == plan) {
                row.2 = n;
            }
        }
        Ok(out)
    }

    async fn insert_benefit_use(&mut self, u: &BenefitUseRecord) -> Result<bool> {
        let inserted = self
            .insert_rows(
                &format!("benefit_uses ({BENEFIT_USE_COLS})"),
                vec![vec![
                    v(&u.id),
                    v(u.brand_id.as_str()),
                    v(u.member_id.as_str()),
                    v(&u.benefit),
                    v(&u.code),
                    v(&u.tier_code),
                    v(u.plan_code.as_deref()),
                    v(u.store_id.as_deref()),
                    v(&u.reference),
                    v(u.used_at),
                ]],
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_benefit_use(
        &mut self,
        brand: &BrandId,
        benefit: &str,
        code: &str,
        reference: &str,
    ) -> Result<Option<BenefitUseRecord>> {
        self.one(
            &format!(
                "SELECT {BENEFIT_USE_COLS} FROM benefit_uses WHERE brand_id = $1 AND benefit = $2 \
                 AND code = $3 AND reference = $4"
            ),
            vec![v(brand.as_str()), v(benefit), v(code), v(reference)],
            benefit_use_row,
        )
        .await
    }

    async fn benefit_use_counts(
        &mut self,
        brand: &BrandId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<BenefitUseCount>> {
        self.all(
            "SELECT benefit, code, COALESCE(plan_code, tier_code) AS holder, COUNT(DISTINCT member_id) AS n \
             FROM benefit_uses WHERE brand_id = $1 AND used_at >= $2 AND used_at < $3 \
             GROUP BY benefit, code, COALESCE(plan_code, tier_code) ORDER BY 1, 2, 3",
            vec![v(brand.as_str()), v(from), v(to)],
            |r| {
                Ok(BenefitUseCount {
                    benefit: r.text("benefit")?,
                    code: r.text("code")?,
                    holder: r.text("holder")?,
                    members: r.i64("n")?,
                })
            },
        )
        .await
    }

    async fn tier_members_and_buyers(
        &mut self,
        brand: &BrandId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(Option<String>, i64, i64)>> {
        self.all(
            "SELECT a.tier_code, COUNT(*) AS n, COUNT(CASE WHEN EXISTS (SELECT 1 FROM purchases p \
             WHERE p.brand_id = m.brand_id AND p.member_id = m.id AND p.points > 0 \
             AND p.occurred_at >= $2 AND p.occurred_at < $3) THEN 1 END) AS buyers \
             FROM members m LEFT JOIN point_accounts a ON a.brand_id = m.brand_id AND a.member_id = m.id \
             WHERE m.brand_id = $1 AND m.status = 'active' GROUP BY a.tier_code ORDER BY 1",
            vec![v(brand.as_str()), v(from), v(to)],
            |r| Ok((r.opt_text("tier_code")?, r.i64("n")?, r.i64("buyers")?)),
        )
        .await
    }

    async fn update_sale(&mut self, s: &SaleRecord) -> Result<()> {
        self.exec(
            "UPDATE sales SET status = $3, refund_outcome = $4, refunded_at = $5 WHERE brand_id = $1 AND order_id = $2",
            vec![
                v(s.brand_id.as_str()),
                v(&s.order_id),
                v(s.status.as_str()),
                v(s.refund_outcome.as_deref()),
                v(s.refunded_at),
            ],
        )
        .await
        .map(drop)
    }
}

const BENEFIT_USE_COLS: &str =
    "id, brand_id, member_id, benefit, code, tier_code, plan_code, store_id, reference, used_at";
fn benefit_use_row(r: &Row) -> Result<BenefitUseRecord> {
    Ok(BenefitUseRecord {
        id: r.text("id")?,
        brand_id: r.parsed("brand_id")?,
        member_id: r.parsed("member_id")?,
        benefit: r.text("benefit")?,
        code: r.text("code")?,
        tier_code: r.text("tier_code")?,
        plan_code: r.opt_text("plan_code")?,
        store_id: r.opt_text("store_id")?,
        reference: r.text("reference")?,
        used_at: r.time("used_at")?,
    })
}

fn sale_values(s: &SaleRecord) -> Vec<Value> {
    vec![
        v(s.brand_id.as_str()),
        v(&s.order_id),
        v(s.member_id.as_str()),
        v(s.store_id.as_deref()),
        v(&s.channel),
        v(&s.priced),
        v(&s.coupons),
        v(s.points_used),
        v(&s.points_lots),
        v(s.wallet_principal),
        v(s.wallet_bonus),
        v(s.money),
        v(s.status.as_str()),
        v(&s.outcome),
        v(s.refund_outcome.as_deref()),
        v(s.created_at),
        v(s.refunded_at),
    ]
}
