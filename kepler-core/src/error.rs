//! Errors of reading a zone or an activity source.

use thiserror::Error;

/// Why a reading is missing. Carried per zone, so one failure degrades one item only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// The file or device exists but the process lacks the privilege to read it.
    #[error("permission denied reading {what} (needs {needs})")]
    NotPermitted {
        /// What was read (a path, a device).
        what: String,
        /// The privilege that would allow it.
        needs: String,
    },
    /// The file, device or endpoint is gone.
    #[error("{what} is missing")]
    Missing {
        /// What was read.
        what: String,
    },
    /// The value could not be parsed.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was read.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// Any other I/O error.
    #[error("cannot read {what}: {detail}")]
    Io {
        /// What was read.
        what: String,
        /// The operating-system error.
        detail: String,
    },
    /// The last good value is too old to use.
    #[error("{what}: last reading is stale")]
    Stale {
        /// What was read.
        what: String,
    },
}

impl ReadError {
    /// A short, stable label for the error kind, for self-metrics.
    pub fn kind_label(&self) -> &'static str {
        match self {
            ReadError::NotPermitted { .. } => "permission",
            ReadError::Missing { .. } => "missing",
            ReadError::Parse { .. } => "parse",
            ReadError::Io { .. } => "io",
            ReadError::Stale { .. } => "stale",
        }
    }
}

/// Why an activity source produced no frame at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SourceError {
    /// The source cannot run here (missing file, privilege or kernel feature).
    #[error("activity source unavailable: {0}")]
    Unavailable(String),
    /// A read failed this time; the next one may succeed.
    #[error("activity read failed: {0}")]
    Read(#[from] ReadError),
}
