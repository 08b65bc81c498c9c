//! `experimental.platform.ipmi.*` (issue 19): platform power from BMCs over IPMI/DCMI, with
//! a BMC file shaped like Redfish's and the same poll interval and staleness rules.

use std::path::PathBuf;
use std::time::Duration;

use kepler_sources::ipmi::IpmiOptions;

use super::keys::*;
use super::redfish::staleness;
use super::{err, ConfigError, RawConfig};

/// The validated IPMI settings; present only when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiConfig {
    /// The node name looked up in the BMC file.
    pub node_name: String,
    /// The BMC file.
    pub config_file: PathBuf,
    /// Poller settings.
    pub options: IpmiOptions,
}

/// `experimental.platform.ipmi.*`, flags over the file. Nothing is checked while IPMI is off.
pub fn ipmi(raw: &RawConfig, node_name: &str) -> Result<Option<IpmiConfig>, ConfigError> {
    if !raw.value::<bool>(&IPMI_ENABLED)? {
        return Ok(None);
    }
    let config_file = raw
        .get::<String>(&IPMI_CONFIG_FILE)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            err(
                IPMI_CONFIG_FILE.path,
                "required when IPMI is enabled (--experimental.platform.ipmi.config)",
            )
        })?;
    let interval: Duration = raw.value(&IPMI_INTERVAL)?;
    let staleness = staleness(raw, &IPMI_STALENESS, interval)?;
    Ok(Some(IpmiConfig {
        node_name: node_name.to_string(),
        config_file: PathBuf::from(config_file),
        options: IpmiOptions {
            interval,
            staleness,
            max_backoff: (interval * 8).max(Duration::from_secs(60)),
            ..IpmiOptions::default()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::build;
    use super::*;

    #[test]
    fn keys_flags_and_defaults_issue_19() {
        assert_eq!(build(&[], None).unwrap().ipmi, None);
        let yaml = "experimental:\n  platform:\n    ipmi:\n      enabled: true\n      configFile: /etc/kepler/ipmi.yaml\n";
        let c = build(&[], Some(yaml)).unwrap().ipmi.unwrap();
        assert_eq!(c.config_file, PathBuf::from("/etc/kepler/ipmi.yaml"));
        assert_eq!(c.node_name, "host-a");
        assert_eq!(c.options.interval, Duration::from_secs(10));
        assert_eq!(c.options.staleness, Duration::from_secs(30));
        let c = build(
            &[
                "--experimental.platform.ipmi.enabled",
                "--experimental.platform.ipmi.config-file=/i.yaml",
                "--experimental.platform.ipmi.interval=5s",
                "--experimental.platform.ipmi.staleness=1m",
            ],
            None,
        )
        .unwrap()
        .ipmi
        .unwrap();
        assert_eq!(c.config_file, PathBuf::from("/i.yaml"));
        assert_eq!(c.options.interval, Duration::from_secs(5));
        assert_eq!(c.options.staleness, Duration::from_secs(60));
        let e = build(&["--experimental.platform.ipmi.enabled"], None).unwrap_err();
        assert_eq!(e.key, "experimental.platform.ipmi.configFile");
        let e = build(
            &[],
            Some(&format!(
                "{yaml}      interval: 30s\n      staleness: 10s\n"
            )),
        )
        .unwrap_err();
        assert_eq!(e.key, "experimental.platform.ipmi.staleness");
        let e = build(&[], Some(&format!("{yaml}      interval: 0s\n"))).unwrap_err();
        assert_eq!(e.key, "experimental.platform.ipmi.interval");
    }
}
