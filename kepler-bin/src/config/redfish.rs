//! `experimental.platform.redfish.*` (seed 004, EP-001): the keys and flags of Kepler, plus
//! the poll interval and staleness limit of the background poller.
//!
//! Unlike Go Kepler, `httpTimeout` defaults to 5 s whether the section comes from YAML or
//! from flags: a BMC that never answers cannot hold a request open forever.

use std::path::PathBuf;
use std::time::Duration;

use kepler_sources::redfish::RedfishOptions;

use super::key::{go_duration, Key};
use super::keys::*;
use super::{err, ConfigError, RawConfig};

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

/// `experimental.platform.redfish.*`, flags over the file; `node_name` is the resolved
/// Kubernetes/host name. Nothing is checked while Redfish is off.
pub fn redfish(raw: &RawConfig, node_name: &str) -> Result<Option<RedfishConfig>, ConfigError> {
    if !raw.value::<bool>(&REDFISH_ENABLED)? {
        return Ok(None);
    }
    let config_file = raw
        .get::<String>(&REDFISH_CONFIG_FILE)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            err(
                REDFISH_CONFIG_FILE.path,
                "required when Redfish is enabled (--experimental.platform.redfish.config)",
            )
        })?;
    let node_name = raw
        .get::<String>(&REDFISH_NODE_NAME)?
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| node_name.to_string());
    let http_timeout: Duration = raw.value(&REDFISH_HTTP_TIMEOUT)?;
    let interval: Duration = raw.value(&REDFISH_INTERVAL)?;
    let staleness = staleness(raw, &REDFISH_STALENESS, interval)?;
    Ok(Some(RedfishConfig {
        node_name,
        config_file: PathBuf::from(config_file),
        options: RedfishOptions {
            interval,
            staleness,
            http_timeout,
            max_backoff: (interval * 8).max(Duration::from_secs(60)),
            ..RedfishOptions::default()
        },
    }))
}

/// Three intervals by default; at least one interval, at most a day.
pub(super) fn staleness(
    raw: &RawConfig,
    key: &Key,
    interval: Duration,
) -> Result<Duration, ConfigError> {
    let max = Duration::from_secs(24 * 3600);
    let d = raw.get(key)?.unwrap_or(interval * 3);
    if d < interval || d > max {
        return Err(err(
            key.path,
            format!(
                "{d:?} is out of range: accepted {} (the interval) to {}",
                go_duration(interval),
                go_duration(max)
            ),
        ));
    }
    Ok(d)
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
