//! The one error type of this crate.

use crate::privilege::Missing;

/// Why the eBPF source could not start or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// eBPF cannot run here: a missing capability or kernel feature. An expected state on
    /// unprivileged runs and old kernels: log it once and use procfs.
    #[error("eBPF unavailable: {0}")]
    Unavailable(Missing),
    /// Opening, loading, attaching or reading the BPF object failed for another reason
    /// (a verifier rejection, a kernel without a needed tracepoint, a map syscall error).
    #[error("cannot {what}: {detail}")]
    Bpf {
        /// The step that failed, e.g. `load the BPF object`.
        what: String,
        /// The error libbpf or the kernel gave.
        detail: String,
    },
}
