//! The programme: the current version in tables, a form over the settings operators change
//! most (member day, birthday month, pending days, expiry, daily cap, earning rates, tier
//! thresholds and benefits), a preview of what a purchase would earn under the edited draft,
//! and publishing the draft as a new version. Each input is named by its path in the programme
//! document, so the validator's field errors land next to the input they concern.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use huiyuan_domain::access::Permission;
use huiyuan_domain::loyalty::programme::Programme;
use huiyuan_domain::loyalty::purchase::{EarningPreviewInput, LineInput, PreviewMember};
use huiyuan_domain::member::Channel;
use minijinja::context;
use serde_json::Value;

use crate::forms::{FieldErrors, Form};
use crate::render;
use crate::session::{Operator, PageError, Posted};
use crate::ConsoleState;

/// How a form value becomes a JSON value in the document.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    /// Blank removes the setting.
    OptionalInt,
    /// A decimal such as `1.5`, kept as a string (the document's decimals are strings).
    Decimal,
    Money,
    OptionalMoney,
}

/// The editable fields of this programme, as (document path, kind).
fn editable(p: &Programme) -> Vec<(String, Kind)> {
    let mut out = vec![
        ("pending_days".to_owned(), Kind::Int),
        ("expiry.months".to_owned(), Kind::Int),
        ("caps.per_member_per_day".to_owned(), Kind::OptionalInt),
        ("multipliers.birthday_month".to_owned(), Kind::Decimal),
        ("multipliers.member_day.day_of_month".to_owned(), Kind::Int),
        ("multipliers.member_day.multiplier".to_owned(), Kind::Decimal),
    ];
    for i in 0..p.earn_rules.len() {
        out.push((format!("earn_rules[{i}].points"), Kind::Decimal));
        out.push((format!("earn_rules[{i}].per_amount"), Kind::Money));
        out.push((format!("earn_rules[{i}].min_spend"), Kind::Money));
    }
    for i in 0..p.tiers.levels.len() {
        out.push((format!("tiers.levels[{i}].multiplier"), Kind::Decimal));
        out.push((format!("tiers.levels[{i}].discount_percent"), Kind::Decimal));
        if i > 0 {
            out.push((format!("tiers.levels[{i}].thresholds.points"), Kind::OptionalInt));
            out.push((format!("tiers.levels[{i}].thresholds.spend"), Kind::OptionalMoney));
        }
    }
    out
}

/// `a.b[2].c` as JSON pointer steps.
fn steps(path: &str) -> Vec<String> {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .map(str::to_owned)
        .collect()
}

fn slot<'v>(doc: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let steps = steps(path);
    let (last, parents) = steps.split_last()?;
    let mut at = doc;
    for s in parents {
        at = match at {
            Value::Array(items) => items.get_mut(s.parse::<usize>().ok()?)?,
            Value::Object(map) => map
                .entry(s.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            _ => return None,
        };
    }
    match at {
        Value::Object(map) => Some(map.entry(last.clone()).or_insert(Value::Null)),
        _ => None,
    }
}

/// The current value of every editable field, as the form shows it.
fn form_values(p: &Programme) -> serde_json::Map<String, Value> {
    let mut doc = serde_json::to_value(p).unwrap_or_default();
    let mut out = serde_json::Map::new();
    for (path, kind) in editable(p) {
        let v = slot(&mut doc, &path).map(|v| v.clone()).unwrap_or(Value::Null);
        let shown = match (kind, &v) {
            (_, Value::Null) => String::new(),
            (Kind::Money | Kind::OptionalMoney, Value::Number(n)) => {
                huiyuan_domain::money::format_minor_units(n.as_i64().unwrap_or_default())
            }
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        };
        out.insert(path, Value::String(shown));
    }
    out
}

/// The draft: the current document with the posted fields written in. Values that do not
/// parse are reported against their field and left as they were.
fn draft(current: &Programme, form: &Form, errors: &mut FieldErrors) -> Value {
    let mut doc = serde_json::to_value(current).unwrap_or_default();
    let expiry_kind = doc["expiry"]["kind"].as_str().unwrap_or_default().to_owned();
    for (path, kind) in editable(current) {
        if path == "expiry.months" && expiry_kind != "rolling_months" {
            continue;
        }
        let text = form.get(&path);
        let value = match (kind, text) {
            (Kind::OptionalInt | Kind::OptionalMoney, None) => Some(Value::Null),
            (_, None) => {
                errors.push(&path, "is required");
                None
            }
            (Kind::Int | Kind::OptionalInt, Some(t)) => match t.parse::<i64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => {
                    errors.push(&path, "must be a whole number");
                    None
                }
            },
            (Kind::Decimal, Some(t)) => {
                if t.parse::<f64>().is_ok_and(f64::is_finite) && !t.contains(['e', 'E']) {
                    Some(Value::String(t.to_owned()))
                } else {
                    errors.push(&path, "must be a number such as 1.5");
                    None
                }
            }
            (Kind::Money | Kind::OptionalMoney, Some(_)) => errors.money(form, &path).map(Value::from),
        };
        if let (Some(v), Some(target)) = (value, slot(&mut doc, &path)) {
            *target = v;
        }
    }
    strip_nulls(&mut doc);
    doc
}

/// Removes the optional settings a blank field cleared (the document omits what is not set).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

pub async fn show(State(state): State<ConsoleState>, op: Operator) -> Result<Response, PageError> {
    op.require_page("/console/programme")?;
    let current = state.core.get_programme(&op.actor, None).await?;
    let versions = state.core.list_programmes(&op.actor, 10).await?;
    let values = form_values(&current.programme);
    page(
        &op,
        StatusCode::OK,
        current,
        versions,
        values,
        FieldErrors::default(),
        None,
    )
}

fn page(
    op: &Operator,
    status: StatusCode,
    current: huiyuan_core::loyalty::programme::ProgrammeVersion,
    versions: Vec<huiyuan_core::loyalty::programme::ProgrammeVersion>,
    values: serde_json::Map<String, Value>,
    errors: FieldErrors,
    preview: Option<huiyuan_core::loyalty::programme::EarningPreview>,
) -> Result<Response, PageError> {
    let base = op.context("programme");
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| serde_json::json!({"version": v.version, "created_by": v.created_by, "created_at": huiyuan_core::views::rfc3339(v.created_at)}))
        .collect();
    Ok(render::page(
        status,
        "programme.html",
        context! {
            current => current,
            versions => versions,
            values => values,
            errors => errors.0,
            preview => preview,
            ..base,
        },
    ))
}

/// `action=preview` shows what a purchase would earn under the edited draft; `action=publish`
/// saves the draft as a new version.
pub async fn submit(
    State(state): State<ConsoleState>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require_page("/console/programme")?;
    let current = state.core.get_programme(&op.actor, None).await?;
    let versions = state.core.list_programmes(&op.actor, 10).await?;
    let mut errors = FieldErrors::default();
    let doc = draft(&current.programme, &form, &mut errors);
    let programme = if errors.is_empty() {
        match Programme::parse_json(&doc.to_string()) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.add_core(e.into(), &[])?;
                None
            }
        }
    } else {
        None
    };
    let mut values: serde_json::Map<String, Value> = form
        .values()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    values.remove("action");
    let mut preview = None;
    match (form.get("action"), programme) {
        (Some("publish"), Some(p)) => {
            op.require(Permission::ProgrammeManage)?;
            match state.core.publish_programme(&op.actor, p).await {
                Ok(v) => {
                    return Ok(Redirect::to(&format!(
                        "/console/programme?done=published&version={}",
                        v.version
                    ))
                    .into_response())
                }
                Err(e) => errors.add_core(e, &[])?,
            }
        }
        (_, Some(p)) => {
            let now = state.core.now();
            if let Some(input) = preview_input(&form, p, &op.brand.timezone, now, &mut errors) {
                match state.core.preview_earning(&op.actor, input).await {
                    Ok(p) => preview = Some(p),
                    Err(e) => errors.add_core(
                        e,
                        &[
                            ("lines", "preview_amount"),
                            ("paid_amount", "preview_amount"),
                            ("member.tier", "preview_tier"),
                        ],
                    )?,
                }
            }
        }
        (_, None) => {}
    }
    page(&op, errors.status(), current, versions, values, errors, preview)
}

/// "A 200-yuan purchase by a gold member on member day": the preview's imagined sale, on the
/// date asked for or else now (the core's clock, so a preview agrees with the sale it imagines).
fn preview_input(
    form: &Form,
    programme: Programme,
    zone: &str,
    now: time::OffsetDateTime,
    errors: &mut FieldErrors,
) -> Option<EarningPreviewInput> {
    let amount = errors
        .required(form, "preview_amount")
        .and_then(|_| errors.money(form, "preview_amount"));
    if amount == Some(0) {
        errors.push("preview_amount", "must be more than 0");
    }
    let date = errors.date("preview_date", form.get("preview_date"));
    let tier = form.get("preview_tier").map(str::to_owned);
    if let Some(t) = &tier {
        if programme.tier_index(t).is_none() {
            errors.push("preview_tier", "is not a tier of this programme");
        }
    }
    let amount = amount.filter(|_| errors.is_empty())?;
    // Noon of that day in the brand's zone.
    let calendar = huiyuan_core::loyalty::calendar::BrandCalendar::new(zone).ok();
    let occurred_at = date.and_then(|d| calendar.as_ref()?.at(d, time::macros::time!(12:00)));
    // A birthday preview: born in the month of the sale's own day in the brand's zone.
    let sale_day = date.or_else(|| Some(calendar.as_ref()?.date_of(now)));
    let birth_month = form
        .get("preview_birthday")
        .and(sale_day)
        .map(|d| u8::from(d.month()));
    Some(EarningPreviewInput {
        programme: Some(programme),
        channel: Channel::Pos,
        store_code: None,
        occurred_at,
        lines: vec![LineInput {
            sku: "PREVIEW".into(),
            category: form.get("preview_category").map(str::to_owned),
            quantity: 1,
            amount,
            reward: false,
        }],
        paid_amount: amount,
        member: PreviewMember {
            tier,
            birth_month,
            ..PreviewMember::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Without a date, "a birthday" means born in this month of the brand's calendar, read off
    /// the core's clock: at 01:00 on 1 January in Shanghai it is still December in UTC.
    #[test]
    fn a_birthday_preview_without_a_date_takes_the_brands_month_now() {
        let form = Form::parse(b"preview_amount=200.00&preview_birthday=on").unwrap();
        let mut errors = FieldErrors::default();
        let now = datetime!(2026-12-31 17:00 UTC);
        let input = preview_input(&form, Programme::demo(), "Asia/Shanghai", now, &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(input.member.birth_month, Some(1));
        let dated =
            Form::parse(b"preview_amount=200.00&preview_birthday=on&preview_date=2027-05-08").unwrap();
        let input = preview_input(&dated, Programme::demo(), "Asia/Shanghai", now, &mut errors).unwrap();
        assert_eq!(input.member.birth_month, Some(5));
    }
}
