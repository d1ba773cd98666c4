//! Who is asking: an operator, an API key, or the system itself.

use huiyuan_domain::access::{Permission, Role};
use huiyuan_domain::ids::BrandId;
use serde::Serialize;

use crate::error::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Operator,
    ApiKey,
    /// The binary itself (demo set-up, jobs); acts as an admin of one brand.
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Operator => "operator",
            ActorKind::ApiKey => "api_key",
            ActorKind::System => "system",
        }
    }
}

/// An authenticated caller, always of exactly one brand.
#[derive(Debug, Clone)]
pub struct Actor {
    pub brand_id: BrandId,
    pub kind: ActorKind,
    /// Operator or API key ID, or `system`.
    pub id: String,
    pub role: Role,
    /// The request this call serves, copied into audit entries.
    pub request_id: Option<String>,
}

impl Actor {
    pub fn system(brand_id: BrandId) -> Self {
        Self {
            brand_id,
            kind: ActorKind::System,
            id: "system".into(),
            role: Role::Admin,
            request_id: None,
        }
    }

    /// How records name who made them: `operator opr_…`, `api_key key_…` or `system system`.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.id)
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }

    pub fn require(&self, permission: Permission) -> Result<(), CoreError> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(CoreError::Forbidden {
                role: self.role,
                permission,
            })
        }
    }
}
