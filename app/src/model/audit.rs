//! The audit log's entries: who did what, when, from where, and how it ended.

/// What an operator (or the node on an operator's behalf) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    SignIn,
    SignInFailed,
    SignOut,
    Setup,
    UserCreated,
    RoleChanged,
    PasswordChanged,
    TokenCreated,
    TokenDeleted,
    Upload,
    Deploy,
    Run,
    Cancel,
    GpuPool,
    Whitelist,
    Drain,
    Resume,
    WebhookCreated,
    WebhookDeleted,
}

impl AuditAction {
    pub const ALL: [AuditAction; 19] = [
        AuditAction::SignIn,
        AuditAction::SignInFailed,
        AuditAction::SignOut,
        AuditAction::Setup,
        AuditAction::UserCreated,
        AuditAction::RoleChanged,
        AuditAction::PasswordChanged,
        AuditAction::TokenCreated,
        AuditAction::TokenDeleted,
        AuditAction::Upload,
        AuditAction::Deploy,
        AuditAction::Run,
        AuditAction::Cancel,
        AuditAction::GpuPool,
        AuditAction::Whitelist,
        AuditAction::Drain,
        AuditAction::Resume,
        AuditAction::WebhookCreated,
        AuditAction::WebhookDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SignIn => "sign_in",
            AuditAction::SignInFailed => "sign_in_failed",
            AuditAction::SignOut => "sign_out",
            AuditAction::Setup => "setup",
            AuditAction::UserCreated => "user_created",
            AuditAction::RoleChanged => "role_changed",
            AuditAction::PasswordChanged => "password_changed",
            AuditAction::TokenCreated => "token_created",
            AuditAction::TokenDeleted => "token_deleted",
            AuditAction::Upload => "upload",
            AuditAction::Deploy => "deploy",
            AuditAction::Run => "run",
            AuditAction::Cancel => "cancel",
            AuditAction::GpuPool => "gpu_pool",
            AuditAction::Whitelist => "whitelist",
            AuditAction::Drain => "drain",
            AuditAction::Resume => "resume",
            AuditAction::WebhookCreated => "webhook_created",
            AuditAction::WebhookDeleted => "webhook_deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// Who acted, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// A console user's name, or what acted without one (`cli`, `whitelist sync`).
    pub name: String,
    /// The client's address, when it came over the network.
    pub address: Option<String>,
}

impl Actor {
    pub fn user(name: impl Into<String>, address: Option<std::net::IpAddr>) -> Self {
        Self {
            name: name.into(),
            address: address.map(|a| a.to_string()),
        }
    }

    /// What acted without a user and from no address: `cli` (a command on the host), `signal`,
    /// `whitelist sync`.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            address: None,
        }
    }

    /// An operator command run on the host (`gevulot user create`, `gevulot peer`).
    pub fn cli() -> Self {
        Self::named("cli")
    }
}

/// One entry to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub actor: Actor,
    pub action: AuditAction,
    /// What it acted on: a username, a transaction or program hash, a GPU address, a key.
    pub target: Option<String>,
    /// More about it, in words (never a secret).
    pub detail: Option<String>,
    /// False when it was refused or failed.
    pub ok: bool,
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub entry: NewAuditEntry,
}
