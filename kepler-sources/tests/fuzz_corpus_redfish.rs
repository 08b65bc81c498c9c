//! Replays the `redfish_resource` fuzz corpus as a plain test (issue #6): real vendor
//! payloads and hostile bodies give readings or an error, never a panic, and only finite,
//! non-negative watts.
#![cfg(feature = "redfish")]

mod corpus_support;

use corpus_support::{corpus, corpus_dir};
use kepler_sources::redfish::{node_watts, readings_in};
use proptest::prelude::*;

fn check(data: &[u8]) -> Option<usize> {
    let readings = readings_in(data, "c").ok()?;
    for r in &readings {
        assert!(r.watts.is_finite() && r.watts >= 0.0, "{r:?}");
    }
    let _ = node_watts(&readings);
    Some(readings.len())
}

#[test]
fn redfish_resource_corpus_never_panics() {
    for (_, data) in corpus("redfish_resource") {
        check(&data);
    }
}

#[test]
fn corpus_seeds_read_as_expected() {
    let dir = corpus_dir("redfish_resource");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    // Lenovo: three PowerControl entries (416, 111, 12).
    let r = readings_in(&read("lenovo-power.json"), "1").unwrap();
    assert_eq!(
        r.iter().map(|r| r.watts).collect::<Vec<_>>(),
        [416.0, 111.0, 12.0]
    );
    // Delta shelf: the expanded Sensors collection has four chassis-context power sensors
    // and six PSU input sensors (ranked below them; outputs are not candidates).
    assert_eq!(check(&read("delta-sensors-expanded.json")), Some(10));
    // A numeric string is read; a boolean, a negative number, "NaN" and a null are not.
    let r = readings_in(&read("odd-values.json"), "c").unwrap();
    assert_eq!(r.iter().map(|r| r.watts).collect::<Vec<_>>(), [12.0]);
    // serde_json refuses a number beyond f64 for the whole body: an error, not infinity.
    assert!(readings_in(&read("overflow.json"), "c").is_err());
    assert!(readings_in(&read("html"), "c").is_err());
    assert!(readings_in(&read("truncated.json"), "c").is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&data);
    }

    #[test]
    fn mutated_payloads_never_panic(cut in 0usize..2018, byte in any::<u8>()) {
        let dir = corpus_dir("redfish_resource");
        let mut data = std::fs::read(dir.join("ilo4-power.json")).unwrap();
        let i = cut.min(data.len() - 1);
        data[i] = byte;
        check(&data);
        check(&data[..i]);
    }
}
