//! The member's own pages (`/m/…`): one-time sign-in links an operator hands to a member, and
//! the member session such a link opens.
//!
//! Both are signed tokens (HMAC with a key derived from the master key), so no table is needed;
//! a link is made single-use by claiming its nonce as an idempotency key, which both backends
//! already store with a unique constraint.

use base64::Engine;
use huiyuan_domain::access::Permission;
use huiyuan_domain::ids::{BrandId, MemberId};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::crypto::random_token;
use crate::{Actor, Core, CoreError, Result};

const LINK_PREFIX: &str = "ml1";
/// `ms2.<brand>.<member>.<expires>.<nonce>.<mac>`: the nonce names the session, so that
/// signing out can end it (`ms1` sessions, which had none, are no longer accepted).
const SESSION_PREFIX: &str = "ms2";

/// How long a sign-in link may wait before it is used.
pub const LINK_TTL: Duration = Duration::minutes(30);
/// How long a member stays signed in.
pub const MEMBER_SESSION_TTL: Duration = Duration::hours(12);

/// Why a sign-in link is refused, as [`CoreError::Unauthenticated`] carries it, so pages can
/// tell the member which it was.
pub const LINK_INVALID: &str = "this sign-in link is not valid";
pub const LINK_EXPIRED: &str = "this sign-in link has expired";
pub const LINK_USED: &str = "this sign-in link was already used";

/// A signed-in member: the brand's system actor reads on the member's behalf, and only
/// ever the member named here.
#[derive(Debug, Clone)]
pub struct MemberSession {
    pub actor: Actor,
    pub member: MemberId,
    /// The member as read when the session was checked (masked).
    pub profile: crate::views::MemberView,
    pub expires_at: OffsetDateTime,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The token's fields and its MAC, or `None` when it is not one of ours.
fn split_token<'t>(token: &'t str, prefix: &str, fields: usize) -> Option<(Vec<&'t str>, &'t str)> {
    let mut parts: Vec<&str> = token.split('.').collect();
    if parts.len() != fields + 2 || parts[0] != prefix {
        return None;
    }
    let mac = parts.pop()?;
    Some((parts, mac))
}

impl Core {
    fn portal_mac(&self, parts: &[&str]) -> String {
        b64(&self.keys.lookup_hash(parts))
    }

    fn check_mac(&self, parts: &[&str], mac: &str) -> bool {
        bool::from(self.portal_mac(parts).as_bytes().ct_eq(mac.as_bytes()))
    }

    /// A one-time link token for a member's own pages; audited.
    pub async fn member_sign_in_link(
        &self,
        actor: &Actor,
        member: &MemberId,
    ) -> Result<(String, OffsetDateTime)> {
        actor.require(Permission::MembersUpdate)?;
        // The member must exist in the caller's brand.
        self.get_member(actor, member, false).await?;
        let expires_at = self.now() + LINK_TTL;
        let exp = expires_at.unix_timestamp().to_string();
        let nonce = random_token(12);
        let parts = [
            LINK_PREFIX,
            actor.brand_id.as_str(),
            member.as_str(),
            &exp,
            &nonce,
        ];
        let token = format!("{}.{}", parts.join("."), self.portal_mac(&parts));
        let mut tx = self.storage.write().await?;
        self.audit(
            &mut *tx,
            actor,
            "member.sign_in_link_created",
            ("member", member.as_str()),
            json!({ "expires_at": crate::views::rfc3339(expires_at) }),
        )
        .await?;
        tx.commit().await?;
        Ok((token, expires_at))
    }

    /// Uses a sign-in link (once) and returns a member session token.
    pub async fn redeem_member_link(&self, token: &str) -> Result<String> {
        let invalid = || CoreError::Unauthenticated(LINK_INVALID);
        let (parts, mac) = split_token(token, LINK_PREFIX, 4).ok_or_else(invalid)?;
        if !self.check_mac(&parts, mac) {
            return Err(invalid());
        }
        let expires: i64 = parts[3].parse().map_err(|_| invalid())?;
        if self.now().unix_timestamp() >= expires {
            return Err(CoreError::Unauthenticated(LINK_EXPIRED));
        }
        let brand: BrandId = parts[1].parse()?;
        let member: MemberId = parts[2].parse()?;
        let system = Actor::system(brand.clone());
        let key = format!("member-link:{}", parts[4]);
        if !self.mark_once(&system, &key, mac.as_bytes()).await? {
            return Err(CoreError::Unauthenticated(LINK_USED));
        }
        let mut tx = self.storage.write().await?;
        self.audit(
            &mut *tx,
            &system,
            "member.signed_in",
            ("member", member.as_str()),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        let exp = (self.now() + MEMBER_SESSION_TTL).unix_timestamp().to_string();
        let nonce = random_token(12);
        let parts = [SESSION_PREFIX, brand.as_str(), member.as_str(), &exp, &nonce];
        Ok(format!("{}.{}", parts.join("."), self.portal_mac(&parts)))
    }

    /// The member a session token stands for; the member must still be active and the
    /// session not signed out.
    pub async fn member_session(&self, token: &str) -> Result<MemberSession> {
        let session = self.session_token(token)?;
        if self
            .idempotency_key_used(&session.actor, &ended_key(&session.nonce))
            .await?
        {
            return Err(CoreError::Unauthenticated(
                "you signed out; sign in with a new link",
            ));
        }
        // Erased or merged members are signed out.
        let profile = self.get_member(&session.actor, &session.member, false).await?;
        Ok(MemberSession {
            profile,
            actor: session.actor,
            member: session.member,
            expires_at: session.expires_at,
        })
    }

    /// Signs a member out: the session ends for every copy of its cookie, not only in the
    /// browser that signed out (a session is a signed token, so the end is recorded against
    /// its nonce, kept longer than the session lives). Audited; ending it twice is a no-op.
    pub async fn end_member_session(&self, token: &str) -> Result<()> {
        let session = self.session_token(token)?;
        let key = ended_key(&session.nonce);
        if !self.mark_once(&session.actor, &key, b"ended").await? {
            return Ok(());
        }
        let mut tx = self.storage.write().await?;
        self.audit(
            &mut *tx,
            &session.actor,
            "member.signed_out",
            ("member", session.member.as_str()),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A session token's fields, once its MAC and expiry are checked.
    fn session_token(&self, token: &str) -> Result<SessionToken> {
        let invalid = || CoreError::Unauthenticated("sign in with the link you were given");
        let (parts, mac) = split_token(token, SESSION_PREFIX, 4).ok_or_else(invalid)?;
        if !self.check_mac(&parts, mac) {
            return Err(invalid());
        }
        let expires_at = parts[3]
            .parse::<i64>()
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(invalid)?;
        if self.now() >= expires_at {
            return Err(CoreError::Unauthenticated("the session has expired"));
        }
        Ok(SessionToken {
            actor: Actor::system(parts[1].parse()?),
            member: parts[2].parse()?,
            expires_at,
            nonce: parts[4].to_owned(),
        })
    }
}

/// What a member session token says.
struct SessionToken {
    actor: Actor,
    member: MemberId,
    expires_at: OffsetDateTime,
    nonce: String,
}

/// The marker of a session that was signed out. Idempotency keys are kept for a day
/// (`CoreConfig::idempotency_ttl`), longer than a session lives ([`MEMBER_SESSION_TTL`]).
fn ended_key(nonce: &str) -> String {
    format!("member-session-ended:{nonce}")
}

#[cfg(test)]
mod tests {
    use super::split_token;

    #[test]
    fn tokens_of_the_wrong_kind_or_shape_are_not_split() {
        assert!(split_token("ml1.a.b.c.d.mac", "ml1", 4).is_some());
        assert!(split_token("ms1.a.b.c.d.mac", "ml1", 4).is_none());
        assert!(split_token("ml1.a.b.c.mac", "ml1", 4).is_none());
        assert!(split_token("", "ml1", 4).is_none());
    }
}
