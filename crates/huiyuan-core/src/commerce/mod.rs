//! Coupons, the wallet (stored value) and the till's checkout: the use cases over
//! `huiyuan_domain::commerce` and the storage's `CommerceTx`.

pub mod benefits;
pub mod bulk;
pub mod checkout;
pub mod coupons;
pub mod partners;
pub mod plans;
pub mod wallet;

use std::sync::Arc;

/// A test's hook into the checkout: called by name between the steps of a commit (after the
/// coupons, the points, the wallet, the purchase, before the commit); an error it returns
/// aborts the commit there, as a crash would. Production builds never set one.
pub type FaultHook = Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;
