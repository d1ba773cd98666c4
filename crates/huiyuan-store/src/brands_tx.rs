//! The brand and its people (brands, stores, operators with their sessions, API keys): the part
//! of [`crate::Tx`] that keeps them.

use async_trait::async_trait;
use huiyuan_domain::ids::{ApiKeyId, BrandId, OperatorId, StoreId};
use time::OffsetDateTime;

use crate::records::*;
use crate::Result;

/// The brand and its people: brands, stores, operators with their sessions, API keys.
#[async_trait]
pub trait BrandsTx: Send {
    // Brands
    async fn insert_brand(&mut self, brand: &BrandRecord) -> Result<()>;
    async fn get_brand(&mut self, id: &BrandId) -> Result<Option<BrandRecord>>;
    async fn get_brand_by_slug(&mut self, slug: &str) -> Result<Option<BrandRecord>>;
    async fn list_brands(&mut self) -> Result<Vec<BrandRecord>>;
    async fn update_brand(&mut self, brand: &BrandRecord) -> Result<()>;

    // Stores (shops)
    async fn insert_store(&mut self, store: &StoreRecord) -> Result<()>;
    async fn update_store(&mut self, store: &StoreRecord) -> Result<()>;
    async fn get_store(&mut self, brand: &BrandId, id: &StoreId) -> Result<Option<StoreRecord>>;
    async fn list_stores(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<StoreRecord>>;

    // Operators and their sessions
    async fn insert_operator(&mut self, op: &OperatorRecord) -> Result<()>;
    async fn update_operator(&mut self, op: &OperatorRecord) -> Result<()>;
    async fn get_operator(&mut self, brand: &BrandId, id: &OperatorId) -> Result<Option<OperatorRecord>>;
    async fn find_operator_by_username(&mut self, username: &str) -> Result<Option<OperatorRecord>>;
    async fn list_operators(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<OperatorRecord>>;
    async fn insert_session(&mut self, session: &SessionRecord) -> Result<()>;
    async fn find_session(&mut self, token_hash: &[u8]) -> Result<Option<SessionRecord>>;
    async fn delete_session(&mut self, token_hash: &[u8]) -> Result<bool>;
    async fn delete_sessions_of(&mut self, operator: &OperatorId) -> Result<u64>;

    // API keys
    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> Result<()>;
    async fn find_api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKeyRecord>>;
    async fn get_api_key(&mut self, brand: &BrandId, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>>;
    async fn list_api_keys(&mut self, brand: &BrandId, page: &Page) -> Result<Vec<ApiKeyRecord>>;
    async fn revoke_api_key(&mut self, brand: &BrandId, id: &ApiKeyId, at: OffsetDateTime) -> Result<bool>;
}
