//! Replays the `carbon_intensity` fuzz corpus as a plain test (issue 20), with the fuzz
//! target's contracts, plus a property test over arbitrary text: the content parser of the
//! `carbon.intensity` file or URL never panics, and what it accepts is a finite number >= 0.

#![cfg(feature = "carbon")]

mod corpus_support;

use corpus_support::corpus;
use kepler_sources::carbon::{parse_intensity, parse_rfc3339};
use proptest::prelude::*;

fn check(text: &str) -> Option<f64> {
    let _ = parse_rfc3339(text);
    let parsed = parse_intensity(text).ok().map(|p| p.grams_per_kwh);
    if let Some(v) = parsed {
        assert!(v.is_finite() && v >= 0.0, "{text:?} gave {v}");
    }
    if let Ok(v) = text.trim().parse::<f64>() {
        if v.is_finite() && v >= 0.0 {
            assert_eq!(parsed, Some(v), "{text:?}");
        }
    }
    parsed
}

#[test]
fn carbon_intensity_corpus_keeps_the_contracts() {
    let files = corpus("carbon_intensity");
    assert!(files.len() >= 15, "{} seeds", files.len());
    let mut accepted = Vec::new();
    for (name, data) in files {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Some(v) = check(text) {
            accepted.push((name, v));
        }
    }
    let got = |n: &str| accepted.iter().find(|(name, _)| name == n).map(|(_, v)| *v);
    assert_eq!(got("number"), Some(400.0));
    assert_eq!(got("json_electricitymaps"), Some(302.0));
    assert_eq!(got("prom_labels"), Some(250.25));
    assert_eq!(got("openmetrics"), Some(7.0));
    for rejected in [
        "prom_two",
        "prom_inf",
        "negative",
        "nan",
        "empty",
        "json_bad_time",
    ] {
        assert_eq!(got(rejected), None, "{rejected}");
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        check(&text);
    }

    #[test]
    fn prometheus_shaped_text_never_panics(
        name in "[a-z_]{1,8}",
        labels in proptest::option::of("[a-z]{1,4}=\"[ -~]{0,10}\""),
        value in "[-+0-9.eEInfNa]{0,12}",
        ts in proptest::option::of("[-0-9.]{0,16}"),
    ) {
        let line = format!(
            "{name}{} {value}{}\n",
            labels.map_or(String::new(), |l| format!("{{{l}}}")),
            ts.map_or(String::new(), |t| format!(" {t}")),
        );
        check(&line);
    }

    #[test]
    fn json_shaped_text_never_panics(
        key in "(intensity|carbonIntensity|value|other)",
        v in "[-0-9.e\"a-z]{0,10}",
        when in "[-0-9T:.Z+ \"]{0,30}",
    ) {
        check(&format!("{{\"{key}\": {v}, \"timestamp\": {when}}}"));
    }
}
