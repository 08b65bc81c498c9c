//! Replays the `powercap_value` fuzz corpus as a plain test, so every seed (and every crash
//! input added to the corpus later) is checked without a nightly toolchain.

#![cfg(feature = "rapl")]

use std::path::PathBuf;

use kepler_sources::parse_energy_uj;

#[test]
fn powercap_value_corpus_never_panics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/powercap_value");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let parsed = parse_energy_uj(&data);
        // The same contract the fuzz target checks.
        let expected = std::str::from_utf8(data.trim_ascii())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        assert_eq!(parsed.ok(), expected, "{}", path.display());
        count += 1;
    }
    assert!(count > 0, "empty corpus at {}", dir.display());
}

#[test]
fn corpus_seeds_decode_as_expected() {
    assert_eq!(parse_energy_uj(b"123456\n"), Ok(123_456));
    assert_eq!(parse_energy_uj(b"18446744073709551615\n"), Ok(u64::MAX));
    for bad in [
        &b""[..],
        b"-1",
        b"18446744073709551616",
        b"0x1f",
        b"+7",
        b"1.5",
    ] {
        assert!(parse_energy_uj(bad).is_err(), "{bad:?}");
    }
}
