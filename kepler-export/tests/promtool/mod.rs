//! `promtool check metrics` on an exposition text: Prometheus's own linter, run where the
//! Debian `prometheus` package is installed. Shared with kepler-bin's tests through
//! `#[path]`, so it uses std only.

use std::io::Write;
use std::process::{Command, Stdio};

/// Checks `text` with `promtool check metrics` and fails with promtool's output if it
/// complains. Skips with a printed reason when promtool cannot run, unless `REQUIRE_E2E=1`.
pub fn check_metrics(test: &str, text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("REQUIRE_E2E").as_deref() != Ok("1"),
                "REQUIRE_E2E=1 but promtool cannot run: {e}"
            );
            eprintln!("SKIP {test}: promtool not runnable ({e}); install Debian's prometheus");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\nstdout: {}\nstderr: {}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
