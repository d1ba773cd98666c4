//! The SQL of [`crate::BrandsTx`]: brands, stores, operators with their sessions, API keys.

use super::table::Table;
use super::*;

#[async_trait]
impl BrandsTx for SqlTx {
    async fn insert_brand(&mut self, b: &BrandRecord) -> Result<()> {
        self.insert_record(b).await
    }

    async fn get_brand(&mut self, id: &BrandId) -> Result<Option<BrandRecord>> {
        self.select_one("WHERE id = $1", vec![v(id.as_str())]).await
    }

    async fn get_brand_by_slug(&mut self, slug: &str) -> Result<Option<BrandRecord>> {
        self.select_one("WHERE slug = $1", vec![v(slug)]).await
    }

    async fn list_brands(&mut self) -> Result<Vec<BrandRecord>> {
        self.select_all("ORDER BY id", vec![]).await
    }

    async fn update_brand(&mut self, b: &BrandRecord) -> Result<()> {
        self.exec(
            "UPDATE brands SET name = $2, currency = $3, timezone = $4 WHERE id = $1",
            vec![v(b.id.as_str()), v(&b.name), v(&b.currency), v(&b.timezone)],
        )
        .await
        .map(drop)
    }

    async fn insert_store(&mut self, s: &StoreRecord) -> Result<()> {
        self.insert_record(s).await
    }

    async fn update_store(&mut self, s: &StoreRecord) -> Result<()> {
        self.exec(
            "UPDATE stores SET code = $3, name = $4, city = $5, region = $6, active = $7 WHERE brand_id = $1 AND id = $2",
            vec![v(s.brand_id.as_str()), v(s.id.as_str()), v(&s.code), v(&s.name), v(s.city.clone()), v(s.region.clone()), v(s.active)],
        )
        .await
        .map(drop)
    }

    async fn get_store(&mut self, brand: &BrandId, id: &StoreId) -> Result<Option<StoreRecord>> {
        self.select_one(
            "WHERE brand_id = $1 AND id = $2",
            vec![v(brand.as_str()), v(id.as_str())],
        )
        .await
    }

    async fn list_stores(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<StoreRecord>> {
        let mut q = Query::new(&format!("{} WHERE brand_id = ", StoreRecord::select()));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.select_query(q).await
    }

    async fn insert_operator(&mut self, o: &OperatorRecord) -> Result<()> {
        self.insert_record(o).await
    }

    async fn update_operator(&mut self, o: &OperatorRecord) -> Result<()> {
        self.exec(
            "UPDATE operators SET display_name = $3, role = $4, password_hash = $5, disabled = $6 WHERE brand_id = $1 AND id = $2",
            vec![v(o.brand_id.as_str()), v(o.id.as_str()), v(&o.display_name), v(o.role.as_str()), v(&o.password_hash), v(o.disabled)],
        )
        .await
        .map(drop)
    }

    async fn get_operator(&mut self, brand: &BrandId, id: &OperatorId) -> Result<Option<OperatorRecord>> {
        self.select_one(
            "WHERE brand_id = $1 AND id = $2",
            vec![v(brand.as_str()), v(id.as_str())],
        )
        .await
    }

    async fn find_operator_by_username(&mut self, username: &str) -> Result<Option<OperatorRecord>> {
        self.select_one("WHERE username = $1", vec![v(username)]).await
    }

    async fn list_operators(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<OperatorRecord>> {
        let mut q = Query::new(&format!("{} WHERE brand_id = ", OperatorRecord::select()));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.select_query(q).await
    }

    async fn insert_session(&mut self, s: &SessionRecord) -> Result<()> {
        self.insert_record(s).await
    }

    async fn find_session(&mut self, token_hash: &[u8]) -> Result<Option<SessionRecord>> {
        self.select_one("WHERE token_hash = $1", vec![v(token_hash)])
            .await
    }

    async fn delete_session(&mut self, token_hash: &[u8]) -> Result<bool> {
        Ok(self
            .exec("DELETE FROM sessions WHERE token_hash = $1", vec![v(token_hash)])
            .await?
            > 0)
    }

    async fn delete_sessions_of(&mut self, operator: &OperatorId) -> Result<u64> {
        self.exec(
            "DELETE FROM sessions WHERE operator_id = $1",
            vec![v(operator.as_str())],
        )
        .await
    }

    async fn insert_api_key(&mut self, k: &ApiKeyRecord) -> Result<()> {
        self.insert_record(k).await
    }

    async fn find_api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKeyRecord>> {
        self.select_one("WHERE prefix = $1", vec![v(prefix)]).await
    }

    async fn get_api_key(&mut self, brand: &BrandId, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>> {
        self.select_one(
            "WHERE brand_id = $1 AND id = $2",
            vec![v(brand.as_str()), v(id.as_str())],
        )
        .await
    }

    async fn list_api_keys(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<ApiKeyRecord>> {
        let mut q = Query::new(&format!("{} WHERE brand_id = ", ApiKeyRecord::select()));
        q.bind(brand.as_str());
        paginate(&mut q, "id", page);
        self.select_query(q).await
    }

    async fn revoke_api_key(&mut self, brand: &BrandId, id: &ApiKeyId, at: OffsetDateTime) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE api_keys SET revoked_at = $3 WHERE brand_id = $1 AND id = $2 AND revoked_at IS NULL",
                vec![v(brand.as_str()), v(id.as_str()), v(at)],
            )
            .await?
            > 0)
    }
}
