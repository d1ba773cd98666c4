//! The till: identify a member by code or phone (enrolling an unknown phone when asked), build
//! a basket, quote it (tier discount, coupons, points, wallet), commit the sale, refund it.
//! The basket travels in the form, so a reload never loses it and nothing is held on the server
//! between steps; the order ID is fixed when the basket starts, so a double tap commits once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use huiyuan_core::commerce::checkout::SaleRefundInput;
use huiyuan_core::members::TillIdentifyInput;
use huiyuan_core::Page;
use huiyuan_domain::access::Permission;
use huiyuan_domain::commerce::checkout::CheckoutInput;
use huiyuan_domain::ids::{MemberId, StoreId};
use huiyuan_domain::loyalty::purchase::LineInput;
use huiyuan_domain::member::Channel;
use minijinja::context;

use crate::forms::{FieldErrors, Form};
use crate::render;
use crate::session::{Operator, PageError, Posted};
use crate::ConsoleState;

/// Basket rows the form offers.
const ROWS: usize = 5;

async fn render_till(
    state: &ConsoleState,
    op: &Operator,
    status: StatusCode,
    form: &Form,
    errors: FieldErrors,
    extra: minijinja::Value,
) -> Result<Response, PageError> {
    let stores = state.core.list_stores(&op.actor, &Page::first(200)).await?;
    let mut values = form.values();
    values.remove("action");
    // A phone typed to identify the member is not written back into the page in clear.
    if values.get("q").is_some_and(|q| crate::forms::looks_like_phone(q)) {
        values.remove("q");
    }
    // A new basket gets its order ID once; every later step keeps it.
    values.entry("order_id".into()).or_insert_with(|| {
        format!(
            "T{}",
            huiyuan_core::crypto::random_token(9).replace(['-', '_'], "0")
        )
    });
    let rows: Vec<minijinja::Value> = (0..ROWS)
        .map(|i| {
            let get = |name: &str| form.all(name).get(i).map(|s| s.to_string()).unwrap_or_default();
            context! { sku => get("sku"), category => get("category"), quantity => get("quantity"), amount => get("amount") }
        })
        .collect();
    let base = op.context("till");
    Ok(render::page(
        status,
        "till.html",
        context! { stores => stores, values => values, rows => rows, errors => errors.0, ..context! { ..extra, ..base } },
    ))
}

/// The till again with the form as typed and why it was refused.
async fn refused(
    state: &ConsoleState,
    op: &Operator,
    form: &Form,
    errors: FieldErrors,
) -> Result<Response, PageError> {
    render_till(
        state,
        op,
        StatusCode::UNPROCESSABLE_ENTITY,
        form,
        errors,
        context! {},
    )
    .await
}

pub async fn show(State(state): State<ConsoleState>, op: Operator) -> Result<Response, PageError> {
    op.require_page("/console/till")?;
    render_till(
        &state,
        &op,
        StatusCode::OK,
        &Form::default(),
        FieldErrors::default(),
        context! {},
    )
    .await
}

fn store_id(form: &Form, errors: &mut FieldErrors) -> Option<StoreId> {
    let s = form.get("store_id")?;
    match s.parse() {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push("store_id", "is not a store");
            None
        }
    }
}

/// The basket's lines; amounts typed per line as money (the line's total).
fn basket(form: &Form, errors: &mut FieldErrors) -> Vec<LineInput> {
    let skus = form.all("sku");
    let categories = form.all("category");
    let quantities = form.all("quantity");
    let amounts = form.all("amount");
    let mut lines = Vec::new();
    for (i, sku) in skus.iter().enumerate() {
        let amount = amounts.get(i).copied().unwrap_or_default();
        if sku.is_empty() && amount.is_empty() {
            continue;
        }
        let field = |name: &str| format!("{name}[{i}]");
        if sku.is_empty() {
            errors.push(&field("sku"), "is required");
        }
        let quantity = match quantities
            .get(i)
            .copied()
            .filter(|q| !q.is_empty())
            .unwrap_or("1")
            .parse::<i64>()
        {
            Ok(q) if (1..=9999).contains(&q) => q,
            _ => {
                errors.push(&field("quantity"), "must be a whole number from 1 to 9999");
                continue;
            }
        };
        let amount = match huiyuan_domain::money::parse_minor_units(amount.as_bytes()) {
            Some(a) if a > 0 => a,
            _ => {
                errors.push(&field("amount"), "must be an amount such as 12.50");
                continue;
            }
        };
        lines.push(LineInput {
            sku: sku.to_string(),
            category: categories.get(i).filter(|c| !c.is_empty()).map(|c| c.to_string()),
            quantity,
            amount,
            reward: false,
        });
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push("sku[0]", "add at least one item");
    }
    lines
}

/// The core's field names for a checkout, as the till form names them (basket lines are
/// renamed by [`checkout_errors`]).
const CHECKOUT_FIELDS: &[(&str, &str)] = &[
    ("points", "points"),
    ("wallet", "wallet"),
    ("coupons", "coupons"),
    ("store_id", "store_id"),
    ("phone", "q"),
    ("member_code", "q"),
    ("order_id", "_form"),
];

/// A refused checkout's errors next to their fields: `lines[2].amount` is the basket row's
/// `amount[2]`, and a refusal of the lines as a whole goes to the first row.
fn checkout_errors(e: huiyuan_core::CoreError) -> Result<FieldErrors, huiyuan_core::CoreError> {
    let placed = FieldErrors::from_core(e, CHECKOUT_FIELDS)?;
    let mut out = FieldErrors::default();
    for (field, reason) in placed.0 {
        let row = field
            .strip_prefix("lines[")
            .and_then(|rest| rest.split_once("]."))
            .map(|(i, name)| format!("{name}[{i}]"));
        let field = match row {
            Some(row) => row,
            None if field == "lines" || field.starts_with("lines[") => "sku[0]".to_owned(),
            None => field,
        };
        out.push(&field, reason);
    }
    Ok(out)
}

pub async fn submit(
    State(state): State<ConsoleState>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require_page("/console/till")?;
    let mut errors = FieldErrors::default();
    let store = store_id(&form, &mut errors);
    match form.get("action") {
        Some("identify") => {
            let q = errors.required(&form, "q");
            if let (Some(q), true) = (q, errors.is_empty()) {
                let digits: String = q.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
                let phone_like = crate::forms::looks_like_phone(&digits);
                let input = TillIdentifyInput {
                    code: (!phone_like).then(|| digits.clone()),
                    phone: phone_like.then_some(digits),
                    card_number: None,
                    store_id: store.clone(),
                    enrol_if_unknown: Some(
                        form.get("enrol").is_some() && op.actor.may(Permission::MembersEnrol),
                    ),
                };
                match state.core.till_identify(&op.actor, input).await {
                    Ok(found) => {
                        let mut kept = form.clone();
                        kept.set("member_id", found.member.id.as_str());
                        return customer(&state, &op, &kept, FieldErrors::default(), None, found.enrolled)
                            .await;
                    }
                    Err(e) => {
                        errors = FieldErrors::from_core(e, &[("code", "q"), ("phone", "q"), ("member", "q")])?
                    }
                }
            }
            refused(&state, &op, &form, errors).await
        }
        Some(action @ ("quote" | "commit")) => {
            let Some(member) = form.get("member_id").and_then(|m| m.parse::<MemberId>().ok()) else {
                errors.push("q", "identify the member first");
                return refused(&state, &op, &form, errors).await;
            };
            let lines = basket(&form, &mut errors);
            let points = errors.int(&form, "points", 0..=1_000_000_000).unwrap_or(0);
            let wallet = errors.money(&form, "wallet").unwrap_or(0);
            if !errors.is_empty() {
                return customer(&state, &op, &form, errors, None, false).await;
            }
            let input = CheckoutInput {
                order_id: form.get("order_id").map(str::to_owned),
                member_id: Some(member),
                phone: None,
                member_code: None,
                store_id: store,
                channel: Channel::Pos,
                lines,
                shipping: 0,
                coupons: form
                    .all("coupons")
                    .into_iter()
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                points,
                wallet,
            };
            if action == "commit" {
                match state.core.commit_sale(&op.actor, input).await {
                    Ok((sale, _)) => {
                        return Ok(
                            Redirect::to(&format!("/console/till/sales/{}", sale.order_id)).into_response()
                        )
                    }
                    Err(e) => errors = checkout_errors(e)?,
                }
                return customer(&state, &op, &form, errors, None, false).await;
            }
            match state.core.quote(&op.actor, input).await {
                Ok(q) => customer(&state, &op, &form, errors, Some(q), false).await,
                Err(e) => {
                    let errors = checkout_errors(e)?;
                    customer(&state, &op, &form, errors, None, false).await
                }
            }
        }
        _ => render_till(&state, &op, StatusCode::OK, &Form::default(), errors, context! {}).await,
    }
}

/// The identified member, the basket form and, once asked for, the quote.
async fn customer(
    state: &ConsoleState,
    op: &Operator,
    form: &Form,
    errors: FieldErrors,
    quote: Option<huiyuan_core::commerce::checkout::Quote>,
    enrolled: bool,
) -> Result<Response, PageError> {
    let member_id: MemberId = form
        .get("member_id")
        .and_then(|m| m.parse().ok())
        .ok_or(PageError::BadForm)?;
    let member = state.core.get_member(&op.actor, &member_id, false).await?;
    let balance = state.core.points_balance(&op.actor, &member_id).await?;
    let coupons = state
        .core
        .member_coupons(&op.actor, &member_id, Some("issued"), &Page::first(50))
        .await?;
    let wallet = state.core.wallet_balance(&op.actor, &member_id).await.ok();
    let status = errors.status();
    let chosen: Vec<String> = form.all("coupons").into_iter().map(str::to_owned).collect();
    render_till(
        state,
        op,
        status,
        form,
        errors,
        context! { member => member, balance => balance, coupons => coupons, wallet => wallet, quote => quote, chosen => chosen, enrolled => enrolled },
    )
    .await
}

pub async fn sale(
    State(state): State<ConsoleState>,
    op: Operator,
    Path(order): Path<String>,
) -> Result<Response, PageError> {
    op.require_page("/console/till")?;
    let sale = state.core.get_sale(&op.actor, &order).await?;
    let base = op.context("till");
    Ok(render::page(
        StatusCode::OK,
        "sale.html",
        context! { sale => sale, errors => context!{}, values => context!{}, ..base },
    ))
}

/// Refunds the whole sale: money, coupons, points and stored value go back.
pub async fn refund(
    State(state): State<ConsoleState>,
    Path(order): Path<String>,
    Posted { op, form }: Posted,
) -> Result<Response, PageError> {
    op.require(Permission::PurchasesRefund)?;
    let mut errors = FieldErrors::default();
    let reason = errors.required(&form, "reason");
    if let (Some(reason), true) = (reason, errors.is_empty()) {
        let input = SaleRefundInput {
            refund_id: format!("console-{}", form.get("nonce").unwrap_or_default()),
            reason: Some(reason.to_owned()),
        };
        match state.core.refund_sale(&op.actor, &order, input).await {
            Ok(_) => {
                return Ok(
                    Redirect::to(&format!("/console/till/sales/{order}?done=refunded")).into_response(),
                )
            }
            Err(e) => errors = FieldErrors::from_core(e, &[("reason", "reason"), ("refund_id", "_form")])?,
        }
    }
    let sale = state.core.get_sale(&op.actor, &order).await?;
    let base = op.context("till");
    Ok(render::page(
        StatusCode::UNPROCESSABLE_ENTITY,
        "sale.html",
        context! { sale => sale, errors => errors.0, values => form.values(), ..base },
    ))
}
