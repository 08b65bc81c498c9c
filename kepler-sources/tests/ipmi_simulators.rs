//! The IPMI source against two real BMC simulators (OpenIPMI's ipmi_sim with a DCMI plugin,
//! pyghmi's Bmc), every reading cross-checked with `ipmitool dcmi power reading`.
//! Skipped without the simulators unless `REQUIRE_IPMI=1`.

mod ipmi_support;

use std::time::{Duration, Instant};

use ipmi_support::{ipmi_or_skip, sdr_watts, Kind, Sim, PASSWORD};
use kepler_core::{PowerFrame, PowerSource, Reading, SourceReport, Timestamp};
use kepler_sources::ipmi::{Bmc, Ipmi, IpmiErrorKind, IpmiOptions, Method, Sample};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fast() -> IpmiOptions {
    IpmiOptions {
        interval: Duration::from_millis(200),
        staleness: Duration::from_secs(2),
        timeout: Duration::from_millis(300),
        attempts: 2,
        max_backoff: Duration::from_millis(400),
    }
}

fn poll(
    rt: &tokio::runtime::Runtime,
    bmc: &mut Bmc,
) -> Result<Sample, kepler_sources::ipmi::IpmiError> {
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, bmc.poll(Duration::from_secs(5)))
}

/// Wattages to check: edges of the u16, round and odd values, and a few drawn at random
/// (printed, so a failure can be replayed).
fn wattages() -> Vec<u16> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut v = vec![0, 1, 255, 256, 517, 4096, 32768, 65535];
    for _ in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.push((seed >> 48) as u16);
    }
    eprintln!("wattages: {v:?}");
    v
}

fn dcmi_readings_follow_the_bmc(kind: Kind) {
    let sim = Sim::start(kind, "250 1");
    let rt = rt();
    let mut bmc = Bmc::new(sim.bmc("b", PASSWORD), fast());
    for w in wattages() {
        sim.set_state(&format!("{w} 1"));
        let s = poll(&rt, &mut bmc).unwrap();
        assert_eq!(s.method, Method::Dcmi);
        assert_eq!(s.watts, Some(f64::from(w)), "{kind:?} at {w} W");
        assert_eq!(
            sim.ipmitool_dcmi(),
            (u32::from(w), true),
            "ipmitool at {w} W"
        );
    }
    // Inactive: the BMC answers, but the reading is not a measurement.
    sim.set_state("300 0");
    let s = poll(&rt, &mut bmc).unwrap();
    assert_eq!(
        s.watts, None,
        "{kind:?}: inactive reading must not be exported"
    );
    assert_eq!(sim.ipmitool_dcmi(), (300, false));
    sim.set_state("301 1");
    assert_eq!(poll(&rt, &mut bmc).unwrap().watts, Some(301.0));
}

#[test]
fn ipmi_sim_dcmi_readings_match_ipmitool() {
    if ipmi_or_skip("ipmi_sim_dcmi_readings_match_ipmitool") {
        dcmi_readings_follow_the_bmc(Kind::IpmiSim);
    }
}

#[test]
fn pyghmi_dcmi_readings_match_ipmitool() {
    if ipmi_or_skip("pyghmi_dcmi_readings_match_ipmitool") {
        dcmi_readings_follow_the_bmc(Kind::Pyghmi);
    }
}

fn wrong_password_is_auth(kind: Kind) {
    let sim = Sim::start(kind, "250 1");
    let rt = rt();
    let mut bmc = Bmc::new(sim.bmc("b", "not-the-password"), fast());
    let e = poll(&rt, &mut bmc).unwrap_err();
    assert_eq!(e.kind, IpmiErrorKind::Auth, "{kind:?}: {e}");
    assert!(!e.to_string().contains("not-the-password"), "{e}");
}

#[test]
fn wrong_password_is_an_auth_error_on_both_simulators() {
    if ipmi_or_skip("wrong_password_is_an_auth_error_on_both_simulators") {
        wrong_password_is_auth(Kind::IpmiSim);
        wrong_password_is_auth(Kind::Pyghmi);
    }
}

#[test]
fn no_dcmi_falls_back_to_the_sdr_watts_sensor() {
    if !ipmi_or_skip("no_dcmi_falls_back_to_the_sdr_watts_sensor") {
        return;
    }
    let sim = Sim::start(Kind::IpmiSim, "nodcmi");
    let rt = rt();
    let mut bmc = Bmc::new(sim.bmc("b", PASSWORD), fast());
    for raw in [0u8, 37, 100, 254] {
        sim.set_sdr_raw(raw);
        // ipmi_sim polls the sensor file every 100 ms.
        let want = sdr_watts(raw);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = poll(&rt, &mut bmc).unwrap();
            assert_eq!(s.method, Method::Sdr("Pwr Consumption".into()));
            if s.watts == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "raw {raw}: read {:?}, want {want}",
                s.watts
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(sim.ipmitool_sensor_watts(), want, "ipmitool at raw {raw}");
    }
}

#[test]
fn pyghmi_without_dcmi_or_sdr_says_so() {
    if !ipmi_or_skip("pyghmi_without_dcmi_or_sdr_says_so") {
        return;
    }
    // pyghmi's Bmc has no SDR repository: the fallback finds nothing and says which step.
    let sim = Sim::start(Kind::Pyghmi, "nodcmi");
    let rt = rt();
    let mut bmc = Bmc::new(sim.bmc("b", PASSWORD), fast());
    let e = poll(&rt, &mut bmc).unwrap_err();
    assert_eq!(e.kind, IpmiErrorKind::Completion, "{e}");
    assert!(e.step.contains("SDR"), "{e}");
}

#[test]
fn hung_bmc_times_out_and_recovers_with_a_new_session() {
    if !ipmi_or_skip("hung_bmc_times_out_and_recovers_with_a_new_session") {
        return;
    }
    for kind in [Kind::IpmiSim, Kind::Pyghmi] {
        let sim = Sim::start(kind, "640 1");
        let rt = rt();
        let mut bmc = Bmc::new(sim.bmc("b", PASSWORD), fast());
        assert_eq!(poll(&rt, &mut bmc).unwrap().watts, Some(640.0));
        sim.hang();
        let t = Instant::now();
        let e = poll(&rt, &mut bmc).unwrap_err();
        assert_eq!(e.kind, IpmiErrorKind::Timeout, "{kind:?}: {e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        sim.resume();
        sim.set_state("641 1");
        assert_eq!(poll(&rt, &mut bmc).unwrap().watts, Some(641.0), "{kind:?}");
    }
}

fn platform_watts(src: &mut Ipmi, at: Timestamp) -> Vec<Option<f64>> {
    let mut frame = PowerFrame::default();
    src.read(at, &mut frame);
    frame
        .samples
        .iter()
        .map(|s| match s.reading {
            Ok(Reading::Power(p)) => Some(p.as_watts()),
            _ => None,
        })
        .collect()
}

fn wait_for(src: &mut Ipmi, want: Vec<Option<f64>>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        got = platform_watts(src, Timestamp(1_000_000_000));
        if got == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("IPMI source read {got:?}, want {want:?}");
}

#[test]
fn source_polls_in_the_background_and_goes_stale_when_the_bmc_is_gone() {
    if !ipmi_or_skip("source_polls_in_the_background_and_goes_stale_when_the_bmc_is_gone") {
        return;
    }
    let mut a = Sim::start(Kind::IpmiSim, "180 1");
    let b = Sim::start(Kind::Pyghmi, "90 1");
    let mut src = Ipmi::start(
        vec![a.bmc("sim", PASSWORD), b.bmc("pyghmi", PASSWORD)],
        fast(),
    )
    .unwrap();
    wait_for(&mut src, vec![Some(180.0), Some(90.0)]);
    let ids: Vec<_> = src.zones().iter().map(|z| z.id.clone()).collect();
    assert_eq!(ids, ["ipmi:sim:dcmi", "ipmi:pyghmi:dcmi"]);
    a.set_state("181 1");
    b.set_state("95 0"); // inactive: the zone reads Missing
    wait_for(&mut src, vec![Some(181.0), None]);
    b.set_state("96 1");
    wait_for(&mut src, vec![Some(181.0), Some(96.0)]);

    a.kill();
    // After the staleness limit the gone BMC's zone has no reading; the other still does.
    wait_for(&mut src, vec![None, Some(96.0)]);
    let mut report = SourceReport::default();
    src.report(Timestamp(1_000_000_000), &mut report);
    let sim = report.endpoints.iter().find(|e| e.id == "sim").unwrap();
    assert!(!sim.up);
    let failed: u64 = sim.errors.iter().map(|(_, n)| n).sum();
    assert!(failed > 0, "{:?}", sim.errors);
    assert!(
        report
            .endpoints
            .iter()
            .find(|e| e.id == "pyghmi")
            .unwrap()
            .up
    );
    let labels: Vec<_> = report.zones[1].labels.iter().cloned().collect();
    assert_eq!(
        labels,
        [
            ("bmc_id", "pyghmi".to_string()),
            ("source_type", "dcmi".to_string()),
            ("source_name", "DCMI Get Power Reading".to_string())
        ]
    );
    src.shutdown();
}
