//! Why a monitor could not be built.

/// Why [`crate::MonitorBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting cannot be used: the Redfish BMC file, the node name or kubeconfig of the
    /// pod informer. `key` is the configuration key users write; the exporter exits with
    /// code 2 as for any bad configuration.
    #[error("{key}: {message}")]
    Setting {
        /// The configuration key, e.g. `kube.config`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// None of the preferred CPU meters builds on this machine.
    #[error("no CPU meter could be used (tried {tried}); add \"model\" to cpu.preferredMeters for an estimate")]
    NoMeter {
        /// The meters tried, comma-separated.
        tried: String,
    },
    /// The requested activity source cannot start (eBPF without privileges, an unreadable
    /// procfs).
    #[error("{0}")]
    Activity(String),
    /// The pod informer could not start for a reason other than a setting.
    #[error(transparent)]
    Kube(kepler_k8s::StartError),
    /// The async runtime for the pod informer could not start.
    #[error("cannot start the async runtime: {0}")]
    Tokio(std::io::Error),
}
