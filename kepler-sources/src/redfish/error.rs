//! Why a Redfish request failed, classified for self-metrics and once-per-change logging.

use std::fmt;

/// The kind of a failed request. Each kind is one `kind` label value of
/// `kepler_platform_bmc_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FetchErrorKind {
    /// The TCP connection could not be made (refused, unreachable, DNS).
    Connect,
    /// No complete answer within `httpTimeout`.
    Timeout,
    /// The TLS handshake failed (untrusted or invalid certificate, protocol mismatch).
    Tls,
    /// 401 or 403: wrong credentials, expired session, or no permission.
    Auth,
    /// 404: a link that leads nowhere.
    NotFound,
    /// 5xx: the BMC failed.
    Server,
    /// Another unexpected HTTP status.
    Status,
    /// The connection broke while the body was read (reset, truncated).
    Body,
    /// The body exceeded the size cap.
    TooLarge,
    /// The body was not a JSON object (HTML, truncated JSON, wrong type).
    Parse,
}

impl FetchErrorKind {
    /// Every kind, in the order self-metrics list them.
    pub const ALL: [FetchErrorKind; 10] = [
        FetchErrorKind::Connect,
        FetchErrorKind::Timeout,
        FetchErrorKind::Tls,
        FetchErrorKind::Auth,
        FetchErrorKind::NotFound,
        FetchErrorKind::Server,
        FetchErrorKind::Status,
        FetchErrorKind::Body,
        FetchErrorKind::TooLarge,
        FetchErrorKind::Parse,
    ];

    /// The `kind` label value.
    pub fn label(self) -> &'static str {
        match self {
            FetchErrorKind::Connect => "connect",
            FetchErrorKind::Timeout => "timeout",
            FetchErrorKind::Tls => "tls",
            FetchErrorKind::Auth => "auth",
            FetchErrorKind::NotFound => "not_found",
            FetchErrorKind::Server => "server_error",
            FetchErrorKind::Status => "http_status",
            FetchErrorKind::Body => "body",
            FetchErrorKind::TooLarge => "too_large",
            FetchErrorKind::Parse => "parse",
        }
    }

    /// Position in [`FetchErrorKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed request: its kind, the resource path, and a detail that never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// What went wrong.
    pub kind: FetchErrorKind,
    /// The resource path requested (never a URL with user info).
    pub path: String,
    /// A short description.
    pub detail: String,
}

impl FetchError {
    /// A new error.
    pub fn new(kind: FetchErrorKind, path: &str, detail: impl Into<String>) -> FetchError {
        FetchError {
            kind,
            path: path.to_string(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.path, self.kind.label(), self.detail)
    }
}

impl std::error::Error for FetchError {}
