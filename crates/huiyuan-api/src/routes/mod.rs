//! Route handlers, one module per resource. Each handler is thin: extract, call one use case,
//! shape the response.

pub mod access;
pub mod analytics;
pub mod audit;
pub mod brand;
pub mod commerce;
pub mod files;
pub mod loyalty;
pub mod members;
pub mod ops;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::ApiError;
use huiyuan_core::ErrorCode;
use huiyuan_core::Page;

/// A page of results, newest first. Pass the last item's `id` as `starting_after` for the next.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    pub data: Vec<T>,
    pub has_more: bool,
}

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// The storage page for a request: one more than asked, to know whether there is more.
pub fn page(limit: Option<u32>, starting_after: Option<String>) -> Result<(Page, u32), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok((
        Page {
            limit: limit + 1,
            starting_after,
        },
        limit,
    ))
}

pub fn list<T: ToSchema>(mut data: Vec<T>, limit: u32) -> List<T> {
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    List { data, has_more }
}

/// Cursor parameters shared by list endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 100; 20 when not given.
    pub limit: Option<u32>,
    /// The `id` of the last item of the previous page.
    pub starting_after: Option<String>,
}
