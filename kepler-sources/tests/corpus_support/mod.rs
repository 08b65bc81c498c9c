//! Shared by the `fuzz_corpus_*` tests: reading a cargo-fuzz corpus and the contract the
//! decimal-value fuzz targets check.

use std::fs;
use std::path::PathBuf;

/// The directory of `fuzz/corpus/<target>`.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every file of `fuzz/corpus/<target>`, with its name, sorted by name; at least one must exist.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no corpus files", dir.display());
    files
}

/// What a sysfs decimal-value parser must return for `data`: the number when `data` is
/// unsigned decimal digits (surrounding whitespace ignored) that fit a `u64`, else nothing.
#[allow(dead_code)] // not every corpus holds decimal values
pub fn expected_decimal(data: &[u8]) -> Option<u64> {
    std::str::from_utf8(data.trim_ascii())
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
}
