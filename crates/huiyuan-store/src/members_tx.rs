//! Members (profiles, identities, tags, dynamic member codes): the part of [`crate::Tx`] that
//! keeps them.

use async_trait::async_trait;
use huiyuan_domain::ids::{BrandId, MemberId};
use time::OffsetDateTime;

use crate::records::*;
use crate::Result;

/// Members: profiles, identities, tags and dynamic member codes.
#[async_trait]
pub trait MembersTx: Send {
    // Members
    async fn insert_member(&mut self, member: &MemberRecord) -> Result<()>;
    /// Replaces the row when `member.version - 1` is the stored version (optimistic check).
    async fn update_member(&mut self, member: &MemberRecord) -> Result<()>;
    async fn get_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>>;
    /// The brand's members among `ids` (those that exist).
    async fn get_members(&mut self, brand: &BrandId, ids: &[MemberId]) -> Result<Vec<MemberRecord>>;
    /// Reads the member and, on PostgreSQL, locks the row until the transaction ends.
    async fn lock_member(&mut self, brand: &BrandId, id: &MemberId) -> Result<Option<MemberRecord>>;
    async fn list_members(
        &mut self,
        brand: &BrandId,
        filter: &MemberFilter,
        page: &Page,
    ) -> Result<Vec<MemberRecord>>;
    async fn count_members(&mut self, brand: &BrandId) -> Result<i64>;
    /// The brand's members (every status) in ID order after the cursor, up to 10,000: exports.
    async fn members_in_order(
        &mut self,
        brand: &BrandId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemberRecord>>;
    /// Active members matching a segment's stored attributes, by ID after the cursor.
    async fn segment_members(
        &mut self,
        brand: &BrandId,
        segment: &SegmentQuery,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>>;
    /// Active members whose birthday falls in `month`, in ID order after the cursor.
    async fn members_born_in(
        &mut self,
        brand: &BrandId,
        month: u8,
        after: Option<&MemberId>,
        limit: u32,
    ) -> Result<Vec<MemberId>>;

    /// Claims an identity; [`StoreError::Conflict`] when the brand already has it, after which
    /// the transaction can still be used (to look up the owner).
    async fn insert_identity(&mut self, identity: &IdentityRecord) -> Result<()>;
    async fn find_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<Option<MemberId>>;
    async fn list_identities(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<IdentityRecord>>;
    async fn delete_identity(&mut self, brand: &BrandId, kind: &str, hash: &[u8]) -> Result<bool>;
    async fn delete_identities_of(&mut self, brand: &BrandId, member: &MemberId) -> Result<u64>;
    async fn move_identities(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<u64>;

    async fn replace_name_prefixes(
        &mut self,
        brand: &BrandId,
        member: &MemberId,
        hashes: &[Vec<u8>],
    ) -> Result<()>;

    async fn add_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()>;
    async fn remove_tags(&mut self, brand: &BrandId, member: &MemberId, tags: &[String]) -> Result<()>;
    async fn list_tags(&mut self, brand: &BrandId, member: &MemberId) -> Result<Vec<String>>;
    async fn move_tags(&mut self, brand: &BrandId, from: &MemberId, to: &MemberId) -> Result<()>;

    // Dynamic member codes
    async fn insert_member_code(&mut self, code: &MemberCodeRecord) -> Result<()>;
    async fn find_member_code_by_nonce(
        &mut self,
        brand: &BrandId,
        nonce: &str,
    ) -> Result<Option<MemberCodeRecord>>;
    async fn find_member_code_by_hash(
        &mut self,
        brand: &BrandId,
        code_hash: &[u8],
    ) -> Result<Option<MemberCodeRecord>>;
    /// Marks a code used; false when it was already used (the caller lost the race).
    async fn use_member_code(
        &mut self,
        brand: &BrandId,
        nonce: &str,
        at: OffsetDateTime,
        by: &str,
    ) -> Result<bool>;
    async fn purge_member_codes(&mut self, expired_before: OffsetDateTime) -> Result<u64>;
}
