//! Enums stored and sent as short snake_case words (a lot's status, a coupon's state): one
//! declaration gives the variants, their words, `as_str`, `parse` and `ALL`, so the word is
//! written in one place and compared nowhere else.

/// `coded! { /// doc \n pub enum LotStatus { Pending = "pending", … } }`
#[macro_export]
macro_rules! coded {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        // The OpenAPI schema reads the words from `rename_all`, not from each variant's
        // `rename` (whose literal comes through the macro), so the two must agree: the words
        // are the variants' names in snake_case.
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The word stored and sent for this variant.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }

            /// The variant a stored word names; `None` for a word this build does not know.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    /// The OpenAPI schema names each word as the variant in snake_case (`rename_all`), the
    /// store and the API as the declared word: the two must be the same for every coded enum.
    fn words_are_snake_case_names<T: std::fmt::Debug + Copy>(all: &[T], word: impl Fn(T) -> &'static str) {
        for &v in all {
            let name = format!("{v:?}");
            let mut snake = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(word(v), snake, "{name}");
        }
    }

    #[test]
    fn every_coded_word_matches_its_schema_name() {
        use crate::commerce::coupons::CouponStatus;
        use crate::commerce::plans::MembershipStatus;
        use crate::jobs::JobStatus;
        use crate::loyalty::ledger::LotStatus;
        words_are_snake_case_names(LotStatus::ALL, LotStatus::as_str);
        words_are_snake_case_names(CouponStatus::ALL, CouponStatus::as_str);
        words_are_snake_case_names(MembershipStatus::ALL, MembershipStatus::as_str);
        words_are_snake_case_names(JobStatus::ALL, JobStatus::as_str);
        use crate::commerce::checkout::SaleStatus;
        use crate::commerce::coupons::TemplateStatus;
        use crate::loyalty::purchase::PurchaseStatus;
        words_are_snake_case_names(SaleStatus::ALL, SaleStatus::as_str);
        words_are_snake_case_names(TemplateStatus::ALL, TemplateStatus::as_str);
        words_are_snake_case_names(PurchaseStatus::ALL, PurchaseStatus::as_str);
    }
}
