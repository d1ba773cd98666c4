//! The drivers beside the product, kept out of the server's code: the purchase and till
//! benchmarks ([`bench`]) and the load generator and crash test ([`reliability`]). The binary
//! reaches them as `huiyuan bench …`; `bench/*.sh` run them, and `docs/benchmarks.md` and
//! `docs/reliability.md` hold their figures.

pub mod bench;
pub mod reliability;

/// Any error, for drivers that only report it.
pub type AnyError = Box<dyn std::error::Error + Send + Sync>;
