//! Every stable `code` a problem response carries, in one table: its HTTP status and what it
//! means. Clients switch on these, so a code is added here (never spelled at a call site) and
//! never renamed; `docs/api.md` holds the table [`markdown_table`] writes, and a test keeps the
//! two in step.

/// Declares [`ErrorCode`] and its table from one list, so that a code, its status and its
/// meaning cannot drift apart.
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:literal, $meaning:literal;)*) => {
        /// A stable, machine-readable reason for a refusal (see the module's documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = $meaning]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as clients see it (`code` and `urn:huiyuan:problem:<code>`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status a problem with this code is sent with.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// What it means, in one line.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
    MalformedJson = "malformed_json", 400, "the body is not JSON (the detail gives line and column)";
    UnreadableBody = "unreadable_body", 400, "the body could not be read";
    InvalidIdempotencyKey = "invalid_idempotency_key", 400, "`Idempotency-Key` is not 1–255 printable ASCII characters";
    Unauthenticated = "unauthenticated", 401, "no valid API key or session";
    Forbidden = "forbidden", 403, "the caller's role lacks the permission";
    NotFound = "not_found", 404, "no such record in the caller's brand, or no such route";
    MethodNotAllowed = "method_not_allowed", 405, "the route does not take this method";
    PayloadTooLarge = "payload_too_large", 413, "the body is larger than the configured limit";
    UnsupportedMediaType = "unsupported_media_type", 415, "the body is not `application/json`";
    InvalidRequestBody = "invalid_request_body", 422, "a field has the wrong type, is missing or is unknown";
    InvalidQuery = "invalid_query", 422, "a query parameter is missing or malformed";
    ValidationFailed = "validation_failed", 422, "a field breaks a rule (`errors` names each)";
    RateLimited = "rate_limited", 429, "too many requests; wait for `Retry-After` seconds";
    // Races and retries.
    Conflict = "conflict", 409, "a concurrent request changed the same record; retry";
    ConcurrentUpdate = "concurrent_update", 409, "the record changed while it was being updated; retry";
    IdempotencyKeyInUse = "idempotency_key_in_use", 409, "a request with this `Idempotency-Key` is still running";
    IdempotencyKeyReused = "idempotency_key_reused", 409, "this `Idempotency-Key` was used for another request";
    SecretShownOnce = "secret_shown_once", 409, "a replay of a response that held a secret (a new API key, a member code): the secret was shown once and is not kept";
    ReferenceReused = "reference_reused", 409, "this reference was used for another request, or is in use right now";
    // Members.
    IdentityConflict = "identity_conflict", 409, "the identities given belong to different members";
    MemberMerged = "member_merged", 409, "the member was merged; use `merged_into`";
    MemberErased = "member_erased", 409, "the member's personal data was erased; nothing more can be done for them";
    // Member codes.
    CodeMalformed = "code_malformed", 422, "not a member code: wrong length or check digit";
    CodeForged = "code_forged", 422, "the QR signature does not verify with this brand's key";
    CodeUnknown = "code_unknown", 404, "no such member code";
    CodeExpired = "code_expired", 410, "the member code is older than 60 seconds";
    CodeAlreadyUsed = "code_already_used", 409, "the member code was used already (the detail says when and by which till)";
    // Brands and operators.
    SlugTaken = "slug_taken", 409, "another brand has this slug";
    StoreCodeTaken = "store_code_taken", 409, "another store of the brand has this code";
    UsernameTaken = "username_taken", 409, "another operator has this username";
    SelfLockout = "self_lockout", 409, "operators cannot disable themselves or give up their own admin role";
    // Points.
    NoProgramme = "no_programme", 409, "the brand has not published a programme yet";
    OrderIdReused = "order_id_reused", 409, "this order number was recorded for a different sale";
    OrderIdRace = "order_id_race", 409, "the same order was recorded at the same moment by another request; retry";
    AlreadyRefunded = "already_refunded", 409, "nothing of this is left to refund";
    RefundIdReused = "refund_id_reused", 409, "this refund ID was used for a different refund";
    UseCheckoutRefund = "use_checkout_refund", 409, "a till sale is refunded through `POST /v1/checkout/{order_id}/refund`";
    InsufficientPoints = "insufficient_points", 409, "the member has fewer points available than asked for";
    ActionNotRewarded = "action_not_rewarded", 409, "the programme gives no points for this action";
    ActionLimitReached = "action_limit_reached", 409, "the member reached the programme's limit for this action";
    TransfersDisabled = "transfers_disabled", 409, "the programme does not allow transfers between members";
    TransferTooSmall = "transfer_too_small", 409, "below the programme's smallest transfer";
    TransferLimitReached = "transfer_limit_reached", 409, "the member reached the programme's daily transfers";
    // Coupons, benefits, plans and the wallet.
    CouponUnknown = "coupon_unknown", 409, "no such coupon code in this brand";
    CouponNotYours = "coupon_not_yours", 409, "the coupon belongs to another member";
    CouponExpired = "coupon_expired", 409, "the coupon is outside its validity";
    CouponRedeemed = "coupon_redeemed", 409, "the coupon was redeemed already";
    CouponVoid = "coupon_void", 409, "the coupon was voided";
    CouponOutOfStock = "coupon_out_of_stock", 409, "the template has issued all the coupons it may";
    CouponLimitReached = "coupon_limit_reached", 409, "the member holds as many of this template as it allows";
    CouponNotYetValid = "coupon_not_yet_valid", 409, "the coupon's validity has not begun";
    CouponNotForStore = "coupon_not_for_store", 409, "the coupon is not valid at this store";
    CouponNotForChannel = "coupon_not_for_channel", 409, "the coupon is not valid on this channel";
    CouponNotForTier = "coupon_not_for_tier", 409, "the coupon is not valid for the member's tier";
    CouponMinSpend = "coupon_min_spend", 409, "the basket is below the coupon's minimum spend";
    CouponNoEligibleLines = "coupon_no_eligible_lines", 409, "no line of the basket is one the coupon applies to";
    CouponItemMissing = "coupon_item_missing", 409, "the basket lacks the item the coupon is for";
    CouponNoShipping = "coupon_no_shipping", 409, "a shipping coupon on a basket without shipping";
    CouponNotStackable = "coupon_not_stackable", 409, "the coupon cannot be combined with the others in the basket";
    TemplateArchived = "template_archived", 409, "the template is archived and issues no more coupons";
    PartnerCodesExhausted = "partner_codes_exhausted", 409, "the partner code pool has no code left";
    PerkNotAvailable = "perk_not_available", 409, "the member's tier and plans do not include this perk";
    NotRefundable = "not_refundable", 409, "the plan gives nothing back at this point of its term";
    WalletSpent = "wallet_spent", 409, "the top-up was spent, so less of it can be refunded";
    // Analytics and operations.
    AnalyticsUnavailable = "analytics_unavailable", 409, "there is not enough data for this report or model";
    Internal = "internal", 500, "an internal error (details only in the server log)";
    Unavailable = "unavailable", 503, "the database is unavailable; retry after `Retry-After` seconds";
    DatabaseUnreachable = "database_unreachable", 503, "readiness: the database does not answer";
    MigrationsPending = "migrations_pending", 503, "readiness: the database lacks migrations this build needs";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table as Markdown, the form `docs/api.md` holds.
pub fn markdown_table() -> String {
    let mut out = String::from("| code | status | meaning |\n|---|---|---|\n");
    for code in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.as_str(),
            code.status(),
            code.meaning()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_hold_the_code_table() {
        let doc = include_str!("../../../docs/api.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/api.md is out of date; paste in:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
            assert!((400..600).contains(&code.status()), "{s}");
            assert!(!code.meaning().is_empty(), "{s}");
        }
    }
}
