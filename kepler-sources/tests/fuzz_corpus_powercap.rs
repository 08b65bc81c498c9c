//! Replays the `powercap_value` fuzz corpus as a plain test, so every seed (and every crash
//! input added to the corpus later) is checked without a nightly toolchain.

#![cfg(feature = "rapl")]

mod corpus_support;

use corpus_support::{corpus, expected_decimal};
use kepler_sources::parse_energy_uj;

#[test]
fn powercap_value_corpus_never_panics() {
    for (name, data) in corpus("powercap_value") {
        // The same contract the fuzz target checks.
        assert_eq!(
            parse_energy_uj(&data).ok(),
            expected_decimal(&data),
            "{name}"
        );
    }
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
