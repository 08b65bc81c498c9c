//! Fuzzes the lenient Redfish resource parser (issue #6): any body a BMC sends, HTML, cut
//! JSON, wrong types, huge numbers, must give readings or an error, never a panic, and
//! every reading must be finite, non-negative watts.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(readings) = kepler_sources::redfish::readings_in(data, "chassis") {
        for r in &readings {
            assert!(r.watts.is_finite() && r.watts >= 0.0, "{r:?}");
        }
        let _ = kepler_sources::redfish::node_watts(&readings);
    }
});
