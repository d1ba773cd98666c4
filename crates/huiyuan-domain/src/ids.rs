//! Prefixed, time-ordered identifiers (`mem_01J…`): readable in logs, typed in code, and
//! sortable, so cursor pagination can use them directly.

use std::fmt;
use std::str::FromStr;

use crate::ValidationError;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new identifier whose ULID part starts with the given Unix time in milliseconds.
            pub fn generate(unix_ms: u64, random: u128) -> Self {
                let ulid = ulid::Ulid::from_parts(unix_ms, random);
                Self(format!("{}_{}", $prefix, ulid))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s
                    .strip_prefix($prefix)
                    .and_then(|r| r.strip_prefix('_'))
                    .ok_or_else(|| ValidationError::field("id", format!("must start with `{}_`", $prefix)))?;
                ulid::Ulid::from_string(rest)
                    .map_err(|_| ValidationError::field("id", "is not a valid identifier"))?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9A-HJKMNP-TV-Z]{26}$")))
                    .examples([serde_json::json!(concat!($prefix, "_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9"))])
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(
    /// A brand (tenant): every row belongs to exactly one.
    BrandId, "brd"
);
prefixed_id!(
    /// A physical or online store of a brand.
    StoreId, "sto"
);
prefixed_id!(
    /// A member; stable across every channel, and redirected after a merge.
    MemberId, "mem"
);
prefixed_id!(
    /// A console operator.
    OperatorId, "opr"
);
prefixed_id!(
    /// An API key (the identifier, never the secret).
    ApiKeyId, "key"
);
prefixed_id!(
    /// An entry of the audit log.
    AuditEventId, "aud"
);
prefixed_id!(
    /// A recorded purchase (the brand's own order number is kept beside it).
    PurchaseId, "pur"
);
prefixed_id!(
    /// A lot: points earned together, with their own maturity and expiry.
    LotId, "lot"
);
prefixed_id!(
    /// An entry of the points ledger.
    EntryId, "ent"
);
prefixed_id!(
    /// A domain event in the outbox.
    EventId, "evt"
);
prefixed_id!(
    /// A change of a member's tier.
    TierChangeId, "tch"
);
prefixed_id!(
    /// A coupon template: an offer and its rules.
    CouponTemplateId, "ctp"
);
prefixed_id!(
    /// One issued coupon (its code is what the member shows).
    CouponId, "cpn"
);
prefixed_id!(
    /// An entry of a member's wallet ledger.
    WalletEntryId, "wle"
);
prefixed_id!(
    /// A background bulk operation.
    BulkJobId, "blk"
);
prefixed_id!(
    /// A pool of partner codes (異業聯盟).
    PartnerPoolId, "ptp"
);
prefixed_id!(
    /// One term of a paid membership plan.
    MembershipId, "mbr"
);
prefixed_id!(
    /// One use of a benefit (a discount at the till, a perk, a partner code).
    BenefitUseId, "bfu"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_wrong_prefix() {
        let id = MemberId::generate(1_700_000_000_000, 42);
        let parsed: MemberId = id.as_str().parse().unwrap();
        assert_eq!(parsed, id);
        assert!(id.as_str().replace("mem_", "brd_").parse::<MemberId>().is_err());
        assert!("mem_not-a-ulid".parse::<MemberId>().is_err());
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = MemberId::generate(1_000, u128::MAX);
        let b = MemberId::generate(1_001, 0);
        assert!(a < b);
    }
}
