//! Fuzzes the parser of powercap counter values (`energy_uj`, `max_energy_range_uj`).
//!
//! Beyond "never panics", it checks the contract: a value is accepted exactly when the input,
//! trimmed of ASCII whitespace, is a non-empty run of decimal digits that fits in a u64.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = kepler_sources::parse_energy_uj(data);
    let trimmed = data.trim_ascii();
    let expected = std::str::from_utf8(trimmed)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    assert_eq!(parsed.ok(), expected);
});
