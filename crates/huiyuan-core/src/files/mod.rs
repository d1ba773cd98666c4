//! Moving data in and out in bulk: CSV imports from the systems a brand leaves behind, and
//! exports of members, purchases, the ledger, coupons and model results as CSV or Parquet.

pub mod export;
pub mod import;
pub mod import_jobs;
pub mod table;
