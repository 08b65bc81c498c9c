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
    run_with(prefix, "auto", |_| true)
}

/// As [`run`], with `--activity.source=source`, until a scrape satisfies `done`.
fn run_with(prefix: &[&str], source: &str, done: impl Fn(&str) -> bool) -> (String, String) {
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
            &format!("--activity.source={source}"),
        ])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(b) =
            get(port).filter(|b| b.contains("kepler_exporter_activity_errors_total") && done(b))
        {
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
    let root = is_root();
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

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// `kepler_process_cpu_seconds_total` by pid.
fn cpu_seconds(body: &str) -> std::collections::HashMap<u32, f64> {
    body.lines()
        .filter(|l| l.starts_with("kepler_process_cpu_seconds_total{"))
        .filter_map(|l| {
            let pid = l.split("pid=\"").nth(1)?.split('"').next()?.parse().ok()?;
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((pid, value))
        })
        .collect()
}

/// utime + stime of `pid` in seconds (USER_HZ 100).
fn proc_cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = text[text.rfind(')').unwrap() + 2..].split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// Issue 14: switching `activity.source` does not change what users see. Both sources
/// export every live process, sleepers the eBPF program never saw run included (the one
/// rule: visibility over cardinality), and `kepler_process_cpu_seconds_total` is a
/// process's total under both, not the time since kepler started.
#[test]
fn both_sources_export_the_same_processes_with_their_totals_issue_14() {
    if !is_root() {
        assert!(
            std::env::var("REQUIRE_BPF").as_deref() != Ok("1"),
            "REQUIRE_BPF=1 but not root"
        );
        eprintln!("skipped: not root");
        return;
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Each blocks on its stdin (kept open) once its script is done.
    let sh = |script: &str| {
        Kill(
            Command::new("sh")
                .args(["-c", &format!("{script}; read x")])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let sleepers: Vec<Kill> = (0..40).map(|_| sh("true")).collect();
    // Burns a fraction of a second of CPU before kepler starts, then sleeps.
    let burner = sh("i=0; while [ $i -lt 500000 ]; do i=$((i+1)); done");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = -1.0;
    loop {
        assert!(Instant::now() < deadline, "the burner never finished");
        std::thread::sleep(Duration::from_millis(200));
        let now = proc_cpu_seconds(burner.0.id());
        if now == last && now > 0.1 {
            break;
        }
        last = now;
    }
    let total = proc_cpu_seconds(burner.0.id());
    let mut wanted: Vec<u32> = sleepers.iter().map(|s| s.0.id()).collect();
    wanted.push(burner.0.id());
    let has_all = |b: &str| {
        let seen = cpu_seconds(b);
        wanted.iter().all(|p| seen.contains_key(p))
    };
    for source in ["procfs", "bpf"] {
        let (body, log) = run_with(&[], source, has_all);
        assert!(body.contains(&format!(r#"source="{source}""#)), "{log}");
        let seen = cpu_seconds(&body);
        let burned = seen[&burner.0.id()];
        eprintln!(
            "{source}: {} processes exported; burner {burned} s (/proc says {total} s)",
            seen.len()
        );
        // procfs truncates utime and stime to clock ticks each: up to 20 ms below.
        assert!(
            (burned - total).abs() <= 0.025,
            "{source}: the burner's counter is {burned} s, its total {total} s"
        );
    }
}
