//! Fuzzes `parse_model`, the reader of a trained power model file (`model.file`, issue 20):
//! any bytes give a model or an error, never a panic, and every zone of a model that parses
//! predicts finite, non-negative watts at any utilisation.
#![no_main]

use std::path::Path;

use kepler_core::Features;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = kepler_sources::trained::parse_model(Path::new("model.json"), data) else {
        return;
    };
    for i in 0..model.zones.len() {
        let p = model.predictor(i).expect("a validated model has a predictor per zone");
        for u in [0.0, 0.37, 1.0, -1.0, 2.0] {
            // A model that also needs cycles or instructions predicts nothing from busy alone.
            if let Some(w) = p.predict(&Features::busy(u)) {
                assert!(w.is_finite() && w >= 0.0, "zone {i} at {u}: {w}");
            }
        }
    }
});
