//! The crate's one error type.

use std::fmt;

use thiserror::Error;

/// What went wrong in the exporter: a bad metrics level, a bad web config, a socket that
/// would not bind. Carries a [`ErrorKind`] and a context string (a file, a key, an address).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ExportError {
    kind: ErrorKind,
    context: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.context, self.kind)
        }
    }
}

impl ExportError {
    /// An error of `kind` about `context` (a file and key, an address, a value).
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> ExportError {
        ExportError {
            kind,
            context: context.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Where it went wrong: the file and key, the address, the value.
    pub fn context(&self) -> &str {
        &self.context
    }
}

/// The kinds of [`ExportError`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A metrics level given to [`parse_levels`](crate::parse_levels) is not one of the
    /// accepted names.
    #[error("unknown metrics level {value:?} (accepted: node, process, container, vm, pod, all)")]
    UnknownLevel {
        /// The value as given.
        value: String,
    },
    /// A listen address is not `host:port` or `:port`.
    #[error("invalid listen address {address:?}: {detail}")]
    ListenAddress {
        /// The address as given.
        address: String,
        /// Why it is invalid.
        detail: String,
    },
    /// A listen address could not be bound (in use, not permitted, not local).
    #[error("cannot listen on {address}: {detail}")]
    Bind {
        /// The address as given.
        address: String,
        /// The operating-system error.
        detail: String,
    },
    /// No listen address was configured.
    #[error("no listen address configured")]
    NoListenAddress,
    /// A file named by the web config (or the web config itself) cannot be read.
    #[error("cannot read {path}: {detail}")]
    Read {
        /// The file.
        path: String,
        /// The operating-system error.
        detail: String,
    },
    /// The web config is not valid YAML for the exporter-toolkit format, or has a key this
    /// exporter does not know (unknown keys are rejected, like exporter-toolkit does).
    #[error("invalid web config: {detail}")]
    WebConfigSyntax {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// A web config key has a value that is not allowed.
    #[error("invalid value for `{key}`: {detail}")]
    WebConfigValue {
        /// The key, dotted (`tls_server_config.min_version`).
        key: String,
        /// What is wrong and what is accepted.
        detail: String,
    },
    /// The certificate, key or client CA could not be loaded into a TLS configuration.
    #[error("TLS setup failed: {detail}")]
    Tls {
        /// The TLS library's message.
        detail: String,
    },
    /// Accepting or serving failed in a way that stops the server.
    #[error("server failed: {detail}")]
    Serve {
        /// The cause.
        detail: String,
    },
}
