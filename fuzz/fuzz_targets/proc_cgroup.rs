//! Fuzzes `parse_cgroup`, the parser of `/proc/<pid>/cgroup`: any text, no panic, and a
//! container id it returns is always 64 lowercase hex characters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(m) = kepler_sources::parse_cgroup(&text) {
        assert_eq!(m.container_id.len(), 64);
        assert!(m
            .container_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
});
