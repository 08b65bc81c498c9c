//! The `PowerMonitor` custom resource (`kepler.system.sustainable.computing.io/v1alpha1`), field
//! for field the API of upstream kepler-operator v0.24, and the one place its defaults live.
//!
//! Every field is optional in the schema and none carries a schema default: upstream's CRD
//! defaults only apply when the enclosing `config`/`deployment` object is present, and its code
//! falls back to other values when it is not (`maxTerminated` 500 in code, 0 in the CRD). Here
//! [`PowerMonitorSpec::resolve`] applies [`Defaults`] whether a field, its section or the whole
//! spec is missing, so an empty `spec: {}` and a fully written one with the same values are one
//! deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only name a PowerMonitor may have: one kepler per cluster.
pub const SINGLETON_NAME: &str = "power-monitor";

/// Desired state of kepler on the cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kepler.system.sustainable.computing.io",
    version = "v1alpha1",
    kind = "PowerMonitor",
    plural = "powermonitors",
    status = "PowerMonitorStatus",
    printcolumn = r#"{"name":"Reconciled","type":"string","jsonPath":".status.conditions[?(@.type==\"Reconciled\")].status"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PowerMonitorSpec {
    /// Kepler's deployment and configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kepler: Option<KeplerSpec>,
}

/// Kepler's deployment and configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeplerSpec {
    /// Where and how kepler's pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentSpec>,
    /// Kepler's config.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSpec>,
}

/// Where and how kepler's pods run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Nodes kepler runs on. Default: `kubernetes.io/os: linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints kepler tolerates. Default: all (`operator: Exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Who may read `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySpec>,
    /// Secrets (in the deployment namespace) mounted into kepler, e.g. Redfish credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SecretRef>>,
}

/// Who may read `/metrics`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// `none` (default): anyone reaching the port; `rbac`: only the service accounts in
    /// `allowedSANames`, checked by kepler itself with TokenReview + SubjectAccessReview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SecurityMode>,
    /// Service accounts (`namespace:name`) allowed to scrape in `rbac` mode.
    #[serde(
        default,
        rename = "allowedSANames",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_sa_names: Option<Vec<String>>,
}

/// `/metrics` access mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// No authentication.
    #[default]
    None,
    /// Bearer tokens of `allowedSANames` only.
    Rbac,
}

/// A Secret mounted into kepler's container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name, in the deployment namespace.
    pub name: String,
    /// Where the Secret's keys appear as files.
    pub mount_path: String,
    /// Mount read-only. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Kepler's config.yaml, in upstream's field names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSpec {
    /// `debug`, `info` (default), `warn` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// ConfigMaps (in the deployment namespace) whose `config.yaml` is merged over the defaults,
    /// in order; the fields of this spec are merged over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_config_maps: Option<Vec<ConfigMapRef>>,
    /// Metric levels exported. Default: node, pod, vm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_levels: Option<Vec<MetricLevel>>,
    /// Go duration (`monitor.staleness`). Default: 500ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<String>,
    /// Go duration between reads of the meters (`monitor.interval`). Default: 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<String>,
    /// Terminated workloads kept per level (`monitor.maxTerminated`); negative: no cap.
    /// Default: 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_terminated: Option<i32>,
}

/// A ConfigMap holding a `config.yaml`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ConfigMapRef {
    /// The ConfigMap's name, in the deployment namespace.
    pub name: String,
}

/// Kepler's log levels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The value of kepler's `log.level`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Kepler's metric levels (`exporter.prometheus.metricsLevel`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum MetricLevel {
    Node,
    Process,
    Container,
    Vm,
    Pod,
}

impl MetricLevel {
    /// The value in kepler's `exporter.prometheus.metricsLevel`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricLevel::Node => "node",
            MetricLevel::Process => "process",
            MetricLevel::Container => "container",
            MetricLevel::Vm => "vm",
            MetricLevel::Pod => "pod",
        }
    }
}

/// Observed state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerMonitorStatus {
    /// `Reconciled` and `Available`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The kepler DaemonSet's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kepler: Option<KeplerStatus>,
}

/// The kepler DaemonSet's counters (copied from its status).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct KeplerStatus {
    pub current_number_scheduled: i32,
    pub number_misscheduled: i32,
    pub desired_number_scheduled: i32,
    pub number_ready: i32,
    #[serde(default)]
    pub updated_number_scheduled: i32,
    #[serde(default)]
    pub number_available: i32,
    #[serde(default)]
    pub number_unavailable: i32,
}

/// A status condition (the fields of `metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Reconciled` or `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The PowerMonitor generation this condition was computed for.
    pub observed_generation: i64,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    /// Machine-readable cause (CamelCase).
    pub reason: String,
    /// What a person should know.
    pub message: String,
}

/// The documented defaults, applied by [`PowerMonitorSpec::resolve`].
pub struct Defaults;

impl Defaults {
    /// Node selector.
    pub fn node_selector() -> BTreeMap<String, String> {
        BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())])
    }
    /// Tolerate every taint: energy is measured on every node.
    pub fn tolerations() -> Vec<Toleration> {
        vec![Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        }]
    }
    /// Log level.
    pub const LOG_LEVEL: LogLevel = LogLevel::Info;
    /// Metric levels.
    pub const METRIC_LEVELS: [MetricLevel; 3] =
        [MetricLevel::Node, MetricLevel::Pod, MetricLevel::Vm];
    /// `monitor.staleness`.
    pub const STALENESS: &str = "500ms";
    /// `monitor.interval`.
    pub const SAMPLE_RATE: &str = "5s";
    /// `monitor.maxTerminated`.
    pub const MAX_TERMINATED: i32 = 500;
}

/// A PowerMonitor spec with every default applied and every value checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// Nodes kepler runs on.
    pub node_selector: BTreeMap<String, String>,
    /// Taints tolerated.
    pub tolerations: Vec<Toleration>,
    /// `/metrics` access.
    pub security_mode: SecurityMode,
    /// Allowed scrapers in rbac mode, as `(namespace, name)`.
    pub allowed_sa_names: Vec<(String, String)>,
    /// Mounted secrets.
    pub secrets: Vec<SecretRef>,
    /// Log level.
    pub log_level: LogLevel,
    /// ConfigMaps merged under the spec.
    pub additional_config_maps: Vec<String>,
    /// Metric levels.
    pub metric_levels: Vec<MetricLevel>,
    /// `monitor.staleness`.
    pub staleness: String,
    /// `monitor.interval`.
    pub sample_rate: String,
    /// `monitor.maxTerminated`.
    pub max_terminated: i32,
}

/// A spec value the operator cannot deploy; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.kepler.{field}: {problem}")]
pub struct InvalidSpec {
    /// Path below `spec.kepler`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl PowerMonitorSpec {
    /// Applies [`Defaults`] to every absent field and checks durations and names.
    pub fn resolve(&self) -> Result<Resolved, InvalidSpec> {
        let kepler = self.kepler.clone().unwrap_or_default();
        let dep = kepler.deployment.unwrap_or_default();
        let cfg = kepler.config.unwrap_or_default();
        let security = dep.security.unwrap_or_default();
        let bad = |field: &str, problem: String| InvalidSpec {
            field: field.into(),
            problem,
        };
        let mut allowed = Vec::new();
        for sa in security.allowed_sa_names.unwrap_or_default() {
            match sa.split_once(':') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains(':') => {
                    allowed.push((ns.to_string(), name.to_string()))
                }
                _ => {
                    return Err(bad(
                        "deployment.security.allowedSANames",
                        format!("{sa:?} is not namespace:serviceaccount"),
                    ))
                }
            }
        }
        let staleness = cfg.staleness.unwrap_or_else(|| Defaults::STALENESS.into());
        check_duration(&staleness).map_err(|p| bad("config.staleness", p))?;
        let sample_rate = cfg
            .sample_rate
            .unwrap_or_else(|| Defaults::SAMPLE_RATE.into());
        check_duration(&sample_rate).map_err(|p| bad("config.sampleRate", p))?;
        let mut metric_levels = cfg
            .metric_levels
            .unwrap_or_else(|| Defaults::METRIC_LEVELS.to_vec());
        metric_levels.dedup();
        let secrets = dep.secrets.unwrap_or_default();
        for s in &secrets {
            if !s.mount_path.starts_with('/') {
                return Err(bad(
                    "deployment.secrets",
                    format!("mountPath {:?} of {} is not absolute", s.mount_path, s.name),
                ));
            }
        }
        Ok(Resolved {
            node_selector: dep.node_selector.unwrap_or_else(Defaults::node_selector),
            tolerations: dep.tolerations.unwrap_or_else(Defaults::tolerations),
            security_mode: security.mode.unwrap_or_default(),
            allowed_sa_names: allowed,
            secrets,
            log_level: cfg.log_level.unwrap_or(Defaults::LOG_LEVEL),
            additional_config_maps: cfg
                .additional_config_maps
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.name)
                .collect(),
            metric_levels,
            staleness,
            sample_rate,
            max_terminated: cfg.max_terminated.unwrap_or(Defaults::MAX_TERMINATED),
        })
    }
}

/// Parses a Go duration: one or more `<number><unit>` with units ns, us, µs, ms, s, m, h.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let err = || format!("{s:?} is not a duration like 500ms, 5s or 1m30s");
    if s.is_empty() {
        return Err(err());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let number: f64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let (unit, seconds) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))
        .ok_or_else(err)?;
        total += number * seconds;
        rest = &rest[unit.len()..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| err())
}

fn check_duration(s: &str) -> Result<(), String> {
    parse_duration(s).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_spec_and_empty_sections_resolve_to_the_same_defaults() {
        let empty = PowerMonitorSpec::default().resolve().unwrap();
        let sections: PowerMonitorSpec =
            serde_json::from_str(r#"{"kepler":{"config":{},"deployment":{}}}"#).unwrap();
        assert_eq!(sections.resolve().unwrap(), empty);
        assert_eq!(empty.max_terminated, 500);
        assert_eq!(empty.sample_rate, "5s");
        assert_eq!(
            empty.metric_levels,
            [MetricLevel::Node, MetricLevel::Pod, MetricLevel::Vm]
        );
        assert_eq!(empty.node_selector["kubernetes.io/os"], "linux");
        assert_eq!(empty.tolerations[0].operator.as_deref(), Some("Exists"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let spec: PowerMonitorSpec =
            serde_json::from_str(r#"{"kepler":{"config":{"sampleRate":"5 seconds"}}}"#).unwrap();
        let e = spec.resolve().unwrap_err();
        assert_eq!(e.field, "config.sampleRate");
        let spec: PowerMonitorSpec = serde_json::from_str(
            r#"{"kepler":{"deployment":{"security":{"allowedSANames":["monitoring"]}}}}"#,
        )
        .unwrap();
        assert!(spec
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("allowedSANames"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        for ok in ["5s", "1.5h"] {
            assert!(check_duration(ok).is_ok(), "{ok}");
        }
        for bad in ["", "5", "s", "5 s", "5sec"] {
            assert!(check_duration(bad).is_err(), "{bad}");
        }
    }
}
