//! Member search and the member 360 page with its actions (adjust points, issue a coupon,
//! sign-in link for the member's own pages, merge, erase).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use huiyuan_core::members::MemberQuery;
use huiyuan_core::CoreError;
use huiyuan_core::Page;
use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::MemberId;
use huiyuan_domain::loyalty::purchase::AdjustmentInput;
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::forms::{looks_like_phone, mask_phone, FieldErrors, Form};
use crate::render;
use crate::session::{Operator, PageError, Posted};
use crate::ConsoleState;

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    q: Option<String>,
    tag: Option<String>,
}

/// What a search box entry most likely is.
enum Lookup {
    Id(MemberId),
    Phone(String),
    Digits(String),
    Name(String),
}

fn classify(q: &str) -> Lookup {
    let compact: String = q.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if let Ok(id) = q.parse::<MemberId>() {
        return Lookup::Id(id);
    }
    if looks_like_phone(&compact) {
        return Lookup::Phone(compact);
    }
    if !compact.is_empty() && compact.bytes().all(|b| b.is_ascii_digit()) {
        return Lookup::Digits(compact);
    }
    Lookup::Name(q.to_owned())
}

pub async fn search(
    State(state): State<ConsoleState>,
    op: Operator,
    Query(sq): Query<SearchQuery>,
) -> Result<Response, PageError> {
    op.require_page("/console/members")?;
    let q = sq.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let tag = sq.tag.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let mut query = MemberQuery {
        tag: tag.map(str::to_owned),
        ..MemberQuery::default()
    };
    let mut errors = FieldErrors::default();
    match q.map(classify) {
        Some(Lookup::Id(id)) => return Ok(Redirect::to(&format!("/console/members/{id}")).into_response()),
        Some(Lookup::Phone(p)) => query.phone = Some(p),
        Some(Lookup::Digits(d)) => {
            // A member code shown by the member (verifying uses it up, as at the till), else a card.
            if op.actor.may(Permission::CodesVerify) {
                if let Ok(found) = state.core.verify_code(&op.actor, &d).await {
                    return Ok(Redirect::to(&format!("/console/members/{}", found.member.id)).into_response());
                }
            }
            query.card_number = Some(d);
        }
        Some(Lookup::Name(n)) => query.name_prefix = Some(n),
        None => {}
    }
    let members = match state
        .core
        .search_members(&op.actor, &query, &Page::first(50))
        .await
    {
        Ok(m) => m,
        Err(e) => {
            errors.add_core(
                e,
                &[
                    ("phone", "q"),
                    ("card_number", "q"),
                    ("name_prefix", "q"),
                    ("tag", "tag"),
                ],
            )?;
            Vec::new()
        }
    };
    // A phone typed into the search is not written back into the page in clear.
    let (shown_q, searched_for) = match q {
        Some(q) if looks_like_phone(q) => (None, Some(mask_phone(q))),
        other => (other, other.map(str::to_owned)),
    };
    let base = op.context("members");
    Ok(render::page(
        errors.status(),
        "members.html",
        context! {
            members => members,
            searched => q.is_some() || tag.is_some(),
            searched_for => searched_for,
            values => context! { q => shown_q, tag => tag },
            errors => errors.0,
            ..base,
        },
    ))
}

fn member_id(id: &str) -> Result<MemberId, PageError> {
    id.parse()
        .map_err(|_| PageError::Core(CoreError::NotFound("member")))
}

/// A section the operator's role may not read is left out rather than failing the page.
fn optional<T>(r: Result<T, CoreError>) -> Result<Option<T>, PageError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(CoreError::Forbidden { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a member 360 page shows besides the forms; `reveal` asks for personal data in clear.
async fn member_360(
    state: &ConsoleState,
    op: &Operator,
    id: &MemberId,
    reveal: bool,
) -> Result<minijinja::Value, PageError> {
    let core = &state.core;
    let a = &op.actor;
    let member = core.get_member(a, id, reveal).await?;
    let page = Page::first(20);
    let balance = optional(core.points_balance(a, id).await)?;
    let statement = optional(core.points_statement(a, id, &page).await)?.unwrap_or_default();
    let coupons = optional(core.member_coupons(a, id, None, &page).await)?.unwrap_or_default();
    let wallet = optional(core.wallet_balance(a, id).await)?;
    let wallet_entries = optional(core.wallet_statement(a, id, &Page::first(10)).await)?.unwrap_or_default();
    let purchases = optional(core.list_member_purchases(a, id, &Page::first(10)).await)?.unwrap_or_default();
    let tiers = optional(core.tier_history(a, id).await)?.unwrap_or_default();
    let insights = if a.may(Permission::AnalyticsRead) {
        optional(core.member_insights(a, id).await)?
    } else {
        None
    };
    let templates = if a.may(Permission::CouponsIssue) {
        core.list_coupon_templates(a, &Page::first(100))
            .await?
            .into_iter()
            .filter(|t| t.status == huiyuan_domain::commerce::coupons::TemplateStatus::Active)
            .collect()
    } else {
        Vec::new()
    };
    let timeline = timeline(&statement, &purchases, &coupons, &tiers);
    Ok(context! {
        member => member,
        balance => balance,
        statement => statement,
        coupons => coupons,
        wallet => wallet,
        wallet_entries => wallet_entries,
        purchases => purchases,
        tiers => tiers,
        insights => insights,
        templates => templates,
        timeline => timeline,
    })
}

/// One list of what happened to the member, newest first.
fn timeline(
    statement: &[huiyuan_core::loyalty::views::EntryView],
    purchases: &[huiyuan_core::loyalty::views::PurchaseView],
    coupons: &[huiyuan_core::commerce::coupons::CouponView],
    tiers: &[huiyuan_core::loyalty::views::TierChangeView],
) -> Vec<Value> {
    let rfc = huiyuan_core::views::rfc3339;
    let mut events: Vec<Value> = Vec::new();
    for e in statement {
        events.push(json!({"at": rfc(e.created_at), "kind": "points", "what": e.kind,
            "detail": e.available_delta + e.pending_delta - e.debt_delta}));
    }
    for p in purchases {
        events.push(
            json!({"at": rfc(p.occurred_at), "kind": "purchase", "what": p.order_id, "money": p.paid_amount}),
        );
    }
    for c in coupons {
        events.push(json!({"at": rfc(c.issued_at), "kind": "coupon", "what": c.name, "detail": "issued"}));
        if let Some(at) = c.redeemed_at {
            events.push(json!({"at": rfc(at), "kind": "coupon", "what": c.name, "detail": "redeemed"}));
        }
    }
    for t in tiers {
        events.push(json!({"at": rfc(t.created_at), "kind": "tier", "what": t.to_tier, "detail": t.reason}));
    }
    events.sort_by(|a, b| b["at"].as_str().cmp(&a["at"].as_str()));
    events.truncate(30);
    events
}

async fn render_member(
    state: &ConsoleState,
    op: &Operator,
    id: &MemberId,
    reveal: bool,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, PageError> {
    let data = member_360(state, op, id, reveal).await?;
    let base = op.context("members");
    Ok(render::page(
        status,
        "member.html",
        context! { ..base, ..data, ..extra },
    ))
}

pub async fn show(
    State(state): State<ConsoleState>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    op.require_page("/console/members")?;
    let id = member_id(&id)?;
    render_member(&state, &op, &id, false, StatusCode::OK, context! {}).await
}

/// Shows personal data in clear to a role that may see it; the core audits each reveal.
pub async fn reveal(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { op, .. }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::PiiReveal)?;
    let id = member_id(&id)?;
    render_member(&state, &op, &id, true, StatusCode::OK, context! {}).await
}

/// After a failed action: the page again, the form's values and errors in place.
async fn refused(
    state: &ConsoleState,
    op: &Operator,
    id: &MemberId,
    form_name: &str,
    form: &Form,
    errors: FieldErrors,
) -> Result<Response, PageError> {
    let extra = context! {
        failed => form_name,
        values => form.values(),
        errors => errors.0,
    };
    render_member(state, op, id, false, StatusCode::UNPROCESSABLE_ENTITY, extra).await
}

fn done(id: &MemberId, notice: &str) -> Response {
    Redirect::to(&format!("/console/members/{id}?done={notice}")).into_response()
}

pub async fn adjust(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::PointsAdjust)?;
    let id = member_id(&id)?;
    let mut errors = FieldErrors::default();
    let points = errors
        .required(&form, "points")
        .and_then(|_| errors.int(&form, "points", -1_000_000_000..=1_000_000_000));
    let reason = errors.required(&form, "reason");
    if let (Some(points), Some(reason), true) = (points, reason, errors.is_empty()) {
        let input = AdjustmentInput {
            points,
            reason: reason.to_owned(),
            reference: format!("console-{}", form.get("nonce").unwrap_or_default()),
        };
        match state.core.adjust_points(&op.actor, &id, input).await {
            Ok(_) => return Ok(done(&id, "adjusted")),
            Err(e) => {
                errors = FieldErrors::from_core(
                    e,
                    &[("points", "points"), ("reason", "reason"), ("reference", "_form")],
                )?
            }
        }
    }
    refused(&state, &op, &id, "adjust", &form, errors).await
}

pub async fn issue_coupon(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::CouponsIssue)?;
    let id = member_id(&id)?;
    let mut errors = FieldErrors::default();
    if let Some(template) = errors.required(&form, "template_id") {
        let input = huiyuan_core::commerce::coupons::IssueInput {
            template_id: template.to_owned(),
            reference: format!("console-{}", form.get("nonce").unwrap_or_default()),
        };
        match state.core.issue_coupon(&op.actor, &id, input).await {
            Ok(_) => return Ok(done(&id, "issued")),
            Err(e) => {
                errors = FieldErrors::from_core(e, &[("template_id", "template_id"), ("reference", "_form")])?
            }
        }
    }
    refused(&state, &op, &id, "coupon", &form, errors).await
}

pub async fn sign_in_link(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { op, .. }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::MembersUpdate)?;
    let id = member_id(&id)?;
    let (token, expires_at) = state.core.member_sign_in_link(&op.actor, &id).await?;
    let link = format!("/m/sign-in?token={token}");
    let extra = context! { link => link, link_expires => huiyuan_core::views::rfc3339(expires_at) };
    render_member(&state, &op, &id, false, StatusCode::OK, extra).await
}

/// Folds another member (a duplicate) into this one: identities, points, coupons and wallet move
/// here and the other ID redirects to this one.
pub async fn merge(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::MembersMerge)?;
    let id = member_id(&id)?;
    let mut errors = FieldErrors::default();
    let other = errors
        .required(&form, "merge_from")
        .and_then(|m| match m.parse::<MemberId>() {
            Ok(m) => Some(m),
            Err(_) => {
                errors.push("merge_from", "is not a member ID");
                None
            }
        });
    if let (Some(other), true) = (&other, form.get("confirm").is_some()) {
        match state.core.merge_members(&op.actor, &id, other).await {
            Ok(_) => return Ok(done(&id, "merged")),
            Err(CoreError::NotFound(_)) => errors.push("merge_from", "no such member"),
            Err(e) => {
                errors = FieldErrors::from_core(e, &[("merge_from", "merge_from"), ("merged", "merge_from")])?
            }
        }
    } else if other.is_some() {
        errors.push("confirm", "tick to confirm");
    }
    refused(&state, &op, &id, "merge", &form, errors).await
}

/// Erases the member's personal data (a PIPL / GDPR request); aggregates are kept.
pub async fn erase(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::MembersErase)?;
    let id = member_id(&id)?;
    if form.get("confirm").is_none() {
        let mut errors = FieldErrors::default();
        errors.push("erase_confirm", "tick to confirm");
        return refused(&state, &op, &id, "erase", &form, errors).await;
    }
    state.core.erase_member(&op.actor, &id).await?;
    Ok(done(&id, "erased"))
}
