//! Configuration in two stages (STYLE.md rule 9): [`RawConfig`], what the user wrote (file
//! under flags, with warnings for unknown keys), and the validated [`Config`] that builds the
//! sources and the server. Precedence: defaults < file < flags.
//!
//! Every key is declared once in `keys.rs` (path, flag, type, default, check, help, README
//! meaning); flags, `--help`, the YAML reader and the README tables are made from there.

mod carbon;
mod duration;
mod env;
mod flags;
mod ipmi;
mod key;
mod keys;
mod kube;
mod meters;
mod outputs;
mod raw;
mod readme;
mod redfish;
mod yaml;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kepler_core::{IdlePolicy, IdlePower, Nanos};
use kepler_export::MetricsLevel;
use kepler_sources::ModelParams;

pub use duration::parse_duration;
pub use env::{env_name, ENV_ALIASES};
pub use flags::Flags;
pub use ipmi::IpmiConfig;
pub use meters::MeterConfig;
pub use outputs::Outputs;
pub use raw::RawConfig;
pub use readme::{readme_with_tables, README_UPDATE_COMMAND};
pub use redfish::RedfishConfig;

use keys::*;

/// `activity.source`: where per-process CPU time comes from (issue 5). The runtime's own
/// choice, so the validated value needs no second enum and no mapping.
pub use kepler_runtime::ActivityChoice as ActivitySourceKind;

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
    /// `monitor.minTerminatedEnergyThreshold`, joules.
    pub min_terminated_joules: u64,
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
    /// `web.auth.kubernetes.allowedSANames` when `web.auth.kubernetes.enabled`.
    pub kube_auth: Option<Vec<String>>,
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
    /// `experimental.platform.ipmi.*`; `None` when disabled.
    pub ipmi: Option<IpmiConfig>,
    /// Warnings to log once logging is set up (unknown keys...).
    pub warnings: Vec<String>,
    /// `activity.source`
    pub activity_source: ActivitySourceKind,
    /// `experimental.hwmon.*` and `experimental.gpu.*`
    pub meters: MeterConfig,
    /// `exporter.*` and `debug.*`: what is written where.
    pub outputs: Outputs,
    /// `carbon.*`; `None` unless `carbon.intensity` is set.
    pub carbon: Option<kepler_sources::carbon::IntensityOptions>,
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

impl Config {
    /// Merges defaults, the file (text already read, `None` when no file) and the flags, and
    /// validates the result. `env_node_name` is `$NODE_NAME`; `hostname` the fallback.
    pub fn build(
        flags: &Flags,
        file_text: Option<(&str, &str)>,
        env_node_name: Option<String>,
        hostname: impl FnOnce() -> String,
    ) -> Result<Config, ConfigError> {
        Config::from_raw(&RawConfig::new(flags, file_text)?, env_node_name, hostname)
    }

    /// The configuration as every `kepler` command loads it: `flags`, the file they (or
    /// `KEPLER_CONFIG_FILE`) name, the process's `KEPLER_<PATH>` variables between the two,
    /// `NODE_NAME`, else the hostname.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("KEPLER_"))
            .collect();
        let path = flags.config_file.clone().or_else(|| {
            env.iter()
                .find(|(k, _)| k == "KEPLER_CONFIG_FILE")
                .map(|(_, v)| v.clone())
        });
        let text = match &path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
                key: "config.file".into(),
                message: format!("cannot read {path}: {e}"),
            })?),
            None => None,
        };
        Config::build_with_env(
            flags,
            path.as_deref().zip(text.as_deref()),
            &env,
            std::env::var("NODE_NAME").ok(),
            hostname,
        )
    }

    /// [`Config::build`] with the process environment `env` between the file and the flags
    /// (`KEPLER_<PATH>` variables; see the README).
    pub fn build_with_env(
        flags: &Flags,
        file_text: Option<(&str, &str)>,
        env: &[(String, String)],
        env_node_name: Option<String>,
        hostname: impl FnOnce() -> String,
    ) -> Result<Config, ConfigError> {
        Config::from_raw(
            &RawConfig::with_env(flags, file_text, env)?,
            env_node_name,
            hostname,
        )
    }

    /// The second stage: each key read through its declaration (default and check), then the
    /// rules between keys.
    pub fn from_raw(
        raw: &RawConfig,
        env_node_name: Option<String>,
        hostname: impl FnOnce() -> String,
    ) -> Result<Config, ConfigError> {
        let mut warnings = raw.warnings.clone();
        let log_level: String = raw.value(&LOG_LEVEL)?;
        let log_format = match raw.value::<String>(&LOG_FORMAT)?.as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let sysfs: String = raw.value(&HOST_SYSFS)?;
        let procfs: String = raw.value(&HOST_PROCFS)?;

        let interval: Duration = raw.value(&MONITOR_INTERVAL)?;
        let staleness: Duration = raw.value(&MONITOR_STALENESS)?;
        if raw.is_set(&MONITOR_STALENESS) && !interval.is_zero() {
            warnings.push(format!(
                "config key \"{}\" has no effect in kepler-rs unless monitor.interval is 0: \
                 sources are read once per interval and a scrape never reads hardware",
                MONITOR_STALENESS.path
            ));
        }
        // Negative: no cap.
        let max_terminated = usize::try_from(raw.value::<i64>(&MONITOR_MAX_TERMINATED)?).ok();
        // Read on scrape: scrapes come at the scrapers' pace, so a fixed minute.
        let default_ttl = if interval.is_zero() {
            Duration::from_secs(60)
        } else {
            interval * 2
        };
        let terminated_ttl = raw.get(&MONITOR_TERMINATED_TTL)?.unwrap_or(default_ttl);
        let min_terminated_joules = raw.value::<i64>(&MIN_TERMINATED_ENERGY)?.max(0) as u64;

        let rapl_zones: Vec<String> = raw.get(&RAPL_ZONES)?.unwrap_or_default();
        let mut preferred_meters: Vec<String> = raw.value(&CPU_PREFERRED_METERS)?;
        // Go Kepler's legacy selectors win over cpu.preferredMeters, fake over hwmon.
        if raw.value::<bool>(&FAKE_CPU_METER_ENABLED)? {
            warnings.push(
                "dev.fake-cpu-meter.enabled is deprecated; set cpu.preferredMeters: [fake] instead"
                    .into(),
            );
            preferred_meters = vec!["fake".into()];
        } else if raw.value::<bool>(&HWMON_FORCE_ENABLED)? {
            warnings.push(
                "experimental.hwmon.forceEnabled is deprecated; set cpu.preferredMeters: [hwmon] instead"
                    .into(),
            );
            preferred_meters = vec!["hwmon".into()];
        }
        let model = meters::model(raw)?;

        let metrics = kepler_export::parse_levels(&raw.value::<Vec<String>>(&METRICS_LEVEL)?)
            .map_err(|e| err(METRICS_LEVEL.path, e.to_string()))?;

        let web_config_file = raw
            .get::<String>(&WEB_CONFIG_FILE)?
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from);
        let listen: Vec<String> = raw.value(&WEB_LISTEN_ADDRESSES)?;
        let kube_auth = match raw.value::<bool>(&WEB_AUTH_KUBERNETES)? {
            true => Some(
                raw.get::<Vec<String>>(&WEB_AUTH_KUBERNETES_ALLOWED)?
                    .unwrap_or_default(),
            ),
            false => None,
        };

        let kube_enabled: bool = raw.value(&KUBE_ENABLED)?;
        let kube_config = raw.get::<String>(&KUBE_CONFIG)?.filter(|s| !s.is_empty());
        let activity_source = match raw.value::<String>(&ACTIVITY_SOURCE)?.as_str() {
            "bpf" if !cfg!(feature = "bpf") => {
                return Err(err(
                    ACTIVITY_SOURCE.path,
                    "\"bpf\" needs a kepler built with the `bpf` cargo feature (cargo build --features bpf); use auto or procfs",
                ))
            }
            "bpf" => ActivitySourceKind::Bpf,
            "procfs" => ActivitySourceKind::Procfs,
            _ => ActivitySourceKind::Auto,
        };
        let node_name = raw
            .get::<String>(&KUBE_NODE_NAME)?
            .filter(|s| !s.trim().is_empty())
            .or(env_node_name.filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(hostname);
        let kube_informer =
            kube::informer_config(raw, kube_enabled, kube_config.as_deref(), &node_name)?;

        let (idle, idle_power) = attribution(raw)?;
        let redfish = redfish::redfish(raw, &node_name)?;
        let ipmi = ipmi::ipmi(raw, &node_name)?;
        let meters = meters::meter_config(raw, &mut warnings)?;
        if meters.model_file.is_some()
            && !preferred_meters
                .iter()
                .any(|m| m.eq_ignore_ascii_case("trained"))
        {
            warnings.push(
                "model.file is set but cpu.preferredMeters does not name trained: the model is not used"
                    .into(),
            );
        }
        if meters.vm_passthrough_dir.is_some() && interval.is_zero() {
            warnings.push(
                "vm.passthrough.enabled with monitor.interval 0: VM trees are written only when \
                 /metrics is scraped, so guests may mark them stale between scrapes"
                    .into(),
            );
        }
        let outputs = outputs::outputs(raw, &mut warnings)?;
        let carbon = carbon::carbon(raw, &mut warnings)?;
        warnings.extend(raw.unused_warnings()?);

        Ok(Config {
            redfish,
            ipmi,
            idle,
            idle_power,
            log_level,
            log_format,
            sysfs: sysfs.into(),
            procfs: procfs.into(),
            interval,
            staleness,
            min_terminated_joules,
            max_terminated,
            terminated_ttl,
            rapl_zones,
            preferred_meters,
            model,
            metrics,
            web_config_file,
            listen,
            kube_auth,
            kube_enabled,
            kube_config,
            kube_informer,
            node_name,
            warnings,
            activity_source,
            meters,
            outputs,
            carbon,
        })
    }
}

/// `attribution.*`: who gets idle energy and how idle power is estimated (issue 4).
fn attribution(raw: &RawConfig) -> Result<(IdlePolicy, IdlePower), ConfigError> {
    let idle = match raw.value::<String>(&ATTRIBUTION_IDLE)?.as_str() {
        "cpu-share" => IdlePolicy::CpuShare,
        "equal" => IdlePolicy::Equal,
        _ => IdlePolicy::None,
    };
    let idle_power = match raw.value::<String>(&ATTRIBUTION_IDLE_POWER)?.as_str() {
        "learned" => IdlePower::Learned {
            max_usage_permille: (raw.value::<f64>(&LEARNED_IDLE_MAX_USAGE)? * 1000.0).round()
                as u32,
            decay: Nanos(
                u64::try_from(raw.value::<Duration>(&LEARNED_IDLE_DECAY)?.as_nanos())
                    .unwrap_or(u64::MAX),
            ),
        },
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

/// This machine's name, for `node_name` when neither the config nor `NODE_NAME` gives one.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
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
        assert_eq!(
            c.preferred_meters,
            vec!["rapl", "hwmon", "trained", "model"]
        );
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

    /// Every declared default is a value of its key's type that passes the key's own check,
    /// and the literal defaults agree with the libraries' constants.
    #[test]
    fn declared_defaults_are_valid_and_agree_with_the_libraries() {
        let raw = RawConfig::default();
        for key in KEYS {
            if let key::DefaultValue::Value(text) = key.default {
                assert!(key.default_value().is_some(), "{}: {text:?}", key.path);
                let checked = match key.ty {
                    key::Ty::Bool => raw.get::<bool>(key).map(drop),
                    key::Ty::Int => raw.get::<i64>(key).map(drop),
                    key::Ty::Float => raw.get::<f64>(key).map(drop),
                    key::Ty::Str => raw.get::<String>(key).map(drop),
                    key::Ty::Duration => raw.get::<Duration>(key).map(drop),
                    key::Ty::Strs => raw.get::<Vec<String>>(key).map(drop),
                    key::Ty::Floats => raw.get::<Vec<f64>>(key).map(drop),
                    key::Ty::Any => Ok(()),
                };
                assert_eq!(checked, Ok(()), "{}", key.path);
            }
        }
        let c = build(&["--attribution.idle-power=learned"], None).unwrap();
        assert_eq!(c.idle_power, IdlePower::LEARNED_DEFAULT);
        assert_eq!(c.model, ModelParams::default());
        let r = build(
            &[
                "--experimental.platform.redfish.enabled",
                "--experimental.platform.redfish.config=/r",
            ],
            None,
        )
        .unwrap()
        .redfish
        .unwrap();
        let d = kepler_sources::redfish::RedfishOptions::default();
        assert_eq!(
            (
                r.options.http_timeout,
                r.options.interval,
                r.options.staleness
            ),
            (d.http_timeout, d.interval, d.staleness)
        );
    }

    /// Paths and flags are unique, and a key's YAML path and flag name the same thing.
    #[test]
    fn keys_are_unique() {
        let mut paths: Vec<&str> = KEYS.iter().map(|k| k.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), KEYS.len());
        for key in KEYS {
            assert!(!key.doc.is_empty(), "{} has no README meaning", key.path);
            if key.flag.is_some() {
                assert!(!key.help.is_empty(), "{} has no --help line", key.path);
            }
        }
    }

    /// Issue 14 (item 7): a key accepted without effect warns when set, in the file or as
    /// a flag, once.
    #[test]
    fn staleness_warns_that_it_has_no_effect_issue_14() {
        assert!(build(&[], None).unwrap().warnings.is_empty());
        for (args, file) in [
            (&["--monitor.staleness=1s"][..], None),
            (&[][..], Some("monitor:\n  staleness: 1s\n")),
            (
                &["--monitor.staleness=2s"][..],
                Some("monitor:\n  staleness: 1s\n"),
            ),
        ] {
            let c = build(args, file).unwrap();
            assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
            assert!(c.warnings[0].contains("\"monitor.staleness\" has no effect"));
        }
        let e = build(&["--monitor.staleness=soon"], None).unwrap_err();
        assert_eq!(e.key, "monitor.staleness");
    }

    /// Issue 14 (item 7): a key that another key makes unused warns instead of being
    /// silently ignored.
    #[test]
    fn keys_unused_by_the_mode_warn_issue_14() {
        let learned = "attribution:\n  learnedIdle:\n    maxUsage: 0.2\n";
        let c = build(&[], Some(learned)).unwrap();
        assert_eq!(
            c.warnings,
            ["config key \"attribution.learnedIdle.maxUsage\" has no effect unless attribution.idlePower is learned (it is usage)"]
        );
        let c = build(&["--attribution.idle-power=learned"], Some(learned)).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = build(
            &[],
            Some("kube:\n  podInformer:\n    mode: apiserver\n    pollInterval: 5s\n    kubeletURL: ''\n"),
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("\"kube.podInformer.pollInterval\""));
    }

    #[test]
    fn wrong_yaml_types_name_the_key_and_the_file() {
        let e = build(&[], Some("monitor:\n  maxTerminated: lots\n")).unwrap_err();
        assert_eq!(e.key, "monitor.maxTerminated");
        assert!(
            e.message.contains("\"lots\"") && e.message.contains("test.yaml"),
            "{}",
            e.message
        );
        let e = build(&[], Some("kube:\n  enabled: 3\n")).unwrap_err();
        assert_eq!(e.key, "kube.enabled");
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn build_env(
        args: &[&str],
        file: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let mut argv = vec!["kepler"];
        argv.extend_from_slice(args);
        let flags = Flags::try_parse_from(argv).expect("flags parse");
        Config::build_with_env(
            &flags,
            file.map(|t| ("test.yaml", t)),
            &env(vars),
            None,
            || "host-a".into(),
        )
    }

    /// Issue 17: `KEPLER_<PATH>` for every key, between the file and the flags.
    #[test]
    fn environment_sits_between_file_and_flags_issue_17() {
        let file = "monitor:\n  interval: 2s\n  maxTerminated: 7\nrapl:\n  zones: [package]\n";
        let vars = [
            ("KEPLER_MONITOR_INTERVAL", "3s"),
            ("KEPLER_RAPL_ZONES", "package, dram"),
            ("KEPLER_KUBE_ENABLED", "false"),
            ("KEPLER_EXPORTER_SERVICE_HOST", "10.0.0.1"),
        ];
        let c = build_env(&[], Some(file), &vars).unwrap();
        assert_eq!(c.interval, Duration::from_secs(3));
        assert_eq!(c.rapl_zones, ["package", "dram"]);
        assert_eq!(c.max_terminated, Some(7));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = build_env(&["--monitor.interval=4s"], Some(file), &vars).unwrap();
        assert_eq!(c.interval, Duration::from_secs(4));
        // The setup guide's spelling, which the key's own variable overrides.
        let c = build_env(&[], None, &[("KEPLER_METRICS_INTERVAL", "30s")]).unwrap();
        assert_eq!(c.interval, Duration::from_secs(30));
        let c = build_env(
            &[],
            None,
            &[
                ("KEPLER_METRICS_INTERVAL", "30s"),
                ("KEPLER_MONITOR_INTERVAL", "10s"),
            ],
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        let e = build_env(&[], None, &[("KEPLER_MONITOR_MAX_TERMINATED", "many")]).unwrap_err();
        assert_eq!(e.key, "monitor.maxTerminated");
        assert!(
            e.message.contains("$KEPLER_MONITOR_MAX_TERMINATED"),
            "{}",
            e.message
        );
        let e = build_env(&[], None, &[("KEPLER_LOG_LEVEL", "loud")]).unwrap_err();
        assert_eq!(e.key, "log.level");
        let c = build_env(&[], None, &[("KEPLER_EXPERIMENTAL_HWMON_CHIP_RULES", "x")]).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("$KEPLER_EXPERIMENTAL_HWMON_CHIP_RULES"));
    }

    /// Issue 17: Go Kepler's values that kepler-rs rejected, and its legacy meter switches.
    #[test]
    fn upstream_values_are_accepted_issue_17() {
        let c = build(&["--monitor.interval=0"], None).unwrap();
        assert_eq!(c.interval, Duration::ZERO);
        assert_eq!(c.terminated_ttl, Duration::from_secs(60));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = build(&["--monitor.interval=0", "--monitor.staleness=2s"], None).unwrap();
        assert_eq!(c.staleness, Duration::from_secs(2));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = build(&["--monitor.staleness=2s"], None).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(build(&["--monitor.interval=50ms"], None).is_err());

        let c = build(&["--cpu.preferred-meters=fake"], None).unwrap();
        assert_eq!(c.preferred_meters, ["fake"]);
        let c = build(
            &[],
            Some("dev:\n  fake-cpu-meter:\n    enabled: true\n    zones: [package, dram]\nexperimental:\n  hwmon:\n    forceEnabled: true\n"),
        )
        .unwrap();
        assert_eq!(c.preferred_meters, ["fake"]);
        assert_eq!(c.meters.fake_zones, ["package", "dram"]);
        assert!(c.warnings[0].contains("dev.fake-cpu-meter.enabled is deprecated"));
        let c = build(&["--experimental.hwmon.force-enabled"], None).unwrap();
        assert_eq!(c.preferred_meters, ["hwmon"]);
        let e = build(&[], Some("dev:\n  fake-cpu-meter:\n    zones: [gpu]\n")).unwrap_err();
        assert_eq!(e.key, "dev.fake-cpu-meter.zones");

        let c = build(&[], Some("monitor:\n  minTerminatedEnergyThreshold: 10\n")).unwrap();
        assert_eq!(c.min_terminated_joules, 10);
        assert_eq!(build(&[], None).unwrap().min_terminated_joules, 0);
        let e = build(&[], Some("monitor:\n  minTerminatedEnergyThreshold: -1\n")).unwrap_err();
        assert_eq!(e.key, "monitor.minTerminatedEnergyThreshold");

        let c = build(
            &[
                "--experimental.gpu.enabled=false",
                "--experimental.gpu.idle-power=30",
                "--experimental.gpu.dcgm-endpoint=http://10.0.0.2:9400/metrics",
                "--experimental.hwmon.zones=VDD_CPU",
            ],
            None,
        )
        .unwrap();
        assert!(!c.meters.gpu_enabled);
        assert_eq!(c.meters.gpu_idle_watts, Some(30.0));
        assert_eq!(c.meters.hwmon_zones, ["VDD_CPU"]);
        assert!(c.warnings.iter().any(|w| w.contains("dcgmEndpoint")));
        let e = build(&["--experimental.gpu.dcgm-endpoint=10.0.0.2:9400"], None).unwrap_err();
        assert_eq!(e.key, "experimental.gpu.dcgmEndpoint");
    }

    #[test]
    fn trained_model_keys_issue_20() {
        let yaml = "model:\n  file: /m.json\n  export: /out.json\n  exportInterval: 30s\n  acceptMismatch: true\n";
        let c = build(&[], Some(yaml)).unwrap();
        assert_eq!(c.meters.model_file, Some(PathBuf::from("/m.json")));
        assert_eq!(c.meters.model_export, Some(PathBuf::from("/out.json")));
        assert_eq!(c.meters.model_export_interval, Duration::from_secs(30));
        assert!(c.meters.model_accept_mismatch && c.warnings.is_empty());
        let c = build(
            &["--model.export=/f.json", "--model.export-interval=2m"],
            None,
        )
        .unwrap();
        assert_eq!(c.meters.model_export, Some(PathBuf::from("/f.json")));
        assert_eq!(c.meters.model_export_interval, Duration::from_secs(120));
        assert_eq!(
            build(&[], None).unwrap().meters.model_export_interval,
            Duration::from_secs(600)
        );
        let e = build(&[], Some("model:\n  exportInterval: 0s\n")).unwrap_err();
        assert!(e.to_string().contains("model.exportInterval"), "{e}");
        let c = build(
            &[],
            Some("model:\n  file: /m.json\ncpu:\n  preferredMeters: [rapl, model]\n"),
        )
        .unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("model.file")),
            "{:?}",
            c.warnings
        );
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
