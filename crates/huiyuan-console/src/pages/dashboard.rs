//! The overview: the analytics KPIs for a date range, a store and a channel, with charts.

use axum::extract::{Query, State};
use axum::response::Response;
use huiyuan_analytics::kpi::Granularity;
use huiyuan_core::analytics::KpiQuery;
use huiyuan_core::Page;
use huiyuan_domain::member::Channel;
use minijinja::context;
use serde::Deserialize;

use crate::forms::FieldErrors;
use crate::render;
use crate::session::{Operator, PageError};
use crate::ConsoleState;

#[derive(Deserialize, Default)]
pub struct Filters {
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
    store: Option<String>,
    channel: Option<String>,
    /// Recompute now instead of showing figures up to a minute old.
    fresh: Option<String>,
}

pub const CHANNELS: &[(&str, Channel)] = &[
    ("app", Channel::App),
    ("mini_program", Channel::MiniProgram),
    ("web_shop", Channel::WebShop),
    ("pos", Channel::Pos),
];

pub async fn show(
    State(state): State<ConsoleState>,
    op: Operator,
    Query(f): Query<Filters>,
) -> Result<Response, PageError> {
    op.require_page("/console/dashboard")?;
    let mut errors = FieldErrors::default();
    let from = errors.date("from", f.from.as_deref());
    let to = errors.date("to", f.to.as_deref());
    if let (Some(a), Some(b)) = (from, to) {
        if a > b {
            errors.push("to", "must not be before the start");
        }
    }
    let granularity = match f.granularity.as_deref() {
        Some("week") => Granularity::Week,
        Some("month") => Granularity::Month,
        _ => Granularity::Day,
    };
    let stores = state.core.list_stores(&op.actor, &Page::first(200)).await?;
    let store_id = match f.store.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => match stores.iter().find(|st| st.id.as_str() == s) {
            Some(st) => Some(st.id.clone()),
            None => {
                errors.push("store", "is not a store of this brand");
                None
            }
        },
        None => None,
    };
    let channel = match f.channel.as_deref().filter(|s| !s.is_empty()) {
        Some(c) => match CHANNELS.iter().find(|(code, _)| *code == c) {
            Some((_, ch)) => Some(*ch),
            None => {
                errors.push("channel", "is not a channel");
                None
            }
        },
        None => None,
    };
    // Refused filters fall back to the default view (the last 30 days, every store and channel).
    let default_view = KpiQuery {
        from: None,
        to: None,
        granularity,
        store_id: None,
        channel: None,
    };
    let query = if errors.is_empty() {
        KpiQuery {
            from,
            to,
            granularity,
            store_id,
            channel,
        }
    } else {
        default_view.clone()
    };
    let fresh = f.fresh.is_some();
    let (kpis, computed_at) = match state.kpis.get(&state.core, &op.actor, query, fresh).await {
        Ok(k) => k,
        Err(e) => {
            errors.add_core(e, &[("from", "from"), ("to", "to")])?;
            state
                .kpis
                .get(&state.core, &op.actor, default_view, fresh)
                .await?
        }
    };
    let chart_data = kpis.to_string();
    let refresh_url = format!(
        "?{}",
        serde_urlencoded::to_string([
            ("from", f.from.as_deref().unwrap_or_default()),
            ("to", f.to.as_deref().unwrap_or_default()),
            ("granularity", f.granularity.as_deref().unwrap_or("day")),
            ("store", f.store.as_deref().unwrap_or_default()),
            ("channel", f.channel.as_deref().unwrap_or_default()),
            ("fresh", "1"),
        ])
        .unwrap_or_default()
    );
    let base = op.context("dashboard");
    Ok(render::page(
        errors.status(),
        "dashboard.html",
        context! {
            kpis => kpis.as_ref().clone(),
            chart_data => chart_data,
            computed_at => huiyuan_core::views::rfc3339(computed_at),
            refresh_url => refresh_url,
            stores => stores,
            channels => CHANNELS.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            values => context! {
                from => f.from, to => f.to,
                granularity => f.granularity.unwrap_or_else(|| "day".into()),
                store => f.store, channel => f.channel,
            },
            errors => errors.0,
            ..base,
        },
    ))
}
