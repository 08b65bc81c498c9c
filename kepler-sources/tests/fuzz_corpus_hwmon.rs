//! Replays the `hwmon_value` fuzz corpus as a plain test (issue 7), with the same contracts
//! the fuzz target checks, so every seed and every crash input added later runs in CI.

#![cfg(feature = "hwmon")]

mod corpus_support;

use corpus_support::{corpus, expected_decimal};
use kepler_sources::{parse_hwmon_label, parse_hwmon_value};

#[test]
fn hwmon_value_corpus_keeps_the_contracts() {
    let files = corpus("hwmon_value");
    assert!(
        files.len() >= 10,
        "hwmon_value corpus has {} seeds",
        files.len()
    );
    for (name, data) in files {
        assert_eq!(
            parse_hwmon_value(&data).ok(),
            expected_decimal(&data),
            "{name}"
        );
        if let Some(label) = parse_hwmon_label(&data) {
            assert!(!label.is_empty() && label.chars().count() <= 64, "{name}");
            assert_eq!(label.trim(), label, "{name}");
            assert!(!label.chars().any(char::is_control), "{name}");
        }
    }
}

#[test]
fn corpus_seeds_decode_as_expected() {
    assert_eq!(parse_hwmon_value(b"12500000\n"), Ok(12_500_000));
    assert!(parse_hwmon_value(b"-5000\n")
        .unwrap_err()
        .contains("negative"));
    assert_eq!(
        parse_hwmon_label(b"PSU1 input\r\n").as_deref(),
        Some("PSU1 input")
    );
    assert_eq!(
        parse_hwmon_label(b"\t\x01VDD_CPU\x7f \n").as_deref(),
        Some("_VDD_CPU_")
    );
    assert_eq!(parse_hwmon_label(&[b'x'; 300]).map(|l| l.len()), Some(64));
}
