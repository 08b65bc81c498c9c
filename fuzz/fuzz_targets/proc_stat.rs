//! Fuzzes `parse_stat`, the parser of `/proc/<pid>/stat`: any bytes, no panic, and what it
//! accepts is one printable line of comm.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fields) = kepler_sources::parse_stat(data) {
        assert!(!fields.comm.chars().any(char::is_control));
    }
});
