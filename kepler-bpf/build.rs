//! Builds the BPF object when the `libbpf` feature is on.
//!
//! With clang on the machine (or `$KEPLER_BPF_CLANG`), `src/bpf/activity.bpf.c` is compiled
//! by libbpf-cargo's `SkeletonBuilder`, which supplies libbpf's BPF headers. Without clang,
//! or with `KEPLER_BPF_PREBUILT=1`, the committed `src/bpf/prebuilt/activity.bpf.o` is used,
//! so the feature builds on machines that only have a Rust toolchain and libelf. The test
//! `prebuilt_object_matches_source` keeps that object honest, and
//! `scripts/bpf-prebuilt.sh` regenerates it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-env-changed=KEPLER_BPF_CLANG");
    println!("cargo:rerun-if-env-changed=KEPLER_BPF_PREBUILT");
    #[cfg(feature = "libbpf")]
    object::build();
}

#[cfg(feature = "libbpf")]
mod object {
    use std::path::PathBuf;
    use std::process::Command;

    pub fn build() {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let out = out_dir.join("activity.bpf.o");
        let clang = std::env::var("KEPLER_BPF_CLANG").unwrap_or_else(|_| "clang".into());
        let forced_prebuilt = std::env::var_os("KEPLER_BPF_PREBUILT").is_some_and(|v| v != "0");
        let have_clang = Command::new(&clang)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let origin = if have_clang && !forced_prebuilt {
            // Source paths in the object's BTF line info: relative, so that the object is
            // the same on every machine with the same clang.
            let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
            let prefix_map = format!("-ffile-prefix-map={dir}=kepler-bpf");
            libbpf_cargo::SkeletonBuilder::new()
                .source("src/bpf/activity.bpf.c")
                .obj(&out)
                .clang(&clang)
                .clang_args(["-Isrc/bpf", "-Wall", "-Werror", &prefix_map])
                .build()
                .unwrap_or_else(|e| panic!("compiling src/bpf/activity.bpf.c with {clang}: {e:#}"));
            "source"
        } else {
            std::fs::copy("src/bpf/prebuilt/activity.bpf.o", &out)
                .expect("copying src/bpf/prebuilt/activity.bpf.o");
            "prebuilt"
        };
        println!("cargo:rustc-env=KEPLER_BPF_OBJECT_ORIGIN={origin}");
    }
}
