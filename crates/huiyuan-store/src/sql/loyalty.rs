//! The SQL of [`crate::LoyaltyTx`]: programme versions, point accounts, lots, the ledger,
//! purchases and refunds, point operations, tier history, and the analytics and export readers.

use super::*;
use huiyuan_domain::loyalty::purchase::PurchaseStatus;

#[async_trait]
impl LoyaltyTx for SqlTx {
    async fn purchases_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PurchaseRecord>> {
        self.in_id_order(
            ("purchases", "p", PURCHASE_COLS),
            brand,
            after,
            limit,
            purchase_row,
        )
        .await
    }

    async fn entries_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LedgerEntryRecord>> {
        self.in_id_order(
            ("ledger_entries", "e", ENTRY_COLS),
            brand,
            after,
            limit,
            entry_row,
        )
        .await
    }

    async fn insert_programme(&mut self, p: &ProgrammeRecord) -> Result<()> {
        let inserted = self
            .exec(
                "INSERT INTO programmes (brand_id, version, document, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                vec![
                    v(p.brand_id.as_str()),
                    v(p.version),
                    v(&p.document),
                    v(&p.created_by),
                    v(p.created_at),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "programme version {} exists",
                p.version
            )));
        }
        Ok(())
    }

    async fn latest_programme_version(&mut self, brand: &BrandId) -> Result<Option<i64>> {
        self.one(
            "SELECT MAX(version) AS version FROM programmes WHERE brand_id = $1",
            vec![v(brand.as_str())],
            |r| r.opt_i64("version"),
        )
        .await
        .map(Option::flatten)
    }

    async fn get_programme(&mut self, brand: &BrandId, version: i64) -> Result<Option<ProgrammeRecord>> {
        self.one(
            &format!("SELECT {PROGRAMME_COLS} FROM programmes WHERE brand_id = $1 AND version = $2"),
            vec![v(brand.as_str()), v(version)],
            programme_row,
        )
        .await
    }

    async fn list_programmes(&mut self, brand: &BrandId, limit: u32) -> Result<Vec<ProgrammeRecord>> {
        self.all(
            &format!(
                "SELECT {PROGRAMME_COLS} FROM programmes WHERE brand_id = $1 ORDER BY version DESC LIMIT $2"
            ),
            vec![v(brand.as_str()), v(i64::from(limit.clamp(1, 1000)))],
            programme_row,
        )
        .await
    }

    async fn ensure_accounts(&mut self, accounts: &[AccountRecord]) -> Result<()> {
        self.insert_parts(account_inserts(accounts, SKIP_EXISTING))
            .await
            .map(drop)
    }

    async fn get_account(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<AccountRecord>> {
        self.one(
            &format!("SELECT {ACCOUNT_COLS} FROM point_accounts WHERE brand_id = $1 AND member_id = $2"),
            vec![v(brand.as_str()), v(member.as_str())],
            account_row,
        )
        .await
    }

    async fn lock_account(&mut self, brand: &BrandId, member: &MemberId) -> Result<Option<AccountRecord>> {
        let lock = self.conn.dialect().for_update();
        self.one(
            &format!(
                "SELECT {ACCOUNT_COLS} FROM point_accounts WHERE brand_id = $1 AND member_id = $2{lock}"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            account_row,
        )
        .await
    }

    async fn lock_accounts(&mut self, brand: &BrandId, members: &[MemberId]) -> Result<Vec<AccountRecord>> {
        let lock = self.conn.dialect().for_update();
        self.select_in(
            &format!("SELECT {ACCOUNT_COLS} FROM point_accounts WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "member_id",
            members.iter().map(|m| m.as_str().to_owned()).collect(),
            &format!(" ORDER BY member_id{lock}"),
            account_row,
        )
        .await
    }

    async fn update_account(&mut self, a: &AccountRecord) -> Result<()> {
        let changed = self
            .exec(
                "UPDATE point_accounts SET available = $3, pending = $4, debt = $5, last_seq = $6, last_hash = $7, \
                 tier_code = $8, tier_since = $9, tier_review_at = $10, tier_grace_until = $11, updated_at = $12 \
                 WHERE brand_id = $1 AND member_id = $2",
                account_values(a),
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Database("point account vanished".into()));
        }
        Ok(())
    }

    async fn list_accounts(
        &mut self,
        brand: Option<&BrandId>,
        after: Option<&(BrandId, MemberId)>,
        limit: u32,
    ) -> Result<Vec<AccountRecord>> {
        let mut q = Query::new(&format!("SELECT {ACCOUNT_COLS} FROM point_accounts WHERE 1 = 1"));
        by_member_after(&mut q, brand, after, limit);
        self.query_all(q, account_row).await
    }

    async fn accounts_due_for_review(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<AccountRecord>> {
        self.all(
            &format!(
                "SELECT {ACCOUNT_COLS} FROM point_accounts WHERE tier_review_at <= $1 \
                 ORDER BY tier_review_at, brand_id, member_id LIMIT $2"
            ),
            vec![v(now), v(i64::from(limit.clamp(1, 10_000)))],
            account_row,
        )
        .await
    }

    async fn point_totals(&mut self, brand: &BrandId) -> Result<PointTotals> {
        self.one(
            "SELECT COUNT(*) AS members, CAST(COALESCE(SUM(available), 0) AS BIGINT) AS available, \
             CAST(COALESCE(SUM(pending), 0) AS BIGINT) AS pending, CAST(COALESCE(SUM(debt), 0) AS BIGINT) AS debt \
             FROM point_accounts WHERE brand_id = $1",
            vec![v(brand.as_str())],
            |r| {
                Ok(PointTotals {
                    members: r.i64("members")?,
                    available: r.i64("available")?,
                    pending: r.i64("pending")?,
                    debt: r.i64("debt")?,
                })
            },
        )
        .await
        .map(Option::unwrap_or_default)
    }

    async fn insert_lots(&mut self, lots: &[LotRecord]) -> Result<()> {
        self.insert_parts(lot_inserts(lots, "")).await.map(drop)
    }

    async fn update_lots(&mut self, lots: &[LotRecord]) -> Result<()> {
        self.insert_parts(lot_inserts(lots, LOT_UPDATE)).await.map(drop)
    }

    async fn get_lots(&mut self, brand: &BrandId, ids: &[String]) -> Result<Vec<LotRecord>> {
        self.select_in(
            &format!("SELECT {LOT_COLS} FROM point_lots WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "id",
            ids.to_vec(),
            " ORDER BY earned_at, id",
            lot_row,
        )
        .await
    }

    async fn open_lots(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<LotRecord>> {
        self.all(
            &format!(
                "SELECT {LOT_COLS} FROM point_lots WHERE brand_id = $1 AND member_id = $2 \
                 AND status IN ('pending', 'active') ORDER BY earned_at, id"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            lot_row,
        )
        .await
    }

    async fn members_with_maturing_lots(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(BrandId, MemberId)>> {
        self.all(
            // No DISTINCT or ORDER BY: either would read every due lot before the first row.
            "SELECT brand_id, member_id FROM point_lots WHERE status = 'pending' AND matures_at <= $1 LIMIT $2",
            vec![v(now), v(i64::from(limit.clamp(1, 100_000)))],
            member_pair,
        )
        .await
    }

    async fn members_with_expiring_lots(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(BrandId, MemberId)>> {
        self.all(
            "SELECT brand_id, member_id FROM point_lots WHERE status IN ('pending', 'active') \
             AND expires_at <= $1 LIMIT $2",
            vec![v(now), v(i64::from(limit.clamp(1, 100_000)))],
            member_pair,
        )
        .await
    }

    async fn lots_to_remind(
        &mut self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<LotRecord>> {
        self.all(
            &format!(
                "SELECT {LOT_COLS} FROM point_lots WHERE status = 'active' AND expires_at > $1 AND expires_at <= $2 \
                 AND expiry_notified = $3 AND remaining > 0 ORDER BY expires_at, id LIMIT $4"
            ),
            vec![v(now), v(until), v(false), v(i64::from(limit.clamp(1, 100_000)))],
            lot_row,
        )
        .await
    }

    async fn list_entries(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<LedgerEntryRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {ENTRY_COLS} FROM ledger_entries WHERE brand_id = "
        ));
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        if let Some(after) = &page.starting_after {
            q.push(" AND seq < (SELECT seq FROM ledger_entries WHERE id = ")
                .bind(after.as_str());
            q.push(")");
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .bind(i64::from(page.limit.clamp(1, 1000)));
        self.query_all(q, entry_row).await
    }

    async fn chain(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<LedgerEntryRecord>> {
        self.all(
            &format!(
                "SELECT {ENTRY_COLS} FROM ledger_entries WHERE brand_id = $1 AND member_id = $2 ORDER BY seq"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            entry_row,
        )
        .await
    }

    async fn write_postings(&mut self, writes: &crate::PostingWrites<'_>) -> Result<u64> {
        if self.conn.dialect() == Dialect::Postgres {
            if let Some(q) = postings_statement(posting_inserts(writes)) {
                let rows = self.rows(&q.sql, q.args).await?;
                return rows.first().map_or(Ok(0), |r| r.i64("written")).map(|n| n as u64);
            }
        }
        let mut written = 0;
        for (i, parts) in posting_inserts(writes).into_iter().enumerate() {
            if parts.1.is_empty() {
                continue;
            }
            let n = self.insert_parts(parts).await?;
            if i == 0 {
                written = n;
            }
        }
        Ok(written)
    }

    fn writes_ahead(&self) -> bool {
        self.conn.writes_ahead()
    }

    async fn write_postings_ahead(&mut self, writes: &crate::PostingWrites<'_>) -> Result<()> {
        if !self.conn.writes_ahead() {
            let written = self.write_postings(writes).await?;
            return expect_changed(written, Some(writes.purchases.len() as u64));
        }
        for (i, (into, rows, tail)) in posting_inserts(writes).into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let expect = (i == 0).then_some(rows.len() as u64);
            let sql = single_row_insert(&into, &rows, tail);
            self.conn.execute_each_ahead(&sql, rows, expect).await?;
        }
        Ok(())
    }

    async fn get_purchases(&mut self, brand: &BrandId, order_ids: &[String]) -> Result<Vec<PurchaseRecord>> {
        self.select_in(
            &format!("SELECT {PURCHASE_COLS} FROM purchases WHERE brand_id = $1"),
            vec![v(brand.as_str())],
            "order_id",
            order_ids.to_vec(),
            "",
            purchase_row,
        )
        .await
    }

    async fn get_purchase(&mut self, brand: &BrandId, order_id: &str) -> Result<Option<PurchaseRecord>> {
        self.one(
            &format!("SELECT {PURCHASE_COLS} FROM purchases WHERE brand_id = $1 AND order_id = $2"),
            vec![v(brand.as_str()), v(order_id)],
            purchase_row,
        )
        .await
    }

    async fn update_purchase_refund(&mut self, p: &PurchaseRecord) -> Result<()> {
        self.exec(
            "UPDATE purchases SET points_reversed = $3, refunded_amount = $4, status = $5, lines = $6 \
             WHERE brand_id = $1 AND order_id = $2",
            vec![
                v(p.brand_id.as_str()),
                v(&p.order_id),
                v(p.points_reversed),
                v(p.refunded_amount),
                v(p.status.as_str()),
                v(&p.lines),
            ],
        )
        .await
        .map(drop)
    }

    async fn list_purchases(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        page: &Page,
    ) -> Result<Vec<PurchaseRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {PURCHASE_COLS} FROM purchases WHERE brand_id = "
        ));
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        paginate(&mut q, "id", page);
        self.query_all(q, purchase_row).await
    }

    async fn purchase_facts(
        &mut self,
        brand: &BrandId,
        filter: &PurchaseFilter,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<PurchaseFact>> {
        // Unfiltered, served from the covering index purchases_member_totals, in its order.
        let mut q = Query::new(
            "SELECT member_id, occurred_at, paid_amount - refunded_amount AS net, status FROM purchases \
             WHERE brand_id = ",
        );
        q.bind(brand.as_str())
            .push(" AND member_id > ")
            .bind(after.map_or("", MemberId::as_str));
        if let Some(store) = &filter.store_id {
            q.push(" AND store_id = ").bind(store.as_str());
        }
        if let Some(channel) = &filter.channel {
            q.push(" AND channel = ").bind(channel.as_str());
        }
        q.push(" ORDER BY member_id, occurred_at LIMIT ")
            .bind(i64::from(limit.clamp(1, 1_000_000)));
        self.query_all(q, |r| {
            Ok(PurchaseFact {
                member_id: r.parsed("member_id")?,
                occurred_at: r.time("occurred_at")?,
                net_amount: r.i64("net")?,
                refunded: r.word("status", PurchaseStatus::parse)? == PurchaseStatus::Refunded,
            })
        })
        .await
    }

    async fn purchase_baskets(
        &mut self,
        brand: &BrandId,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<PurchaseBasket>> {
        self.all(
            "SELECT member_id, occurred_at, lines, status FROM purchases \
             WHERE brand_id = $1 AND member_id > $2 ORDER BY member_id, occurred_at LIMIT $3",
            vec![
                v(brand.as_str()),
                v(after.map_or("", MemberId::as_str)),
                v(i64::from(limit.clamp(1, 1_000_000))),
            ],
            |r| {
                Ok(PurchaseBasket {
                    member_id: r.parsed("member_id")?,
                    occurred_at: r.time("occurred_at")?,
                    lines: r.text("lines")?,
                    refunded: r.word("status", PurchaseStatus::parse)? == PurchaseStatus::Refunded,
                })
            },
        )
        .await
    }

    async fn member_enrolments(
        &mut self,
        brand: &BrandId,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberEnrolment>> {
        self.all(
            "SELECT id, enrolled_at, channel, store_id FROM members \
             WHERE brand_id = $1 AND id > $2 AND status <> 'merged' ORDER BY id LIMIT $3",
            vec![
                v(brand.as_str()),
                v(after.map_or("", MemberId::as_str)),
                v(i64::from(limit.clamp(1, 1_000_000))),
            ],
            |r| {
                Ok(MemberEnrolment {
                    member_id: r.parsed("id")?,
                    enrolled_at: r.time("enrolled_at")?,
                    channel: r.text("channel")?,
                    store_id: r.opt_parsed("store_id")?,
                })
            },
        )
        .await
    }

    async fn ledger_flows(
        &mut self,
        brand: &BrandId,
        slot_seconds: u32,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<LedgerFlow>> {
        let slot_seconds = slot_seconds.max(1);
        let slot = self.conn.dialect().epoch_slot("created_at", slot_seconds);
        let mut params = vec![v(brand.as_str())];
        let from = match since {
            Some(t) => {
                params.push(v(t));
                " AND created_at >= $2"
            }
            None => "",
        };
        let sql = format!(
            "SELECT kind, {slot} AS slot, CAST(SUM(available_delta + pending_delta) AS BIGINT) AS points, \
             CAST(SUM(debt_delta) AS BIGINT) AS debt, COUNT(*) AS entries \
             FROM ledger_entries WHERE brand_id = $1{from} GROUP BY kind, {slot} ORDER BY 2, 1"
        );
        self.all(&sql, params, |r| {
            let start = r.i64("slot")? * i64::from(slot_seconds);
            Ok(LedgerFlow {
                kind: r.text("kind")?,
                slot: OffsetDateTime::from_unix_timestamp(start)
                    .map_err(|_| StoreError::Corrupt(format!("slot {start} is out of range")))?,
                points: r.i64("points")?,
                debt: r.i64("debt")?,
                entries: r.i64("entries")?,
            })
        })
        .await
    }

    async fn points_outstanding(&mut self, brand: &BrandId) -> Result<i64> {
        let rows = self
            .rows(
                "SELECT CAST(COALESCE(SUM(available + pending), 0) AS BIGINT) AS n FROM point_accounts WHERE brand_id = $1",
                vec![v(brand.as_str())],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r.i64("n"))
    }

    async fn tier_counts(&mut self, brand: &BrandId) -> Result<Vec<(Option<String>, i64)>> {
        self.all(
            "SELECT a.tier_code, COUNT(*) AS n FROM point_accounts a \
             JOIN members m ON m.id = a.member_id \
             WHERE a.brand_id = $1 AND m.status <> 'merged' GROUP BY a.tier_code ORDER BY 1",
            vec![v(brand.as_str())],
            |r| Ok((r.opt_text("tier_code")?, r.i64("n")?)),
        )
        .await
    }

    async fn purchase_totals(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        since: OffsetDateTime,
    ) -> Result<PurchaseTotals> {
        self.one(
            "SELECT CAST(COALESCE(SUM(points - points_reversed), 0) AS BIGINT) AS points, \
             CAST(COALESCE(SUM(paid_amount - refunded_amount), 0) AS BIGINT) AS spend, \
             COUNT(CASE WHEN status <> 'refunded' THEN 1 END) AS visits \
             FROM purchases WHERE brand_id = $1 AND member_id = $2 AND occurred_at >= $3",
            vec![v(brand.as_str()), v(member.as_str()), v(since)],
            |r| {
                Ok(PurchaseTotals {
                    points: r.i64("points")?,
                    spend: r.i64("spend")?,
                    visits: r.i64("visits")?,
                })
            },
        )
        .await
        .map(Option::unwrap_or_default)
    }

    async fn purchase_totals_since(
        &mut self,
        brand: &BrandId,
        members: &[MemberId],
        sinces: &[(OffsetDateTime, Sums)],
    ) -> Result<Vec<(MemberId, Vec<PurchaseTotals>)>> {
        let Some(earliest) = sinces.iter().map(|(at, _)| *at).min() else {
            return Ok(Vec::new());
        };
        if sinces.len() > SUMS_PER_QUERY {
            let instants: Vec<OffsetDateTime> = sinces.iter().map(|(at, _)| *at).collect();
            return self
                .purchase_totals_from_rows(brand, members, &instants, earliest)
                .await;
        }
        // Only the sums asked for: each is an aggregate over every row since the earliest
        // instant, and a batch of sales asks for 5 instants but 7 of their 15 sums.
        let mut q = Query::new("SELECT member_id");
        for (i, (since, wanted)) in sinces.iter().enumerate() {
            if wanted.points {
                q.push(", CAST(COALESCE(SUM(CASE WHEN occurred_at >= ")
                    .bind(*since)
                    .push(&format!(
                        " THEN points - points_reversed END), 0) AS BIGINT) AS points{i}"
                    ));
            }
            if wanted.spend {
                q.push(", CAST(COALESCE(SUM(CASE WHEN occurred_at >= ")
                    .bind(*since)
                    .push(&format!(
                        " THEN paid_amount - refunded_amount END), 0) AS BIGINT) AS spend{i}"
                    ));
            }
            if wanted.visits {
                q.push(", COUNT(CASE WHEN occurred_at >= ")
                    .bind(*since)
                    .push(&format!(" AND status <> 'refunded' THEN 1 END) AS visits{i}"));
            }
        }
        q.push(" FROM purchases WHERE brand_id = ")
            .bind(brand.as_str())
            .push(" AND occurred_at >= ")
            .bind(earliest);
        q.push(" AND ").one_of(
            self.conn.dialect(),
            "member_id",
            members.iter().map(|m| m.as_str().to_owned()).collect(),
        );
        q.push(" GROUP BY member_id");
        // Column names made once, not per row.
        let names: Vec<[String; 3]> = (0..sinces.len())
            .map(|i| [format!("points{i}"), format!("spend{i}"), format!("visits{i}")])
            .collect();
        let sum = |r: &Row, wanted: bool, name: &str| if wanted { r.i64(name) } else { Ok(0) };
        let found = self
            .query_all(q, |r| {
                let totals = sinces
                    .iter()
                    .zip(&names)
                    .map(|((_, wanted), [points, spend, visits])| {
                        Ok(PurchaseTotals {
                            points: sum(r, wanted.points, points)?,
                            spend: sum(r, wanted.spend, spend)?,
                            visits: sum(r, wanted.visits, visits)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((r.parsed("member_id")?, totals))
            })
            .await?;
        Ok(found)
    }

    async fn move_purchases(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<u64> {
        self.exec(
            "UPDATE purchases SET member_id = $3 WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(from.as_str()), v(to.as_str())],
        )
        .await
    }

    async fn insert_refund(&mut self, r: &RefundRecord) -> Result<bool> {
        let inserted = self
            .exec(
                &format!("INSERT INTO refunds ({REFUND_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"),
                vec![
                    v(r.brand_id.as_str()),
                    v(&r.refund_id),
                    v(&r.order_id),
                    v(r.member_id.as_str()),
                    v(r.amount),
                    v(r.points_reversed),
                    v(&r.detail),
                    v(r.created_at),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_refund(&mut self, brand: &BrandId, refund_id: &str) -> Result<Option<RefundRecord>> {
        self.one(
            &format!("SELECT {REFUND_COLS} FROM refunds WHERE brand_id = $1 AND refund_id = $2"),
            vec![v(brand.as_str()), v(refund_id)],
            refund_row,
        )
        .await
    }

    async fn insert_operation(&mut self, o: &OperationRecord) -> Result<bool> {
        let inserted = self
            .exec(
                &format!("INSERT INTO point_operations ({OPERATION_COLS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"),
                vec![
                    v(o.brand_id.as_str()),
                    v(&o.kind),
                    v(&o.reference),
                    v(o.member_id.as_str()),
                    v(&o.result),
                    v(o.created_at),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn get_operation(
        &mut self,
        brand: &BrandId,
        kind: &str,
        reference: &str,
    ) -> Result<Option<OperationRecord>> {
        self.one(
            &format!("SELECT {OPERATION_COLS} FROM point_operations WHERE brand_id = $1 AND kind = $2 AND reference = $3"),
            vec![v(brand.as_str()), v(kind), v(reference)],
            operation_row,
        )
        .await
    }

    async fn count_operations(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        kind: &str,
        since: Option<OffsetDateTime>,
    ) -> Result<i64> {
        let mut q = Query::new("SELECT COUNT(*) AS n FROM point_operations WHERE brand_id = ");
        q.bind(brand.as_str())
            .push(" AND member_id = ")
            .bind(member.as_str());
        q.push(" AND kind = ").bind(kind);
        if let Some(since) = since {
            q.push(" AND created_at >= ").bind(since);
        }
        self.one(&q.sql, q.args, |r| r.i64("n"))
            .await
            .map(Option::unwrap_or_default)
    }

    async fn insert_tier_change(&mut self, c: &TierChangeRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO tier_changes ({TIER_CHANGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            tier_change_values(c),
        )
        .await
        .map(drop)
    }

    async fn list_tier_changes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
    ) -> Result<Vec<TierChangeRecord>> {
        self.all(
            &format!(
                "SELECT {TIER_CHANGE_COLS} FROM tier_changes WHERE brand_id = $1 AND member_id = $2 \
                 ORDER BY created_at DESC, id DESC LIMIT 200"
            ),
            vec![v(brand.as_str()), v(member.as_str())],
            tier_change_row,
        )
        .await
    }
}
