//! Power source selection from `kepler-sources`' tables: the CPU meter, the platform meters
//! and the Redfish BMCs of this node.

use kepler_sources::ipmi::{load_ipmi_bmcs, Ipmi};
use kepler_sources::redfish::{load_node_bmcs, Redfish};
use kepler_sources::{meter, MeterContext, PLATFORM_METERS};

use crate::error::BuildError;
use crate::monitor::NamedSource;
use crate::options::{IpmiSetup, RedfishSetup};

/// The outcome of CPU meter selection.
pub struct MeterChoice {
    /// The first preferred meter that builds, if any.
    pub meter: Option<NamedSource>,
    /// The meters tried before it, with why each could not be used.
    pub skipped: Vec<(String, String)>,
}

/// Picks the CPU meter: the first of `preferred` that builds (names as in
/// `kepler_sources::METERS`, case-insensitive).
pub fn select_meter(ctx: &MeterContext, preferred: &[String]) -> MeterChoice {
    let mut skipped = Vec::new();
    for name in preferred {
        let Some(entry) = meter(name) else {
            skipped.push((name.clone(), "not built into this binary".into()));
            continue;
        };
        match (entry.build)(ctx) {
            Ok(source) => {
                return MeterChoice {
                    meter: Some(NamedSource {
                        name: name.clone(),
                        source,
                    }),
                    skipped,
                }
            }
            Err(e) => skipped.push((name.clone(), e.to_string())),
        }
    }
    MeterChoice {
        meter: None,
        skipped,
    }
}

/// Every platform meter enabled by default that builds here, named `<meter>-platform`; the
/// others are logged once at info level ("not present" is the normal state on most machines).
pub fn platform_sources(ctx: &MeterContext) -> Vec<NamedSource> {
    let mut out = Vec::new();
    for entry in PLATFORM_METERS.iter().filter(|m| m.enabled_by_default) {
        match (entry.build)(ctx) {
            Ok(source) => {
                tracing::info!(
                    meter = entry.name,
                    zones = source.zones().len(),
                    "platform meter: exported as platform zones"
                );
                out.push(NamedSource {
                    name: format!("{}-platform", entry.name),
                    source,
                });
            }
            Err(e) => {
                tracing::info!(meter = entry.name, reason = %e, "platform meter skipped")
            }
        }
    }
    out
}

const REDFISH_KEY: &str = "experimental.platform.redfish.configFile";

/// The Redfish source of this node (EP-001, issue 6), `None` when the node has no BMC. The
/// BMC file is read and checked first: a bad one is a setting error, so the exporter stops
/// before anything starts. The source then polls in the background and is read like a meter.
pub fn redfish_source(rf: &RedfishSetup) -> Result<Option<NamedSource>, BuildError> {
    let bad = |message: String| BuildError::Setting {
        key: REDFISH_KEY,
        message,
    };
    let node = load_node_bmcs(&rf.config_file, &rf.node_name).map_err(|e| bad(e.to_string()))?;
    for w in &node.warnings {
        tracing::warn!("{w}");
    }
    if node.bmcs.is_empty() {
        tracing::info!(node = %rf.node_name, file = %rf.config_file.display(), "Redfish: no BMC mapped to this node; platform power off");
        return Ok(None);
    }
    for b in &node.bmcs {
        tracing::info!(
            bmc = %b.id,
            endpoint = %b.endpoint,
            interval = ?rf.options.interval,
            http_timeout = ?rf.options.http_timeout,
            "Redfish: polling BMC in the background"
        );
    }
    let source = Redfish::start(node.bmcs, rf.options.clone()).map_err(|e| bad(e.to_string()))?;
    Ok(Some(NamedSource {
        name: "redfish".into(),
        source: Box::new(source),
    }))
}

const IPMI_KEY: &str = "experimental.platform.ipmi.configFile";

/// The IPMI source of this node (issue 19), `None` when the node has no BMC. Like
/// [`redfish_source`]: the BMC file is checked first (a bad one stops the exporter), then
/// the BMCs are polled in the background. Endpoints are logged, credentials never.
pub fn ipmi_source(ip: &IpmiSetup) -> Result<Option<NamedSource>, BuildError> {
    let bad = |message: String| BuildError::Setting {
        key: IPMI_KEY,
        message,
    };
    let node = load_ipmi_bmcs(&ip.config_file, &ip.node_name).map_err(|e| bad(e.to_string()))?;
    for w in &node.warnings {
        tracing::warn!("{w}");
    }
    if node.bmcs.is_empty() {
        tracing::info!(node = %ip.node_name, file = %ip.config_file.display(), "IPMI: no BMC mapped to this node; IPMI platform power off");
        return Ok(None);
    }
    for b in &node.bmcs {
        tracing::info!(
            bmc = %b.id,
            endpoint = %b.endpoint,
            cipher_suite = b.cipher_suite,
            interval = ?ip.options.interval,
            "IPMI: polling BMC in the background"
        );
    }
    let source = Ipmi::start(node.bmcs, ip.options.clone()).map_err(|e| bad(e.to_string()))?;
    Ok(Some(NamedSource {
        name: "ipmi".into(),
        source: Box::new(source),
    }))
}
