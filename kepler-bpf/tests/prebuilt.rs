//! The committed prebuilt BPF object must match its source (issue 5): builds without clang
//! use it. Regenerate with `scripts/bpf-prebuilt.sh`.

use sha2::{Digest, Sha256};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bpf");

#[test]
fn prebuilt_object_matches_source() {
    let recorded = std::fs::read_to_string(format!("{DIR}/prebuilt/SOURCES.sha256")).unwrap();
    let mut checked = 0;
    for line in recorded.lines() {
        let (hash, file) = line.split_once("  ").expect("sha256sum format");
        let bytes = std::fs::read(format!("{DIR}/{file}")).unwrap();
        let actual = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            actual, hash,
            "src/bpf/{file} changed since the prebuilt object was made: run scripts/bpf-prebuilt.sh"
        );
        checked += 1;
    }
    assert_eq!(
        checked, 3,
        "activity.bpf.c, activity.h and vmlinux_min.h are all recorded"
    );
}

/// When this build compiled the object from source with the clang that made the prebuilt
/// one, the two are byte for byte the same (paths in the object are relative).
#[cfg(feature = "libbpf")]
#[test]
fn object_built_here_equals_the_prebuilt_one() {
    if kepler_bpf::OBJECT_ORIGIN != "source" {
        eprintln!("skipped: this build used the prebuilt object (no clang)");
        return;
    }
    let recorded = std::fs::read_to_string(format!("{DIR}/prebuilt/CLANG_VERSION")).unwrap();
    let here =
        std::process::Command::new(std::env::var("KEPLER_BPF_CLANG").unwrap_or("clang".into()))
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
    if here.trim() != recorded.trim() {
        eprintln!("skipped: clang here is {here:?}, the prebuilt was made with {recorded:?}");
        return;
    }
    let prebuilt = std::fs::read(format!("{DIR}/prebuilt/activity.bpf.o")).unwrap();
    assert!(
        prebuilt == kepler_bpf::OBJECT_BYTES,
        "the object built from source differs from src/bpf/prebuilt/activity.bpf.o: run scripts/bpf-prebuilt.sh"
    );
}
