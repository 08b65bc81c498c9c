//! Fuzzes the exporter-toolkit web config parser (`--web.config-file`, issue 14): any YAML
//! gives a config or an error naming the key, never a panic. An empty file is plain HTTP
//! without auth.
//!
//! Two kinds of input are skipped because what they cost is what the file asks for, not a
//! parser fault: paths into the kernel's endless files (`/dev`, `/proc`, `/sys`: reading
//! `/dev/zero` to the end never returns) and bcrypt costs above 5 (the loader hashes a dummy
//! password at the first user's cost, up to 14, which takes seconds and would starve the
//! fuzzer). Relative `*_file` paths resolve against a directory that does not exist.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Whether `text` holds a bcrypt prefix (`$2$`, `$2a$`, `$2b$`, `$2x$`, `$2y$`) with a cost
/// above 5.
fn costly_bcrypt(text: &str) -> bool {
    text.match_indices("$2").any(|(i, _)| {
        let rest = &text.as_bytes()[i + 2..];
        let rest = match rest.first() {
            Some(b'a' | b'b' | b'x' | b'y') => &rest[1..],
            _ => rest,
        };
        match rest {
            [b'$', d0, d1, ..] if d0.is_ascii_digit() && d1.is_ascii_digit() => {
                (d0 - b'0') * 10 + (d1 - b'0') > 5
            }
            _ => false,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) || costly_bcrypt(text) {
        return;
    }
    let parsed = kepler_export::WebConfig::from_yaml(text, Path::new("/nonexistent-kepler-fuzz"));
    if text.trim().is_empty() {
        let config = parsed.expect("an empty file is a valid config");
        assert!(!config.tls_enabled() && !config.basic_auth_enabled());
    }
});
