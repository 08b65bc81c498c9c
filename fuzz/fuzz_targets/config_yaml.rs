//! The YAML config parser and validator never panic, whatever the file holds.
#![no_main]

use kepler_bin::config::{Config, Flags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::build(&Flags::default(), Some(("fuzz.yaml", text)), None, || {
            "fuzz".into()
        });
    }
});
