//! Templates (compiled in), the filters they use, and the error pages.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use huiyuan_core::loyalty::calendar::BrandCalendar;
use minijinja::value::Value;
use minijinja::{Environment, State};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::i18n::{translate, Lang};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("dashboard.html", include_str!("../templates/dashboard.html")),
    ("members.html", include_str!("../templates/members.html")),
    ("member.html", include_str!("../templates/member.html")),
    ("programme.html", include_str!("../templates/programme.html")),
    ("coupons.html", include_str!("../templates/coupons.html")),
    ("job.html", include_str!("../templates/job.html")),
    ("till.html", include_str!("../templates/till.html")),
    ("sale.html", include_str!("../templates/sale.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("portal.html", include_str!("../templates/portal.html")),
    (
        "portal_signed_out.html",
        include_str!("../templates/portal_signed_out.html"),
    ),
];

/// Every template's source, for the test that checks each phrase has a translation.
#[cfg(test)]
pub fn template_sources() -> impl Iterator<Item = (&'static str, &'static str)> {
    TEMPLATES.iter().copied()
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // An absent value prints as nothing (not `None`), so empty form fields stay empty.
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    for (name, source) in TEMPLATES {
        // The templates are part of the binary; one that does not parse fails the test suite.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "console template does not parse");
        }
    }
    env.add_function("t", |state: &State, phrase: &str| -> String {
        translate(lang_of(state), phrase).to_owned()
    });
    env.add_function("err", field_error);
    env.add_filter("money", money);
    env.add_filter("local", local_time);
    env.add_filter("day", local_day);
    env.add_filter("pct", |v: f64| format!("{:.1}%", v * 100.0));
    env.add_filter("thousands", |v: i64| thousands(v));
    env
}

/// The reason a field was refused, as a paragraph under the field, in the reader's language.
fn field_error(state: &State, errors: Value, field: &str) -> Value {
    let Some(reason) = errors
        .get_item(&Value::from(field))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_none())
    else {
        return Value::from("");
    };
    let text = reason
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| reason.to_string());
    let shown = translate(lang_of(state), &text);
    Value::from_safe_string(format!(
        r#"<span class="error" data-field="{}">{}</span>"#,
        escape(field),
        escape(shown)
    ))
}

fn escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

fn lang_of(state: &State) -> Lang {
    state
        .lookup("lang")
        .and_then(|v| v.as_str().map(Lang::parse))
        .unwrap_or_default()
}

/// Groups digits by three, as both languages write money and counts in the console.
pub fn thousands(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Minor units in the brand's currency: `¥1,234.50`.
fn money(state: &State, minor: i64) -> String {
    let currency = state
        .lookup("currency")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "CNY".into());
    let symbol = match currency.as_str() {
        "CNY" | "JPY" => "¥",
        "USD" | "HKD" | "SGD" | "TWD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        _ => "",
    };
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let major = thousands((abs / 100) as i64);
    let text = format!("{sign}{symbol}{major}.{:02}", abs % 100);
    if symbol.is_empty() {
        format!("{text} {currency}")
    } else {
        text
    }
}

fn parse_instant(value: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.as_str()?, &Rfc3339).ok()
}

fn in_brand_zone(state: &State, t: OffsetDateTime) -> OffsetDateTime {
    let zone = state
        .lookup("tz")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "Asia/Shanghai".into());
    BrandCalendar::new(&zone).map_or(t, |c| c.local(t))
}

/// An RFC 3339 instant as `2026-12-03 18:30` in the brand's time zone.
fn local_time(state: &State, value: Value) -> String {
    match parse_instant(&value) {
        Some(t) => {
            let l = in_brand_zone(state, t);
            format!("{} {:02}:{:02}", l.date(), l.hour(), l.minute())
        }
        None => value.as_str().unwrap_or_default().to_owned(),
    }
}

fn local_day(state: &State, value: Value) -> String {
    match parse_instant(&value) {
        Some(t) => in_brand_zone(state, t).date().to_string(),
        None => value.as_str().unwrap_or_default().to_owned(),
    }
}

/// Renders a template; a template error is logged and shown as a plain 500.
pub fn page(status: StatusCode, name: &str, ctx: Value) -> Response {
    match ENV.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %format!("{e:#}"), "console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::MESSAGES;

    #[test]
    fn every_template_parses() {
        let env = environment();
        for (name, _) in template_sources() {
            assert!(env.get_template(name).is_ok(), "{name} does not parse");
        }
    }

    /// Every literal phrase a template passes to `t(…)` has a Chinese translation.
    #[test]
    fn every_phrase_in_the_templates_is_translated() {
        let mut missing = Vec::new();
        for (name, source) in template_sources() {
            for quote in ['"', '\''] {
                let open = format!("t({quote}");
                for (at, _) in source.match_indices(&open) {
                    // `t(` must not end a longer name such as `format(`.
                    let before = source[..at].chars().last().unwrap_or(' ');
                    if before.is_alphanumeric() || before == '_' {
                        continue;
                    }
                    let rest = &source[at + open.len()..];
                    let Some(end) = rest.find(quote) else { continue };
                    let phrase = &rest[..end];
                    if MESSAGES.binary_search_by(|(en, _)| en.cmp(&phrase)).is_err() {
                        missing.push(format!("{name}: {phrase}"));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "phrases without a translation:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn money_and_counts_are_grouped_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
        let env = environment();
        let out = env
            .render_str(
                "{{ 123456789 | money }} {{ -5 | money }}",
                minijinja::context! { currency => "CNY" },
            )
            .unwrap();
        assert_eq!(out, "¥1,234,567.89 -¥0.05");
    }
}
