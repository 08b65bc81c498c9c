//! Replays the `web_config` fuzz corpus (issue 14) as a plain test: every exporter-toolkit
//! web config file gives a config or an error, never a panic, and the named seeds load as
//! they must. Relative `*_file` paths resolve against a directory that does not exist, as in
//! the fuzz target.

use std::path::Path;

use kepler_export::WebConfig;

// The corpus reader shared by every `fuzz_corpus_*` replay (kepler-sources owns it).
#[path = "../../kepler-sources/tests/corpus_support/mod.rs"]
mod corpus_support;

/// Every file of `fuzz/corpus/web_config`, sorted by name (at least five).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let files = corpus_support::corpus("web_config");
    assert!(
        files.len() >= 5,
        "fuzz/corpus/web_config holds too few seeds"
    );
    files
}

#[test]
fn web_config_corpus_replays_without_panic() {
    for (name, data) in corpus() {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let parsed = WebConfig::from_yaml(text, Path::new("/nonexistent-kepler-fuzz"));
        let loaded = |p: &Result<WebConfig, _>| -> (bool, bool) {
            let c = p.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
            (c.tls_enabled(), c.basic_auth_enabled())
        };
        match name.as_str() {
            "empty.yml" | "comment_only.yml" | "headers.yml" | "tls_ignored_keys.yml" => {
                assert_eq!(loaded(&parsed), (false, false), "{name}")
            }
            "basic_auth.yml" => assert_eq!(loaded(&parsed), (false, true)),
            "tls_inline_valid.yml" => assert_eq!(loaded(&parsed), (true, false)),
            "basic_auth_bad_hash.yml"
            | "headers_invalid.yml"
            | "tls_files_relative.yml"
            | "tls_inline_bad_pem.yml"
            | "tls_rejected.yml"
            | "unknown_key.yml"
            | "broken.yml"
            | "alias_loop.yml"
            | "not_a_map.yml" => assert!(parsed.is_err(), "{name} should be refused"),
            _ => {}
        }
    }
}
