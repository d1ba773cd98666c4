//! Who may call: operators (argon2id passwords, session tokens) and API keys (random, shown
//! once, stored as a prefix and a keyed hash).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use huiyuan_domain::access::{Permission, Role};
use huiyuan_domain::ids::{ApiKeyId, OperatorId};
use huiyuan_domain::member::validate_text;
use huiyuan_domain::ValidationError;
use huiyuan_store::{ApiKeyRecord, OperatorRecord, Page, SessionRecord};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::crypto::random_token;
use crate::views::{ApiKeyView, OperatorView};
use crate::{Actor, ActorKind, Core, CoreError, ErrorCode, Result};

/// API keys look like `hy_<10 lowercase>_<40 alphanumerics>`; the part before the second `_`
/// is the public prefix.
const API_KEY_PREFIX: &str = "hy_";
/// How session tokens begin (API keys begin otherwise): the console accepts only these.
pub const SESSION_PREFIX: &str = "hys_";

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: OffsetDateTime,
    pub operator: OperatorView,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// At least 10 characters.
    pub password: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OperatorChanges {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub password: Option<String>,
    /// A disabled operator cannot sign in; their sessions end at once.
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    /// The whole key. It is shown this once and cannot be recovered.
    pub secret: String,
    pub key: ApiKeyView,
}

fn validate_username(u: &str) -> Result<String, ValidationError> {
    let u = u.trim().to_lowercase();
    if u.len() < 3
        || u.len() > 64
        || !u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(ValidationError::field(
            "username",
            "must be 3 to 64 characters of a-z, 0-9, . _ - @",
        ));
    }
    Ok(u)
}

fn validate_password(p: &str) -> Result<(), ValidationError> {
    if p.chars().count() < 10 || p.len() > 256 {
        return Err(ValidationError::field("password", "must be 10 to 256 characters"));
    }
    Ok(())
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads.
async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| CoreError::Corrupt(e.to_string()))?
    .map_err(|e| CoreError::Corrupt(e.to_string()))
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A valid hash of nothing in particular, verified against when the username is unknown so
/// that a wrong username takes as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3IdWUxcT6xjKz9XFIvHHKZDAGyBLWk6BpS0Xn6U0Tqg";

pub(crate) fn operator_view(o: &OperatorRecord) -> OperatorView {
    OperatorView {
        id: o.id.clone(),
        username: o.username.clone(),
        display_name: o.display_name.clone(),
        role: o.role,
        disabled: o.disabled,
        created_at: o.created_at,
    }
}

fn api_key_view(k: &ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: k.id.clone(),
        name: k.name.clone(),
        role: k.role,
        prefix: k.prefix.clone(),
        created_by: k.created_by.clone(),
        created_at: k.created_at,
        revoked_at: k.revoked_at,
    }
}

impl Core {
    /// Signs an operator in. Unknown user, wrong password and disabled account get the same
    /// answer, so the response does not reveal which usernames exist.
    ///
    /// `address` is the client's, for the per-address attempt limit; with the per-account limit
    /// it refuses (`TooManyAttempts`) before the password is hashed.
    pub async fn login(
        &self,
        input: LoginInput,
        request_id: Option<String>,
        address: Option<&str>,
    ) -> Result<Session> {
        let username = input.username.trim().to_lowercase();
        let limits = (
            self.config.sign_in_per_minute,
            self.config.sign_in_failures_per_account,
        );
        if let Err(wait) = self.sign_ins.admit(self.now(), address, &username, limits) {
            return Err(CoreError::TooManyAttempts {
                retry_after_seconds: wait.whole_seconds().max(1) as u64,
            });
        }
        let operator = {
            let mut tx = self.storage.read().await?;
            tx.find_operator_by_username(&username).await?
        };
        let hash = operator
            .as_ref()
            .map_or(DUMMY_HASH.to_owned(), |o| o.password_hash.clone());
        let ok = verify_password(input.password, hash).await;
        let Some(operator) = operator.filter(|o| ok && !o.disabled) else {
            self.sign_ins.failed(self.now(), &username);
            return Err(CoreError::Unauthenticated("wrong username or password"));
        };
        let token = format!("{SESSION_PREFIX}{}", random_token(32));
        let now = self.now();
        let session = SessionRecord {
            token_hash: self.keys.secret_hash(&token),
            operator_id: operator.id.clone(),
            brand_id: operator.brand_id.clone(),
            created_at: now,
            expires_at: now + self.config.session_ttl,
        };
        let actor = Actor {
            brand_id: operator.brand_id.clone(),
            kind: ActorKind::Operator,
            id: operator.id.to_string(),
            role: operator.role,
            request_id,
        };
        let mut tx = self.storage.write().await?;
        tx.insert_session(&session).await?;
        self.audit(
            &mut *tx,
            &actor,
            "operator.signed_in",
            ("operator", operator.id.as_str()),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(Session {
            token,
            expires_at: session.expires_at,
            operator: operator_view(&operator),
        })
    }

    pub async fn logout(&self, actor: &Actor, token: &str) -> Result<()> {
        let mut tx = self.storage.write().await?;
        if tx.delete_session(&self.keys.secret_hash(token)).await? {
            self.audit(
                &mut *tx,
                actor,
                "operator.signed_out",
                ("operator", &actor.id),
                json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        self.credentials.invalidate();
        Ok(())
    }

    /// Turns a bearer token (API key or session) into the actor it stands for.
    /// Recently authenticated tokens are answered from memory (see [`crate::credentials`]).
    pub async fn authenticate(&self, token: &str, request_id: Option<String>) -> Result<Actor> {
        let now = self.now();
        let token_hash = self.keys.secret_hash(token);
        if let Some(mut actor) = self.credentials.get(&token_hash, now) {
            actor.request_id = request_id;
            return Ok(actor);
        }
        let generation = self.credentials.generation();
        let (actor, valid_until) = self.authenticate_stored(token, &token_hash, now).await?;
        let ttl = self.config.credential_cache_ttl;
        if ttl > time::Duration::ZERO {
            let until = valid_until.map_or(now + ttl, |end| end.min(now + ttl));
            self.credentials
                .put(token_hash, actor.clone(), now, until, generation);
        }
        Ok(Actor { request_id, ..actor })
    }

    /// The caller a token stands for, read from the database, and when a session ends.
    async fn authenticate_stored(
        &self,
        token: &str,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<(Actor, Option<OffsetDateTime>)> {
        let request_id = None;
        let mut tx = self.storage.read().await?;
        if token.starts_with(SESSION_PREFIX) {
            let session = tx
                .find_session(token_hash)
                .await?
                .filter(|s| s.expires_at > now)
                .ok_or(CoreError::Unauthenticated(
                    "the session has expired or was signed out",
                ))?;
            let operator = tx
                .get_operator(&session.brand_id, &session.operator_id)
                .await?
                .filter(|o| !o.disabled)
                .ok_or(CoreError::Unauthenticated("the operator is disabled"))?;
            let actor = Actor {
                brand_id: operator.brand_id,
                kind: ActorKind::Operator,
                id: operator.id.to_string(),
                role: operator.role,
                request_id,
            };
            return Ok((actor, Some(session.expires_at)));
        }
        let prefix =
            api_key_prefix(token).ok_or(CoreError::Unauthenticated("not an API key or session token"))?;
        let key = tx
            .find_api_key_by_prefix(prefix)
            .await?
            .ok_or(CoreError::Unauthenticated("unknown API key"))?;
        if !bool::from(token_hash.ct_eq(&key.secret_hash)) {
            return Err(CoreError::Unauthenticated("unknown API key"));
        }
        if key.revoked_at.is_some() {
            return Err(CoreError::Unauthenticated("the API key was revoked"));
        }
        let actor = Actor {
            brand_id: key.brand_id,
            kind: ActorKind::ApiKey,
            id: key.id.to_string(),
            role: key.role,
            request_id,
        };
        Ok((actor, None))
    }

    pub async fn current_operator(&self, actor: &Actor) -> Result<Option<OperatorView>> {
        if actor.kind != ActorKind::Operator {
            return Ok(None);
        }
        let id: OperatorId = actor.id.parse()?;
        let mut tx = self.storage.read().await?;
        Ok(tx
            .get_operator(&actor.brand_id, &id)
            .await?
            .as_ref()
            .map(operator_view))
    }

    pub async fn create_operator(&self, actor: &Actor, input: NewOperator) -> Result<OperatorView> {
        actor.require(Permission::OperatorsManage)?;
        let mut v = huiyuan_domain::error::Validator::default();
        let username = v.check(validate_username(&input.username));
        let display_name = v.check(validate_text("display_name", &input.display_name, 100));
        v.check(validate_password(&input.password));
        v.finish()?;
        let (Some(username), Some(display_name)) = (username, display_name) else {
            unreachable!("validated above")
        };
        let record = OperatorRecord {
            id: self.new_id(OperatorId::generate),
            brand_id: actor.brand_id.clone(),
            username,
            display_name,
            role: input.role,
            password_hash: hash_password(input.password).await?,
            disabled: false,
            created_at: self.now(),
        };
        let mut tx = self.storage.write().await?;
        if tx.find_operator_by_username(&record.username).await?.is_some() {
            return Err(CoreError::Conflict {
                code: ErrorCode::UsernameTaken,
                message: "that username is taken".into(),
                errors: vec![huiyuan_domain::FieldError {
                    field: "username".into(),
                    reason: "is taken".into(),
                }],
            });
        }
        tx.insert_operator(&record).await?;
        let view = operator_view(&record);
        self.audit(
            &mut *tx,
            actor,
            "operator.created",
            ("operator", record.id.as_str()),
            json!({ "after": view }),
        )
        .await?;
        tx.commit().await?;
        Ok(view)
    }

    pub async fn list_operators(&self, actor: &Actor, page: &Page) -> Result<Vec<OperatorView>> {
        actor.require(Permission::OperatorsManage)?;
        let mut tx = self.storage.read().await?;
        Ok(tx
            .list_operators(&actor.brand_id, page)
            .await?
            .iter()
            .map(operator_view)
            .collect())
    }

    pub async fn update_operator(
        &self,
        actor: &Actor,
        id: &OperatorId,
        input: OperatorChanges,
    ) -> Result<OperatorView> {
        actor.require(Permission::OperatorsManage)?;
        let mut v = huiyuan_domain::error::Validator::default();
        let display_name = input
            .display_name
            .as_deref()
            .and_then(|d| v.check(validate_text("display_name", d, 100)));
        if let Some(p) = &input.password {
            v.check(validate_password(p));
        }
        v.finish()?;
        let new_hash = match input.password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let mut tx = self.storage.write().await?;
        let mut record = tx
            .get_operator(&actor.brand_id, id)
            .await?
            .ok_or(CoreError::NotFound("operator"))?;
        if actor.id == id.as_str()
            && (input.disabled == Some(true) || input.role.is_some_and(|r| r != Role::Admin))
        {
            return Err(CoreError::conflict(
                ErrorCode::SelfLockout,
                "you cannot disable yourself or give up your own admin role",
            ));
        }
        let before = operator_view(&record);
        if let Some(d) = display_name {
            record.display_name = d;
        }
        if let Some(r) = input.role {
            record.role = r;
        }
        if let Some(d) = input.disabled {
            record.disabled = d;
        }
        let password_changed = new_hash.is_some();
        if let Some(h) = new_hash {
            record.password_hash = h;
        }
        tx.update_operator(&record).await?;
        if record.disabled || password_changed || before.role != record.role {
            tx.delete_sessions_of(id).await?;
        }
        let after = operator_view(&record);
        self.audit(
            &mut *tx,
            actor,
            "operator.updated",
            ("operator", id.as_str()),
            json!({ "before": before, "after": after, "password_changed": password_changed }),
        )
        .await?;
        tx.commit().await?;
        self.credentials.invalidate();
        Ok(after)
    }

    pub async fn create_api_key(&self, actor: &Actor, input: NewApiKey) -> Result<CreatedApiKey> {
        actor.require(Permission::ApiKeysManage)?;
        let name = validate_text("name", &input.name, 100)?;
        // ThreadRng is not Send: keep it out of the future's state.
        let (public, secret_part) = {
            let mut rng = rand::thread_rng();
            (
                Alphanumeric.sample_string(&mut rng, 10).to_lowercase(),
                Alphanumeric.sample_string(&mut rng, 40),
            )
        };
        let prefix = format!("{API_KEY_PREFIX}{public}");
        let secret = format!("{prefix}_{secret_part}");
        let record = ApiKeyRecord {
            id: self.new_id(ApiKeyId::generate),
            brand_id: actor.brand_id.clone(),
            name,
            role: input.role,
            prefix,
            secret_hash: self.keys.secret_hash(&secret),
            created_by: actor.label(),
            created_at: self.now(),
            revoked_at: None,
        };
        let mut tx = self.storage.write().await?;
        tx.insert_api_key(&record).await?;
        let view = api_key_view(&record);
        self.audit(
            &mut *tx,
            actor,
            "api_key.created",
            ("api_key", record.id.as_str()),
            json!({ "after": view }),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedApiKey { secret, key: view })
    }

    pub async fn list_api_keys(&self, actor: &Actor, page: &Page) -> Result<Vec<ApiKeyView>> {
        actor.require(Permission::ApiKeysManage)?;
        let mut tx = self.storage.read().await?;
        Ok(tx
            .list_api_keys(&actor.brand_id, page)
            .await?
            .iter()
            .map(api_key_view)
            .collect())
    }

    pub async fn revoke_api_key(&self, actor: &Actor, id: &ApiKeyId) -> Result<ApiKeyView> {
        actor.require(Permission::ApiKeysManage)?;
        let mut tx = self.storage.write().await?;
        if tx.revoke_api_key(&actor.brand_id, id, self.now()).await? {
            self.audit(
                &mut *tx,
                actor,
                "api_key.revoked",
                ("api_key", id.as_str()),
                json!({}),
            )
            .await?;
        }
        let record = tx
            .get_api_key(&actor.brand_id, id)
            .await?
            .ok_or(CoreError::NotFound("API key"))?;
        tx.commit().await?;
        self.credentials.invalidate();
        Ok(api_key_view(&record))
    }
}

/// `hy_abcdefghij_…` → `hy_abcdefghij`
fn api_key_prefix(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let end = rest.find('_')?;
    Some(&token[..API_KEY_PREFIX.len() + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_prefix_is_the_public_part() {
        assert_eq!(api_key_prefix("hy_abcdefghij_SECRET"), Some("hy_abcdefghij"));
        assert_eq!(api_key_prefix("hys_token"), None);
        assert_eq!(api_key_prefix("hy_noseparator"), None);
    }

    #[tokio::test]
    async fn dummy_hash_is_a_valid_argon2id_hash() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("anything".into(), DUMMY_HASH.into()).await);
    }
}
