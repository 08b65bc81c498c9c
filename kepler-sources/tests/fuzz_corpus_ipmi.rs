//! Replays the `ipmi_response` fuzz corpus as a plain test (issue 19): DCMI power readings
//! and SDR records, real-shaped and hostile, decode or fail, never panic.
#![cfg(feature = "ipmi")]

mod corpus_support;

use corpus_support::{corpus, corpus_dir};
use kepler_sources::ipmi::{check_response, parse_dcmi_power, parse_watts_sdr};
use proptest::prelude::*;

#[test]
fn ipmi_response_corpus_never_panics() {
    for (_, data) in corpus("ipmi_response") {
        check_response(&data);
    }
}

#[test]
fn corpus_seeds_decode_as_expected() {
    let dir = corpus_dir("ipmi_response");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap()[1..].to_vec();
    let p = parse_dcmi_power(&read("dcmi-active-517w")).unwrap();
    assert_eq!((p.current, p.average, p.active), (517, 510, true));
    assert!(!parse_dcmi_power(&read("dcmi-inactive")).unwrap().active);
    assert!(parse_dcmi_power(&read("dcmi-short")).is_err());
    assert!(parse_dcmi_power(&read("dcmi-wrong-group")).is_err());
    let sdr = |f: &str| {
        let d = read(f);
        parse_watts_sdr(&d[..d.len() - 2])
    };
    let s = sdr("sdr-watts-m2-b10").unwrap().unwrap();
    assert_eq!((s.name.as_str(), s.watts(100)), ("Pwr Consumption", 210.0));
    let s = sdr("sdr-watts-negative-m-twos").unwrap().unwrap();
    assert_eq!((s.m, s.r_exp, s.b_exp), (-3, -1, 1));
    assert_eq!(sdr("sdr-degrees").unwrap(), None);
    assert!(parse_watts_sdr(&read("sdr-truncated")).is_err());
    assert_eq!(
        sdr("sdr-name-overrun").unwrap().unwrap().name,
        "Pwr Consumption"
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        check_response(&data);
    }

    #[test]
    fn mutated_sdr_records_never_panic(at in 0usize..66, byte in any::<u8>()) {
        let mut data = std::fs::read(corpus_dir("ipmi_response").join("sdr-watts-m2-b10")).unwrap();
        let i = at.min(data.len() - 1).max(1);
        data[i] = byte;
        check_response(&data);
    }
}
