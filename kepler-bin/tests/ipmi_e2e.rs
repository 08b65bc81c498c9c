//! End to end (issue 19): the real `kepler` binary with an IPMI BMC file naming OpenIPMI's
//! ipmi_sim, pyghmi's Bmc and a BMC that is gone. The scrape shows `kepler_platform_watts`
//! with `source="ipmi"` for both simulators, at the watts ipmitool reads, and the gone BMC
//! down with its failures counted and logged once. Skipped without the simulators unless
//! `REQUIRE_IPMI=1`.

#[path = "../../kepler-sources/tests/ipmi_support/mod.rs"]
mod ipmi_support;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ipmi_support::{free_udp_port, ipmi_or_skip, Kind, Sim, PASSWORD, USER};
use support::{parse_exposition, scrape, value, Kepler};

#[test]
fn issue_19_kepler_exports_ipmi_power_of_both_simulators() {
    if !ipmi_or_skip("ipmi e2e") {
        return;
    }
    let sim = Sim::start(Kind::IpmiSim, "231 1");
    let py = Sim::start(Kind::Pyghmi, "1234 1");
    let dir = tempfile::tempdir().unwrap();
    let bmc_file = dir.path().join("ipmi.yaml");
    let mut text = String::from("nodes:\n  worker-1: [bmc-sim, bmc-py, bmc-gone]\nbmcs:\n");
    for (id, endpoint) in [
        ("bmc-sim", sim.endpoint()),
        ("bmc-py", py.endpoint()),
        ("bmc-gone", format!("127.0.0.1:{}", free_udp_port())),
    ] {
        text.push_str(&format!(
            "  {id}:\n    endpoint: \"{endpoint}\"\n    username: {USER}\n    password: {PASSWORD}\n    cipherSuite: 3\n"
        ));
    }
    std::fs::write(&bmc_file, text).unwrap();
    std::fs::set_permissions(&bmc_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sysfs = tempfile::tempdir().unwrap();
    let kepler = Kepler::start(&[
        "--experimental.platform.ipmi.enabled",
        &format!("--experimental.platform.ipmi.config={}", bmc_file.display()),
        "--experimental.platform.ipmi.interval=1s",
        "--host.sysfs",
        sysfs.path().to_str().unwrap(),
        "--kube.node-name=worker-1",
        "--monitor.interval=200ms",
    ]);
    let watts = |bmc: &str| {
        // 503 until kepler's first snapshot: no value yet.
        let body = scrape(kepler.port(), "/metrics").ok()?;
        value(
            &parse_exposition(&body),
            "kepler_platform_watts",
            &[
                ("source", "ipmi"),
                ("node_name", "worker-1"),
                ("bmc_id", bmc),
                ("source_type", "dcmi"),
                ("source_name", "DCMI Get Power Reading"),
            ],
        )
    };
    let wait = |bmc: &str, want: f64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while watts(bmc) != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{bmc}: {:?}, want {want}\n{}",
                watts(bmc),
                kepler.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("bmc-sim", 231.0);
    wait("bmc-py", 1234.0);
    assert_eq!(sim.ipmitool_dcmi(), (231, true));
    assert_eq!(py.ipmitool_dcmi(), (1234, true));
    sim.set_state("232 1");
    wait("bmc-sim", 232.0);

    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = scrape(kepler.port(), "/metrics").unwrap();
        let s = parse_exposition(&body);
        // Nothing listens on its port: the kernel answers port unreachable, which the
        // connected UDP socket reports as refused (a host that is down would time out).
        let refused = value(
            &s,
            "kepler_platform_bmc_errors_total",
            &[("bmc_id", "bmc-gone"), ("kind", "connect")],
        );
        // Energy needs two ticks with a reading: wait for it too, not only for the errors.
        let joules = value(
            &s,
            "kepler_platform_joules_total",
            &[("source", "ipmi"), ("bmc_id", "bmc-py")],
        );
        if refused >= Some(2.0) && joules.is_some_and(|j| j > 0.0) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "errors {refused:?}, joules {joules:?}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let s = parse_exposition(&body);
    let up = |bmc: &str| value(&s, "kepler_platform_bmc_up", &[("bmc_id", bmc)]);
    assert_eq!(up("bmc-sim"), Some(1.0));
    assert_eq!(up("bmc-py"), Some(1.0));
    assert_eq!(up("bmc-gone"), Some(0.0));
    let joules = value(
        &s,
        "kepler_platform_joules_total",
        &[("source", "ipmi"), ("bmc_id", "bmc-py")],
    );
    assert!(joules.is_some_and(|j| j > 0.0), "{joules:?}");
    let log = kepler.log();
    let failed = log
        .lines()
        .filter(|l| l.contains("IPMI BMC poll failed") && l.contains("bmc-gone"))
        .count();
    assert_eq!(failed, 1, "one line per state change:\n{log}");
    assert!(!body.contains(PASSWORD));
    assert!(!log.contains(PASSWORD), "{log}");
}
