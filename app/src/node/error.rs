//! What a call on [`super::Node`] can fail with. Each variant has a stable snake_case
//! [`NodeError::code`], the same every API reports; HTTP statuses are the server's business.

use crate::store::StoreError;
use crate::validate::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A transaction broke a rule (the rule's own code).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// What was asked for is not on this node.
    #[error("{0}")]
    NotFound(String),
    /// The transaction named is of the wrong kind for the request.
    #[error("{0}")]
    WrongKind(String),
    /// A request field is missing, contradictory or out of range.
    #[error("{0}")]
    InvalidParameter(String),
    /// A file name is not a plain file name.
    #[error("{0}")]
    BadFileName(String),
    /// A request names an upload this node does not hold.
    #[error("{0}")]
    UnknownUpload(String),
    /// An upload is larger than the node accepts.
    #[error("{0}")]
    TooLarge(String),
    /// An upload broke off before its end.
    #[error("{0}")]
    UploadBroken(String),
    /// The database failed. A write whose connection was lost during its commit may have been
    /// stored all the same; a transaction submitted again is stored once.
    #[error(
        "the database is unavailable or failed; retry later (submitting a transaction again is safe: it is stored once)"
    )]
    Database(#[source] StoreError),
    /// The node runs without its P2P network.
    #[error("this node runs without its P2P network")]
    P2pUnavailable,
    /// The host's GPU inventory cannot be read.
    #[error("{0}; check GEVULOT_SYSFS_ROOT")]
    SysfsUnavailable(String),
    /// A file the network knows is not here, and no source had it.
    #[error("{0}")]
    Unavailable(String),
    /// A local file operation failed (the cause is logged, never shown).
    #[error("{what}; check the data directory's free space and permissions")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A URL the node refuses (not http(s), credentials in it, too long).
    #[error("{0}")]
    BadUrl(String),
    /// A URL leads to an address the node may not reach (loopback, private, reserved).
    #[error("{0}")]
    AddressNotAllowed(String),
    /// The most the node keeps of something is reached.
    #[error("{0}")]
    LimitReached(String),
    /// Something failed that should not have; the node logged it.
    #[error("{0}")]
    Internal(String),
}

impl NodeError {
    /// The stable code every API reports for this error.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::Invalid(v) => v.code(),
            NodeError::NotFound(_) => "not_found",
            NodeError::WrongKind(_) => "parent_wrong_kind",
            NodeError::InvalidParameter(_) => "invalid_parameter",
            NodeError::BadFileName(_) => "bad_file_name",
            NodeError::UnknownUpload(_) => "unknown_upload",
            NodeError::TooLarge(_) => "payload_too_large",
            NodeError::UploadBroken(_) => "malformed_body",
            NodeError::Database(_) => "database_unavailable",
            NodeError::P2pUnavailable => "p2p_unavailable",
            NodeError::SysfsUnavailable(_) => "sysfs_unavailable",
            NodeError::Unavailable(_) => "file_unavailable",
            NodeError::BadUrl(_) => "bad_url",
            NodeError::AddressNotAllowed(_) => "address_not_allowed",
            NodeError::LimitReached(_) => "limit_reached",
            NodeError::Io { .. } | NodeError::Internal(_) => "internal_error",
        }
    }

    pub(crate) fn io(what: &'static str, source: std::io::Error) -> Self {
        tracing::error!(target: "gevulot", error = %source, "{what}");
        NodeError::Io { what, source }
    }
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        NodeError::Database(e)
    }
}

impl From<crate::webhooks::HookError> for NodeError {
    fn from(e: crate::webhooks::HookError) -> Self {
        use crate::webhooks::HookError;
        match e {
            HookError::BadUrl(s) => NodeError::BadUrl(s),
            HookError::AddressNotAllowed(s) => NodeError::AddressNotAllowed(s),
            HookError::TooMany(s) => NodeError::LimitReached(s),
            HookError::Store(s) => NodeError::Database(s),
        }
    }
}

impl From<super::SubmitError> for NodeError {
    fn from(e: super::SubmitError) -> Self {
        match e {
            super::SubmitError::Invalid(v) => NodeError::Invalid(v),
            super::SubmitError::Store(s) => NodeError::Database(s),
        }
    }
}
