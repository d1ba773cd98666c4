//! The SQL of [`crate::MembersTx`]: profiles, identities, tags and dynamic member codes.

use super::*;

#[async_trait]
impl MembersTx for SqlTx {
    async fn insert_member(&mut self, m: &MemberRecord) -> Result<()> {
        self.exec(
            "INSERT INTO members (id, brand_id, status, merged_into, pii_ciphertext, birth_month, gender, city, \
             household_size, channel, store_id, consents, attributes, enrolled_at, updated_at, erased_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            member_values(m),
        )
        .await
        .map(drop)
    }

    async fn update_member(&mut self, m: &MemberRecord) -> Result<()> {
        let mut args = member_values(m);
        args.push(v(m.version - 1));
        let changed = self
            .exec(
                "UPDATE members SET status = $3, merged_into = $4, pii_ciphertext = $5, birth_month = $6, gender = $7, \
                 city = $8, household_size = $9, channel = $10, store_id = $11, consents = $12, attributes = $13, \
                 enrolled_at = $14, updated_at = $15, erased_at = $16, version = $17 \
                 WHERE id = $1 AND brand_id = $2 AND version = $18",
                args,
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Stale);
        }
        Ok(())
    }

    async fn get_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>> {
        self.one(
            &format!("SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = $1 AND m.id = $2"),
            vec![v(brand.as_str()), v(id.as_str())],
            member_row,
        )
        .await
    }

    async fn get_members(&mut self, brand: &BrandId, ids: &[MemberId]) -> Result<Vec<MemberRecord>> {
        self.select_in(
            &format!("SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = $1"),
            vec![v(brand.as_str())],
            "m.id",
            ids.iter().map(|m| m.as_str().to_owned()).collect(),
            "",
            member_row,
        )
        .await
    }

    async fn lock_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>> {
        let lock = self.conn.dialect().for_update();
        self.one(
            &format!("SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = $1 AND m.id = $2{lock}"),
            vec![v(brand.as_str()), v(id.as_str())],
            member_row,
        )
        .await
    }

    async fn members_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemberRecord>> {
        self.in_id_order(("members", "m", MEMBER_COLS), brand, after, limit, member_row)
            .await
    }

    async fn list_members(
        &mut self,
        brand: &BrandId,
        f: &MemberFilter,
        page: &Page,
    ) -> Result<Vec<MemberRecord>> {
        let mut q = Query::new(&format!(
            "SELECT {MEMBER_COLS} FROM members m WHERE m.brand_id = "
        ));
        q.bind(brand.as_str());
        if let Some((kind, hash)) = &f.identity {
            q.push(" AND m.id IN (SELECT member_id FROM member_identities WHERE brand_id = ")
                .bind(brand.as_str())
                .push(" AND kind = ")
                .bind(kind.as_str())
                .push(" AND hash = ")
                .bind(hash.clone())
                .push(")");
        }
        if let Some(hash) = &f.name_prefix_hash {
            q.push(" AND m.id IN (SELECT member_id FROM member_name_prefixes WHERE brand_id = ")
                .bind(brand.as_str())
                .push(" AND hash = ")
                .bind(hash.clone())
                .push(")");
        }
        if let Some(tag) = &f.tag {
            q.push(" AND m.id IN (SELECT member_id FROM member_tags WHERE brand_id = ")
                .bind(brand.as_str())
                .push(" AND tag = ")
                .bind(tag.as_str())
                .push(")");
        }
        if let Some(into) = &f.merged_into {
            q.push(" AND m.merged_into = ").bind(into.as_str());
        }
        if let Some(status) = f.status {
            q.push(" AND m.status = ").bind(status.as_str());
        }
        paginate(&mut q, "m.id", page);
        self.query_all(q, member_row).await
    }

    async fn count_members(&mut self, brand: &BrandId) -> Result<i64> {
        self.one(
            "SELECT COUNT(*) AS n FROM members WHERE brand_id = $1 AND status = 'active'",
            vec![v(brand.as_str())],
            |r| r.i64("n"),
        )
        .await
        .map(Option::unwrap_or_default)
    }

    async fn segment_members(
        &mut self,
        brand: &BrandId,
        segment: &SegmentQuery,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>> {
        let d = self.conn.dialect();
        let mut q = Query::new(
            "SELECT m.id FROM members m LEFT JOIN point_accounts a \
             ON a.brand_id = m.brand_id AND a.member_id = m.id WHERE m.brand_id = ",
        );
        q.bind(brand.as_str())
            .push(" AND m.status = 'active' AND m.id > ")
            .bind(after.map_or("", MemberId::as_str));
        match &segment.tiers {
            Some(TierSet::AnyOf(codes)) => {
                q.push(" AND ").one_of(d, "a.tier_code", codes.clone());
            }
            Some(TierSet::NoneOf(codes)) => {
                q.push(" AND (a.tier_code IS NULL OR NOT (")
                    .one_of(d, "a.tier_code", codes.clone())
                    .push("))");
            }
            None => {}
        }
        if let Some(tags) = &segment.tags {
            q.push(" AND EXISTS (SELECT 1 FROM member_tags t WHERE t.brand_id = m.brand_id AND t.member_id = m.id AND ")
                .one_of(d, "t.tag", tags.clone())
                .push(")");
        }
        if let Some((plans, at)) = &segment.plans {
            q.push(
                " AND EXISTS (SELECT 1 FROM memberships s WHERE s.brand_id = m.brand_id AND s.member_id = m.id \
                 AND s.status = 'active' AND s.starts_at <= ",
            )
            .bind(*at)
            .push(" AND s.ends_at > ")
            .bind(*at)
            .push(" AND ")
            .one_of(d, "s.plan_code", plans.clone())
            .push(")");
        }
        if let Some(channels) = &segment.channels {
            q.push(" AND ").one_of(d, "m.channel", channels.clone());
        }
        q.push(" ORDER BY m.id LIMIT ")
            .bind(i64::from(limit.clamp(1, 100_000)));
        self.query_all(q, |r| r.parsed("id")).await
    }

    async fn members_born_in(
        &mut self,
        brand: &BrandId,
        month: u8,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>> {
        let mut q = Query::new("SELECT id FROM members WHERE brand_id = ");
        q.bind(brand.as_str()).push(" AND birth_month = ").bind(month);
        q.push(" AND status = 'active'");
        if let Some(after) = after {
            q.push(" AND id > ").bind(after.as_str());
        }
        q.push(" ORDER BY id LIMIT ")
            .bind(i64::from(limit.clamp(1, 10_000)));
        self.query_all(q, |r| r.parsed("id")).await
    }

    async fn insert_identity(&mut self, i: &IdentityRecord) -> Result<()> {
        // DO NOTHING rather than a unique violation: PostgreSQL aborts a transaction on any
        // error, and the caller wants to go on (look up the owner) in the same transaction.
        let inserted = self
            .exec(
                "INSERT INTO member_identities (brand_id, kind, hash, member_id, value_ciphertext) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                vec![
                    v(i.brand_id.as_str()),
                    v(&i.kind),
                    v(&i.hash),
                    v(i.member_id.as_str()),
                    v(&i.value_ciphertext),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "identity {} already claimed",
                i.kind
            )));
        }
        Ok(())
    }

    async fn find_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<Option<MemberId>> {
        self.one(
            "SELECT member_id FROM member_identities WHERE brand_id = $1 AND kind = $2 AND hash = $3",
            vec![v(brand.as_str()), v(kind), v(hash)],
            |r| r.parsed("member_id"),
        )
        .await
    }

    async fn list_identities(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<IdentityRecord>> {
        // Sorted here, not by ORDER BY: given `ORDER BY kind, hash`, SQLite walks the primary
        // key (brand, kind, hash) through every identity of the brand instead of using the
        // member index — an enrolment then cost time in proportion to the brand's size.
        let mut found = self
            .all(
                "SELECT brand_id, kind, hash, member_id, value_ciphertext FROM member_identities \
                 WHERE brand_id = $1 AND member_id = $2",
                vec![v(brand.as_str()), v(member.as_str())],
                identity_row,
            )
            .await?;
        found.sort_unstable_by(|a, b| (&a.kind, &a.hash).cmp(&(&b.kind, &b.hash)));
        Ok(found)
    }

    async fn delete_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM member_identities WHERE brand_id = $1 AND kind = $2 AND hash = $3",
                vec![v(brand.as_str()), v(kind), v(hash)],
            )
            .await?
            > 0)
    }

    async fn delete_identities_of(&mut self, brand: &BrandId, member: &MemberId) -> Result<u64> {
        self.exec(
            "DELETE FROM member_identities WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(member.as_str())],
        )
        .await
    }

    async fn move_identities(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<u64> {
        self.exec(
            "UPDATE member_identities SET member_id = $3 WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(from.as_str()), v(to.as_str())],
        )
        .await
    }

    async fn replace_name_prefixes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        hashes: &[Vec<u8>],
    ) -> Result<()> {
        self.exec(
            "DELETE FROM member_name_prefixes WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(member.as_str())],
        )
        .await?;
        if !hashes.is_empty() {
            self.insert_rows(
                "member_name_prefixes (brand_id, member_id, hash)",
                hashes
                    .iter()
                    .map(|h| vec![v(brand.as_str()), v(member.as_str()), v(h)])
                    .collect(),
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        }
        Ok(())
    }

    async fn add_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()> {
        if !tags.is_empty() {
            self.insert_rows(
                "member_tags (brand_id, member_id, tag)",
                tags.iter()
                    .map(|t| vec![v(brand.as_str()), v(member.as_str()), v(t)])
                    .collect(),
                " ON CONFLICT DO NOTHING",
            )
            .await?;
        }
        Ok(())
    }

    async fn remove_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()> {
        for t in tags {
            self.exec(
                "DELETE FROM member_tags WHERE brand_id = $1 AND member_id = $2 AND tag = $3",
                vec![v(brand.as_str()), v(member.as_str()), v(t)],
            )
            .await?;
        }
        Ok(())
    }

    async fn list_tags(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<String>> {
        self.all(
            "SELECT tag FROM member_tags WHERE brand_id = $1 AND member_id = $2 ORDER BY tag",
            vec![v(brand.as_str()), v(member.as_str())],
            |r| r.text("tag"),
        )
        .await
    }

    async fn move_tags(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<()> {
        self.exec(
            "INSERT INTO member_tags (brand_id, member_id, tag) SELECT brand_id, $3, tag FROM member_tags \
             WHERE brand_id = $1 AND member_id = $2 ON CONFLICT DO NOTHING",
            vec![v(brand.as_str()), v(from.as_str()), v(to.as_str())],
        )
        .await?;
        self.exec(
            "DELETE FROM member_tags WHERE brand_id = $1 AND member_id = $2",
            vec![v(brand.as_str()), v(from.as_str())],
        )
        .await
        .map(drop)
    }

    async fn insert_member_code(&mut self, c: &MemberCodeRecord) -> Result<()> {
        self.exec(
            "INSERT INTO member_codes (brand_id, nonce, code_hash, member_id, expires_at, used_at, used_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                v(c.brand_id.as_str()),
                v(&c.nonce),
                v(&c.code_hash),
                v(c.member_id.as_str()),
                v(c.expires_at),
                v(c.used_at),
                v(c.used_by.clone()),
            ],
        )
        .await
        .map(drop)
    }

    async fn find_member_code_by_nonce(
        &mut self,
        brand: &BrandId,
        nonce: &str,
    ) -> Result<Option<MemberCodeRecord>> {
        self.one(
            &format!("SELECT {CODE_COLS} FROM member_codes WHERE brand_id = $1 AND nonce = $2"),
            vec![v(brand.as_str()), v(nonce)],
            code_row,
        )
        .await
    }

    async fn find_member_code_by_hash(
        &mut self,
        brand: &BrandId,
        code_hash: &[u8],
    ) -> Result<Option<MemberCodeRecord>> {
        self.one(
            &format!("SELECT {CODE_COLS} FROM member_codes WHERE brand_id = $1 AND code_hash = $2"),
            vec![v(brand.as_str()), v(code_hash)],
            code_row,
        )
        .await
    }

    async fn use_member_code(
        &mut self,
        brand: &BrandId,
        nonce: &str,
        at: OffsetDateTime,
        by: &str,
    ) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE member_codes SET used_at = $3, used_by = $4 WHERE brand_id = $1 AND nonce = $2 AND used_at IS NULL",
                vec![v(brand.as_str()), v(nonce), v(at), v(by)],
            )
            .await?
            == 1)
    }

    async fn purge_member_codes(&mut self, expired_before: OffsetDateTime) -> Result<u64> {
        self.exec(
            "DELETE FROM member_codes WHERE expires_at < $1",
            vec![v(expired_before)],
        )
        .await
    }
}
