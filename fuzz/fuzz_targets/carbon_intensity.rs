//! Fuzzes the carbon intensity content parser (issue 20): what a file or URL named by
//! `carbon.intensity` serves (a number, a small JSON object, one Prometheus sample).
//!
//! Contracts: never panics; an accepted value is a finite number >= 0; a plain decimal
//! number is accepted as itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = kepler_sources::carbon::parse_intensity(text) {
        assert!(p.grams_per_kwh.is_finite() && p.grams_per_kwh >= 0.0);
    }
    if let Ok(v) = text.trim().parse::<f64>() {
        if v.is_finite() && v >= 0.0 {
            let p = kepler_sources::carbon::parse_intensity(text).unwrap();
            assert_eq!(p.grams_per_kwh, v);
        }
    }
    let _ = kepler_sources::carbon::parse_rfc3339(text);
});
