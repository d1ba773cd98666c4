//! Personal data: normalisation (so one person is one identity however they type it) and
//! masking (so responses and logs show `138****1234`, never the number).

use std::fmt;

use phonenumber::{country, Mode};
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Personal data as a caller typed it (a phone, a name, an e-mail, a birthday), before it is
/// parsed: it reads, compares and serialises as the text, but its `Debug` shows only how long
/// it is, so an input logged with `{:?}` (a tracing field, a panic message, a test failure)
/// never carries the person's data.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Personal(String);

impl Personal {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::ops::Deref for Personal {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Personal {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Personal {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for Personal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Personal(<{} characters>)", self.0.chars().count())
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Personal {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Personal {}

/// A phone number in E.164 form (`+8613800138000`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// Parses what a member or clerk typed. Numbers without a country code are read as mainland
    /// China numbers, the programme's home market; separators, spaces and a `+86`/`0086` prefix
    /// are all accepted.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::field("phone", "must not be empty"));
        }
        if trimmed.len() > 32 {
            return Err(ValidationError::field("phone", "is longer than 32 characters"));
        }
        let normalised = match trimmed.strip_prefix("00") {
            Some(rest) => format!("+{rest}"),
            None => trimmed.to_owned(),
        };
        let number = phonenumber::parse(Some(country::Id::CN), &normalised)
            .map_err(|_| ValidationError::field("phone", "is not a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(ValidationError::field(
                "phone",
                "is not a valid number for its country",
            ));
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    pub fn e164(&self) -> &str {
        &self.0
    }

    /// `138****1234` for mainland numbers, `+44 77****0123` elsewhere.
    pub fn masked(&self) -> String {
        // Mainland numbers are shown in the national form operators know; others keep their
        // `+CC` so the country is still visible.
        match self.0.strip_prefix("+86") {
            Some(national) => mask_middle(national, 3, 4),
            None => mask_middle(&self.0, 3, 4),
        }
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// An email address, case-folded: `Li.Na@Example.COM` and `li.na@example.com` are one member.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let folded = input.trim().to_lowercase();
        let err = |reason: &str| ValidationError::field("email", reason);
        if folded.len() > 254 {
            return Err(err("is longer than 254 characters"));
        }
        let (local, domain) = folded.rsplit_once('@').ok_or_else(|| err("must contain `@`"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(err("needs 1 to 64 characters before `@`"));
        }
        if local.contains('@') || folded.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains characters an address cannot hold"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels.iter().any(|l| {
                l.is_empty()
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
        {
            return Err(err("has no valid domain after `@`"));
        }
        Ok(Self(folded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `l***@example.com`
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// Keeps `keep_start` and `keep_end` characters and stars the middle (at least four stars'
/// worth of the original is hidden, or everything but the first character for short input).
pub fn mask_middle(s: &str, keep_start: usize, keep_end: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < keep_start + keep_end + 4 {
        let first: String = chars.iter().take(1).collect();
        return format!("{first}{}", "*".repeat(chars.len().saturating_sub(1).max(3)));
    }
    let start: String = chars[..keep_start].iter().collect();
    let end: String = chars[chars.len() - keep_end..].iter().collect();
    format!("{start}{}{end}", "*".repeat(chars.len() - keep_start - keep_end))
}

/// `張*`, `歐***`, `L***`: the first character, then one star per hidden one (at most three).
pub fn mask_name(name: &str) -> String {
    let mut chars = name.trim().chars();
    match chars.next() {
        None => String::new(),
        Some(first) => {
            let hidden = chars.count().clamp(1, 3);
            format!("{first}{}", "*".repeat(hidden))
        }
    }
}

/// The form of a name that prefix search compares: trimmed, inner white space folded to one
/// space, lower case.
pub fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The prefixes of a normalised name that the blind index stores, shortest first. Longer
/// prefixes than this are not indexed: a search for a longer prefix matches on the first
/// `MAX_NAME_PREFIX` characters and is then confirmed on the decrypted name.
pub fn name_prefixes(normalised: &str) -> Vec<String> {
    let chars: Vec<char> = normalised.chars().collect();
    (1..=chars.len().min(MAX_NAME_PREFIX))
        .map(|n| chars[..n].iter().collect())
        .collect()
}

/// How many leading characters of a name the blind index covers.
pub const MAX_NAME_PREFIX: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mainland_number_however_typed() {
        let forms = [
            "13800138000",
            "138 0013 8000",
            "+86 138-0013-8000",
            "008613800138000",
            " +8613800138000 ",
        ];
        for f in forms {
            assert_eq!(Phone::parse(f).unwrap().e164(), "+8613800138000", "{f}");
        }
    }

    #[test]
    fn rejects_bad_phones_naming_the_field() {
        for bad in ["", "12345", "abc", "1380013800099999", "+86 000 0000 0000"] {
            let e = Phone::parse(bad).unwrap_err();
            assert_eq!(e.errors[0].field, "phone", "{bad}");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(Phone::parse("13800138000").unwrap().masked(), "138****8000");
        assert_eq!(
            Email::parse("Li.Na@Example.com").unwrap().masked(),
            "l***@example.com"
        );
        assert_eq!(mask_name("張三"), "張*");
        assert_eq!(mask_name("歐陽娜娜"), "歐***");
        assert!(!format!("{:?}", Phone::parse("13800138000").unwrap()).contains("0013"));
    }

    #[test]
    fn emails_fold_case_and_reject_junk() {
        assert_eq!(
            Email::parse(" Li.Na@Example.COM ").unwrap().as_str(),
            "li.na@example.com"
        );
        for bad in ["", "no-at", "@x.com", "a@b", "a b@c.com", "a@-b.com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// However a mainland mobile number is typed, it is one identity, and its mask never
        /// shows the four middle digits.
        #[test]
        fn every_format_of_a_number_is_one_identity(
            prefix in proptest::sample::select(vec!["138", "139", "150", "186", "188", "199", "170"]),
            rest in "[0-9]{8}",
            style in 0usize..6,
        ) {
            let digits = format!("{prefix}{rest}");
            let typed = match style {
                0 => digits.clone(),
                1 => format!("{} {} {}", &digits[..3], &digits[3..7], &digits[7..]),
                2 => format!("+86 {digits}"),
                3 => format!("0086{digits}"),
                4 => format!("+86-{}-{}-{}", &digits[..3], &digits[3..7], &digits[7..]),
                _ => format!("  {digits}  "),
            };
            let canonical = Phone::parse(&digits);
            let parsed = Phone::parse(&typed);
            proptest::prop_assert_eq!(canonical.is_ok(), parsed.is_ok());
            if let (Ok(a), Ok(b)) = (canonical, parsed) {
                proptest::prop_assert_eq!(a.e164(), b.e164());
                proptest::prop_assert_eq!(a.e164(), format!("+86{digits}"));
                let masked = a.masked();
                proptest::prop_assert!(masked.starts_with(&digits[..3]) && masked.ends_with(&digits[7..]));
                proptest::prop_assert_eq!(&masked[3..7], "****");
            }
        }

        /// Case and surrounding space never make two identities of one address.
        #[test]
        fn email_case_is_folded(local in "[a-zA-Z0-9._]{1,20}", domain in "[a-zA-Z]{1,10}\\.(com|cn|COM)") {
            let lower = Email::parse(&format!("{local}@{domain}").to_lowercase());
            let mixed = Email::parse(&format!("  {}@{}  ", local.to_uppercase(), domain));
            proptest::prop_assert_eq!(lower.map(|e| e.as_str().to_owned()).ok(), mixed.map(|e| e.as_str().to_owned()).ok());
        }
    }

    #[test]
    fn prefixes_cover_the_first_characters() {
        assert_eq!(name_prefixes("王小明"), vec!["王", "王小", "王小明"]);
        assert_eq!(
            name_prefixes(&normalise_name("  Li   NA ")),
            vec!["l", "li", "li ", "li n", "li na"]
        );
        assert_eq!(name_prefixes("abcdefghijk").len(), MAX_NAME_PREFIX);
    }
}
