//! The README's configuration tables and `kepler --help` come from the key declarations
//! (issue 14): these tests fail when either drifts from them.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use kepler_bin::config::{readme_with_tables, Flags, README_UPDATE_COMMAND};

/// Issue 14: README.md's tables are the rendering of `kepler-bin/src/config/keys.rs`.
/// `KEPLER_UPDATE_README=1` rewrites them instead of comparing.
#[test]
fn readme_tables_match_the_declarations_issue_14() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let want = readme_with_tables(&text).unwrap();
    if std::env::var_os("KEPLER_UPDATE_README").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    if text != want {
        let (line, (got, wanted)) = text
            .lines()
            .zip(want.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, ("(length differs)", "")));
        panic!(
            "README.md's configuration tables differ from the key declarations at line {}:\n  README: {got}\n  declared: {wanted}\nrun `{README_UPDATE_COMMAND}`",
            line + 1
        );
    }
}

/// Issue 14: the binary's `--help` is the command made from the declarations.
#[test]
fn help_is_made_from_the_declarations_issue_14() {
    let out = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let want = Flags::command().render_help().to_string();
    assert_eq!(help.trim_end(), want.trim_end());
    for flag in [
        "--config.file",
        "--monitor.interval",
        "--metrics",
        "--kube.enable",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("kepler {}", env!("CARGO_PKG_VERSION"))
    );
}
