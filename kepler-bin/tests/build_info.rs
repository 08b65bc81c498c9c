//! Issue 14 (item 7): `kepler_build_info` carries the git revision and branch the binary was
//! built from (they were always "unknown"), and the compiler's version. `kepler-bin/build.rs`
//! reads them from the checkout; "unknown" is allowed only where no checkout holds the sources.

mod support;

use std::path::Path;
use std::process::Command;

use support::Kepler;

/// Whether a `.git` (folder in a clone, file in a worktree) is at or above the sources.
fn in_checkout() -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .any(|d| d.join(".git").exists())
}

fn is_hash(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn revision_is_the_checkouts_head_issue_14() {
    let revision = env!("KEPLER_GIT_REVISION");
    let branch = env!("KEPLER_GIT_BRANCH");
    let rustc = env!("KEPLER_RUSTC_VERSION");
    assert!(
        rustc.split('.').count() >= 3 && rustc.starts_with("1."),
        "{rustc}"
    );
    if !in_checkout() {
        assert_eq!((revision, branch), ("unknown", "unknown"));
        return;
    }
    assert!(is_hash(revision), "revision {revision:?} inside a checkout");
    assert!(
        !branch.is_empty() && branch != "unknown",
        "branch {branch:?}"
    );
    // Where git runs here (it may refuse a checkout owned by another user), it agrees.
    let git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(out) = git {
        if out.status.success() {
            assert_eq!(revision, String::from_utf8_lossy(&out.stdout).trim());
        }
    }
}

#[test]
fn the_binary_exports_them_issue_14() {
    let sysfs = tempfile::tempdir().unwrap();
    let kepler = Kepler::start(&[
        "--host.sysfs",
        sysfs.path().to_str().unwrap(),
        "--monitor.interval=200ms",
    ]);
    let body = support::wait_for_metric(kepler.port(), "kepler_build_info");
    let samples = support::parse_exposition(&body);
    let info = samples
        .iter()
        .find(|s| s.name == "kepler_build_info")
        .expect("kepler_build_info");
    assert_eq!(info.label("revision"), Some(env!("KEPLER_GIT_REVISION")));
    assert_eq!(info.label("branch"), Some(env!("KEPLER_GIT_BRANCH")));
    assert_eq!(
        info.label("rustversion"),
        Some(env!("KEPLER_RUSTC_VERSION"))
    );
    assert_eq!(info.label("version"), Some(env!("CARGO_PKG_VERSION")));
    // Issue 16: `fips="true"` exactly in a `fips` build (CI builds one with REQUIRE_FIPS=1).
    let fips = if cfg!(feature = "fips") {
        "true"
    } else {
        "false"
    };
    if std::env::var("REQUIRE_FIPS").as_deref() == Ok("1") {
        assert_eq!(fips, "true", "REQUIRE_FIPS=1 in a build without `fips`");
    }
    assert_eq!(info.label("fips"), Some(fips));
    // Issue 21: `bpf="true"` exactly when the eBPF source is compiled in.
    let bpf = if cfg!(feature = "bpf") {
        "true"
    } else {
        "false"
    };
    if std::env::var("REQUIRE_BPF").as_deref() == Ok("1") {
        assert_eq!(bpf, "true", "REQUIRE_BPF=1 in a build without `bpf`");
    }
    assert_eq!(info.label("bpf"), Some(bpf));
}
