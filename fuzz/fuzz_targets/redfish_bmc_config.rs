//! Fuzzes `parse_node_bmcs`, the reader of the Redfish BMC file
//! (`experimental.platform.redfish.configFile`, issue 6): any text gives the node's BMCs or an
//! error, never a panic. Each input is read twice, as a private file (0600) and as a
//! world-readable one (0644): a BMC kept from the readable file must be `insecure` (the only
//! case a readable password file is allowed), and the same BMCs must come from the private one.
//! Every endpoint kept is `http(s)://host[:port]` without user info or trailing slash, and
//! each BMC id is listed once.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("redfish.yaml");
    let private = kepler_sources::redfish::parse_node_bmcs(path, text, 0o600, "worker-1");
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
    if let Ok(readable) = kepler_sources::redfish::parse_node_bmcs(path, text, 0o644, "worker-1") {
        assert!(readable.bmcs.iter().all(|b| b.insecure));
        assert_eq!(Some(&readable.bmcs), private.as_ref().ok().map(|n| &n.bmcs));
    }
});
