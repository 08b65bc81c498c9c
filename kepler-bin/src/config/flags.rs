//! Command-line flags, named as Go Kepler names them. Every value is optional so that only
//! the flags a user typed override the file.

use clap::{ArgAction, Parser};

/// kepler: measures the machine's energy and splits it among processes, containers, VMs and
/// pods, served as Prometheus metrics.
///
/// Settings come from built-in defaults, then the YAML file of --config.file, then these
/// flags; a flag given here always wins.
#[derive(Debug, Default, Parser)]
#[command(name = "kepler", version, about, long_about = None, max_term_width = 100)]
pub struct Flags {
    /// YAML config file (Kepler's keys; unknown keys are warned about).
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<String>,

    /// Log level: debug, info, warn, error.
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: text or json.
    #[arg(long = "log.format", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Root of the sysfs tree to read (e.g. /host/sys in a container).
    #[arg(long = "host.sysfs", value_name = "PATH")]
    pub host_sysfs: Option<String>,

    /// Root of the procfs tree to read (e.g. /host/proc in a container).
    #[arg(long = "host.procfs", value_name = "PATH")]
    pub host_procfs: Option<String>,

    /// How often to read the meters and processes (Go duration, e.g. 5s).
    #[arg(long = "monitor.interval", value_name = "DURATION")]
    pub monitor_interval: Option<String>,

    /// Accepted for compatibility with Go Kepler (a duration); no effect: sources are read once
    /// per interval and scrapes never read hardware.
    #[arg(long = "monitor.staleness", value_name = "DURATION")]
    pub monitor_staleness: Option<String>,

    /// Most terminated workloads kept per level (largest energy first); negative: no cap.
    #[arg(
        long = "monitor.max-terminated",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub monitor_max_terminated: Option<i64>,

    /// How long terminated workloads stay exported (default: two intervals).
    #[arg(long = "monitor.terminated-ttl", value_name = "DURATION")]
    pub monitor_terminated_ttl: Option<String>,

    /// RAPL zones to read (repeat or comma-separate: package, core, uncore, dram, psys).
    #[arg(long = "rapl.zones", value_name = "ZONE", value_delimiter = ',', action = ArgAction::Append)]
    pub rapl_zones: Option<Vec<String>>,

    /// CPU meters in order of preference (rapl, model); the first that works is used.
    #[arg(long = "cpu.preferred-meters", value_name = "METER", value_delimiter = ',', action = ArgAction::Append)]
    pub cpu_preferred_meters: Option<Vec<String>>,

    /// Model estimator: watts per socket at idle.
    #[arg(long = "model.idle-watts", value_name = "WATTS")]
    pub model_idle_watts: Option<f64>,

    /// Model estimator: watts per socket at full load.
    #[arg(long = "model.max-watts", value_name = "WATTS")]
    pub model_max_watts: Option<f64>,

    /// Metric levels to export (repeat or comma-separate: node, process, container, vm, pod, all).
    #[arg(long = "metrics", value_name = "LEVEL", value_delimiter = ',', action = ArgAction::Append)]
    pub metrics: Option<Vec<String>>,

    /// Web config file (Prometheus exporter-toolkit format: TLS and basic auth).
    #[arg(long = "web.config-file", value_name = "PATH")]
    pub web_config_file: Option<String>,

    /// Address to listen on (repeatable), e.g. :28282 or 127.0.0.1:28282.
    #[arg(long = "web.listen-address", value_name = "ADDR", action = ArgAction::Append)]
    pub web_listen_address: Option<Vec<String>>,

    /// Enable Kubernetes pod metadata.
    #[arg(long = "kube.enable", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub kube_enable: Option<bool>,

    /// Kubeconfig path (default: in-cluster config).
    #[arg(long = "kube.config", value_name = "PATH")]
    pub kube_config: Option<String>,

    /// This node's name (default: $NODE_NAME, then the hostname).
    #[arg(long = "kube.node-name", value_name = "NAME")]
    pub kube_node_name: Option<String>,

    /// Activity source: auto (eBPF when built in and permitted, else procfs), bpf, procfs.
    #[arg(long = "activity.source", value_name = "SOURCE")]
    pub activity_source: Option<String>,

    /// Who gets node idle energy: none (Kepler's: it stays at node level), cpu-share, equal.
    #[arg(long = "attribution.idle", value_name = "POLICY")]
    pub attribution_idle: Option<String>,

    /// How idle power is estimated: usage (Kepler's split) or learned (a baseline learned
    /// at low CPU usage).
    #[arg(long = "attribution.idle-power", value_name = "METHOD")]
    pub attribution_idle_power: Option<String>,

    /// Enable platform power from this node's BMC over Redfish (experimental, EP-001).
    #[arg(long = "experimental.platform.redfish.enabled", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub redfish_enabled: Option<bool>,

    /// Node name to look up in the Redfish BMC file (default: the node name).
    #[arg(long = "experimental.platform.redfish.node-name", value_name = "NAME")]
    pub redfish_node_name: Option<String>,

    /// The Redfish BMC file: nodes -> BMC id, bmcs -> endpoint and credentials (mode 0600).
    #[arg(
        long = "experimental.platform.redfish.config",
        visible_alias = "experimental.platform.redfish.config-file",
        value_name = "PATH"
    )]
    pub redfish_config: Option<String>,
}
