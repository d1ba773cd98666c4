//! The audit log, newest first, filtered by action, actor or target, paged with a cursor.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use huiyuan_core::{AuditFilter, Page};
use minijinja::context;
use serde::Deserialize;

use crate::render;
use crate::session::{Operator, PageError};
use crate::ConsoleState;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    after: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub async fn show(
    State(state): State<ConsoleState>,
    op: Operator,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    op.require_page("/console/audit")?;
    let filter = AuditFilter {
        target_id: given(&q.target),
        actor_id: given(&q.actor),
        action: given(&q.action),
    };
    let page = Page {
        limit: PAGE_SIZE,
        starting_after: given(&q.after),
    };
    let entries = state.core.list_audit(&op.actor, &filter, &page).await?;
    let next = (entries.len() == PAGE_SIZE as usize)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    let entries: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["diff_text"] = serde_json::Value::String(e.diff.to_string());
            v
        })
        .collect();
    let base = op.context("audit");
    Ok(render::page(
        StatusCode::OK,
        "audit.html",
        context! {
            entries => entries,
            next => next,
            values => context! { action => q.action, actor => q.actor, target => q.target },
            ..base,
        },
    ))
}
