//! `experimental.platform.redfish.*` (seed 004, EP-001): the keys and flags of Kepler, plus
//! the poll interval and staleness limit of the background poller.
//!
//! Unlike Go Kepler, `httpTimeout` defaults to 5 s whether the section comes from YAML or
//! from flags: a BMC that never answers cannot hold a request open forever.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kepler_sources::redfish::RedfishOptions;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{duration, err, ConfigError, Flags};

type Unknown = BTreeMap<String, IgnoredAny>;

/// `experimental.platform.*`
#[derive(Debug, Default, Deserialize)]
pub struct PlatformSection {
    /// `experimental.platform.redfish.*`
    pub redfish: Option<RedfishSection>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `experimental.platform.redfish.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedfishSection {
    /// `enabled`
    pub enabled: Option<bool>,
    /// `nodeName`: the key into the BMC file's `nodes`.
    pub node_name: Option<String>,
    /// `configFile`: the BMC file.
    pub config_file: Option<String>,
    /// `httpTimeout` (Go duration; default 5s).
    pub http_timeout: Option<String>,
    /// `interval` (kepler-rs; Go duration; default 30s): time between polls of a BMC.
    pub interval: Option<String>,
    /// `staleness` (kepler-rs; Go duration; default 3 intervals): older readings are not
    /// exported.
    pub staleness: Option<String>,
    #[serde(flatten)]
    unknown: Unknown,
}

impl PlatformSection {
    /// Dotted paths of unknown keys under `experimental.platform`.
    pub fn unknown_keys(&self, out: &mut Vec<String>) {
        out.extend(
            self.unknown
                .keys()
                .map(|k| format!("experimental.platform.{k}")),
        );
        if let Some(r) = &self.redfish {
            out.extend(
                r.unknown
                    .keys()
                    .map(|k| format!("experimental.platform.redfish.{k}")),
            );
        }
    }
}

/// The validated Redfish settings; present only when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedfishConfig {
    /// The node name looked up in the BMC file: `nodeName`, else the node name.
    pub node_name: String,
    /// The BMC file.
    pub config_file: PathBuf,
    /// Poller settings.
    pub options: RedfishOptions,
}

const KEY: &str = "experimental.platform.redfish";

/// Merges flags over the file section; `node_name` is the resolved Kubernetes/host name.
pub fn redfish(
    flags: &Flags,
    file: Option<&PlatformSection>,
    node_name: &str,
) -> Result<Option<RedfishConfig>, ConfigError> {
    let section = file.and_then(|p| p.redfish.as_ref());
    let enabled = flags
        .redfish_enabled
        .or(section.and_then(|s| s.enabled))
        .unwrap_or(false);
    if !enabled {
        return Ok(None);
    }
    let config_file = flags
        .redfish_config
        .clone()
        .or(section.and_then(|s| s.config_file.clone()))
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            err(
                &format!("{KEY}.configFile"),
                "required when Redfish is enabled (--experimental.platform.redfish.config)",
            )
        })?;
    let node_name = flags
        .redfish_node_name
        .clone()
        .or(section.and_then(|s| s.node_name.clone()))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| node_name.to_string());

    let defaults = RedfishOptions::default();
    let get = |key: &str, v: Option<&String>, default: Duration, min: Duration, max: Duration| {
        let key = format!("{KEY}.{key}");
        let d = match v {
            Some(v) => duration(&key, v)?,
            None => default,
        };
        if d < min || d > max {
            return Err(err(
                &key,
                format!("{d:?} is out of range: accepted {min:?} to {max:?}"),
            ));
        }
        Ok(d)
    };
    let http_timeout = get(
        "httpTimeout",
        section.and_then(|s| s.http_timeout.as_ref()),
        defaults.http_timeout,
        Duration::from_millis(100),
        Duration::from_secs(300),
    )?;
    let interval = get(
        "interval",
        section.and_then(|s| s.interval.as_ref()),
        defaults.interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )?;
    let staleness = get(
        "staleness",
        section.and_then(|s| s.staleness.as_ref()),
        interval * 3,
        interval,
        Duration::from_secs(24 * 3600),
    )?;
    Ok(Some(RedfishConfig {
        node_name,
        config_file: PathBuf::from(config_file),
        options: RedfishOptions {
            interval,
            staleness,
            http_timeout,
            max_backoff: (interval * 8).max(Duration::from_secs(60)),
            ..defaults
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::build;
    use super::*;

    /// Issue 6: the seed's keys, with a 5 s timeout whether the section comes from YAML or
    /// flags (Go Kepler had none when the YAML omitted it).
    #[test]
    fn seed_keys_and_default_timeout_issue_6() {
        assert_eq!(build(&[], None).unwrap().redfish, None);
        let yaml = "experimental:\n  platform:\n    redfish:\n      enabled: true\n      nodeName: worker-1\n      configFile: /etc/kepler/redfish.yaml\n";
        let r = build(&[], Some(yaml)).unwrap().redfish.unwrap();
        assert_eq!(r.node_name, "worker-1");
        assert_eq!(r.config_file, PathBuf::from("/etc/kepler/redfish.yaml"));
        assert_eq!(r.options.http_timeout, Duration::from_secs(5));
        assert_eq!(r.options.interval, Duration::from_secs(30));
        assert_eq!(r.options.staleness, Duration::from_secs(90));

        let flags = [
            "--experimental.platform.redfish.enabled",
            "--experimental.platform.redfish.config=/r.yaml",
        ];
        let r = build(&flags, None).unwrap().redfish.unwrap();
        assert_eq!(r.options.http_timeout, Duration::from_secs(5));
        assert_eq!(r.node_name, "host-a", "falls back to the node name");
        let r = build(
            &[
                "--experimental.platform.redfish.enabled=true",
                "--experimental.platform.redfish.config-file=/alias.yaml",
                "--experimental.platform.redfish.node-name=w9",
            ],
            Some(yaml),
        )
        .unwrap()
        .redfish
        .unwrap();
        assert_eq!(r.config_file, PathBuf::from("/alias.yaml"));
        assert_eq!(r.node_name, "w9", "flags win over the file");
        let off = build(
            &["--experimental.platform.redfish.enabled=false"],
            Some(yaml),
        )
        .unwrap();
        assert_eq!(off.redfish, None);
    }

    #[test]
    fn timeouts_and_intervals_are_checked_issue_6() {
        let y = |extra: &str| {
            format!("experimental:\n  platform:\n    redfish:\n      enabled: true\n      configFile: /r.yaml\n{extra}")
        };
        let r = build(
            &[],
            Some(&y("      httpTimeout: 2s\n      interval: 10s\n")),
        )
        .unwrap()
        .redfish
        .unwrap();
        assert_eq!(r.options.http_timeout, Duration::from_secs(2));
        assert_eq!(r.options.staleness, Duration::from_secs(30));
        let e = build(&[], Some(&y("      httpTimeout: 0s\n"))).unwrap_err();
        assert_eq!(e.key, "experimental.platform.redfish.httpTimeout");
        let e = build(&[], Some(&y("      httpTimeout: soon\n"))).unwrap_err();
        assert_eq!(e.key, "experimental.platform.redfish.httpTimeout");
        let e = build(&[], Some(&y("      interval: 30s\n      staleness: 10s\n"))).unwrap_err();
        assert_eq!(e.key, "experimental.platform.redfish.staleness");
        let e = build(&["--experimental.platform.redfish.enabled"], None).unwrap_err();
        assert_eq!(e.key, "experimental.platform.redfish.configFile");
        let c = build(&[], Some(&y("      colour: red\n"))).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("experimental.platform.redfish.colour")),
            "{:?}",
            c.warnings
        );
    }
}
