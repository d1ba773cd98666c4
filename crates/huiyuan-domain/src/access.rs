//! Roles and permissions. The whole matrix is the one `match` in [`Role::allows`]; the docs
//! (`docs/permissions.md`) are written from it and a test keeps the two in step.

use serde::{Deserialize, Serialize};

/// What an operator or API key may do, as a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the programme: everything, including keys, operators and personal data.
    Admin,
    /// Configures the programme and works with members; sees personal data masked.
    Marketer,
    /// Works the till: identifies and enrols members, verifies member codes.
    Clerk,
    /// Reads members and (later) analytics; sees personal data masked.
    Analyst,
    /// Reads the audit log and records; changes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Marketer,
        Role::Clerk,
        Role::Analyst,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Clerk => "clerk",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The permission matrix, enforced here and nowhere else.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        use Role::*;
        match permission {
            BrandRead | StoresRead | MembersRead => true,
            BrandManage | StoresManage | MembersErase | MembersExport | PiiReveal | OperatorsManage
            | ApiKeysManage => self == Admin,
            MembersEnrol | MembersUpdate => matches!(self, Admin | Marketer | Clerk),
            MembersMerge | CodesIssue => matches!(self, Admin | Marketer),
            CodesVerify => matches!(self, Admin | Clerk),
            AuditRead | LedgerVerify | EventsRead => matches!(self, Admin | Auditor),
            ProgrammeRead => true,
            ProgrammeManage | PointsAdjust => matches!(self, Admin | Marketer),
            PurchasesRecord | PointsRedeem | PointsActions => matches!(self, Admin | Marketer | Clerk),
            PurchasesRefund => matches!(self, Admin | Clerk),
            JobsRun => self == Admin,
            AnalyticsRead => matches!(self, Admin | Marketer | Analyst),
            CouponsManage | CouponsIssue => matches!(self, Admin | Marketer),
            CouponsRedeem | Checkout => matches!(self, Admin | Marketer | Clerk),
            WalletTopUp | WalletRefund => matches!(self, Admin | Clerk),
            DataExport => matches!(self, Admin | Marketer | Analyst | Auditor),
        }
    }
}

/// One thing a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    BrandRead,
    BrandManage,
    StoresRead,
    StoresManage,
    MembersRead,
    MembersEnrol,
    MembersUpdate,
    MembersMerge,
    MembersErase,
    MembersExport,
    /// See personal data unmasked (each reveal is audited).
    PiiReveal,
    CodesIssue,
    CodesVerify,
    OperatorsManage,
    ApiKeysManage,
    AuditRead,
    ProgrammeRead,
    /// Publish a new programme version (rules, multipliers, tiers, expiry).
    ProgrammeManage,
    PurchasesRecord,
    PurchasesRefund,
    /// Grant or deduct points by hand, with a reason.
    PointsAdjust,
    PointsRedeem,
    /// Reward members' actions (check-in, review, share, …).
    PointsActions,
    LedgerVerify,
    EventsRead,
    JobsRun,
    /// Read segments, cohorts and lifetime value.
    AnalyticsRead,
    /// Create and archive coupon templates; read their usage.
    CouponsManage,
    /// Issue coupons to members, one by one or in bulk.
    CouponsIssue,
    /// Redeem a coupon outside a till sale (an online order).
    CouponsRedeem,
    /// Quote, commit and look up till sales (coupons, points, wallet in one step).
    Checkout,
    /// Take money into a member's wallet.
    WalletTopUp,
    /// Refund top-ups and till sales paid from the wallet.
    WalletRefund,
    /// Export members, purchases, the ledger, coupons and model results in bulk (personal
    /// data masked unless the caller may also reveal it).
    DataExport,
}

impl Permission {
    pub const ALL: [Permission; 34] = [
        Permission::BrandRead,
        Permission::BrandManage,
        Permission::StoresRead,
        Permission::StoresManage,
        Permission::MembersRead,
        Permission::MembersEnrol,
        Permission::MembersUpdate,
        Permission::MembersMerge,
        Permission::MembersErase,
        Permission::MembersExport,
        Permission::PiiReveal,
        Permission::CodesIssue,
        Permission::CodesVerify,
        Permission::OperatorsManage,
        Permission::ApiKeysManage,
        Permission::AuditRead,
        Permission::ProgrammeRead,
        Permission::ProgrammeManage,
        Permission::PurchasesRecord,
        Permission::PurchasesRefund,
        Permission::PointsAdjust,
        Permission::PointsRedeem,
        Permission::PointsActions,
        Permission::LedgerVerify,
        Permission::EventsRead,
        Permission::JobsRun,
        Permission::AnalyticsRead,
        Permission::CouponsManage,
        Permission::CouponsIssue,
        Permission::CouponsRedeem,
        Permission::Checkout,
        Permission::WalletTopUp,
        Permission::WalletRefund,
        Permission::DataExport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::BrandRead => "brand.read",
            Permission::BrandManage => "brand.manage",
            Permission::StoresRead => "stores.read",
            Permission::StoresManage => "stores.manage",
            Permission::MembersRead => "members.read",
            Permission::MembersEnrol => "members.enrol",
            Permission::MembersUpdate => "members.update",
            Permission::MembersMerge => "members.merge",
            Permission::MembersErase => "members.erase",
            Permission::MembersExport => "members.export",
            Permission::PiiReveal => "pii.reveal",
            Permission::CodesIssue => "codes.issue",
            Permission::CodesVerify => "codes.verify",
            Permission::OperatorsManage => "operators.manage",
            Permission::ApiKeysManage => "api_keys.manage",
            Permission::AuditRead => "audit.read",
            Permission::ProgrammeRead => "programme.read",
            Permission::ProgrammeManage => "programme.manage",
            Permission::PurchasesRecord => "purchases.record",
            Permission::PurchasesRefund => "purchases.refund",
            Permission::PointsAdjust => "points.adjust",
            Permission::PointsRedeem => "points.redeem",
            Permission::PointsActions => "points.actions",
            Permission::LedgerVerify => "ledger.verify",
            Permission::EventsRead => "events.read",
            Permission::JobsRun => "jobs.run",
            Permission::AnalyticsRead => "analytics.read",
            Permission::CouponsManage => "coupons.manage",
            Permission::CouponsIssue => "coupons.issue",
            Permission::CouponsRedeem => "coupons.redeem",
            Permission::Checkout => "checkout",
            Permission::WalletTopUp => "wallet.top_up",
            Permission::WalletRefund => "wallet.refund",
            Permission::DataExport => "data.export",
        }
    }
}

/// The permission matrix as a Markdown table, the form `docs/permissions.md` holds.
pub fn permission_matrix_markdown() -> String {
    let mut out = String::from("| permission |");
    for r in Role::ALL {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    out.push('\n');
    for p in Permission::ALL {
        out.push_str(&format!("| `{}` |", p.as_str()));
        for r in Role::ALL {
            out.push_str(if r.allows(p) { " ✓ |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_hold_the_matrix_the_code_enforces() {
        let doc = include_str!("../../../docs/permissions.md");
        assert!(
            doc.contains(&permission_matrix_markdown()),
            "docs/permissions.md is out of date; paste in:\n{}",
            permission_matrix_markdown()
        );
    }

    #[test]
    fn clerk_cannot_manage_keys_or_read_audit() {
        assert!(!Role::Clerk.allows(Permission::ApiKeysManage));
        assert!(!Role::Clerk.allows(Permission::AuditRead));
        assert!(Role::Auditor.allows(Permission::AuditRead));
        assert!(!Role::Auditor.allows(Permission::MembersEnrol));
    }
}
