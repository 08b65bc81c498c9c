//! Replays the `hwmon_value` fuzz corpus as a plain test (issue 7), with the same contracts
//! the fuzz target checks, so every seed and every crash input added later runs in CI.

#![cfg(feature = "hwmon")]

use std::path::PathBuf;

use kepler_sources::{parse_hwmon_label, parse_hwmon_value};

#[test]
fn hwmon_value_corpus_keeps_the_contracts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/hwmon_value");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let expected = std::str::from_utf8(data.trim_ascii())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        assert_eq!(
            parse_hwmon_value(&data).ok(),
            expected,
            "{}",
            path.display()
        );
        if let Some(label) = parse_hwmon_label(&data) {
            assert!(
                !label.is_empty() && label.chars().count() <= 64,
                "{}",
                path.display()
            );
            assert_eq!(label.trim(), label, "{}", path.display());
            assert!(!label.chars().any(char::is_control), "{}", path.display());
        }
        count += 1;
    }
    assert!(count >= 10, "corpus at {} has {count} seeds", dir.display());
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
