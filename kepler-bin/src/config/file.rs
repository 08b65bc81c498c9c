//! The YAML config file as the user wrote it: Kepler's keys, every field optional.
//!
//! Unknown keys are collected (not rejected) so that a config written for Go Kepler still
//! loads; each one is reported as a warning naming its full dotted path.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Keys not recognised at one level of the file.
type Unknown = BTreeMap<String, IgnoredAny>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    /// `log.*`
    pub log: Option<LogSection>,
    /// `host.*`
    pub host: Option<HostSection>,
    /// `monitor.*`
    pub monitor: Option<MonitorSection>,
    /// `rapl.*`
    pub rapl: Option<RaplSection>,
    /// `cpu.*`
    pub cpu: Option<CpuSection>,
    /// `model.*` (kepler-rs: the estimator's parameters)
    pub model: Option<ModelSection>,
    /// `exporter.*`
    pub exporter: Option<ExporterSection>,
    /// `web.*`
    pub web: Option<WebSection>,
    /// `kube.*`
    pub kube: Option<KubeSection>,
    /// `activity.*` (kepler-rs: which activity source, issue 5)
    pub activity: Option<ActivitySection>,
    /// `attribution.*` (kepler-rs: idle policy and idle power, issue 4)
    pub attribution: Option<AttributionSection>,
    /// `experimental.*`: hwmon and GPU meters (issue 7); `platform` is accepted.
    pub experimental: Option<super::meters::ExperimentalSection>,
    /// `dev.*` (Kepler's fake meter switches; accepted, unused)
    pub dev: Option<IgnoredAny>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `log.*`
#[derive(Debug, Default, Deserialize)]
pub struct LogSection {
    /// `log.level`: debug, info, warn, error.
    pub level: Option<String>,
    /// `log.format`: text or json.
    pub format: Option<String>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `host.*`
#[derive(Debug, Default, Deserialize)]
pub struct HostSection {
    /// `host.sysfs`
    pub sysfs: Option<String>,
    /// `host.procfs`
    pub procfs: Option<String>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `monitor.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorSection {
    /// `monitor.interval` (Go duration).
    pub interval: Option<String>,
    /// `monitor.staleness` (Go duration).
    pub staleness: Option<String>,
    /// `monitor.maxTerminated`: cap on retained terminated workloads (<0: unlimited).
    pub max_terminated: Option<i64>,
    /// `monitor.terminatedTTL` (Go duration).
    #[serde(rename = "terminatedTTL")]
    pub terminated_ttl: Option<String>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `rapl.*`
#[derive(Debug, Default, Deserialize)]
pub struct RaplSection {
    /// `rapl.zones`: zone names to read; empty = all.
    pub zones: Option<Vec<String>>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `cpu.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuSection {
    /// `cpu.preferredMeters`: ordered meter names.
    pub preferred_meters: Option<Vec<String>>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `model.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSection {
    /// `model.idleWatts` per socket.
    pub idle_watts: Option<f64>,
    /// `model.maxWatts` per socket.
    pub max_watts: Option<f64>,
    /// `model.curve`: watts per socket at 0%, 10%, ..., 100% load (11 values).
    pub curve: Option<Vec<f64>>,
    /// `model.dram.*`: optional DRAM estimate per socket.
    pub dram: Option<super::meters::DramSection>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `exporter.*`
#[derive(Debug, Default, Deserialize)]
pub struct ExporterSection {
    /// `exporter.prometheus.*`
    pub prometheus: Option<PrometheusSection>,
    /// `exporter.stdout.*` (accepted, unused)
    pub stdout: Option<IgnoredAny>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `exporter.prometheus.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSection {
    /// `exporter.prometheus.enabled`
    pub enabled: Option<bool>,
    /// `exporter.prometheus.metricsLevel`
    pub metrics_level: Option<Vec<String>>,
    /// `exporter.prometheus.debugCollectors` (Go-only; accepted, unused)
    pub debug_collectors: Option<IgnoredAny>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `web.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSection {
    /// `web.configFile`
    pub config_file: Option<String>,
    /// `web.listenAddresses`
    pub listen_addresses: Option<Vec<String>>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `activity.*`
#[derive(Debug, Default, Deserialize)]
pub struct ActivitySection {
    /// `activity.source`: auto, bpf or procfs.
    pub source: Option<String>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `kube.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeSection {
    /// `kube.enabled`
    pub enabled: Option<bool>,
    /// `kube.config`
    pub config: Option<String>,
    /// `kube.nodeName`
    pub node_name: Option<String>,
    /// `kube.podInformer`
    pub pod_informer: Option<super::kube::PodInformerSection>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `attribution.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributionSection {
    /// `attribution.idle`: none, cpu-share, equal, requests.
    pub idle: Option<String>,
    /// `attribution.idlePower`: usage or learned.
    pub idle_power: Option<String>,
    /// `attribution.learnedIdle.*`
    pub learned_idle: Option<LearnedIdleSection>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `attribution.learnedIdle.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedIdleSection {
    /// `attribution.learnedIdle.maxUsage`: CPU usage ratio (0..1) up to which a tick teaches
    /// the baseline.
    pub max_usage: Option<f64>,
    /// `attribution.learnedIdle.decay` (Go duration): how fast the baseline rises again.
    pub decay: Option<String>,
    #[serde(flatten)]
    unknown: Unknown,
}

impl FileConfig {
    /// Parses YAML text. An empty document is the empty config.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    /// Dotted paths of every key this build does not know.
    pub fn unknown_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |prefix: &str, u: &Unknown| {
            out.extend(u.keys().map(|k| format!("{prefix}{k}")));
        };
        add("", &self.unknown);
        if let Some(s) = &self.log {
            add("log.", &s.unknown);
        }
        if let Some(s) = &self.host {
            add("host.", &s.unknown);
        }
        if let Some(s) = &self.monitor {
            add("monitor.", &s.unknown);
        }
        if let Some(s) = &self.rapl {
            add("rapl.", &s.unknown);
        }
        if let Some(s) = &self.cpu {
            add("cpu.", &s.unknown);
        }
        if let Some(s) = &self.model {
            add("model.", &s.unknown);
        }
        if let Some(s) = &self.exporter {
            add("exporter.", &s.unknown);
            if let Some(p) = &s.prometheus {
                add("exporter.prometheus.", &p.unknown);
            }
        }
        if let Some(s) = &self.web {
            add("web.", &s.unknown);
        }
        if let Some(s) = &self.kube {
            add("kube.", &s.unknown);
            if let Some(p) = &s.pod_informer {
                add("kube.podInformer.", &p.unknown);
            }
        }
        if let Some(s) = &self.activity {
            add("activity.", &s.unknown);
        }
        if let Some(s) = &self.attribution {
            add("attribution.", &s.unknown);
            if let Some(l) = &s.learned_idle {
                add("attribution.learnedIdle.", &l.unknown);
            }
        }
        super::meters::unknown_keys(
            self.experimental.as_ref(),
            self.model.as_ref().and_then(|m| m.dram.as_ref()),
            &mut out,
        );
        if let Some(p) = self.experimental.as_ref().and_then(|e| e.platform.as_ref()) {
            p.unknown_keys(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kepler_keys_and_reports_unknown_ones() {
        let cfg = FileConfig::parse(
            "log:\n  level: debug\nmonitor:\n  interval: 3s\n  maxTerminated: 10\n  bogus: 1\n\
             web:\n  listenAddresses: [':9999']\nfoo: bar\nexporter:\n  prometheus:\n    metricsLevel: [node]\n    colour: red\n",
        )
        .unwrap();
        assert_eq!(cfg.log.as_ref().unwrap().level.as_deref(), Some("debug"));
        assert_eq!(cfg.monitor.as_ref().unwrap().max_terminated, Some(10));
        assert_eq!(
            cfg.web.as_ref().unwrap().listen_addresses.as_deref(),
            Some(&[":9999".to_string()][..])
        );
        assert_eq!(
            cfg.unknown_keys(),
            vec!["foo", "monitor.bogus", "exporter.prometheus.colour"]
        );
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_key() {
        let err = FileConfig::parse("monitor:\n  maxTerminated: lots\n").unwrap_err();
        assert!(
            err.contains("maxTerminated") || err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_default() {
        assert!(FileConfig::parse("\n# nothing\n").unwrap().log.is_none());
    }
}
