//! Fuzzes `parse_node_cpu`, the parser of the node line of `/proc/stat` (`cpu  user nice
//! system idle ...`): any bytes, no panic, and busy time never exceeds the total (both
//! saturate rather than wrap, so a counter near `u64::MAX` cannot invert them).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = kepler_sources::parse_node_cpu(data) {
        assert!(t.busy <= t.total, "{t:?}");
    }
});
