//! The one error type of this crate.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, without context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing is not there (no powercap tree, no such file). An expected state on many
    /// machines: log it once, use the next source.
    NotFound,
    /// The thing is there but needs more privilege (e.g. RAPL `energy_uj` is root-only).
    PermissionDenied,
    /// The content could not be parsed.
    Parse,
    /// A configuration value is out of range.
    InvalidConfig,
    /// Any other I/O failure.
    Io,
}

/// An error with the path or item it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    path: Option<PathBuf>,
    detail: String,
}

impl Error {
    /// A new error of `kind` about `path`.
    pub fn new(kind: ErrorKind, path: Option<&Path>, detail: impl Into<String>) -> Error {
        Error {
            kind,
            path: path.map(Path::to_path_buf),
            detail: detail.into(),
        }
    }

    /// From an I/O error on `path`, classifying not-found and permission errors.
    pub fn io(path: &Path, err: &std::io::Error) -> Error {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        };
        Error::new(kind, Some(path), err.to_string())
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The path concerned, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

impl std::error::Error for Error {}
