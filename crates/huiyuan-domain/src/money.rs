//! Money as people write it ("128.50", "-3", "+0.5") turned into integer minor units: the one
//! parser behind imports and the analytics files, so a float never touches an amount; and the
//! bound on any amount.

/// Largest amount accepted anywhere, in minor units (10 billion yuan).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Minor units of a decimal amount with at most two decimals; `None` for anything else
/// (empty, a third decimal, a thousands separator, an exponent, overflow).
pub fn parse_minor_units(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (whole, fraction) = match digits.iter().position(|&c| c == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &b""[..]),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.len() > 2 {
        return None;
    }
    let mut value: i64 = 0;
    for &c in whole {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    let mut cents = 0;
    for (i, &c) in fraction.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        cents += i64::from(c - b'0') * if i == 0 { 10 } else { 1 };
    }
    let v = value.checked_mul(100)?.checked_add(cents)?;
    Some(if negative { -v } else { v })
}

/// Minor units written back as a decimal with two places: the inverse of [`parse_minor_units`].
pub fn format_minor_units(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_as_written() {
        assert_eq!(parse_minor_units(b"128.5"), Some(12_850));
        assert_eq!(parse_minor_units(b"-3"), Some(-300));
        assert_eq!(parse_minor_units(b".05"), Some(5));
        for bad in [
            &b""[..],
            b"-",
            b".",
            b"1.234",
            b"1,000",
            b"1e3",
            b" 1",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_minor_units(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(v in -(i64::MAX / 100)..(i64::MAX / 100)) {
            prop_assert_eq!(parse_minor_units(format_minor_units(v).as_bytes()), Some(v));
        }

        #[test]
        fn any_bytes_never_panic(s in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = parse_minor_units(&s);
        }
    }
}
