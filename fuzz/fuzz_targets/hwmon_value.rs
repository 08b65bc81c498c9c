//! Fuzzes the parsers of hwmon attribute values (`powerN_input`, `energyN_input`, ...) and of
//! `name` / `_label` files (issue 7).
//!
//! Contracts: a value is accepted exactly when the input, trimmed of ASCII whitespace, is a
//! non-empty run of decimal digits that fits in a u64; a label, when kept, is non-empty, at
//! most 64 characters, trimmed, and has no control characters.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = kepler_sources::parse_hwmon_value(data);
    let expected = std::str::from_utf8(data.trim_ascii())
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    assert_eq!(parsed.ok(), expected);

    if let Some(label) = kepler_sources::parse_hwmon_label(data) {
        assert!(!label.is_empty());
        assert!(label.chars().count() <= 64);
        assert_eq!(label.trim(), label);
        assert!(!label.chars().any(char::is_control));
    }
});
