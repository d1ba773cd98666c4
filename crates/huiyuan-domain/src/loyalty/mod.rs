//! The loyalty engine's rules: the programme document, earning, the ledger, tiers.

pub mod earning;
pub mod ledger;
pub mod programme;
pub mod purchase;
pub mod tiers;
