//! Issue 17: a user replacing Go Kepler 0.11 keeps their DaemonSet args and config.yaml.
//! The real binary runs with Go Kepler's whole `hack/config.yaml` (as a fixture written from
//! its keys), and with each of Go Kepler's flags, and warns only where the README says so.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{scrape, wait_for_metric, FakeRapl, Kepler};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/upstream-config.yaml"
);

/// The warnings of a log, one string per WARN line.
fn warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("WARN"))
        .map(str::to_string)
        .collect()
}

fn rapl() -> FakeRapl {
    FakeRapl::start(&[("package-0", 40.0), ("dram", 6.0)], 1 << 40)
}

#[test]
fn upstream_config_file_runs_with_documented_warnings_only_issue_17() {
    let rapl = rapl();
    let mut kepler = Kepler::start(&[
        "--config.file",
        FIXTURE,
        // The fixture's roots and port are the host's: the flags win over the file.
        "--host.sysfs",
        rapl.sysfs().to_str().unwrap(),
        "--monitor.interval=200ms",
    ]);
    let body = wait_for_metric(kepler.port(), "kepler_node_cpu_joules_total");
    // debugCollectors: [process] is implemented.
    assert!(body.contains("\nprocess_cpu_seconds_total{"), "{body}");
    assert!(body.contains("\nprocess_resident_memory_bytes{"), "{body}");
    assert_eq!(kepler.terminate().code(), Some(0), "{}", kepler.log());
    let log = kepler.log();
    let warned = warnings(&log);
    // Exactly the documented ones: staleness with an interval, the Go collector, pprof and
    // hwmon chip rules.
    let expected = [
        "\"monitor.staleness\" has no effect",
        "debugCollectors: \"go\" has no effect",
        "debug.pprof.enabled has no effect",
        "\"experimental.hwmon.chipRules\" has no effect",
    ];
    assert_eq!(warned.len(), expected.len(), "{log}");
    for e in expected {
        assert!(warned.iter().any(|w| w.contains(e)), "{e}\n{log}");
    }
}

/// Each of Go Kepler 0.11's flags, with a value it accepts, and the warning it may give.
fn upstream_flags(sysfs: &str, fixture: &str) -> Vec<(Vec<String>, Option<&'static str>)> {
    let one = |f: &str| vec![f.to_string()];
    vec![
        (one("--log.level=info"), None),
        (one("--log.format=json"), None),
        (one(&format!("--host.sysfs={sysfs}")), None),
        (one("--host.procfs=/proc"), None),
        (one("--monitor.interval=0"), None),
        (one("--monitor.max-terminated=-1"), None),
        (one("--debug.pprof"), Some("pprof")),
        (one("--web.config-file="), None),
        (one("--web.listen-address=127.0.0.1:0"), None),
        (one("--exporter.stdout"), None),
        (one("--exporter.prometheus=true"), None),
        (vec!["--metrics=node".into(), "--metrics=pod".into()], None),
        (one("--kube.enable=false"), None),
        (one(&format!("--kube.config={fixture}")), None),
        (one("--kube.node-name=worker-1"), None),
        (one("--experimental.platform.redfish.enabled=false"), None),
        (
            one("--experimental.platform.redfish.node-name=worker-1"),
            None,
        ),
        (
            one("--experimental.platform.redfish.config-file=/etc/kepler/redfish.yaml"),
            None,
        ),
        (one("--experimental.hwmon.force-enabled=false"), None),
        (one("--experimental.hwmon.zones=power1"), None),
        (one("--experimental.gpu.enabled=true"), None),
        (one("--experimental.gpu.idle-power=25"), None),
        (
            one("--experimental.gpu.dcgm-endpoint=http://127.0.0.1:9400/metrics"),
            Some("dcgmEndpoint"),
        ),
        (
            one("--exporter.prometheus.debug-collectors=go"),
            Some("\"go\""),
        ),
    ]
}

#[test]
fn each_upstream_flag_runs_issue_17() {
    let rapl = rapl();
    let sysfs = rapl.sysfs().to_str().unwrap().to_string();
    for (flag, warning) in upstream_flags(&sysfs, FIXTURE) {
        if flag[0].starts_with("--web.listen-address") {
            // The harness gives the address itself; this flag is covered by every run.
            continue;
        }
        let mut args: Vec<&str> = Vec::new();
        if !flag[0].starts_with("--host.sysfs") {
            args.extend(["--host.sysfs", &sysfs]);
        }
        if !flag[0].starts_with("--monitor.interval") {
            args.push("--monitor.interval=200ms");
        }
        args.extend(flag.iter().map(String::as_str));
        let mut kepler = Kepler::start(&args);
        let body = wait_for_metric(kepler.port(), "kepler_build_info");
        assert!(body.contains("kepler_node_cpu_usage_ratio"), "{flag:?}");
        assert_eq!(
            kepler.terminate().code(),
            Some(0),
            "{flag:?}: {}",
            kepler.log()
        );
        let log = kepler.log();
        let warned = warnings(&log);
        match warning {
            None => assert!(warned.is_empty(), "{flag:?} warned:\n{log}"),
            Some(w) => {
                assert_eq!(warned.len(), 1, "{flag:?}:\n{log}");
                assert!(warned[0].contains(w), "{flag:?}:\n{log}");
            }
        }
    }
}

/// `--exporter.prometheus=false` with `--exporter.stdout`: no HTTP server, a table per tick
/// on stdout.
#[test]
fn stdout_exporter_without_prometheus_prints_a_table_per_tick_issue_17() {
    let rapl = rapl();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .args([
            "--host.sysfs",
            rapl.sysfs().to_str().unwrap(),
            "--monitor.interval=300ms",
            "--exporter.prometheus=false",
            "--exporter.stdout",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(20);
        while text.matches("== kepler").count() < 3 && Instant::now() < deadline {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    });
    let text = reader.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.matches("== kepler").count() >= 3, "{text}");
    assert!(text.contains("package   rapl"), "{text}");
    assert!(text.contains("-- top processes by package watts"), "{text}");
}

/// `monitor.interval: 0`: no loop; a scrape reads the sources, at most once per staleness.
#[test]
fn interval_zero_reads_on_scrape_at_most_once_per_staleness_issue_17() {
    let rapl = rapl();
    let kepler = Kepler::start(&[
        "--host.sysfs",
        rapl.sysfs().to_str().unwrap(),
        "--monitor.interval=0",
        "--monitor.staleness=1s",
    ]);
    let ticks = |port| -> f64 {
        let body = scrape(port, "/metrics").unwrap();
        let line = body
            .lines()
            .find(|l| l.starts_with("kepler_exporter_ticks_total{"))
            .unwrap()
            .to_string();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let first = ticks(kepler.port());
    // Nothing ticks between scrapes.
    std::thread::sleep(Duration::from_millis(1500));
    let second = ticks(kepler.port());
    assert_eq!(
        second,
        first + 1.0,
        "one tick for the scrape, none in between"
    );
    // Scrapes within the staleness reuse it.
    let third = ticks(kepler.port());
    let fourth = ticks(kepler.port());
    assert_eq!((third, fourth), (second, second));
}
