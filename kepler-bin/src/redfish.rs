//! Wiring of the Redfish platform source (EP-001, issue 6): the BMC file is read and checked
//! before anything starts (a bad one is a configuration error, exit code 2), then the
//! source polls in the background and sits next to the CPU meter.

use kepler_sources::redfish::{load_node_bmcs, Redfish};

use crate::config::{Config, ConfigError};
use crate::monitor::NamedSource;

const KEY: &str = "experimental.platform.redfish.configFile";

/// The Redfish source for this node, `None` when Redfish is off or the node has no BMC.
pub fn source(config: &Config) -> Result<Option<NamedSource>, ConfigError> {
    let Some(rf) = &config.redfish else {
        return Ok(None);
    };
    let bad = |message: String| ConfigError {
        key: KEY.into(),
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
