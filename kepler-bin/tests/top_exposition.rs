//! `kepler top --url` reads what our exporter writes (issue 18): the real `kepler` binary on
//! a fake RAPL tree with a known busy process, its `/metrics` parsed by top's parser and
//! checked against the known rates and against the test suite's own exposition parser.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use kepler_bin::top::app::App;
use kepler_bin::top::exposition::frame_from_exposition;
use kepler_bin::top::model::Level;
use kepler_core::ZoneKind;
use support::{scrape, wait_for_metric, FakeRapl, Kepler, KillOnDrop};

#[test]
fn top_reads_the_exporters_exposition() {
    let rapl = FakeRapl::start(&[("package-0", 40.0), ("dram", 6.0)], 262_143_328_850);
    let busy = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn busy loop");
    let pid = busy.id().to_string();
    let _busy = KillOnDrop(busy);
    let kepler = Kepler::start(&[
        "--host.sysfs",
        rapl.sysfs().to_str().unwrap(),
        "--monitor.interval=1s",
        "--cpu.preferred-meters=rapl",
    ]);
    wait_for_metric(kepler.port(), "kepler_process_cpu_watts");
    // Two ticks in, every zone has a whole interval behind its watts.
    std::thread::sleep(Duration::from_millis(2500));
    let first = scrape(kepler.port(), "/metrics").unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    let second = scrape(kepler.port(), "/metrics").unwrap();

    let frame = frame_from_exposition(&second, 2.0).unwrap();
    assert!(!frame.node.is_empty());
    assert_eq!(frame.kinds, [ZoneKind::Package, ZoneKind::Dram]);
    let zone = |k: ZoneKind| frame.zones.iter().find(|z| z.kind == k).unwrap();
    for (kind, watts) in [(ZoneKind::Package, 40.0), (ZoneKind::Dram, 6.0)] {
        let z = zone(kind);
        assert_eq!((z.source.as_str(), z.estimated), ("rapl", false), "{z:?}");
        let w = z.watts.unwrap();
        assert!((w - watts).abs() / watts < 0.05, "{kind}: {w} W");
        assert!(z.joules > watts * 2.0, "{kind}: {} J", z.joules);
        assert!(z.path.contains("intel-rapl:0"), "{}", z.path);
    }
    assert_eq!(frame.sources(), ["rapl"]);
    assert!(!frame.estimated());
    let u = frame.usage_ratio.unwrap();
    assert!((0.0..=1.0).contains(&u), "{u}");

    // The busy process, with the exporter's numbers exactly as the reference parser reads them.
    let procs = frame.workloads(Level::Process);
    let p = procs.iter().find(|w| w.id == pid).expect("busy pid listed");
    assert_eq!((p.name.as_str(), p.state.as_str()), ("sh", "running"));
    let samples = support::parse_exposition(&second);
    let want = |name: &str, zone: Option<&str>| {
        let mut labels = vec![("pid", pid.as_str())];
        if let Some(z) = zone {
            labels.push(("zone", z));
        }
        support::value(&samples, name, &labels).unwrap()
    };
    let pk = ZoneKind::Package.index();
    assert_eq!(
        p.joules[pk],
        want("kepler_process_cpu_joules_total", Some("package"))
    );
    assert_eq!(
        p.watts[pk],
        want("kepler_process_cpu_watts", Some("package"))
    );
    assert_eq!(
        p.watts[ZoneKind::Dram.index()],
        want("kepler_process_cpu_watts", Some("dram"))
    );
    assert_eq!(
        p.cpu_seconds,
        Some(want("kepler_process_cpu_seconds_total", None))
    );
    assert!(p.watts[pk] > 0.0 && p.joules[pk] > 0.0, "{p:?}");
    // Every process of the exposition is listed once.
    let pids: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "kepler_process_cpu_seconds_total")
        .filter_map(|s| s.label("pid"))
        .collect();
    assert_eq!(pids.len(), procs.len());

    // CPU% between the two scrapes: the change in the process's CPU seconds over the change
    // in the exporter's tick time, as the reference parser reads both (a shared machine
    // gives the busy loop whatever share it gets, so the rate is computed, not assumed).
    let reference = support::parse_exposition(&first);
    let tick_time = |s: &[support::Sample]| {
        s.iter()
            .filter(|s| s.name == "kepler_exporter_last_read_timestamp_seconds")
            .map(|s| s.value)
            .fold(f64::MIN, f64::max)
    };
    let cpu_of = |s: &[support::Sample]| {
        support::value(
            s,
            "kepler_process_cpu_seconds_total",
            &[("pid", pid.as_str())],
        )
        .unwrap()
    };
    let expected = (cpu_of(&samples) - cpu_of(&reference))
        / (tick_time(&samples) - tick_time(&reference))
        * 100.0;
    let mut app = App::new("remote", 1.0);
    app.update(frame_from_exposition(&first, 0.0).unwrap());
    app.update(frame_from_exposition(&second, 2.0).unwrap());
    let row = app.rows().into_iter().find(|r| r.id == pid).unwrap();
    let cpu = row.cpu_percent.unwrap();
    assert!((cpu - expected).abs() < 1e-6, "{cpu}% vs {expected}%");
    assert!(cpu > 5.0, "busy loop at {cpu}% CPU");
    // Watts is the default sort: the busy loop is at or near the top.
    let top: Vec<String> = app.rows().iter().take(3).map(|r| r.id.clone()).collect();
    assert!(top.contains(&pid), "{top:?}");
}
