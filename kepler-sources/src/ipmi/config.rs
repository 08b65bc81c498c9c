//! The IPMI BMC file (`experimental.platform.ipmi.configFile`) and the poller's settings.
//!
//! ```yaml
//! nodes:                  # node name -> BMC id (or a list of ids)
//!   worker-1: bmc-1
//! bmcs:
//!   bmc-1:
//!     endpoint: "192.168.1.100:623"   # host[:port], port 623 when omitted
//!     username: "admin"
//!     password: "secret"
//!     cipherSuite: 3      # the only suite supported (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128)
//!     insecure: false     # true: a group/world-readable file is only warned about
//! ```
//!
//! Same shape and the same rules as the Redfish file: mode 0600 or stricter, passwords
//! never shown.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::bmc::{invalid, BmcFile, NodeBmcs, RawBmcEntry, Secret};
use crate::Error;

/// The RMCP+ port.
pub const IPMI_PORT: u16 = 623;
/// Cipher suites this build speaks.
pub const SUPPORTED_CIPHER_SUITES: [u8; 1] = [3];

/// One BMC, ready to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiBmcConfig {
    /// The id used in the file and in the `bmc_id` label.
    pub id: String,
    /// `host:port` (port 623 added when the file omits it).
    pub endpoint: String,
    /// The user name (at most 16 bytes, as IPMI allows).
    pub username: String,
    /// The password (at most 20 bytes).
    pub password: Secret,
    /// The RMCP+ cipher suite.
    pub cipher_suite: u8,
}

/// How the poller behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiOptions {
    /// Time between polls of one BMC (jittered by ±10%). Default 10 s: a DCMI reading is one
    /// small UDP exchange.
    pub interval: Duration,
    /// Readings older than this are not exported. Default 30 s (three polls).
    pub staleness: Duration,
    /// Wait for one answer before resending. Default 1 s.
    pub timeout: Duration,
    /// Sends of one request before it fails. Default 3.
    pub attempts: u32,
    /// Longest wait between polls after repeated failures. Default 8 intervals.
    pub max_backoff: Duration,
}

impl Default for IpmiOptions {
    fn default() -> Self {
        IpmiOptions {
            interval: Duration::from_secs(10),
            staleness: Duration::from_secs(30),
            timeout: Duration::from_secs(1),
            attempts: 3,
            max_backoff: Duration::from_secs(80),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBmc {
    endpoint: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Secret,
    cipher_suite: Option<u8>,
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
pub type IpmiNodeBmcs = NodeBmcs<IpmiBmcConfig>;

/// Checks `host[:port]` (IPv6 as `[addr]:port`) and returns it with a port.
pub fn normalize_ipmi_endpoint(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    if e.is_empty() || e.contains(['/', '@', ' ', '?', '#']) {
        return Err(format!(
            "endpoint {e:?} must be host[:port] (no scheme, path or user info)"
        ));
    }
    let has_port = if let Some(rest) = e.strip_prefix('[') {
        let Some((_, after)) = rest.split_once(']') else {
            return Err(format!("endpoint {e:?}: unclosed [ of an IPv6 address"));
        };
        match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("endpoint {e:?} must be [addr]:port")),
        }
    } else {
        match e.matches(':').count() {
            0 => None,
            1 => e.rsplit_once(':').map(|(_, p)| p),
            _ => {
                return Err(format!(
                    "endpoint {e:?}: write an IPv6 address as [addr]:port"
                ))
            }
        }
    };
    match has_port {
        None => Ok(format!("{e}:{IPMI_PORT}")),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(e.to_string()),
            _ => Err(format!("endpoint {e:?}: port {p:?} is not 1-65535")),
        },
    }
}

/// Reads the BMC file at `path` and returns the BMCs `node` maps to. `Ok` with no BMCs when
/// the node is not listed (the source is then simply absent).
pub fn load_ipmi_bmcs(path: &Path, node: &str) -> Result<IpmiNodeBmcs, Error> {
    node_bmcs(path, &BmcFile::load(path)?, node)
}

/// Like [`load_ipmi_bmcs`] on text already read, with the file's permission bits `mode`.
pub fn parse_ipmi_bmcs(
    path: &Path,
    text: &str,
    mode: u32,
    node: &str,
) -> Result<IpmiNodeBmcs, Error> {
    node_bmcs(path, &BmcFile::parse(path, text, mode)?, node)
}

fn node_bmcs(path: &Path, file: &BmcFile<RawBmc>, node: &str) -> Result<IpmiNodeBmcs, Error> {
    file.node_configs(path, node, normalize_ipmi_endpoint, |id, b, endpoint| {
        let cipher_suite = b.cipher_suite.unwrap_or(3);
        if !SUPPORTED_CIPHER_SUITES.contains(&cipher_suite) {
            return Err(invalid(
                path,
                format!(
                    "bmcs.{id}.cipherSuite: suite {cipher_suite} is not supported; kepler-rs speaks \
                     RMCP+ cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) only"
                ),
            ));
        }
        if b.username.len() > 16 {
            return Err(invalid(
                path,
                format!("bmcs.{id}.username is longer than IPMI's 16 bytes"),
            ));
        }
        if b.password.expose().len() > 20 {
            return Err(invalid(
                path,
                format!("bmcs.{id}.password is longer than IPMI 2.0's 20 bytes"),
            ));
        }
        Ok(IpmiBmcConfig {
            id: id.to_string(),
            endpoint,
            username: b.username.clone(),
            password: b.password.clone(),
            cipher_suite,
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
        "    endpoint: \"10.0.0.1\"\n",
        "    username: admin\n",
        "    password: hunter2-very-secret\n",
        "    insecure: true\n",
        "  bmc-2:\n",
        "    endpoint: \"[fd00::2]:6230\"\n",
        "    username: root\n",
        "    password: s3cr3t-two\n",
        "    cipherSuite: 3\n",
    );

    fn p() -> &'static Path {
        Path::new("ipmi.yaml")
    }

    #[test]
    fn maps_node_to_bmcs_with_default_port_and_suite() {
        let n = parse_ipmi_bmcs(p(), FILE, 0o600, "worker-2").unwrap();
        let got: Vec<_> = n
            .bmcs
            .iter()
            .map(|b| (b.id.as_str(), b.endpoint.as_str(), b.cipher_suite))
            .collect();
        assert_eq!(
            got,
            [("bmc-1", "10.0.0.1:623", 3), ("bmc-2", "[fd00::2]:6230", 3)]
        );
        assert!(parse_ipmi_bmcs(p(), FILE, 0o600, "elsewhere")
            .unwrap()
            .bmcs
            .is_empty());
        let e = parse_ipmi_bmcs(p(), FILE, 0o600, "ghost").unwrap_err();
        assert!(e.to_string().contains("\"bmc-9\""), "{e}");
    }

    #[test]
    fn readable_file_is_refused_unless_insecure() {
        let e = parse_ipmi_bmcs(p(), FILE, 0o644, "worker-2").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let n = parse_ipmi_bmcs(p(), FILE, 0o640, "worker-1").unwrap();
        assert_eq!(n.warnings.len(), 1);
    }

    #[test]
    fn unsupported_suite_and_bad_endpoints_name_the_key() {
        let f = "nodes: {n: b}\nbmcs: {b: {endpoint: h, cipherSuite: 17}}";
        let e = parse_ipmi_bmcs(p(), f, 0o600, "n").unwrap_err().to_string();
        assert!(e.contains("bmcs.b.cipherSuite") && e.contains("17"), "{e}");
        for bad in [
            "https://h",
            "h:0",
            "h:x",
            "fd00::1",
            "[fd00::1",
            "u@h:623",
            "",
        ] {
            assert!(normalize_ipmi_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_ipmi_endpoint(" h:6230 ").unwrap(), "h:6230");
        assert_eq!(normalize_ipmi_endpoint("[::1]").unwrap(), "[::1]:623");
    }

    #[test]
    fn passwords_never_show() {
        let n = parse_ipmi_bmcs(p(), FILE, 0o600, "worker-2").unwrap();
        let debug = format!("{n:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        let bad = "bmcs:\n  b:\n    password: [unclosed-hunter2\n";
        let e = parse_ipmi_bmcs(p(), bad, 0o600, "x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
