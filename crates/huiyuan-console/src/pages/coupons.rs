//! Coupon templates (list, usage, a form for the common offers), issuing a template to a
//! segment or a list of members in the background with its progress.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use huiyuan_core::commerce::bulk::BulkIssueInput;
use huiyuan_core::segments::SegmentFilter;
use huiyuan_core::Page;
use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::coupons::TemplateInput;
use huiyuan_domain::ids::MemberId;
use minijinja::context;
use serde_json::json;

use crate::forms::{FieldErrors, Form};
use crate::render;
use crate::session::{Operator, PageError, Posted};
use crate::ConsoleState;

/// A redemption rate below this is flagged in the usage table.
const LOW_REDEMPTION: f64 = 0.05;

async fn render_page(
    state: &ConsoleState,
    op: &Operator,
    status: StatusCode,
    failed: Option<&str>,
    form: Option<&Form>,
    errors: FieldErrors,
) -> Result<Response, PageError> {
    let templates = state
        .core
        .list_coupon_templates(&op.actor, &Page::first(100))
        .await?;
    let usage = if op.actor.may(Permission::AnalyticsRead) {
        state.core.coupon_usage(&op.actor, LOW_REDEMPTION).await?
    } else {
        Vec::new()
    };
    let redemptions = if op.actor.may(Permission::CouponsManage) {
        state.core.coupon_redemptions(&op.actor, None, 50).await?
    } else {
        Vec::new()
    };
    let stores = state.core.list_stores(&op.actor, &Page::first(200)).await?;
    let store_names: std::collections::BTreeMap<String, String> =
        stores.into_iter().map(|s| (s.id.to_string(), s.name)).collect();
    let programme = state.core.get_programme(&op.actor, None).await?;
    let tiers: Vec<_> = programme
        .programme
        .tiers
        .levels
        .iter()
        .map(|t| json!({"code": t.code, "name": t.name, "name_en": t.name_en}))
        .collect();
    let base = op.context("coupons");
    Ok(render::page(
        status,
        "coupons.html",
        context! {
            templates => templates,
            usage => usage,
            redemptions => redemptions,
            store_names => store_names,
            tiers => tiers,
            failed => failed,
            values => form.map(Form::values).unwrap_or_default(),
            errors => errors.0,
            ..base,
        },
    ))
}

pub async fn show(State(state): State<ConsoleState>, op: Operator) -> Result<Response, PageError> {
    op.require_page("/console/coupons")?;
    render_page(&state, &op, StatusCode::OK, None, None, FieldErrors::default()).await
}

/// Creates a template from the form (fixed amount, spend-and-save or percentage off).
pub async fn create(
    State(state): State<ConsoleState>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::CouponsManage)?;
    let mut errors = FieldErrors::default();
    let name = errors.required(&form, "name");
    let kind = errors.required(&form, "offer");
    let offer = match kind {
        Some("fixed_amount") => errors
            .required(&form, "amount")
            .and_then(|_| errors.money(&form, "amount"))
            .map(|amount| json!({"kind": "fixed_amount", "amount": amount})),
        Some("threshold") => {
            let amount = errors
                .required(&form, "amount")
                .and_then(|_| errors.money(&form, "amount"));
            let min = errors
                .required(&form, "min_spend")
                .and_then(|_| errors.money(&form, "min_spend"));
            amount
                .zip(min)
                .map(|(a, m)| json!({"kind": "threshold", "amount": a, "min_spend": m}))
        }
        Some("percentage") => errors.required(&form, "percent").map(
            |p| json!({"kind": "percentage", "percent": p, "max_discount": errors.money(&form, "amount")}),
        ),
        Some(_) => {
            errors.push("offer", "is not an offer the form knows");
            None
        }
        None => None,
    };
    let days = errors
        .required(&form, "days")
        .and_then(|_| errors.int(&form, "days", 1..=3650));
    let stock = errors.int(&form, "stock", 1..=100_000_000);
    if let (Some(name), Some(offer), Some(days), true) = (name, offer, days, errors.is_empty()) {
        let doc = json!({
            "name": name,
            "offer": offer,
            "validity": {"kind": "days_after_issue", "days": days},
            "stackable": form.get("stackable").is_some(),
            "stock": stock,
        });
        match serde_json::from_value::<TemplateInput>(doc) {
            Ok(input) => match state.core.create_coupon_template(&op.actor, input).await {
                Ok(_) => return Ok(Redirect::to("/console/coupons?done=created").into_response()),
                Err(e) => {
                    errors = FieldErrors::from_core(
                        e,
                        &[
                            ("offer.min_spend", "min_spend"),
                            ("offer.percent", "percent"),
                            ("offer.max_discount", "amount"),
                            ("offer.amount", "amount"),
                            ("offer", "offer"),
                            ("validity", "days"),
                            ("stock", "stock"),
                            ("name", "name"),
                        ],
                    )?
                }
            },
            Err(e) => errors.push("percent", e.to_string()),
        }
    }
    render_page(
        &state,
        &op,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("create"),
        Some(&form),
        errors,
    )
    .await
}

/// Issues a template to the members of tiers or a tag, or to listed member IDs, as a job.
pub async fn issue_bulk(
    State(state): State<ConsoleState>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::CouponsIssue)?;
    let mut errors = FieldErrors::default();
    let template = errors.required(&form, "template_id");
    let tiers: Vec<String> = form
        .all("tiers")
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let tag = form.get("tag").map(str::to_owned);
    let mut member_ids = Vec::new();
    for (i, raw) in form
        .get("member_ids")
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        match raw.parse::<MemberId>() {
            Ok(id) => member_ids.push(id),
            Err(_) => errors.push(
                "member_ids",
                format!("entry {} ({raw}) is not a member ID", i + 1),
            ),
        }
    }
    let segment = (!tiers.is_empty() || tag.is_some()).then(|| SegmentFilter {
        tiers: (!tiers.is_empty()).then_some(tiers),
        tags: tag.map(|t| vec![t]),
        ..SegmentFilter::default()
    });
    if segment.is_none() && member_ids.is_empty() && errors.is_empty() {
        errors.push("member_ids", "choose tiers or a tag, or list member IDs");
    }
    if let (Some(template), true) = (template, errors.is_empty()) {
        let input = BulkIssueInput {
            member_ids,
            segment,
            reference: format!("console-{}", form.get("nonce").unwrap_or_default()),
        };
        match state.core.issue_coupons_bulk(&op.actor, template, input).await {
            Ok((job, _)) => {
                return Ok(Redirect::to(&format!("/console/coupons/jobs/{}", job.id)).into_response())
            }
            Err(e) => {
                errors = FieldErrors::from_core(
                    e,
                    &[
                        ("member_ids", "member_ids"),
                        ("segment", "tiers"),
                        ("template_id", "template_id"),
                        ("reference", "_form"),
                    ],
                )?
            }
        }
    }
    render_page(
        &state,
        &op,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("bulk"),
        Some(&form),
        errors,
    )
    .await
}

/// A bulk issue's progress; the page refreshes itself until the job is finished.
pub async fn job(
    State(state): State<ConsoleState>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    op.require_page("/console/coupons")?;
    let job = state.core.bulk_job(&op.actor, &id).await?;
    let base = op.context("coupons");
    Ok(render::page(
        StatusCode::OK,
        "job.html",
        context! { job => job, ..base },
    ))
}
