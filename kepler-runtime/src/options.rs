//! What a monitor is built from: the runtime's own options, so that it does not depend on
//! any front-end's configuration (the exporter maps its `Config` to these).

use std::path::PathBuf;

use kepler_core::{AttributorConfig, GpuConfig};
use kepler_k8s::InformerConfig;
use kepler_sources::carbon::IntensityOptions;
use kepler_sources::ipmi::IpmiOptions;
use kepler_sources::passthrough::PassthroughWriterOptions;
use kepler_sources::redfish::RedfishOptions;
use kepler_sources::{MeterContext, METERS};

/// Which activity source to use (`activity.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivityChoice {
    /// The first of [`crate::ACTIVITY_SOURCES`] that starts (eBPF when built in and
    /// permitted, else procfs), with one log line per source skipped.
    #[default]
    Auto,
    /// eBPF or fail.
    Bpf,
    /// procfs only.
    Procfs,
}

/// The Redfish platform source of this node (`experimental.platform.redfish.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedfishSetup {
    /// The key into the BMC file's `nodes`.
    pub node_name: String,
    /// The BMC file.
    pub config_file: PathBuf,
    /// How the background poller behaves.
    pub options: RedfishOptions,
}

/// The IPMI platform source of this node (`experimental.platform.ipmi.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiSetup {
    /// The key into the BMC file's `nodes`.
    pub node_name: String,
    /// The BMC file.
    pub config_file: PathBuf,
    /// How the background poller behaves.
    pub options: IpmiOptions,
}

/// Everything a [`crate::Monitor`] is built from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Roots and meter settings handed to every meter constructor (sysfs and procfs roots,
    /// RAPL zones, the model, hwmon rules).
    pub meters: MeterContext,
    /// CPU meters to try, in order (`cpu.preferredMeters`).
    pub preferred_meters: Vec<String>,
    /// Platform power from BMCs; `None` when Redfish is off.
    pub redfish: Option<RedfishSetup>,
    /// Platform power from BMCs over IPMI; `None` when IPMI is off.
    pub ipmi: Option<IpmiSetup>,
    /// GPU accounting settings; `None` turns GPU metering off.
    pub gpu: Option<GpuConfig>,
    /// The activity source.
    pub activity: ActivityChoice,
    /// The pod informer; `None` without Kubernetes.
    pub kube: Option<InformerConfig>,
    /// The CPU engine's settings.
    pub engine: AttributorConfig,
    /// Each VM's energy written for its guest (`vm.passthrough.*`); `None` when off.
    pub vm_passthrough: Option<PassthroughWriterOptions>,
    /// Where the grid carbon intensity comes from (`carbon.*`); `None`: no carbon metrics.
    pub carbon: Option<IntensityOptions>,
    /// Where the power model fitted to a measuring CPU meter is written
    /// (`model.export`, `model.exportInterval`); `None`: it is fitted and its error
    /// exported, but not written.
    pub model_export: Option<crate::training::ModelExport>,
}

impl Options {
    /// Defaults over the given roots: the default meter order, GPUs on (off by themselves
    /// where no backend opens), activity source `auto`, no Redfish, no Kubernetes.
    pub fn new(sysfs: impl Into<PathBuf>, procfs: impl Into<PathBuf>) -> Options {
        Options {
            meters: MeterContext::new(sysfs, procfs),
            preferred_meters: METERS
                .iter()
                .filter(|m| m.enabled_by_default)
                .map(|m| m.name.to_owned())
                .collect(),
            redfish: None,
            ipmi: None,
            gpu: Some(GpuConfig::default()),
            activity: ActivityChoice::Auto,
            kube: None,
            engine: AttributorConfig::default(),
            vm_passthrough: None,
            carbon: None,
            model_export: None,
        }
    }
}
