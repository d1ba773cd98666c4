//! Commerce at the till and online: coupons, stored value (the wallet) and the checkout that
//! prices a basket for a member and pays it with coupons, points, the wallet and money.

pub mod checkout;
pub mod coupons;
pub mod plans;
pub mod wallet;

/// Minor units as a major-unit amount with two decimals (`8000` → `80.00`), for messages.
pub fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", m / 100, m % 100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_reads_as_major_units() {
        assert_eq!(super::money(8_000), "80.00");
        assert_eq!(super::money(-5), "-0.05");
        assert_eq!(super::money(0), "0.00");
    }
}
