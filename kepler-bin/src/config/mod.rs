//! Configuration in two stages: what the user wrote (file + flags) and the validated
//! [`Config`] that builds the sources and the server. Precedence: defaults < file < flags.

mod duration;
mod file;
mod flags;
mod kube;
mod meters;
mod redfish;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kepler_core::{IdlePolicy, IdlePower, Nanos};
use kepler_export::MetricsLevel;
use kepler_sources::ModelParams;

pub use duration::parse_duration;
pub use file::FileConfig;
pub use flags::Flags;
pub use meters::MeterConfig;
pub use redfish::RedfishConfig;

/// `activity.source`: where per-process CPU time comes from (issue 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivitySourceKind {
    /// eBPF when built in and permitted, else procfs (one log line says why).
    Auto,
    /// eBPF or fail at start.
    Bpf,
    /// procfs only.
    Procfs,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `log.level`
    pub log_level: String,
    /// `log.format`
    pub log_format: LogFormat,
    /// `host.sysfs`
    pub sysfs: PathBuf,
    /// `host.procfs`
    pub procfs: PathBuf,
    /// `monitor.interval`
    pub interval: Duration,
    /// `monitor.staleness`
    pub staleness: Duration,
    /// `monitor.maxTerminated` (`None`: no cap)
    pub max_terminated: Option<usize>,
    /// `monitor.terminatedTTL`
    pub terminated_ttl: Duration,
    /// `rapl.zones`
    pub rapl_zones: Vec<String>,
    /// `cpu.preferredMeters`
    pub preferred_meters: Vec<String>,
    /// `model.*`
    pub model: ModelParams,
    /// `exporter.prometheus.metricsLevel`
    pub metrics: MetricsLevel,
    /// `web.configFile`
    pub web_config_file: Option<PathBuf>,
    /// `web.listenAddresses`
    pub listen: Vec<String>,
    /// `kube.enabled`
    pub kube_enabled: bool,
    /// `kube.config`
    pub kube_config: Option<String>,
    /// `kube.podInformer.*`; `None` unless `kube.enabled`.
    pub kube_informer: Option<kepler_k8s::InformerConfig>,
    /// The node name: `kube.nodeName`, else `$NODE_NAME`, else the hostname.
    pub node_name: String,
    /// `attribution.idle`
    pub idle: IdlePolicy,
    /// `attribution.idlePower` with `attribution.learnedIdle.*`
    pub idle_power: IdlePower,
    /// `experimental.platform.redfish.*`; `None` when disabled.
    pub redfish: Option<RedfishConfig>,
    /// Warnings to log once logging is set up (unknown keys...).
    pub warnings: Vec<String>,
    /// `activity.source`
    pub activity_source: ActivitySourceKind,
    /// `experimental.hwmon.*` and `experimental.gpu.*`
    pub meters: MeterConfig,
}

/// A configuration value that cannot be used. Maps to exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key (`monitor.interval`) or file concerned.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

const LOG_LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const RAPL_ZONES: [&str; 5] = ["package", "core", "uncore", "dram", "psys"];

fn one_of(key: &str, value: &str, accepted: &[&str]) -> Result<String, ConfigError> {
    let v = value.trim().to_ascii_lowercase();
    if accepted.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(err(
            key,
            format!("{value:?} is not one of {}", accepted.join(", ")),
        ))
    }
}

fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration(value).map_err(|e| err(key, e))
}

impl Config {
    /// Merges defaults, the file (text already read, `None` when no file) and the flags, and
    /// validates the result. `env_node_name` is `$NODE_NAME`; `hostname` the fallback.
    pub fn build(
        flags: &Flags,
        file_text: Option<(&str, &str)>,
        env_node_name: Option<String>,
        hostname: impl FnOnce() -> String,
    ) -> Result<Config, ConfigError> {
        let file = match file_text {
            Some((path, text)) => FileConfig::parse(text).map_err(|e| err(path, e))?,
            None => FileConfig::default(),
        };
        let mut warnings: Vec<String> = file
            .unknown_keys()
            .into_iter()
            .map(|k| format!("unknown config key {k:?} ignored"))
            .collect();

        let log = file.log.as_ref();
        let log_level = one_of(
            "log.level",
            flags
                .log_level
                .as_deref()
                .or(log.and_then(|l| l.level.as_deref()))
                .unwrap_or("info"),
            &LOG_LEVELS,
        )?;
        let log_format = match one_of(
            "log.format",
            flags
                .log_format
                .as_deref()
                .or(log.and_then(|l| l.format.as_deref()))
                .unwrap_or("text"),
            &["text", "json", "logfmt"],
        )?
        .as_str()
        {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };

        let host = file.host.as_ref();
        let sysfs = flags
            .host_sysfs
            .clone()
            .or(host.and_then(|h| h.sysfs.clone()))
            .unwrap_or_else(|| "/sys".into());
        let procfs = flags
            .host_procfs
            .clone()
            .or(host.and_then(|h| h.procfs.clone()))
            .unwrap_or_else(|| "/proc".into());
        for (key, v) in [("host.sysfs", &sysfs), ("host.procfs", &procfs)] {
            if v.trim().is_empty() {
                return Err(err(key, "must not be empty"));
            }
        }

        let monitor = file.monitor.as_ref();
        let interval = duration(
            "monitor.interval",
            flags
                .monitor_interval
                .as_deref()
                .or(monitor.and_then(|m| m.interval.as_deref()))
                .unwrap_or("5s"),
        )?;
        if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
            return Err(err(
                "monitor.interval",
                format!("{interval:?} is out of range: accepted 100ms to 1h"),
            ));
        }
        let staleness = duration(
            "monitor.staleness",
            flags
                .monitor_staleness
                .as_deref()
                .or(monitor.and_then(|m| m.staleness.as_deref()))
                .unwrap_or("500ms"),
        )?;
        let max_terminated = match flags
            .monitor_max_terminated
            .or(monitor.and_then(|m| m.max_terminated))
            .unwrap_or(500)
        {
            n if n < 0 => None,
            n => Some(n as usize),
        };
        let terminated_ttl = match flags
            .monitor_terminated_ttl
            .as_deref()
            .or(monitor.and_then(|m| m.terminated_ttl.as_deref()))
        {
            Some(v) => duration("monitor.terminatedTTL", v)?,
            None => interval * 2,
        };

        let rapl_zones = flags
            .rapl_zones
            .clone()
            .or(file.rapl.as_ref().and_then(|r| r.zones.clone()))
            .unwrap_or_default()
            .iter()
            .filter(|z| !z.trim().is_empty())
            .map(|z| one_of("rapl.zones", z, &RAPL_ZONES))
            .collect::<Result<Vec<_>, _>>()?;

        let meter_names: Vec<&str> = kepler_sources::METERS.iter().map(|m| m.name).collect();
        let preferred_meters = flags
            .cpu_preferred_meters
            .clone()
            .or(file.cpu.as_ref().and_then(|c| c.preferred_meters.clone()))
            .unwrap_or_else(|| vec!["rapl".into(), "hwmon".into(), "model".into()])
            .iter()
            .map(|m| one_of("cpu.preferredMeters", m, &meter_names))
            .collect::<Result<Vec<_>, _>>()?;
        if preferred_meters.is_empty() {
            return Err(err(
                "cpu.preferredMeters",
                format!("must name at least one of {}", meter_names.join(", ")),
            ));
        }

        let defaults = ModelParams::default();
        let model_file = file.model.as_ref();
        let model = ModelParams {
            idle_watts: flags
                .model_idle_watts
                .or(model_file.and_then(|m| m.idle_watts))
                .unwrap_or(defaults.idle_watts),
            max_watts: flags
                .model_max_watts
                .or(model_file.and_then(|m| m.max_watts))
                .unwrap_or(defaults.max_watts),
            ..defaults
        };
        let (curve, dram) = meters::model_extras(
            model_file.and_then(|m| m.curve.as_ref()),
            model_file.and_then(|m| m.dram.as_ref()),
        )?;
        let model = ModelParams {
            curve,
            dram,
            ..model
        };
        if !(model.idle_watts.is_finite() && model.idle_watts >= 0.0) {
            return Err(err("model.idleWatts", "must be a number >= 0"));
        }
        if !(model.max_watts.is_finite()
            && model.max_watts >= model.idle_watts
            && model.max_watts < 10_000.0)
        {
            return Err(err(
                "model.maxWatts",
                "must be a number between model.idleWatts and 10000",
            ));
        }

        let prom = file.exporter.as_ref().and_then(|e| e.prometheus.as_ref());
        if prom.and_then(|p| p.enabled) == Some(false) {
            warnings.push(
                "exporter.prometheus.enabled=false is ignored: the Prometheus endpoint is the only exporter".into(),
            );
        }
        let levels = flags
            .metrics
            .clone()
            .or(prom.and_then(|p| p.metrics_level.clone()))
            .unwrap_or_else(|| vec!["all".into()]);
        let metrics = kepler_export::parse_levels(&levels)
            .map_err(|e| err("exporter.prometheus.metricsLevel", e.to_string()))?;

        let web = file.web.as_ref();
        let web_config_file = flags
            .web_config_file
            .clone()
            .or(web.and_then(|w| w.config_file.clone()))
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from);
        let listen = flags
            .web_listen_address
            .clone()
            .or(web.and_then(|w| w.listen_addresses.clone()))
            .unwrap_or_else(|| vec![":28282".into()]);
        if listen.is_empty() {
            return Err(err("web.listenAddresses", "must name at least one address"));
        }
        for a in &listen {
            if !valid_listen_address(a) {
                return Err(err(
                    "web.listenAddresses",
                    format!("{a:?} is not HOST:PORT or :PORT"),
                ));
            }
        }

        let kube = file.kube.as_ref();
        let kube_enabled = flags
            .kube_enable
            .or(kube.and_then(|k| k.enabled))
            .unwrap_or(false);
        let kube_config = flags
            .kube_config
            .clone()
            .or(kube.and_then(|k| k.config.clone()))
            .filter(|s| !s.is_empty());
        let activity_source = match one_of(
            "activity.source",
            flags
                .activity_source
                .as_deref()
                .or(file.activity.as_ref().and_then(|a| a.source.as_deref()))
                .unwrap_or("auto"),
            &["auto", "bpf", "procfs"],
        )?
        .as_str()
        {
            "bpf" if !cfg!(feature = "bpf") => {
                return Err(err(
                    "activity.source",
                    "\"bpf\" needs a kepler built with the `bpf` cargo feature (cargo build --features bpf); use auto or procfs",
                ))
            }
            "bpf" => ActivitySourceKind::Bpf,
            "procfs" => ActivitySourceKind::Procfs,
            _ => ActivitySourceKind::Auto,
        };
        let node_name = flags
            .kube_node_name
            .clone()
            .or(kube.and_then(|k| k.node_name.clone()))
            .filter(|s| !s.trim().is_empty())
            .or(env_node_name.filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(hostname);
        let kube_informer = kube::informer_config(
            kube_enabled,
            kube_config.as_deref(),
            &node_name,
            kube.and_then(|k| k.pod_informer.as_ref()),
        )?;

        let (idle, idle_power) = attribution(flags, file.attribution.as_ref())?;

        let redfish = redfish::redfish(
            flags,
            file.experimental.as_ref().and_then(|e| e.platform.as_ref()),
            &node_name,
        )?;

        Ok(Config {
            redfish,
            idle,
            idle_power,
            log_level,
            log_format,
            sysfs: sysfs.into(),
            procfs: procfs.into(),
            interval,
            staleness,
            max_terminated,
            terminated_ttl,
            rapl_zones,
            preferred_meters,
            model,
            metrics,
            web_config_file,
            listen,
            kube_enabled,
            kube_config,
            kube_informer,
            node_name,
            warnings,
            activity_source,
            meters: meters::meter_config(file.experimental.as_ref())?,
        })
    }
}

/// `attribution.*`: who gets idle energy and how idle power is estimated (issue 4).
fn attribution(
    flags: &Flags,
    file: Option<&file::AttributionSection>,
) -> Result<(IdlePolicy, IdlePower), ConfigError> {
    let idle = match one_of(
        "attribution.idle",
        flags
            .attribution_idle
            .as_deref()
            .or(file.and_then(|a| a.idle.as_deref()))
            .unwrap_or("none"),
        &["none", "cpu-share", "equal", "requests"],
    )?
    .as_str()
    {
        "cpu-share" => IdlePolicy::CpuShare,
        "equal" => IdlePolicy::Equal,
        "requests" => {
            return Err(err(
                "attribution.idle",
                "\"requests\" needs pods' CPU requests from Kubernetes, which this build does not read; use none, cpu-share or equal",
            ))
        }
        _ => IdlePolicy::None,
    };
    let learned = file.and_then(|a| a.learned_idle.as_ref());
    let idle_power = match one_of(
        "attribution.idlePower",
        flags
            .attribution_idle_power
            .as_deref()
            .or(file.and_then(|a| a.idle_power.as_deref()))
            .unwrap_or("usage"),
        &["usage", "learned"],
    )?
    .as_str()
    {
        "learned" => {
            let max_usage_permille = match learned.and_then(|l| l.max_usage) {
                Some(u) if (0.0..=1.0).contains(&u) => (u * 1000.0).round() as u32,
                Some(u) => {
                    return Err(err(
                        "attribution.learnedIdle.maxUsage",
                        format!("{u} is not a usage ratio between 0 and 1"),
                    ))
                }
                None => IdlePower::DEFAULT_MAX_USAGE_PERMILLE,
            };
            let decay = match learned.and_then(|l| l.decay.as_deref()) {
                Some(d) => Nanos(
                    u64::try_from(duration("attribution.learnedIdle.decay", d)?.as_nanos())
                        .unwrap_or(u64::MAX),
                ),
                None => IdlePower::DEFAULT_DECAY,
            };
            IdlePower::Learned {
                max_usage_permille,
                decay,
            }
        }
        _ => IdlePower::Usage,
    };
    Ok((idle, idle_power))
}

/// `:PORT` or `HOST:PORT` (IPv6 hosts in brackets).
fn valid_listen_address(a: &str) -> bool {
    let Some((host, port)) = a.rsplit_once(':') else {
        return false;
    };
    let host_ok =
        host.is_empty() || (host.starts_with('[') && host.ends_with(']')) || !host.contains(':');
    host_ok && port.parse::<u16>().is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    /// A config from command-line `args` and an optional YAML `file`, on host `host-a`;
    /// shared by the tests of the config submodules.
    /// `Config::build` from test flags and an optional YAML text (host name `host-a`).
    pub(crate) fn build(args: &[&str], file: Option<&str>) -> Result<Config, ConfigError> {
        let mut argv = vec!["kepler"];
        argv.extend_from_slice(args);
        let flags = Flags::try_parse_from(argv).expect("flags parse");
        Config::build(&flags, file.map(|t| ("test.yaml", t)), None, || {
            "host-a".into()
        })
    }

    #[test]
    fn defaults_are_keplers() {
        let c = build(&[], None).unwrap();
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.terminated_ttl, Duration::from_secs(10));
        assert_eq!(c.listen, vec![":28282"]);
        assert_eq!(c.sysfs, PathBuf::from("/sys"));
        assert_eq!(c.node_name, "host-a");
        assert_eq!(c.preferred_meters, vec!["rapl", "hwmon", "model"]);
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let file = "monitor:\n  interval: 2s\nlog:\n  level: debug\nhost:\n  sysfs: /fake/sys\n";
        let c = build(&["--monitor.interval=3s"], Some(file)).unwrap();
        assert_eq!(c.interval, Duration::from_secs(3));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.sysfs, PathBuf::from("/fake/sys"));
    }

    #[test]
    fn bad_values_name_the_key_and_accepted_values() {
        let e = build(&["--log.level=loud"], None).unwrap_err();
        assert_eq!(e.key, "log.level");
        assert!(
            e.message.contains("debug, info, warn, error"),
            "{}",
            e.message
        );
        let e = build(&[], Some("monitor:\n  interval: fast\n")).unwrap_err();
        assert_eq!(e.key, "monitor.interval");
        let e = build(&["--metrics=node,galaxy"], None).unwrap_err();
        assert_eq!(e.key, "exporter.prometheus.metricsLevel");
        assert!(e.message.contains("galaxy"), "{}", e.message);
        let e = build(&["--cpu.preferred-meters=magic"], None).unwrap_err();
        assert_eq!(e.key, "cpu.preferredMeters");
        let e = build(&["--web.listen-address=nope"], None).unwrap_err();
        assert_eq!(e.key, "web.listenAddresses");
        let e = build(&["--model.idle-watts=50", "--model.max-watts=10"], None).unwrap_err();
        assert_eq!(e.key, "model.maxWatts");
        let e = build(&[], Some("monitor: [1, 2")).unwrap_err();
        assert_eq!(e.key, "test.yaml");
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let c = build(&[], Some("colour: blue\nmonitor:\n  speed: 3\n")).unwrap();
        assert_eq!(c.warnings.len(), 2);
        assert!(c.warnings[0].contains("\"colour\""));
        assert!(c.warnings[1].contains("\"monitor.speed\""));
    }

    #[test]
    fn node_name_falls_back_from_flag_to_env_to_hostname() {
        let flags = Flags::try_parse_from(["kepler", "--kube.node-name=n1"]).unwrap();
        let c = Config::build(&flags, None, Some("n2".into()), || "h".into()).unwrap();
        assert_eq!(c.node_name, "n1");
        let flags = Flags::try_parse_from(["kepler"]).unwrap();
        let c = Config::build(&flags, None, Some("n2".into()), || "h".into()).unwrap();
        assert_eq!(c.node_name, "n2");
    }

    /// Issue 4: the idle policy and idle power keys.
    #[test]
    fn attribution_keys_issue_4() {
        let c = build(&[], None).unwrap();
        assert_eq!((c.idle, c.idle_power), (IdlePolicy::None, IdlePower::Usage));
        let file = "attribution:\n  idle: cpu-share\n  idlePower: learned\n  learnedIdle:\n    maxUsage: 0.2\n    decay: 30m\n";
        let c = build(&[], Some(file)).unwrap();
        assert_eq!(c.idle, IdlePolicy::CpuShare);
        assert_eq!(
            c.idle_power,
            IdlePower::Learned {
                max_usage_permille: 200,
                decay: Nanos::from_secs(1800)
            }
        );
        let c = build(&["--attribution.idle=equal"], Some(file)).unwrap();
        assert_eq!(c.idle, IdlePolicy::Equal);
        let e = build(&["--attribution.idle=requests"], None).unwrap_err();
        assert_eq!(e.key, "attribution.idle");
        assert!(e.message.contains("Kubernetes"), "{}", e.message);
        let e = build(&["--attribution.idle=fair"], None).unwrap_err();
        assert_eq!(e.key, "attribution.idle");
        let e = build(
            &["--attribution.idle-power=learned"],
            Some("attribution:\n  learnedIdle:\n    maxUsage: 3\n"),
        )
        .unwrap_err();
        assert_eq!(e.key, "attribution.learnedIdle.maxUsage");
    }

    #[test]
    fn listen_addresses() {
        assert!(valid_listen_address(":28282"));
        assert!(valid_listen_address("127.0.0.1:1"));
        assert!(valid_listen_address("[::1]:28282"));
        assert!(!valid_listen_address("28282"));
        assert!(!valid_listen_address("::1:28282"));
        assert!(!valid_listen_address(":99999"));
    }
}
