//! Reading HTML forms: values by name, money and whole numbers with the reason a field is
//! refused, and the core's field errors placed next to the field that caused them.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use huiyuan_core::CoreError;
use huiyuan_domain::money::parse_minor_units;
use huiyuan_domain::pii::{mask_middle, Phone};
use time::macros::format_description;
use time::Date;

/// A posted `application/x-www-form-urlencoded` body, in order.
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_urlencoded::from_bytes(body)
            .ok()
            .map(|fields| Form { fields })
    }

    /// The trimmed value, `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Replaces a field's value (or adds the field).
    pub fn set(&mut self, name: &str, value: &str) {
        self.fields.retain(|(k, _)| k != name);
        self.fields.push((name.to_owned(), value.to_owned()));
    }

    /// What was typed, to put back into the form when it is shown again with errors.
    pub fn values(&self) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .filter(|&(k, _)| k != "csrf")
            .cloned()
            .collect()
    }
}

/// Field name → why it was refused.
#[derive(Debug, Default)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn push(&mut self, field: &str, reason: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| reason.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// 200 when nothing was refused, else 422: the status of a page showing these errors.
    pub fn status(&self) -> StatusCode {
        if self.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }

    /// A date written `2026-12-01`; blank is `None`.
    pub fn date(&mut self, field: &str, value: Option<&str>) -> Option<Date> {
        let v = value.map(str::trim).filter(|v| !v.is_empty())?;
        match Date::parse(v, format_description!("[year]-[month]-[day]")) {
            Ok(d) => Some(d),
            Err(_) => {
                self.push(field, "must be a date such as 2026-12-01");
                None
            }
        }
    }

    /// A required field.
    pub fn required<'f>(&mut self, form: &'f Form, field: &str) -> Option<&'f str> {
        let v = form.get(field);
        if v.is_none() {
            self.push(field, "is required");
        }
        v
    }

    /// An amount of money typed as `12.50`, in minor units; blank is `None`.
    pub fn money(&mut self, form: &Form, field: &str) -> Option<i64> {
        let text = form.get(field)?;
        match parse_minor_units(text.as_bytes()) {
            Some(v) if v >= 0 => Some(v),
            _ => {
                self.push(field, "must be an amount such as 12.50");
                None
            }
        }
    }

    /// A whole number within `range`; blank is `None`.
    pub fn int(&mut self, form: &Form, field: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let text = form.get(field)?;
        match text.parse::<i64>() {
            Ok(v) if range.contains(&v) => Some(v),
            Ok(_) => {
                self.push(
                    field,
                    format!("must be between {} and {}", range.start(), range.end()),
                );
                None
            }
            Err(_) => {
                self.push(field, "must be a whole number");
                None
            }
        }
    }

    /// Adds a refusal from the core to these errors (see [`FieldErrors::from_core`]).
    pub fn add_core(&mut self, e: CoreError, rename: &[(&str, &str)]) -> Result<(), CoreError> {
        let placed = FieldErrors::from_core(e, rename)?;
        for (field, reason) in placed.0 {
            self.push(&field, reason);
        }
        Ok(())
    }

    /// Places a refusal from the core: field errors next to their fields (through `rename`,
    /// from the core's field names to the form's), anything else as the form's message.
    pub fn from_core(e: CoreError, rename: &[(&str, &str)]) -> Result<Self, CoreError> {
        let fields = match &e {
            CoreError::Validation(v) => v.errors.clone(),
            CoreError::Conflict { errors, .. } if !errors.is_empty() => errors.clone(),
            CoreError::Conflict { .. } | CoreError::CodeRejected(_) => {
                let mut out = FieldErrors::default();
                out.push("_form", e.to_string());
                return Ok(out);
            }
            _ => return Err(e),
        };
        let mut out = FieldErrors::default();
        for f in fields {
            let field = rename
                .iter()
                .find(|(core, _)| {
                    f.field == *core
                        || f.field.starts_with(&format!("{core}."))
                        || f.field.starts_with(&format!("{core}["))
                })
                .map_or(f.field.clone(), |(_, form)| (*form).to_owned());
            out.push(&field, f.reason);
        }
        Ok(out)
    }
}

/// Whether a search entry is a phone number: mainland mobile (11 digits from 1) or written with +.
pub fn looks_like_phone(q: &str) -> bool {
    let compact: String = q.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = compact.trim_start_matches('+');
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ((digits.len() == 11 && digits.starts_with('1')) || compact.starts_with('+'))
}

/// A phone as the pages show it to roles that have not revealed it: `138****8000` (the
/// domain's masking; what does not parse as a phone is masked as typed).
pub fn mask_phone(q: &str) -> String {
    Phone::parse(q).map_or_else(|_| mask_middle(q.trim(), 3, 4), |p| p.masked())
}
