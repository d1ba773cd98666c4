//! Members: enrol-or-find, read, update, search, merge, erase, export.

use std::collections::BTreeMap;

use huiyuan_domain::access::Permission;
use huiyuan_domain::error::Validator;
use huiyuan_domain::ids::{BrandId, MemberId, StoreId};
use huiyuan_domain::member::{
    normalise_card, parse_birthday, validate_attributes, validate_enrolment, validate_external_id,
    validate_household_size, validate_name, validate_tags, validate_text, Channel, Consents, EnrolInput,
    Gender, Identity, MemberStatus, PersonalData, UpdateInput, ValidEnrolment,
};
use huiyuan_domain::pii::{
    mask_middle, mask_name, name_prefixes, normalise_name, Email, Phone, MAX_NAME_PREFIX,
};
use huiyuan_domain::{FieldError, ValidationError};
use huiyuan_store::{IdentityRecord, MemberFilter, MemberRecord, Page, StoreError, Tx};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::audit_view;
use crate::views::{IdentityView, MemberExport, MemberView};
use crate::{Actor, CodeRejection, Core, CoreError, ErrorCode, Result, StorageFailure};

/// How many times an enrolment is retried after losing a race for an identity.
const ENROL_ATTEMPTS: usize = 3;
/// Longest chain of merges followed when resolving a member ID.
const MAX_MERGE_HOPS: usize = 16;

/// The result of enrol-or-find.
#[derive(Debug, Clone)]
pub enum Enrolment {
    Created(MemberView),
    /// One of the identities already belonged to this member; nothing was changed.
    Existing(MemberView),
}

/// Search criteria as the API accepts them; at most one identity criterion is used.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberQuery {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub card_number: Option<String>,
    /// With `external_id`: the channel the ID belongs to.
    pub external_channel: Option<String>,
    pub external_id: Option<String>,
    pub name_prefix: Option<String>,
    pub tag: Option<String>,
    pub status: Option<MemberStatus>,
}

/// Till step 1: find the member by code, phone or card — and enrol an unknown phone.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TillIdentifyInput {
    /// A dynamic member code: the 18 digits or the scanned QR payload.
    pub code: Option<String>,
    pub phone: Option<String>,
    pub card_number: Option<String>,
    /// The store the till belongs to; recorded as the store of enrolment.
    pub store_id: Option<StoreId>,
    /// Enrol an unknown phone number ("pay and you are a member"); default true.
    pub enrol_if_unknown: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TillIdentity {
    pub member: MemberView,
    /// True when this call enrolled the member.
    pub enrolled: bool,
    /// `code`, `phone` or `card`.
    pub identified_by: String,
}

impl Core {
    pub(crate) fn identity_hash(&self, brand: &BrandId, identity: &Identity) -> Vec<u8> {
        self.keys
            .lookup_hash(&[brand.as_str(), &identity.kind(), identity.value()])
    }

    fn identity_record(&self, brand: &BrandId, member: &MemberId, identity: &Identity) -> IdentityRecord {
        let kind = identity.kind();
        IdentityRecord {
            brand_id: brand.clone(),
            hash: self.identity_hash(brand, identity),
            member_id: member.clone(),
            value_ciphertext: self
                .keys
                .seal(&identity_context(brand, &kind), identity.value().as_bytes()),
            kind,
        }
    }

    fn name_prefix_hashes(&self, brand: &BrandId, name: Option<&str>) -> Vec<Vec<u8>> {
        name.map(|n| {
            name_prefixes(&normalise_name(n))
                .iter()
                .map(|p| self.keys.lookup_hash(&[brand.as_str(), "name-prefix", p]))
                .collect()
        })
        .unwrap_or_default()
    }

    fn seal_personal(
        &self,
        brand: &BrandId,
        member: &MemberId,
        pii: &PersonalData,
    ) -> Result<Option<Vec<u8>>> {
        if *pii == PersonalData::default() {
            return Ok(None);
        }
        let json = serde_json::to_vec(pii).map_err(|e| CoreError::Corrupt(e.to_string()))?;
        Ok(Some(self.keys.seal(&member_context(brand, member), &json)))
    }

    fn open_personal(&self, record: &MemberRecord) -> Result<PersonalData> {
        match &record.pii_ciphertext {
            None => Ok(PersonalData::default()),
            Some(ct) => {
                let json = self
                    .keys
                    .open(&member_context(&record.brand_id, &record.id), ct)?;
                serde_json::from_slice(&json).map_err(|e| CoreError::Corrupt(e.to_string()))
            }
        }
    }

    /// Builds the view of a member; `reveal` shows personal data in clear.
    pub(crate) async fn member_view(
        &self,
        tx: &mut dyn Tx,
        record: &MemberRecord,
        reveal: bool,
    ) -> Result<MemberView> {
        let pii = self.open_personal(record)?;
        let mut identities = Vec::new();
        for i in tx.list_identities(&record.brand_id, &record.id).await? {
            let value = self
                .keys
                .open(&identity_context(&record.brand_id, &i.kind), &i.value_ciphertext)?;
            let value = String::from_utf8(value).map_err(|e| CoreError::Corrupt(e.to_string()))?;
            let value = if reveal {
                value
            } else {
                mask_identity(&i.kind, &value)
            };
            identities.push(IdentityView { kind: i.kind, value });
        }
        let tags = tx.list_tags(&record.brand_id, &record.id).await?;
        let birthday_format = time::macros::format_description!("[year]-[month]-[day]");
        Ok(MemberView {
            id: record.id.clone(),
            status: record.status,
            pii_revealed: reveal,
            name: pii
                .name
                .as_deref()
                .map(|n| if reveal { n.to_owned() } else { mask_name(n) }),
            phone: pii
                .phone
                .as_ref()
                .map(|p| if reveal { p.e164().to_owned() } else { p.masked() }),
            email: pii
                .email
                .as_ref()
                .map(|e| if reveal { e.as_str().to_owned() } else { e.masked() }),
            birthday: pii.birthday.map(|b| {
                if reveal {
                    b.format(&birthday_format).unwrap_or_default()
                } else {
                    format!("****-{:02}-**", u8::from(b.month()))
                }
            }),
            birth_month: record.birth_month,
            gender: record.gender.as_deref().and_then(parse_enum::<Gender>),
            city: record.city.clone(),
            household_size: record.household_size,
            channel: parse_enum::<Channel>(&record.channel).unwrap_or(Channel::Api),
            store_id: record.store_id.clone(),
            identities,
            consents: serde_json::from_str(&record.consents).unwrap_or_default(),
            attributes: serde_json::from_str(&record.attributes).unwrap_or_default(),
            tags,
            enrolled_at: record.enrolled_at,
            updated_at: record.updated_at,
            erased_at: record.erased_at,
        })
    }

    /// Reads a member of the caller's brand; a merged-away ID is reported as [`CoreError::Merged`]
    /// with the ID that survives, following chains of merges.
    pub(crate) async fn active_member(
        &self,
        tx: &mut dyn Tx,
        brand: &BrandId,
        id: &MemberId,
        lock: bool,
    ) -> Result<MemberRecord> {
        let record = if lock {
            tx.lock_member(brand, id).await?
        } else {
            tx.get_member(brand, id).await?
        };
        let record = record.ok_or(CoreError::NotFound("member"))?;
        if record.status != MemberStatus::Merged {
            return Ok(record);
        }
        let mut into = record
            .merged_into
            .clone()
            .ok_or_else(|| CoreError::Corrupt("merged without target".into()))?;
        for _ in 0..MAX_MERGE_HOPS {
            match tx.get_member(brand, &into).await? {
                Some(next) if next.status == MemberStatus::Merged => {
                    into = next
                        .merged_into
                        .ok_or_else(|| CoreError::Corrupt("merged without target".into()))?;
                }
                _ => break,
            }
        }
        Err(CoreError::Merged {
            from: id.clone(),
            into,
        })
    }

    fn check_reveal(&self, actor: &Actor, reveal: bool) -> Result<()> {
        if reveal {
            actor.require(Permission::PiiReveal)?;
        }
        Ok(())
    }

    /// Enrols a member, or finds the one who already holds any of the given identities.
    pub async fn enrol(&self, actor: &Actor, input: EnrolInput) -> Result<Enrolment> {
        actor.require(Permission::MembersEnrol)?;
        let valid = validate_enrolment(input, self.now().date())?;
        for attempt in 1..=ENROL_ATTEMPTS {
            match self.enrol_once(actor, &valid).await {
                // Lost a race for an identity to a concurrent enrolment: the next attempt finds it.
                Err(CoreError::Storage(StorageFailure::Taken(_))) if attempt < ENROL_ATTEMPTS => continue,
                other => return other,
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Most members [`Core::enrol_many`] takes at once.
    pub const MAX_ENROL_BATCH: usize = 1_000;

    /// Enrols many members in one transaction: what a bulk import or the demo generator
    /// needs (one commit, not one per member). Each input gets its own outcome; an invalid one
    /// (or one whose identities belong to different members) is refused alone. Identities
    /// repeated within the batch find the member enrolled earlier in it.
    pub async fn enrol_many(&self, actor: &Actor, inputs: Vec<EnrolInput>) -> Result<Vec<Result<Enrolment>>> {
        actor.require(Permission::MembersEnrol)?;
        if inputs.len() > Self::MAX_ENROL_BATCH {
            return Err(ValidationError::field(
                "members",
                format!("at most {} a batch", Self::MAX_ENROL_BATCH),
            )
            .into());
        }
        let today = self.now().date();
        let mut tx = self.storage.write().await?;
        let mut outcomes = Vec::with_capacity(inputs.len());
        for input in inputs {
            let outcome = match validate_enrolment(input, today) {
                Err(e) => Err(e.into()),
                Ok(valid) => match self.enrol_in(&mut *tx, actor, &valid).await {
                    Err(e @ (CoreError::Storage(_) | CoreError::Corrupt(_))) => return Err(e),
                    other => other,
                },
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn enrol_once(&self, actor: &Actor, valid: &ValidEnrolment) -> Result<Enrolment> {
        let mut tx = self.storage.write().await?;
        let outcome = self.enrol_in(&mut *tx, actor, valid).await?;
        if matches!(outcome, Enrolment::Created(_)) {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// Enrols in the caller's transaction: every check is made before anything is written.
    async fn enrol_in(&self, tx: &mut dyn Tx, actor: &Actor, valid: &ValidEnrolment) -> Result<Enrolment> {
        let brand = &actor.brand_id;
        if let Some(store) = &valid.store_id {
            if tx.get_store(brand, store).await?.is_none() {
                return Err(ValidationError::field("store_id", "no such store in this brand").into());
            }
        }
        let mut owners: Vec<(String, MemberId)> = Vec::new();
        for identity in &valid.identities {
            if let Some(owner) = tx
                .find_identity(brand, &identity.kind(), &self.identity_hash(brand, identity))
                .await?
            {
                owners.push((identity.field(), owner));
            }
        }
        if let Some((_, first)) = owners.first() {
            if owners.iter().all(|(_, o)| o == first) {
                let record = tx
                    .get_member(brand, first)
                    .await?
                    .ok_or(CoreError::NotFound("member"))?;
                return Ok(Enrolment::Existing(
                    self.member_view(&mut *tx, &record, false).await?,
                ));
            }
            return Err(CoreError::Conflict {
                code: ErrorCode::IdentityConflict,
                message: "these identities belong to different members; merge them first".into(),
                errors: owners
                    .into_iter()
                    .map(|(field, owner)| FieldError {
                        field,
                        reason: format!("belongs to member {owner}"),
                    })
                    .collect(),
            });
        }

        let now = self.now();
        let id = self.new_id(MemberId::generate);
        let record = MemberRecord {
            id: id.clone(),
            brand_id: brand.clone(),
            status: MemberStatus::Active,
            merged_into: None,
            pii_ciphertext: self.seal_personal(brand, &id, &valid.personal)?,
            birth_month: valid.personal.birthday.map(|b| u8::from(b.month())),
            gender: valid.gender.map(enum_str),
            city: valid.city.clone(),
            household_size: valid.household_size,
            channel: enum_str(valid.channel),
            store_id: valid.store_id.clone(),
            consents: json!(valid.consents).to_string(),
            attributes: json!(valid.attributes).to_string(),
            enrolled_at: now,
            updated_at: now,
            erased_at: None,
            version: 1,
        };
        tx.insert_member(&record).await?;
        for identity in &valid.identities {
            tx.insert_identity(&self.identity_record(brand, &id, identity))
                .await?;
        }
        tx.replace_name_prefixes(
            brand,
            &id,
            &self.name_prefix_hashes(brand, valid.personal.name.as_deref()),
        )
        .await?;
        tx.add_tags(brand, &id, &valid.tags).await?;
        let view = self.member_view(&mut *tx, &record, false).await?;
        self.audit(
            &mut *tx,
            actor,
            "member.enrolled",
            ("member", id.as_str()),
            json!({ "after": view }),
        )
        .await?;
        Ok(Enrolment::Created(view))
    }

    /// Reads a member; `reveal` (audited) shows personal data to a role that may see it.
    pub async fn get_member(&self, actor: &Actor, id: &MemberId, reveal: bool) -> Result<MemberView> {
        actor.require(Permission::MembersRead)?;
        self.check_reveal(actor, reveal)?;
        if reveal {
            let mut tx = self.storage.write().await?;
            let record = self.active_member(&mut *tx, &actor.brand_id, id, false).await?;
            let view = self.member_view(&mut *tx, &record, true).await?;
            self.audit(
                &mut *tx,
                actor,
                "member.pii_revealed",
                ("member", id.as_str()),
                json!({}),
            )
            .await?;
            tx.commit().await?;
            return Ok(view);
        }
        let mut tx = self.storage.read().await?;
        let record = self.active_member(&mut *tx, &actor.brand_id, id, false).await?;
        self.member_view(&mut *tx, &record, false).await
    }

    pub async fn update_member(
        &self,
        actor: &Actor,
        id: &MemberId,
        input: UpdateInput,
    ) -> Result<MemberView> {
        actor.require(Permission::MembersUpdate)?;
        let today = self.now().date();
        let mut v = Validator::default();
        let name = input
            .name
            .as_ref()
            .map(|n| n.as_deref().and_then(|n| v.check(validate_name(n))));
        let phone = input
            .phone
            .as_ref()
            .map(|p| p.as_deref().and_then(|p| v.check(Phone::parse(p))));
        let email = input
            .email
            .as_ref()
            .map(|e| e.as_deref().and_then(|e| v.check(Email::parse(e))));
        let birthday = input
            .birthday
            .as_ref()
            .map(|b| b.as_deref().and_then(|b| v.check(parse_birthday(b, today))));
        let city = input
            .city
            .as_ref()
            .map(|c| c.as_deref().and_then(|c| v.check(validate_text("city", c, 64))));
        if let Some(Some(h)) = input.household_size {
            v.check(validate_household_size(h));
        }
        if let Some(attrs) = &input.attributes {
            v.check(validate_attributes(attrs));
        }
        let add_tags = v
            .check(validate_tags("add_tags", &input.add_tags))
            .unwrap_or_default();
        let remove_tags = v
            .check(validate_tags("remove_tags", &input.remove_tags))
            .unwrap_or_default();
        let mut new_externals = Vec::new();
        for (i, ext) in input.add_external_ids.iter().enumerate() {
            if let Some(id) = v.check(validate_external_id(ext, &format!("add_external_ids[{i}]"))) {
                new_externals.push(id);
            }
        }
        v.finish()?;

        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let mut record = self.active_member(&mut *tx, brand, id, true).await?;
        if record.status == MemberStatus::Erased {
            return Err(CoreError::conflict(
                ErrorCode::MemberErased,
                "this member's data was erased; it cannot be changed",
            ));
        }
        let before = self.member_view(&mut *tx, &record, false).await?;
        let mut pii = self.open_personal(&record)?;

        let mut swaps: Vec<(Option<Identity>, Option<Identity>)> = Vec::new();
        if let Some(phone) = phone {
            swaps.push((
                pii.phone.clone().map(Identity::Phone),
                phone.clone().map(Identity::Phone),
            ));
            pii.phone = phone;
        }
        if let Some(email) = email {
            swaps.push((
                pii.email.clone().map(Identity::Email),
                email.clone().map(Identity::Email),
            ));
            pii.email = email;
        }
        swaps.extend(new_externals.into_iter().map(|e| (None, Some(e))));
        for (old, new) in swaps {
            if old == new {
                continue;
            }
            if let Some(old) = old {
                tx.delete_identity(brand, &old.kind(), &self.identity_hash(brand, &old))
                    .await?;
            }
            if let Some(new) = new {
                match tx.insert_identity(&self.identity_record(brand, id, &new)).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(_)) => {
                        let owner = tx
                            .find_identity(brand, &new.kind(), &self.identity_hash(brand, &new))
                            .await?;
                        let reason = match owner {
                            Some(o) if &o == id => "is already this member's".to_owned(),
                            Some(o) => format!("belongs to member {o}"),
                            None => "was just claimed by another member".to_owned(),
                        };
                        return Err(CoreError::Conflict {
                            code: ErrorCode::IdentityConflict,
                            message: "an identity in this update belongs to another member".into(),
                            errors: vec![FieldError {
                                field: new.field(),
                                reason,
                            }],
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let Some(name) = name {
            pii.name = name;
            tx.replace_name_prefixes(brand, id, &self.name_prefix_hashes(brand, pii.name.as_deref()))
                .await?;
        }
        if let Some(birthday) = birthday {
            pii.birthday = birthday;
            record.birth_month = birthday.map(|b| u8::from(b.month()));
        }
        if let Some(g) = input.gender {
            record.gender = g.map(enum_str);
        }
        if let Some(c) = city {
            record.city = c;
        }
        if let Some(h) = input.household_size {
            record.household_size = h;
        }
        if let Some(c) = input.consents {
            record.consents = json!(c).to_string();
        }
        if let Some(changes) = input.attributes {
            let mut attrs: BTreeMap<String, serde_json::Value> =
                serde_json::from_str(&record.attributes).unwrap_or_default();
            for (k, val) in changes {
                if val.is_null() {
                    attrs.remove(&k);
                } else {
                    attrs.insert(k, val);
                }
            }
            validate_attributes(&attrs)?;
            record.attributes = json!(attrs).to_string();
        }
        tx.add_tags(brand, id, &add_tags).await?;
        tx.remove_tags(brand, id, &remove_tags).await?;
        record.pii_ciphertext = self.seal_personal(brand, id, &pii)?;
        record.updated_at = self.now();
        record.version += 1;
        tx.update_member(&record).await?;
        let after = self.member_view(&mut *tx, &record, false).await?;
        self.audit(
            &mut *tx,
            actor,
            "member.updated",
            ("member", id.as_str()),
            changes(&before, &after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Finds members by one identity, a name prefix, a tag or a status (criteria combine).
    pub async fn search_members(
        &self,
        actor: &Actor,
        q: &MemberQuery,
        page: &Page,
    ) -> Result<Vec<MemberView>> {
        actor.require(Permission::MembersRead)?;
        let brand = &actor.brand_id;
        let mut v = Validator::default();
        let identity = if let Some(p) = &q.phone {
            v.check(Phone::parse(p)).map(Identity::Phone)
        } else if let Some(e) = &q.email {
            v.check(Email::parse(e)).map(Identity::Email)
        } else if let Some(c) = &q.card_number {
            v.check(normalise_card(c)).map(Identity::Card)
        } else if let Some(id) = &q.external_id {
            let channel = q.external_channel.clone().unwrap_or_default();
            let ext = huiyuan_domain::member::ExternalIdInput {
                channel,
                id: id.clone(),
            };
            v.check(validate_external_id(&ext, "external"))
        } else {
            None
        };
        let name = q
            .name_prefix
            .as_deref()
            .map(normalise_name)
            .filter(|n| !n.is_empty());
        if let Some(tag) = &q.tag {
            v.check(validate_tags("tag", std::slice::from_ref(tag)));
        }
        v.finish()?;
        let filter = MemberFilter {
            identity: identity.map(|i| (i.kind(), self.identity_hash(brand, &i))),
            name_prefix_hash: name.as_deref().map(|n| {
                let indexed: String = n.chars().take(MAX_NAME_PREFIX).collect();
                self.keys.lookup_hash(&[brand.as_str(), "name-prefix", &indexed])
            }),
            tag: q.tag.clone(),
            status: q.status,
            merged_into: None,
        };
        let mut tx = self.storage.read().await?;
        let records = tx.list_members(brand, &filter, page).await?;
        let mut out = Vec::with_capacity(records.len());
        for r in &records {
            // Names longer than the index are confirmed on the decrypted name.
            if let Some(n) = &name {
                if n.chars().count() > MAX_NAME_PREFIX {
                    let full = self
                        .open_personal(r)?
                        .name
                        .map(|x| normalise_name(&x))
                        .unwrap_or_default();
                    if !full.starts_with(n.as_str()) {
                        continue;
                    }
                }
            }
            out.push(self.member_view(&mut *tx, r, false).await?);
        }
        Ok(out)
    }

    /// Folds `merged` into `survivor`: identities, tags and missing profile fields move; the
    /// merged ID redirects to the survivor from now on.
    pub async fn merge_members(
        &self,
        actor: &Actor,
        survivor: &MemberId,
        merged: &MemberId,
    ) -> Result<MemberView> {
        actor.require(Permission::MembersMerge)?;
        if survivor == merged {
            return Err(ValidationError::field("merge_from", "a member cannot be merged into itself").into());
        }
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        // Lock in ID order so two opposite merges cannot deadlock.
        let (first, second) = if survivor < merged {
            (survivor, merged)
        } else {
            (merged, survivor)
        };
        let a = self.active_member(&mut *tx, brand, first, true).await?;
        let b = self.active_member(&mut *tx, brand, second, true).await?;
        let (mut keep, mut gone) = if &a.id == survivor { (a, b) } else { (b, a) };
        if keep.status == MemberStatus::Erased || gone.status == MemberStatus::Erased {
            return Err(CoreError::conflict(
                ErrorCode::MemberErased,
                "an erased member cannot be merged",
            ));
        }
        let before = self.member_view(&mut *tx, &keep, false).await?;
        let mut keep_pii = self.open_personal(&keep)?;
        let gone_pii = self.open_personal(&gone)?;
        let name_filled = keep_pii.name.is_none() && gone_pii.name.is_some();
        keep_pii.name = keep_pii.name.or(gone_pii.name);
        keep_pii.phone = keep_pii.phone.or(gone_pii.phone);
        keep_pii.email = keep_pii.email.or(gone_pii.email);
        keep_pii.birthday = keep_pii.birthday.or(gone_pii.birthday);
        keep.birth_month = keep.birth_month.or(gone.birth_month);
        keep.gender = keep.gender.take().or(gone.gender.take());
        keep.city = keep.city.take().or(gone.city.take());
        keep.household_size = keep.household_size.or(gone.household_size);
        let mut attrs: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&keep.attributes).unwrap_or_default();
        let gone_attrs: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&gone.attributes).unwrap_or_default();
        for (k, val) in gone_attrs {
            attrs.entry(k).or_insert(val);
        }
        keep.attributes = json!(attrs).to_string();
        // Consents are not merged: a consent given on one profile is not given on the other.
        let moved = tx.move_identities(brand, &gone.id, &keep.id).await?;
        tx.move_tags(brand, &gone.id, &keep.id).await?;
        self.merge_points(&mut *tx, actor, &gone.id, &keep.id).await?;
        if name_filled {
            tx.replace_name_prefixes(
                brand,
                &keep.id,
                &self.name_prefix_hashes(brand, keep_pii.name.as_deref()),
            )
            .await?;
        }
        tx.replace_name_prefixes(brand, &gone.id, &[]).await?;
        let now = self.now();
        keep.pii_ciphertext = self.seal_personal(brand, &keep.id, &keep_pii)?;
        keep.updated_at = now;
        keep.version += 1;
        tx.update_member(&keep).await?;
        gone.status = MemberStatus::Merged;
        gone.merged_into = Some(keep.id.clone());
        gone.pii_ciphertext = None;
        gone.birth_month = None;
        gone.attributes = "{}".into();
        gone.updated_at = now;
        gone.version += 1;
        tx.update_member(&gone).await?;
        let after = self.member_view(&mut *tx, &keep, false).await?;
        let mut diff = changes(&before, &after);
        diff["merged_from"] = json!(gone.id);
        diff["identities_moved"] = json!(moved);
        self.audit(
            &mut *tx,
            actor,
            "member.merged",
            ("member", keep.id.as_str()),
            diff,
        )
        .await?;
        self.audit(
            &mut *tx,
            actor,
            "member.merged_away",
            ("member", gone.id.as_str()),
            json!({ "merged_into": keep.id }),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Erases a member's personal data (PIPL / GDPR). The record, its ID and its aggregates
    /// stay, so reports and ledgers still add up; identities, name index and tags go.
    pub async fn erase_member(&self, actor: &Actor, id: &MemberId) -> Result<MemberView> {
        actor.require(Permission::MembersErase)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let mut record = self.active_member(&mut *tx, brand, id, true).await?;
        if record.status == MemberStatus::Erased {
            return self.member_view(&mut *tx, &record, false).await;
        }
        let identities = tx.delete_identities_of(brand, id).await?;
        tx.replace_name_prefixes(brand, id, &[]).await?;
        let tags = tx.list_tags(brand, id).await?;
        tx.remove_tags(brand, id, &tags).await?;
        let now = self.now();
        record.status = MemberStatus::Erased;
        record.pii_ciphertext = None;
        record.birth_month = None;
        record.gender = None;
        record.city = None;
        record.household_size = None;
        record.consents = json!(Consents::default()).to_string();
        record.attributes = "{}".into();
        record.erased_at = Some(now);
        record.updated_at = now;
        record.version += 1;
        tx.update_member(&record).await?;
        self.audit(
            &mut *tx,
            actor,
            "member.erased",
            ("member", id.as_str()),
            json!({ "identities_removed": identities, "tags_removed": tags.len() }),
        )
        .await?;
        let view = self.member_view(&mut *tx, &record, false).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Everything held about a member, in clear (audited).
    pub async fn export_member(&self, actor: &Actor, id: &MemberId) -> Result<MemberExport> {
        actor.require(Permission::MembersExport)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, id, false).await?;
        let member = self.member_view(&mut *tx, &record, true).await?;
        let merged_filter = MemberFilter {
            merged_into: Some(id.clone()),
            ..Default::default()
        };
        let merged_from = tx
            .list_members(brand, &merged_filter, &Page::first(1000))
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        let mut history = Vec::new();
        let mut page = Page::first(1000);
        let filter = huiyuan_store::AuditFilter {
            target_id: Some(id.to_string()),
            ..Default::default()
        };
        loop {
            let batch = tx.list_audit(brand, &filter, &page).await?;
            let full = batch.len() == 1000;
            page.starting_after = batch.last().map(|a| a.id.to_string());
            history.extend(batch.into_iter().map(audit_view));
            if !full {
                break;
            }
        }
        self.audit(
            &mut *tx,
            actor,
            "member.exported",
            ("member", id.as_str()),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(MemberExport {
            exported_at: self.now(),
            member,
            merged_from,
            history,
        })
    }

    /// Till step 1: identify by code, phone or card; enrol an unknown phone.
    pub async fn till_identify(&self, actor: &Actor, input: TillIdentifyInput) -> Result<TillIdentity> {
        let given = [
            input.code.is_some(),
            input.phone.is_some(),
            input.card_number.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(
                ValidationError::field("code", "give exactly one of code, phone or card_number").into(),
            );
        }
        if let Some(code) = &input.code {
            let verified = self.verify_code(actor, code).await?;
            return Ok(TillIdentity {
                member: verified.member,
                enrolled: false,
                identified_by: "code".into(),
            });
        }
        actor.require(Permission::MembersRead)?;
        if let Some(card) = &input.card_number {
            let card = normalise_card(card)?;
            let member = self
                .find_by_identity(actor, &Identity::Card(card))
                .await?
                .ok_or(CoreError::NotFound("member"))?;
            return Ok(TillIdentity {
                member,
                enrolled: false,
                identified_by: "card".into(),
            });
        }
        let phone = Phone::parse(input.phone.as_deref().unwrap_or_default())?;
        if let Some(member) = self
            .find_by_identity(actor, &Identity::Phone(phone.clone()))
            .await?
        {
            return Ok(TillIdentity {
                member,
                enrolled: false,
                identified_by: "phone".into(),
            });
        }
        if !input.enrol_if_unknown.unwrap_or(true) {
            return Err(CoreError::NotFound("member"));
        }
        let enrolment = EnrolInput {
            phone: Some(phone.e164().into()),
            channel: Some(Channel::Pos),
            store_id: input.store_id,
            ..Default::default()
        };
        match self.enrol(actor, enrolment).await? {
            Enrolment::Created(member) => Ok(TillIdentity {
                member,
                enrolled: true,
                identified_by: "phone".into(),
            }),
            Enrolment::Existing(member) => Ok(TillIdentity {
                member,
                enrolled: false,
                identified_by: "phone".into(),
            }),
        }
    }

    async fn find_by_identity(&self, actor: &Actor, identity: &Identity) -> Result<Option<MemberView>> {
        let brand = &actor.brand_id;
        let mut tx = self.storage.read().await?;
        let Some(id) = tx
            .find_identity(brand, &identity.kind(), &self.identity_hash(brand, identity))
            .await?
        else {
            return Ok(None);
        };
        let record = self.active_member(&mut *tx, brand, &id, false).await?;
        Ok(Some(self.member_view(&mut *tx, &record, false).await?))
    }
}

/// Keeps the code used: reads at the till report a rejected code with the same error type.
impl From<CodeRejection> for CoreError {
    fn from(r: CodeRejection) -> Self {
        CoreError::CodeRejected(r)
    }
}

fn member_context(brand: &BrandId, member: &MemberId) -> String {
    format!("member:{brand}:{member}")
}

fn identity_context(brand: &BrandId, kind: &str) -> String {
    format!("identity:{brand}:{kind}")
}

fn mask_identity(kind: &str, value: &str) -> String {
    match kind {
        "phone" => Phone::parse(value)
            .map(|p| p.masked())
            .unwrap_or_else(|_| mask_middle(value, 3, 4)),
        "email" => Email::parse(value)
            .map(|e| e.masked())
            .unwrap_or_else(|_| mask_middle(value, 1, 0)),
        "card" => mask_middle(value, 0, 4),
        _ => mask_middle(value, 2, 2),
    }
}

/// The snake_case name serde gives an enum value.
pub(crate) fn enum_str<T: Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

pub(crate) fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// The fields of a (masked) view that changed, before and after.
fn changes(before: &MemberView, after: &MemberView) -> serde_json::Value {
    let (b, a) = (json!(before), json!(after));
    let mut out_before = serde_json::Map::new();
    let mut out_after = serde_json::Map::new();
    if let (Some(b), Some(a)) = (b.as_object(), a.as_object()) {
        for (k, av) in a {
            if k == "updated_at" {
                continue;
            }
            let bv = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
            if &bv != av {
                out_before.insert(k.clone(), bv);
                out_after.insert(k.clone(), av.clone());
            }
        }
    }
    json!({ "before": out_before, "after": out_after })
}
