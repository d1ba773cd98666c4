//! The Damm check digit. Written by hand because it is a 10×10 table and a loop, and the crates
//! that offer it are unmaintained; it detects every single-digit error and every adjacent
//! transposition, which is what a clerk typing a member code gets wrong.

const TABLE: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// The check digit for a string of ASCII digits, or `None` if it holds anything else.
pub fn damm_digit(digits: &str) -> Option<u8> {
    let mut interim = 0u8;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        interim = TABLE[interim as usize][(b - b'0') as usize];
    }
    Some(interim)
}

/// True when the last digit is the Damm check digit of the ones before it.
pub fn damm_valid(with_check: &str) -> bool {
    !with_check.is_empty() && damm_digit(with_check) == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vector() {
        assert_eq!(damm_digit("572"), Some(4));
        assert!(damm_valid("5724"));
        assert!(!damm_valid("5725"));
    }

    proptest! {
        #[test]
        fn detects_every_single_digit_change(s in "[0-9]{6,20}", pos in 0usize..20, delta in 1u8..10) {
            let check = damm_digit(&s).unwrap();
            let full = format!("{s}{check}");
            prop_assert!(damm_valid(&full));
            let pos = pos % full.len();
            let mut bytes = full.into_bytes();
            bytes[pos] = b'0' + ((bytes[pos] - b'0' + delta) % 10);
            prop_assert!(!damm_valid(std::str::from_utf8(&bytes).unwrap()));
        }

        #[test]
        fn detects_adjacent_transpositions(s in "[0-9]{6,20}", pos in 0usize..20) {
            let full = format!("{s}{}", damm_digit(&s).unwrap());
            let pos = pos % (full.len() - 1);
            let mut bytes = full.into_bytes();
            prop_assume!(bytes[pos] != bytes[pos + 1]);
            bytes.swap(pos, pos + 1);
            prop_assert!(!damm_valid(std::str::from_utf8(&bytes).unwrap()));
        }
    }
}
