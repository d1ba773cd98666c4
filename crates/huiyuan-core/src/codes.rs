//! Dynamic member codes (一碼通): an 18-digit code to type and a signed QR payload to scan,
//! valid for a minute, accepted once.
//!
//! QR payload: `HY1.<brand>.<member>.<nonce>.<expires unix s>.<Ed25519 signature>`. A till
//! with the brand's public key can check it offline; `verify` also checks it online and marks
//! it used, so a screenshot cannot be replayed at another till or node.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use huiyuan_domain::access::Permission;
use huiyuan_domain::check_digit::{damm_digit, damm_valid};
use huiyuan_domain::ids::{BrandId, MemberId};
use huiyuan_domain::member::MemberStatus;
use huiyuan_store::{MemberCodeRecord, Tx};
use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::crypto::random_token;
use crate::views::MemberView;
use crate::{Actor, CodeRejection, Core, CoreError, ErrorCode, Result};

const QR_VERSION: &str = "HY1";
/// Short codes are 17 random digits and a Damm check digit: ~56 bits, typed in one go.
const SHORT_CODE_DIGITS: usize = 17;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberCode {
    /// 18 digits to type at a till (the last is a check digit).
    pub code: String,
    /// The string to render as a QR code.
    pub qr_payload: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyCodeInput {
    /// The typed digits or the scanned QR payload.
    pub code: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifiedCode {
    pub member: MemberView,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub verified_at: OffsetDateTime,
}

impl Core {
    pub(crate) fn brand_code_key(&self, brand: &BrandId, sealed: &[u8]) -> Result<SigningKey> {
        let bytes = self.keys.open(&format!("brand-code-key:{brand}"), sealed)?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CoreError::Corrupt("brand code key".into()))?;
        Ok(SigningKey::from_bytes(&arr))
    }

    pub(crate) fn new_brand_code_key(&self, brand: &BrandId) -> Vec<u8> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        self.keys
            .seal(&format!("brand-code-key:{brand}"), &key.to_bytes())
    }

    async fn signing_key(&self, tx: &mut dyn Tx, brand: &BrandId) -> Result<SigningKey> {
        let b = tx.get_brand(brand).await?.ok_or(CoreError::NotFound("brand"))?;
        self.brand_code_key(brand, &b.code_key_ciphertext)
    }

    fn code_hash(&self, brand: &BrandId, digits: &str) -> Vec<u8> {
        self.keys.lookup_hash(&[brand.as_str(), "member-code", digits])
    }

    /// Issues a fresh code for a member of the caller's brand.
    pub async fn issue_code(&self, actor: &Actor, member: &MemberId) -> Result<MemberCode> {
        actor.require(Permission::CodesIssue)?;
        let brand = &actor.brand_id;
        let mut tx = self.storage.write().await?;
        let record = self.active_member(&mut *tx, brand, member, false).await?;
        if record.status != MemberStatus::Active {
            return Err(CoreError::conflict(
                ErrorCode::MemberErased,
                "an erased member has no member code",
            ));
        }
        let key = self.signing_key(&mut *tx, brand).await?;
        let expires_at = self.now() + self.config.member_code_ttl;
        let nonce = random_token(16);
        let mut digits: String = {
            let mut rng = rand::thread_rng();
            (0..SHORT_CODE_DIGITS)
                .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
                .collect()
        };
        digits.push(char::from(b'0' + damm_digit(&digits).unwrap_or(0)));
        let qr_payload = sign_qr(brand, member, &nonce, expires_at, &key);
        tx.insert_member_code(&MemberCodeRecord {
            brand_id: brand.clone(),
            nonce,
            code_hash: self.code_hash(brand, &digits),
            member_id: member.clone(),
            expires_at,
            used_at: None,
            used_by: None,
        })
        .await?;
        tx.commit().await?;
        Ok(MemberCode {
            code: digits,
            qr_payload,
            expires_at,
        })
    }

    /// Resolves a code to its member, once. A second use, an expired code, a code of another
    /// brand or any altered character is refused with the reason.
    pub async fn verify_code(&self, actor: &Actor, input: &str) -> Result<VerifiedCode> {
        actor.require(Permission::CodesVerify)?;
        let brand = &actor.brand_id;
        let input = input.trim();
        let now = self.now();
        let mut tx = self.storage.write().await?;
        let code = if input.starts_with(QR_VERSION) {
            let key = self.signing_key(&mut *tx, brand).await?;
            let nonce = check_qr(input, brand, &key, now)?;
            tx.find_member_code_by_nonce(brand, &nonce).await?
        } else {
            let digits: String = input
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect();
            if digits.len() != SHORT_CODE_DIGITS + 1 || !damm_valid(&digits) {
                return Err(CodeRejection::Malformed.into());
            }
            tx.find_member_code_by_hash(brand, &self.code_hash(brand, &digits))
                .await?
        };
        let code = code.ok_or(CodeRejection::Unknown)?;
        if let (Some(at), by) = (code.used_at, &code.used_by) {
            return Err(CodeRejection::AlreadyUsed {
                at,
                by: by.clone().unwrap_or_default(),
            }
            .into());
        }
        if code.expires_at <= now {
            return Err(CodeRejection::Expired { at: code.expires_at }.into());
        }
        let used_by = actor.label();
        if !tx.use_member_code(brand, &code.nonce, now, &used_by).await? {
            // Another till won the race a moment ago.
            return Err(CodeRejection::AlreadyUsed {
                at: now,
                by: "another till".into(),
            }
            .into());
        }
        let record = self
            .active_member(&mut *tx, brand, &code.member_id, false)
            .await?;
        let member = self.member_view(&mut *tx, &record, false).await?;
        tx.commit().await?;
        Ok(VerifiedCode {
            member,
            verified_at: now,
        })
    }
}

/// The QR payload of a code: its fields and the brand's signature over them.
fn sign_qr(
    brand: &BrandId,
    member: &MemberId,
    nonce: &str,
    expires_at: OffsetDateTime,
    key: &SigningKey,
) -> String {
    let signed = format!(
        "{QR_VERSION}.{brand}.{member}.{nonce}.{}",
        expires_at.unix_timestamp()
    );
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Checks a QR payload's form, brand, signature and expiry; returns its nonce.
fn check_qr(
    payload: &str,
    brand: &BrandId,
    key: &SigningKey,
    now: OffsetDateTime,
) -> Result<String, CodeRejection> {
    let parts: Vec<&str> = payload.split('.').collect();
    let [version, code_brand, _member, nonce, expires, signature] = parts.as_slice() else {
        return Err(CodeRejection::Malformed);
    };
    if *version != QR_VERSION {
        return Err(CodeRejection::Malformed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(CodeRejection::Forged)?;
    let signed = &payload[..payload.len() - parts[5].len() - 1];
    if *code_brand != brand.as_str() || key.verifying_key().verify(signed.as_bytes(), &signature).is_err() {
        return Err(CodeRejection::Forged);
    }
    let expires: i64 = expires.parse().map_err(|_| CodeRejection::Malformed)?;
    let expires_at = OffsetDateTime::from_unix_timestamp(expires).map_err(|_| CodeRejection::Malformed)?;
    if expires_at <= now {
        return Err(CodeRejection::Expired { at: expires_at });
    }
    Ok((*nonce).to_owned())
}

// Fuzz target (proptest; cargo-fuzz needs nightly): a till scans whatever is held up to it.
// Nothing panics, and nothing but the exact payload the brand signed is accepted. (Typed codes:
// that a wrong digit or a swap fails the check digit is proven in huiyuan_domain::check_digit.)
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn setup() -> (BrandId, MemberId, SigningKey, String) {
        let brand: BrandId = "brd_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9".parse().unwrap();
        let member: MemberId = "mem_01JD4ZQ7X8Y2K3M4N5P6Q7R8S9".parse().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let payload = sign_qr(&brand, &member, "n0nce", datetime!(2026-12-03 10:01 UTC), &key);
        (brand, member, key, payload)
    }

    const NOW: OffsetDateTime = datetime!(2026-12-03 10:00 UTC);

    #[test]
    fn the_signed_payload_is_accepted_until_it_expires() {
        let (brand, _, key, payload) = setup();
        assert_eq!(check_qr(&payload, &brand, &key, NOW), Ok("n0nce".to_owned()));
        let later = datetime!(2026-12-03 10:01 UTC);
        assert!(matches!(
            check_qr(&payload, &brand, &key, later),
            Err(CodeRejection::Expired { .. })
        ));
        let other_key = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            check_qr(&payload, &brand, &other_key, NOW),
            Err(CodeRejection::Forged)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn arbitrary_input_is_refused_without_panicking(input in "\\PC{0,200}") {
            let (brand, _, key, _) = setup();
            prop_assert!(check_qr(&input, &brand, &key, NOW).is_err());
            let prefixed = format!("HY1.{input}");
            prop_assert!(check_qr(&prefixed, &brand, &key, NOW).is_err());
        }

        /// Any one character changed, inserted or removed makes the payload invalid.
        #[test]
        fn any_edit_of_a_payload_is_refused(at in any::<prop::sample::Index>(), c in any::<char>(), op in 0u8..3) {
            let (brand, _, key, payload) = setup();
            let mut chars: Vec<char> = payload.chars().collect();
            let i = at.index(chars.len());
            match op {
                0 => chars[i] = c,
                1 => chars.insert(i, c),
                _ => { chars.remove(i); }
            }
            let edited: String = chars.into_iter().collect();
            prop_assume!(edited != payload);
            prop_assert!(check_qr(&edited, &brand, &key, NOW).is_err(), "{edited} accepted");
        }
    }
}
