//! Replays the `redfish_bmc_config` fuzz corpus (issue 14) as a plain test: every BMC file
//! gives the node's BMCs or an error, never a panic, and the contract the fuzz target checks
//! holds (endpoints normalised, ids listed once, a world-readable file only for insecure BMCs).
#![cfg(feature = "redfish")]

mod corpus_support;

use std::path::Path;

use corpus_support::corpus;
use kepler_sources::redfish::{parse_node_bmcs, NodeBmcs};
use kepler_sources::ErrorKind;

/// The fuzz target's contract; returns the parse of the private (0600) file.
fn check(text: &str) -> Result<NodeBmcs, kepler_sources::Error> {
    let path = Path::new("redfish.yaml");
    let private = parse_node_bmcs(path, text, 0o600, "worker-1");
    if let Ok(n) = &private {
        for (i, b) in n.bmcs.iter().enumerate() {
            let rest = b
                .endpoint
                .strip_prefix("https://")
                .or_else(|| b.endpoint.strip_prefix("http://"))
                .unwrap_or_else(|| panic!("{:?}", b.endpoint));
            assert!(
                !rest.is_empty() && !rest.contains(['@', '/']),
                "{:?}",
                b.endpoint
            );
            assert!(n.bmcs[..i].iter().all(|x| x.id != b.id), "{:?}", b.id);
        }
    }
    if let Ok(readable) = parse_node_bmcs(path, text, 0o644, "worker-1") {
        assert!(readable.bmcs.iter().all(|b| b.insecure));
        assert_eq!(Some(&readable.bmcs), private.as_ref().ok().map(|n| &n.bmcs));
    }
    private
}

#[test]
fn redfish_bmc_config_corpus_replays_without_panic() {
    for (name, data) in corpus("redfish_bmc_config") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let parsed = check(text);
        let ids = |p: &Result<NodeBmcs, _>| -> Vec<String> {
            p.as_ref()
                .map(|n| n.bmcs.iter().map(|b| b.id.clone()).collect())
                .unwrap_or_default()
        };
        match name.as_str() {
            "one_bmc.yaml" => {
                let n = parsed.as_ref().unwrap();
                assert_eq!(n.bmcs[0].endpoint, "https://192.168.1.100");
                assert_eq!(ids(&parsed), ["bmc-1"]);
            }
            "list_and_insecure.yaml" => assert_eq!(ids(&parsed), ["enclosure", "blade-3"]),
            "empty.yaml" | "node_not_listed.yaml" => assert!(parsed.unwrap().bmcs.is_empty()),
            "missing_bmc.yaml" | "bad_endpoints.yaml" | "wrong_types.yaml" => {
                assert_eq!(
                    parsed.unwrap_err().kind(),
                    ErrorKind::InvalidConfig,
                    "{name}"
                )
            }
            "broken_yaml_with_password.yaml" => {
                // The YAML error must not echo the line holding the password.
                let e = parsed.unwrap_err().to_string();
                assert!(!e.contains("unterminated"), "{e}");
            }
            _ => {}
        }
    }
}
