//! Members: what an enrolment or an update may contain, and the rules that make it valid.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use time::Date;

use crate::error::Validator;
use crate::ids::StoreId;
use crate::pii::{Email, Personal, Phone};
use crate::ValidationError;

/// Where a member is in their life as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    /// Folded into another member; reads of this ID redirect there.
    Merged,
    /// Personal data removed on request (PIPL / GDPR); aggregates are kept.
    Erased,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Merged => "merged",
            MemberStatus::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [MemberStatus::Active, MemberStatus::Merged, MemberStatus::Erased]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Female,
    Male,
    Other,
    Undisclosed,
}

/// The channel a member (or an external ID) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    App,
    MiniProgram,
    WebShop,
    Pos,
    Card,
    Import,
    Api,
}

/// Marketing consents; changes are recorded in the audit log with who changed them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Consents {
    #[serde(default)]
    pub sms: bool,
    #[serde(default)]
    pub email: bool,
    #[serde(default)]
    pub push: bool,
}

/// The personal data of a member: stored encrypted as one document, never in plain columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    pub name: Option<String>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub birthday: Option<Date>,
}

/// An identity a member can be found by; each is unique within a brand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Phone(Phone),
    Email(Email),
    /// A physical membership card number (upper-cased, separators removed).
    Card(String),
    /// An ID in another system: a WeChat OpenID, an online shop's customer ID, a POS's member number.
    External {
        channel: String,
        id: String,
    },
}

impl Identity {
    /// The kind as stored beside the keyed hash, e.g. `phone` or `ext:wechat`.
    pub fn kind(&self) -> String {
        match self {
            Identity::Phone(_) => "phone".into(),
            Identity::Email(_) => "email".into(),
            Identity::Card(_) => "card".into(),
            Identity::External { channel, .. } => format!("ext:{channel}"),
        }
    }

    /// The normalised value that is hashed for lookups.
    pub fn value(&self) -> &str {
        match self {
            Identity::Phone(p) => p.e164(),
            Identity::Email(e) => e.as_str(),
            Identity::Card(c) => c,
            Identity::External { id, .. } => id,
        }
    }

    /// The request field this identity came from, for error messages.
    pub fn field(&self) -> String {
        match self {
            Identity::Phone(_) => "phone".into(),
            Identity::Email(_) => "email".into(),
            Identity::Card(_) => "card_number".into(),
            Identity::External { channel, .. } => format!("external_ids.{channel}"),
        }
    }
}

/// An ID in another system, as sent by an integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExternalIdInput {
    /// Lower-case name of the other system, e.g. `wechat`, `tmall`, `pos`.
    pub channel: String,
    pub id: String,
}

/// What an enrolment may carry. Unknown fields are refused, so a typo never passes silently.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrolInput {
    pub name: Option<Personal>,
    /// Any common format; numbers without a country code are mainland China numbers.
    pub phone: Option<Personal>,
    pub email: Option<Personal>,
    /// `YYYY-MM-DD`
    pub birthday: Option<Personal>,
    pub gender: Option<Gender>,
    pub city: Option<String>,
    pub household_size: Option<u8>,
    /// Where the member enrolled; `api` when not given.
    pub channel: Option<Channel>,
    pub store_id: Option<StoreId>,
    #[serde(default)]
    pub external_ids: Vec<ExternalIdInput>,
    pub card_number: Option<String>,
    pub consents: Option<Consents>,
    /// Free-form attributes of the brand's own (string, number or boolean values).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A change to a member: absent fields stay as they are, `null` clears a field.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateInput {
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub birthday: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Gender>))]
    pub gender: Option<Option<Gender>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u8>))]
    pub household_size: Option<Option<u8>>,
    pub consents: Option<Consents>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub add_tags: Vec<String>,
    #[serde(default)]
    pub remove_tags: Vec<String>,
    #[serde(default)]
    pub add_external_ids: Vec<ExternalIdInput>,
}

/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An enrolment that passed every rule.
#[derive(Debug, Clone)]
pub struct ValidEnrolment {
    pub personal: PersonalData,
    pub gender: Option<Gender>,
    pub city: Option<String>,
    pub household_size: Option<u8>,
    pub channel: Channel,
    pub store_id: Option<StoreId>,
    pub identities: Vec<Identity>,
    pub consents: Consents,
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub tags: Vec<String>,
}

const MAX_TAGS: usize = 50;
const MAX_ATTRIBUTES: usize = 50;

/// Validates an enrolment as of `today` (a birthday cannot be in the future).
pub fn validate_enrolment(input: EnrolInput, today: Date) -> Result<ValidEnrolment, ValidationError> {
    let mut v = Validator::default();
    let name = input.name.as_deref().and_then(|n| v.check(validate_name(n)));
    let phone = input.phone.as_deref().and_then(|p| v.check(Phone::parse(p)));
    let email = input.email.as_deref().and_then(|e| v.check(Email::parse(e)));
    let birthday = input
        .birthday
        .as_deref()
        .and_then(|b| v.check(parse_birthday(b, today)));
    let city = input
        .city
        .as_deref()
        .and_then(|c| v.check(validate_text("city", c, 64)));
    if let Some(h) = input.household_size {
        v.check(validate_household_size(h));
    }
    let mut identities = Vec::new();
    if let Some(p) = &phone {
        identities.push(Identity::Phone(p.clone()));
    }
    if let Some(e) = &email {
        identities.push(Identity::Email(e.clone()));
    }
    if let Some(card) = input
        .card_number
        .as_deref()
        .and_then(|c| v.check(normalise_card(c)))
    {
        identities.push(Identity::Card(card));
    }
    for (i, ext) in input.external_ids.iter().enumerate() {
        if let Some(id) = v.check(validate_external_id(ext, &format!("external_ids[{i}]"))) {
            if identities.contains(&id) {
                v.push(format!("external_ids[{i}]"), "is given twice");
            } else {
                identities.push(id);
            }
        }
    }
    let identity_given = input.phone.is_some()
        || input.email.is_some()
        || input.card_number.is_some()
        || !input.external_ids.is_empty();
    if !identity_given {
        v.push(
            "phone",
            "an enrolment needs a phone, email, card number or external ID",
        );
    }
    let tags = v.check(validate_tags("tags", &input.tags)).unwrap_or_default();
    let attributes = input.attributes.unwrap_or_default();
    v.check(validate_attributes(&attributes));
    v.finish()?;
    Ok(ValidEnrolment {
        personal: PersonalData {
            name,
            phone,
            email,
            birthday,
        },
        gender: input.gender,
        city,
        household_size: input.household_size,
        channel: input.channel.unwrap_or(Channel::Api),
        store_id: input.store_id,
        identities,
        consents: input.consents.unwrap_or_default(),
        attributes,
        tags,
    })
}

pub fn validate_name(name: &str) -> Result<String, ValidationError> {
    validate_text("name", name, 64)
}

/// Trimmed text of 1 to `max_chars` printable characters: names, cities, labels, codes.
pub fn validate_text(field: &str, s: &str, max_chars: usize) -> Result<String, ValidationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ValidationError::field(field, "must not be empty"));
    }
    if t.chars().count() > max_chars {
        return Err(ValidationError::field(
            field,
            format!("is longer than {max_chars} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ValidationError::field(field, "contains control characters"));
    }
    if t.chars().any(is_bidi_control) {
        return Err(ValidationError::field(
            field,
            "contains a bidirectional control character (U+202E and the like), which makes text display as other text",
        ));
    }
    Ok(t.to_owned())
}

/// Unicode's `Bidi_Control` characters: invisible, they reorder what follows, so a name
/// `\u{202E}moc.elgoog` displays as `google.com` in a console or an export.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

pub fn validate_household_size(h: u8) -> Result<u8, ValidationError> {
    if h == 0 || h > 20 {
        return Err(ValidationError::field(
            "household_size",
            "must be between 1 and 20",
        ));
    }
    Ok(h)
}

pub fn parse_birthday(s: &str, today: Date) -> Result<Date, ValidationError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(s.trim(), &format)
        .map_err(|_| ValidationError::field("birthday", "must be a date written YYYY-MM-DD"))?;
    if date > today || date.year() < 1900 {
        return Err(ValidationError::field(
            "birthday",
            "must be between 1900-01-01 and today",
        ));
    }
    Ok(date)
}

pub fn normalise_card(s: &str) -> Result<String, ValidationError> {
    let card: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect::<String>()
        .to_uppercase();
    if card.len() < 4 || card.len() > 32 || !card.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ValidationError::field(
            "card_number",
            "must be 4 to 32 letters or digits",
        ));
    }
    Ok(card)
}

pub fn validate_external_id(ext: &ExternalIdInput, field: &str) -> Result<Identity, ValidationError> {
    let channel = ext.channel.trim();
    if channel.is_empty()
        || channel.len() > 32
        || !channel
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(ValidationError::field(
            format!("{field}.channel"),
            "must be 1 to 32 characters of a-z, 0-9 and _",
        ));
    }
    let id = ext.id.trim();
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(ValidationError::field(
            format!("{field}.id"),
            "must be 1 to 128 printable characters",
        ));
    }
    Ok(Identity::External {
        channel: channel.to_owned(),
        id: id.to_owned(),
    })
}

pub fn validate_tags(field: &str, tags: &[String]) -> Result<Vec<String>, ValidationError> {
    let mut out: Vec<String> = Vec::new();
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::field(
            field,
            format!("holds more than {MAX_TAGS} tags"),
        ));
    }
    for (i, t) in tags.iter().enumerate() {
        let t = t.trim();
        if t.is_empty() || t.chars().count() > 64 || t.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return Err(ValidationError::field(
                format!("{field}[{i}]"),
                "must be 1 to 64 printable characters",
            ));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

pub fn validate_attributes(attrs: &BTreeMap<String, serde_json::Value>) -> Result<(), ValidationError> {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(ValidationError::field(
            "attributes",
            format!("holds more than {MAX_ATTRIBUTES} keys"),
        ));
    }
    for (k, val) in attrs {
        if k.is_empty() || k.len() > 64 {
            return Err(ValidationError::field(
                "attributes",
                format!("key `{k}` must be 1 to 64 characters"),
            ));
        }
        let ok = match val {
            serde_json::Value::String(s) => s.chars().count() <= 256,
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Null => true,
            _ => false,
        };
        if !ok {
            return Err(ValidationError::field(
                format!("attributes.{k}"),
                "must be a string of at most 256 characters, a number, a boolean or null",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// An input logged with `{:?}` (a tracing field, a panic, a failed assertion) shows no
    /// personal data, while serde still reads and writes the text.
    #[test]
    fn personal_fields_of_inputs_are_masked_in_debug() {
        let input: EnrolInput = serde_json::from_str(
            r#"{"name": "王小明", "phone": "13800138000", "email": "wang@example.com",
                "birthday": "1990-05-04"}"#,
        )
        .unwrap();
        assert_eq!(input.phone.as_deref(), Some("13800138000"));
        let shown = format!("{input:?}");
        for secret in ["王小明", "13800138000", "0013", "wang@", "1990-05"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("Personal(<11 characters>)"), "{shown}");
        assert_eq!(
            serde_json::to_value(crate::pii::Personal::from("13800138000")).unwrap(),
            serde_json::json!("13800138000")
        );
    }

    fn input(json: &str) -> EnrolInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reports_every_bad_field() {
        let e = validate_enrolment(
            input(r#"{"phone":"123","email":"nope","birthday":"2999-01-01","tags":[""]}"#),
            date!(2026 - 11 - 25),
        )
        .unwrap_err();
        let fields: Vec<_> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["phone", "email", "birthday", "tags[0]"]);
    }

    #[test]
    fn needs_an_identity() {
        let e = validate_enrolment(input(r#"{"name":"王小明"}"#), date!(2026 - 11 - 25)).unwrap_err();
        assert_eq!(e.errors[0].field, "phone");
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<EnrolInput>(r#"{"phnoe":"13800138000"}"#).is_err());
    }

    #[test]
    fn update_tells_null_from_absent() {
        let u: UpdateInput = serde_json::from_str(r#"{"name":null}"#).unwrap();
        assert_eq!(u.name, Some(None));
        assert_eq!(u.email, None);
    }

    #[test]
    fn identities_are_normalised() {
        let ok = validate_enrolment(
            input(r#"{"phone":"138 0013 8000","email":"A@B.CN","card_number":"ab-12 34","external_ids":[{"channel":"wechat","id":"o123"}]}"#),
            date!(2026 - 11 - 25),
        )
        .unwrap();
        let kinds: Vec<_> = ok
            .identities
            .iter()
            .map(|i| (i.kind(), i.value().to_owned()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("phone".into(), "+8613800138000".into()),
                ("email".into(), "a@b.cn".into()),
                ("card".into(), "AB1234".into()),
                ("ext:wechat".into(), "o123".into()),
            ]
        );
    }
}
