//! `activity.source` with the eBPF source built in (issue 5): as root `auto` picks eBPF; an
//! unprivileged run (user nobody, no capabilities) falls back to procfs, says why in one
//! log line, and keeps serving metrics. Skips with a printed reason when not root, and
//! fails instead under `REQUIRE_BPF=1`.
#![cfg(feature = "bpf")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.contains("200 OK").then_some(body)
}

/// Runs kepler (behind `prefix`, e.g. setpriv) until /metrics names an activity source;
/// returns the scrape and the log.
fn run(prefix: &[&str]) -> (String, String) {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let exe = env!("CARGO_BIN_EXE_kepler");
    let (cmd, args) = match prefix.split_first() {
        Some((first, rest)) => (*first, [rest, &[exe]].concat()),
        None => (exe, vec![]),
    };
    let mut child = Command::new(cmd)
        .args(args)
        .args([
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--monitor.interval=200ms",
            "--cpu.preferred-meters=model",
            "--activity.source=auto",
        ])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(b) = get(port).filter(|b| b.contains("kepler_exporter_activity_errors_total")) {
            body = Some(b);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(log.path()).unwrap_or_default();
    (
        body.unwrap_or_else(|| panic!("no metrics; log:\n{log}")),
        log,
    )
}

#[test]
fn auto_uses_ebpf_as_root_and_falls_back_to_procfs_unprivileged() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        assert!(
            std::env::var("REQUIRE_BPF").as_deref() != Ok("1"),
            "REQUIRE_BPF=1 but not root"
        );
        eprintln!("skipped: not root");
        return;
    }
    let (body, log) = run(&[]);
    assert!(
        body.contains(r#"kepler_exporter_activity_errors_total{node_name="#)
            && body.contains(r#"source="bpf""#),
        "root run did not use eBPF; log:\n{log}"
    );
    assert!(body.contains("kepler_process_cpu_seconds_total"), "{body}");
    // Self-metrics of the eBPF source: its three programs are attached.
    let attached = body
        .lines()
        .find(|l| l.starts_with("kepler_exporter_bpf_programs_attached"))
        .unwrap_or_else(|| panic!("no eBPF self-metrics:\n{body}"));
    assert!(
        attached.ends_with(" 3") || attached.ends_with(" 3.0"),
        "{attached}"
    );
    assert!(
        body.contains("kepler_exporter_bpf_read_duration_seconds"),
        "{body}"
    );

    let (body, log) = run(&[
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]);
    assert!(
        body.contains(r#"source="procfs""#),
        "unprivileged run: {log}"
    );
    assert!(body.contains("kepler_process_cpu_seconds_total"), "{body}");
    let fallbacks: Vec<&str> = log.lines().filter(|l| l.contains("using procfs")).collect();
    assert_eq!(fallbacks.len(), 1, "one fallback line; log:\n{log}");
    assert!(fallbacks[0].contains("CAP_BPF"), "{}", fallbacks[0]);
}
