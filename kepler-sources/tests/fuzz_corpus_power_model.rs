//! Replays the `power_model` fuzz corpus (issue 20) as a plain test: every model file gives
//! a model or an error naming the bad field, never a panic, and every zone of a model that
//! parses predicts finite, non-negative watts at any utilisation.
#![cfg(feature = "trained")]

mod corpus_support;

use std::path::Path;

use corpus_support::corpus;
use kepler_core::{Features, Input};
use kepler_sources::trained::parse_model;
use kepler_sources::ErrorKind;

#[test]
fn power_model_corpus_replays_without_panic() {
    for (name, data) in corpus("power_model") {
        let parsed = parse_model(Path::new("model.json"), &data);
        if let Ok(model) = &parsed {
            for i in 0..model.zones.len() {
                let p = model.predictor(i).unwrap();
                for u in [0.0, 0.37, 1.0, -1.0, 2.0] {
                    // A model that needs counters predicts nothing from busy alone.
                    if let Some(w) = p.predict(&Features::busy(u)) {
                        assert!(w.is_finite() && w >= 0.0, "{name}: zone {i} at {u}: {w}");
                    }
                }
            }
        }
        let err = |field: &str| {
            let e = parsed.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Parse, "{name}");
            assert!(e.to_string().contains(field), "{name}: {e}");
        };
        match name.as_str() {
            "valid.json" => {
                let m = parsed.as_ref().unwrap();
                let w = m
                    .predictor(0)
                    .unwrap()
                    .predict(&Features::busy(0.0))
                    .unwrap();
                assert!((w - 10.2).abs() < 1e-9, "{w}");
            }
            "negative_everywhere.json" => {
                // Negative predictions are clamped to 0 W.
                let m = parsed.as_ref().unwrap();
                assert_eq!(
                    m.predictor(0).unwrap().predict(&Features::busy(0.5)),
                    Some(0.0)
                );
            }
            "needs_cycles.json" => {
                let m = parsed.as_ref().unwrap();
                assert_eq!(m.inputs, [Input::Busy, Input::Cycles]);
                assert_eq!(m.predictor(0).unwrap().predict(&Features::busy(0.5)), None);
            }
            "future_version.json" => err("version"),
            "short_coefficients.json" | "huge_coefficient.json" => err("zones[0].coefficients"),
            "overflowing_number.json" | "truncated.json" => err("not a power model file"),
            _ => {}
        }
    }
}
