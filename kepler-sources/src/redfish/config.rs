//! The BMC file (`experimental.platform.redfish.configFile`) and the poller's settings.
//!
//! ```yaml
//! nodes:                  # node name -> BMC id (or a list of ids: an enclosure and a blade)
//!   worker-1: bmc-1
//! bmcs:
//!   bmc-1:
//!     endpoint: "https://192.168.1.100"
//!     username: "admin"
//!     password: "secret"
//!     insecure: false     # true: skip TLS verification (development only)
//! ```
//!
//! The file holds passwords, so it must not be readable by group or others (mode 0600 or
//! stricter); with `insecure: true` on the chosen BMC a wider mode is only warned about.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use crate::bmc::Secret;
use crate::bmc::{BmcFile, RawBmcEntry};
use crate::Error;

/// One BMC, ready to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcConfig {
    /// The id used in the file and in the `bmc_id` label.
    pub id: String,
    /// `scheme://host[:port]`, without user info, path or trailing slash.
    pub endpoint: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
    /// Skip TLS certificate verification.
    pub insecure: bool,
}

/// How the poller behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedfishOptions {
    /// Time between polls of one BMC (jittered by ±10%). Default 30 s.
    pub interval: Duration,
    /// Readings older than this are not exported. Default 90 s (three polls).
    pub staleness: Duration,
    /// Limit for one HTTP request, connection to last body byte. Default 5 s.
    pub http_timeout: Duration,
    /// Largest response body accepted. Default 8 MiB.
    pub max_body: usize,
    /// Longest wait between polls after repeated failures. Default 8 intervals.
    pub max_backoff: Duration,
}

impl Default for RedfishOptions {
    fn default() -> Self {
        RedfishOptions {
            interval: Duration::from_secs(30),
            staleness: Duration::from_secs(90),
            http_timeout: Duration::from_secs(5),
            max_body: 8 << 20,
            max_backoff: Duration::from_secs(240),
        }
    }
}

#[derive(Deserialize)]
struct RawBmc {
    endpoint: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Secret,
    #[serde(default)]
    insecure: bool,
}

impl RawBmcEntry for RawBmc {
    fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    fn insecure(&self) -> bool {
        self.insecure
    }
}

/// The BMCs of one node, and warnings to log.
pub type NodeBmcs = crate::bmc::NodeBmcs<BmcConfig>;

/// Checks that `endpoint` is `http(s)://host[:port]` and returns it without a trailing slash.
/// User info is refused: credentials belong in `username`/`password`, and the endpoint is
/// shown in logs.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim().trim_end_matches('/');
    let rest = e
        .strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"))
        .ok_or_else(|| "endpoint must start with https:// or http://".to_string())?;
    if rest.contains('@') {
        return Err(
            "endpoint must not carry user info; put credentials in username/password".into(),
        );
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "endpoint {e:?} must be scheme://host[:port] with no path"
        ));
    }
    Ok(e.to_string())
}

/// Reads the BMC file at `path` and returns the BMCs `node` maps to. `Ok` with no BMCs when
/// the node is not listed (the platform source is then simply absent).
pub fn load_node_bmcs(path: &Path, node: &str) -> Result<NodeBmcs, Error> {
    node_bmcs(path, &BmcFile::load(path)?, node)
}

/// Like [`load_node_bmcs`] on text already read, with the file's permission bits `mode`.
pub fn parse_node_bmcs(path: &Path, text: &str, mode: u32, node: &str) -> Result<NodeBmcs, Error> {
    node_bmcs(path, &BmcFile::parse(path, text, mode)?, node)
}

fn node_bmcs(path: &Path, file: &BmcFile<RawBmc>, node: &str) -> Result<NodeBmcs, Error> {
    file.node_configs(path, node, normalize_endpoint, |id, b, endpoint| {
        Ok(BmcConfig {
            id: id.to_string(),
            endpoint,
            username: b.username.clone(),
            password: b.password.clone(),
            insecure: b.insecure,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const FILE: &str = concat!(
        "nodes:\n",
        "  worker-1: bmc-1\n",
        "  worker-2: [bmc-1, bmc-2]\n",
        "  ghost: bmc-9\n",
        "bmcs:\n",
        "  bmc-1:\n",
        "    endpoint: \"https://10.0.0.1/\"\n",
        "    username: admin\n",
        "    password: hunter2-very-secret\n",
        "    insecure: true\n",
        "  bmc-2:\n",
        "    endpoint: http://10.0.0.2:8000\n",
        "    username: root\n",
        "    password: s3cr3t-two\n",
    );

    fn p() -> &'static Path {
        Path::new("redfish.yaml")
    }

    #[test]
    fn maps_node_to_bmcs() {
        let n = parse_node_bmcs(p(), FILE, 0o600, "worker-1").unwrap();
        assert_eq!(n.bmcs.len(), 1);
        assert_eq!(n.bmcs[0].endpoint, "https://10.0.0.1");
        assert!(n.bmcs[0].insecure);
        let n = parse_node_bmcs(p(), FILE, 0o600, "worker-2").unwrap();
        let ids: Vec<_> = n.bmcs.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["bmc-1", "bmc-2"]);
        assert!(parse_node_bmcs(p(), FILE, 0o600, "elsewhere")
            .unwrap()
            .bmcs
            .is_empty());
    }

    #[test]
    fn missing_bmc_entry_names_node_and_bmc() {
        let e = parse_node_bmcs(p(), FILE, 0o600, "ghost").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let s = e.to_string();
        assert!(s.contains("\"ghost\"") && s.contains("\"bmc-9\""), "{s}");
    }

    #[test]
    fn readable_file_is_refused_unless_insecure() {
        let e = parse_node_bmcs(p(), FILE, 0o644, "worker-2").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("0644") && e.to_string().contains("chmod 600"));
        let n = parse_node_bmcs(p(), FILE, 0o640, "worker-1").unwrap();
        assert_eq!(n.warnings.len(), 1);
        assert!(n.warnings[0].contains("insecure"));
    }

    #[test]
    fn passwords_never_show_in_debug_display_or_errors() {
        let n = parse_node_bmcs(p(), FILE, 0o600, "worker-2").unwrap();
        let debug = format!("{n:?} {:?} {}", n.bmcs[1], n.bmcs[1].password);
        for secret in ["hunter2-very-secret", "s3cr3t-two"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("***"));
        assert_eq!(n.bmcs[1].password.expose(), "s3cr3t-two");
        // A YAML error on the password line must not echo it.
        let bad = "bmcs:\n  b:\n    password: [unclosed-hunter2-very-secret\n";
        let e = parse_node_bmcs(p(), bad, 0o600, "x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(
            normalize_endpoint("https://h:8443/").unwrap(),
            "https://h:8443"
        );
        assert!(normalize_endpoint("h:8443").is_err());
        assert!(normalize_endpoint("https://u:pw@h")
            .unwrap_err()
            .contains("user info"));
        assert!(normalize_endpoint("https://h/redfish/v1").is_err());
        let e = parse_node_bmcs(
            p(),
            "nodes: {n: b}\nbmcs: {b: {endpoint: 'ftp://x'}}",
            0o600,
            "n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bmcs.b.endpoint"), "{e}");
    }
}
