//! Fuzzes `read_cpuinfo`, the reader of `/proc/cpuinfo` (x86, ARM and POWER layouts): any
//! bytes give one entry per `processor` block, never a panic nor an error once the file is
//! read. The reader takes a procfs root, so each input is written to a `cpuinfo` file in a
//! private temporary directory first.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kepler-fuzz-cpuinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary procfs root");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    std::fs::write(root.join("cpuinfo"), data).expect("write cpuinfo");
    let cpus = kepler_sources::read_cpuinfo(root).expect("a readable cpuinfo always parses");
    let blocks = String::from_utf8_lossy(data)
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count();
    assert!(
        cpus.len() <= blocks,
        "{} entries from {blocks} processor lines",
        cpus.len()
    );
});
