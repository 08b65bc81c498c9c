//! End to end (issue #6): the real `kepler` binary with a Redfish config pointing at the real
//! `sushy-static` serving a Lenovo XCC capture, plus a second BMC that accepts connections and
//! never answers. The scrape shows the seed's `kepler_platform_watts` series and never waits
//! for the hung BMC.

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{parse_exposition, scrape, value, Kepler};

const PASSWORD: &str = "e2e-password-must-not-leak";

fn sushy_or_skip(test: &str) -> bool {
    let found = Command::new("sushy-static")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("REQUIRE_REDFISH").as_deref() == Ok("1") {
            panic!("{test}: sushy-static is not on PATH but REQUIRE_REDFISH=1");
        }
        eprintln!("SKIP {test}: sushy-static not found (pip install sushy-tools)");
    }
    found
}

struct Sushy(Child);

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sushy(case: &str) -> (Sushy, u16) {
    let tree = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kepler-sources/tests/fixtures/redfish")
        .join(case)
        .join("redfish/v1");
    let port = support::free_port();
    let child = Command::new("sushy-static")
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m"])
        .arg(tree)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Sushy(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sushy-static did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (s, port)
}

/// Three BMCs: one served by sushy-static, one hung, one on a closed port (refused at once).
fn write_configs(dir: &Path, ok_port: u16, hung_port: u16, mode: u32) -> PathBuf {
    let bmc_file = dir.join("redfish.yaml");
    let closed_port = support::free_port();
    let mut text = String::from("nodes:\n  worker-1: [bmc-ok, bmc-hung, bmc-closed]\nbmcs:\n");
    for (id, port) in [
        ("bmc-ok", ok_port),
        ("bmc-hung", hung_port),
        ("bmc-closed", closed_port),
    ] {
        text.push_str(&format!(
            "  {id}:\n    endpoint: http://127.0.0.1:{port}\n    username: admin\n    password: {PASSWORD}\n"
        ));
    }
    std::fs::write(&bmc_file, text).unwrap();
    std::fs::set_permissions(&bmc_file, std::fs::Permissions::from_mode(mode)).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "experimental:\n  platform:\n    redfish:\n      enabled: true\n      nodeName: worker-1\n      configFile: {}\n      httpTimeout: 2s\n      interval: 1s\n",
            bmc_file.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn issue_6_kepler_exports_redfish_power_and_a_hung_bmc_never_slows_a_scrape() {
    if !sushy_or_skip("redfish e2e") {
        return;
    }
    let (_sushy, ok_port) = start_sushy("lenovo-xcc-sr670v2");
    // Accepts connections (the kernel completes the handshake) and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_configs(
        dir.path(),
        ok_port,
        hung.local_addr().unwrap().port(),
        0o600,
    );
    let sysfs = tempfile::tempdir().unwrap();
    let kepler = Kepler::start(&[
        "--config.file",
        config.to_str().unwrap(),
        "--host.sysfs",
        sysfs.path().to_str().unwrap(),
        "--kube.node-name=worker-1",
        "--monitor.interval=200ms",
    ]);
    let body = support::wait_for_metric(kepler.port(), "kepler_platform_watts");
    let samples = parse_exposition(&body);
    // Chassis/1/Power of the XCC capture: three PowerControl entries, one series each.
    for (id, name, watts) in [
        ("0", "Server Power Control", 416.0),
        ("1", "CPU Sub-system Power", 111.0),
        ("2", "Memory Sub-system Power", 12.0),
    ] {
        let want = [
            ("source", "redfish"),
            ("node_name", "worker-1"),
            ("bmc_id", "bmc-ok"),
            ("chassis_id", "1"),
            ("power_control_id", id),
            ("power_control_name", name),
            // Go Kepler's spelling of the same entry, on the same series (issue 17).
            ("source_id", id),
            ("source_name", name),
            ("source_type", "PowerControl"),
        ];
        assert_eq!(
            value(&samples, "kepler_platform_watts", &want),
            Some(watts),
            "{body}"
        );
    }
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "kepler_platform_watts" && s.label("bmc_id") == Some("bmc-hung")),
        "the hung BMC has no readings"
    );

    // Every scrape answers from the rendered text while the hung BMC holds requests open
    // for its 2 s timeout, so none comes near it.
    let mut slowest = Duration::ZERO;
    let t_end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < t_end {
        let t = Instant::now();
        scrape(kepler.port(), "/metrics").unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest scrape {slowest:?}"
    );

    let body = scrape(kepler.port(), "/metrics").unwrap();
    let samples = parse_exposition(&body);
    let up = |bmc: &str| value(&samples, "kepler_platform_bmc_up", &[("bmc_id", bmc)]);
    assert_eq!(up("bmc-ok"), Some(1.0));
    assert_eq!(up("bmc-hung"), Some(0.0));
    let timeouts = value(
        &samples,
        "kepler_platform_bmc_errors_total",
        &[("bmc_id", "bmc-hung"), ("kind", "timeout")],
    );
    assert!(timeouts >= Some(1.0), "{timeouts:?}");
    let joules = value(
        &samples,
        "kepler_platform_joules_total",
        &[("bmc_id", "bmc-ok"), ("power_control_id", "0")],
    );
    assert!(joules.is_some_and(|j| j > 0.0), "{joules:?}");
    // The closed port fails every poll (backing off 1 s, 2 s...) but is logged once, when it
    // went down, not once per poll.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = parse_exposition(&scrape(kepler.port(), "/metrics").unwrap());
        let refused = value(
            &s,
            "kepler_platform_bmc_errors_total",
            &[("bmc_id", "bmc-closed"), ("kind", "connect")],
        );
        if refused >= Some(2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{refused:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = kepler.log();
    let failed_lines = log
        .lines()
        .filter(|l| l.contains("Redfish BMC poll failed") && l.contains("bmc-closed"))
        .count();
    assert_eq!(failed_lines, 1, "{log}");
    assert!(!body.contains(PASSWORD));
    assert!(!kepler.log().contains(PASSWORD), "{}", kepler.log());
}

#[test]
fn issue_6_readable_bmc_file_is_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_configs(dir.path(), 1, 2, 0o644);
    let out = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .args([
            "--config.file",
            config.to_str().unwrap(),
            "--kube.node-name=worker-1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("experimental.platform.redfish.configFile"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}
