//! The error catalogue shared by every API and its clients: a stable snake_case code per kind of
//! failure, served as RFC 9457 `application/problem+json` by REST and as `error.data.code` by the
//! new JSON-RPC methods. (The original JSON-RPC methods keep the original's `{"Err": …}`
//! envelope.)

use serde::{Deserialize, Serialize};

/// Declares [`ErrorCode`]: each variant with its stable code and default HTTP status.
macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal),)*) => {
        /// Every code the APIs return, each with its default status. `docs/API-DESIGN.md` lists
        /// the same codes with the same statuses (a test holds the two together).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable snake_case code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The status this code is answered with unless a route says otherwise.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    MalformedJson => ("malformed_json", 400),
    MalformedTransaction => ("malformed_transaction", 400),
    UnsupportedMediaType => ("unsupported_media_type", 415),
    PayloadTooLarge => ("payload_too_large", 413),
    InvalidParameter => ("invalid_parameter", 400),
    UnknownParameter => ("unknown_parameter", 400),
    InvalidCursor => ("invalid_cursor", 400),
    NotFound => ("not_found", 404),
    DatabaseUnavailable => ("database_unavailable", 503),
    InternalError => ("internal_error", 500),
    HashMismatch => ("hash_mismatch", 422),
    BadSignature => ("bad_signature", 422),
    EmptyWorkflow => ("empty_workflow", 422),
    DuplicateProgram => ("duplicate_program", 422),
    OutputWithoutSource => ("output_without_source", 422),
    BadFileName => ("bad_file_name", 422),
    BadUrl => ("bad_url", 422),
    BadChecksum => ("bad_checksum", 422),
    ProgramHashMismatch => ("program_hash_mismatch", 422),
    BadResourceRequest => ("bad_resource_request", 422),
    FieldTooLong => ("field_too_long", 422),
    TooManyItems => ("too_many_items", 422),
    ValueTooLarge => ("value_too_large", 422),
    ParentWrongKind => ("parent_wrong_kind", 422),
    AuthorNotWhitelisted => ("author_not_whitelisted", 422),
    CancelNotAuthorized => ("cancel_not_authorized", 422),
    Unauthorized => ("unauthorized", 401),
    Forbidden => ("forbidden", 403),
    CsrfRequired => ("csrf_required", 403),
    BadCredentials => ("bad_credentials", 401),
    TooManyAttempts => ("too_many_attempts", 429),
    RateLimited => ("rate_limited", 429),
    UsernameTaken => ("username_taken", 409),
    BadUsername => ("bad_username", 422),
    WeakPassword => ("weak_password", 422),
    SetupUnavailable => ("setup_unavailable", 403),
    BadRole => ("bad_role", 422),
    UnknownUpload => ("unknown_upload", 422),
    MalformedBody => ("malformed_body", 400),
    P2pUnavailable => ("p2p_unavailable", 503),
    SysfsUnavailable => ("sysfs_unavailable", 503),
    FileUnavailable => ("file_unavailable", 502),
    Timeout => ("timeout", 408),
    AddressNotAllowed => ("address_not_allowed", 422),
    LimitReached => ("limit_reached", 422),
}

impl ErrorCode {
    /// The code named `text` (the core's errors carry their codes as text).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == text)
    }

    /// A code of the core: unknown ones (which a test rules out) are reported as internal errors.
    pub fn of_core(text: &str) -> Self {
        Self::parse(text).unwrap_or_else(|| {
            tracing::error!(target: "gevulot", code = text, "an error code missing from the catalogue");
            ErrorCode::InternalError
        })
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {text:?}")))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the API cannot decode (a parameter, cursor or body): answered with status 400 and
/// its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub code: ErrorCode,
    pub detail: String,
}

impl BadRequest {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.code)
    }
}

impl std::error::Error for BadRequest {}

#[cfg(test)]
mod tests {
    use super::*;
    use app::node::NodeError;

    /// The catalogue in `docs/API-DESIGN.md`: (code, status) of each row of its table.
    fn documented() -> Vec<(String, u16)> {
        include_str!("../../docs/API-DESIGN.md")
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                let status = cells.next()?.parse().ok()?;
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    .then(|| (code.to_string(), status))
            })
            .collect()
    }

    #[test]
    fn the_catalogue_and_the_document_agree() {
        let documented = documented();
        for code in ErrorCode::ALL {
            assert!(
                documented
                    .iter()
                    .any(|(c, s)| c == code.as_str() && *s == code.status()),
                "{code} ({}) is not in docs/API-DESIGN.md's table with that status",
                code.status()
            );
        }
        for (code, status) in &documented {
            assert_eq!(
                ErrorCode::parse(code).map(|c| c.status()),
                Some(*status),
                "docs/API-DESIGN.md lists {code} ({status}), which the server does not know"
            );
        }
    }

    #[test]
    fn every_core_code_is_catalogued() {
        use app::validate::ValidationError as V;
        let h = app::tx::Hash::default();
        let validation = [
            V::HashMismatch {
                claimed: h,
                computed: h,
            },
            V::Signature(app::crypto::SignatureError::Mismatch),
            V::EmptyWorkflow,
            V::DuplicateProgram {
                field: String::new(),
                program: h,
                first: 0,
            },
            V::OutputWithoutSource {
                field: String::new(),
                program: h,
            },
            V::BadFileName {
                field: String::new(),
                value: String::new(),
                reason: "",
            },
            V::BadUrl {
                field: String::new(),
                value: String::new(),
                reason: String::new(),
            },
            V::BadChecksum {
                field: String::new(),
                value: String::new(),
            },
            V::ProgramHashMismatch {
                field: String::new(),
                claimed: h,
                computed: h,
            },
            V::BadResourceRequest {
                field: String::new(),
                reason: String::new(),
            },
            V::FieldTooLong {
                field: String::new(),
                len: 0,
                max: 0,
            },
            V::TooMany {
                field: String::new(),
                len: 0,
                max: 0,
            },
            V::ValueTooLarge {
                field: String::new(),
                max_bits: 0,
            },
            V::ParentWrongKind {
                kind: app::tx::Kind::Proof,
                parent: h,
                found: app::tx::Kind::Run,
                expected: "",
            },
            V::AuthorNotWhitelisted(String::new()),
            V::CancelNotAuthorized {
                run: h,
                author: String::new(),
            },
        ];
        let node = [
            NodeError::NotFound(String::new()),
            NodeError::WrongKind(String::new()),
            NodeError::InvalidParameter(String::new()),
            NodeError::BadFileName(String::new()),
            NodeError::UnknownUpload(String::new()),
            NodeError::TooLarge(String::new()),
            NodeError::UploadBroken(String::new()),
            NodeError::P2pUnavailable,
            NodeError::SysfsUnavailable(String::new()),
            NodeError::Internal(String::new()),
        ];
        use app::auth::AuthError as A;
        let auth = [
            A::BadCredentials,
            A::Throttled {
                retry_after_secs: 1,
            },
            A::UsernameTaken(String::new()),
            A::BadUsername(""),
            A::WeakPassword(""),
            A::SetupUnavailable,
            A::Hashing,
        ];
        let codes = validation
            .iter()
            .map(|v| v.code())
            .chain(node.iter().map(NodeError::code))
            .chain(auth.iter().map(A::code));
        for code in codes {
            assert!(ErrorCode::parse(code).is_some(), "{code} is not catalogued");
        }
    }
}
