//! The utilisation model on fake procfs and sysfs trees.

#![cfg(feature = "model")]

use std::fs;
use std::path::Path;

use kepler_core::{
    Metering, MicroWatts, PowerFrame, PowerSource, Reading, SourceKind, Timestamp, ZoneKind,
};
use kepler_sources::{DramParams, ErrorKind, Model, ModelParams, CURVE_POINTS};
use tempfile::TempDir;

struct Tree {
    _dir: TempDir,
    proc: std::path::PathBuf,
    sys: std::path::PathBuf,
}

/// A tree whose CPU `i` sits on socket `sockets[i]`.
fn tree(sockets: &[u32]) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    let sys = dir.path().join("sys");
    fs::create_dir_all(&proc).unwrap();
    for (cpu, socket) in sockets.iter().enumerate() {
        let topo = sys.join(format!("devices/system/cpu/cpu{cpu}/topology"));
        fs::create_dir_all(&topo).unwrap();
        fs::write(topo.join("physical_package_id"), format!("{socket}\n")).unwrap();
    }
    // Entries that are not CPUs must be ignored.
    fs::create_dir_all(sys.join("devices/system/cpu/cpufreq")).unwrap();
    fs::write(sys.join("devices/system/cpu/online"), "0-3\n").unwrap();
    Tree {
        _dir: dir,
        proc,
        sys,
    }
}

/// Writes `/proc/stat` with (busy, idle) jiffies per CPU, busy split over the busy fields.
fn write_stat(proc: &Path, cpus: &[(u64, u64)]) {
    let mut s = String::new();
    let (b, i) = cpus
        .iter()
        .fold((0, 0), |(b, i), &(cb, ci)| (b + cb, i + ci));
    s.push_str(&format!("cpu  {b} 0 0 {i} 0 0 0 0 0 0\n"));
    for (n, &(busy, idle)) in cpus.iter().enumerate() {
        // user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice; guest
        // time is part of user and must not be counted twice.
        let user = busy / 2;
        let system = busy - user;
        s.push_str(&format!(
            "cpu{n} {user} 0 {system} {idle} 0 0 0 0 {user} 0\n"
        ));
    }
    s.push_str("intr 12345 0 0\nctxt 999\nbtime 1700000000\nprocs_running 1\n");
    fs::write(proc.join("stat"), s).unwrap();
}

/// A straight-line curve from `idle` to `max`, so the utilisation arithmetic is easy to
/// check by hand; the default (Fan et al.) curve has its own tests below.
fn linear(idle: f64, max: f64) -> ModelParams {
    let mut curve = [0.0; CURVE_POINTS];
    for (i, w) in curve.iter_mut().enumerate() {
        *w = idle + (max - idle) * i as f64 / 10.0;
    }
    ModelParams {
        idle_watts: idle,
        max_watts: max,
        curve: Some(curve),
        dram: None,
    }
}

fn model(t: &Tree) -> Model {
    Model::new(&t.proc, &t.sys, linear(10.0, 45.0)).unwrap()
}

fn watts(m: &mut Model, at: u64) -> Vec<(u32, f64)> {
    let mut frame = PowerFrame::default();
    m.read(Timestamp(at), &mut frame);
    frame
        .samples
        .iter()
        .map(|s| match s.reading {
            Ok(Reading::Power(p)) => (s.zone.index, p.as_watts()),
            ref other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn utilisation_maps_linearly_to_watts() {
    // Defaults: 10 W idle, 45 W max per socket.
    for (busy, idle, expect) in [(0, 100, 10.0), (50, 50, 27.5), (100, 0, 45.0)] {
        let t = tree(&[0, 0]);
        write_stat(&t.proc, &[(busy, idle), (busy, idle)]);
        let mut m = model(&t);
        // The first read uses utilisation since boot.
        assert_eq!(watts(&mut m, 1), [(0, expect)], "busy {busy} idle {idle}");
    }
}

#[test]
fn later_reads_use_utilisation_since_the_previous_read() {
    let t = tree(&[0]);
    write_stat(&t.proc, &[(1000, 0)]);
    let mut m = model(&t);
    assert_eq!(watts(&mut m, 1), [(0, 45.0)]);
    // 0 busy and 100 idle jiffies since: idle power, whatever the history.
    write_stat(&t.proc, &[(1000, 100)]);
    assert_eq!(watts(&mut m, 2), [(0, 10.0)]);
    // 25 busy, 75 idle: a quarter of the way.
    write_stat(&t.proc, &[(1025, 175)]);
    assert_eq!(watts(&mut m, 3), [(0, 18.75)]);
    // No time passed: the last utilisation holds.
    assert_eq!(watts(&mut m, 4), [(0, 18.75)]);
}

#[test]
fn two_sockets_with_different_loads() {
    let t = tree(&[0, 0, 1, 1]);
    write_stat(&t.proc, &[(0, 0); 4]);
    let params = linear(20.0, 120.0);
    let mut m = Model::new(&t.proc, &t.sys, params).unwrap();
    let zones: Vec<_> = m.zones().iter().map(|z| (z.id.clone(), z.index)).collect();
    assert_eq!(
        zones,
        [("model:package-0".into(), 0), ("model:package-1".into(), 1)]
    );
    // Nothing ran since boot: idle on both.
    assert_eq!(watts(&mut m, 1), [(0, 20.0), (1, 20.0)]);
    // Socket 0 fully busy; socket 1: one CPU half busy, one idle -> 25%.
    write_stat(&t.proc, &[(100, 0), (100, 0), (50, 50), (0, 100)]);
    assert_eq!(watts(&mut m, 2), [(0, 120.0), (1, 45.0)]);
}

#[test]
fn zones_say_they_are_estimates() {
    let t = tree(&[0]);
    write_stat(&t.proc, &[(1, 1)]);
    let m = model(&t);
    let z = &m.zones()[0];
    assert_eq!(z.id, "model:package-0");
    assert_eq!(z.kind, ZoneKind::Package);
    assert_eq!(z.path, "model");
    assert_eq!(z.source, SourceKind::Model);
    assert_eq!(z.metering, Metering::PowerGauge);
    assert!(z.estimated);
    assert!(z.max_power.unwrap() >= MicroWatts::from_watts(45.0));
}

#[test]
fn missing_topology_means_one_socket() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    fs::create_dir_all(&proc).unwrap();
    write_stat(&proc, &[(30, 70), (30, 70)]);
    let mut m = Model::new(&proc, &dir.path().join("sys"), linear(10.0, 45.0)).unwrap();
    assert_eq!(watts(&mut m, 1), [(0, 20.5)]);
}

#[test]
fn vm_topology_with_unknown_package_counts_for_the_first_socket() {
    let t = tree(&[0]);
    // A CPU whose package id is -1, as some hypervisors report.
    let topo = t.sys.join("devices/system/cpu/cpu1/topology");
    fs::create_dir_all(&topo).unwrap();
    fs::write(topo.join("physical_package_id"), "-1\n").unwrap();
    write_stat(&t.proc, &[(0, 100), (100, 0)]);
    let mut m = model(&t);
    assert_eq!(watts(&mut m, 1), [(0, 27.5)]);
}

#[test]
fn missing_proc_stat_is_not_found() {
    let t = tree(&[0]);
    let err = Model::new(&t.proc, &t.sys, ModelParams::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.path(), Some(t.proc.join("stat").as_path()));
}

#[test]
fn unreadable_stat_later_is_a_per_zone_error() {
    let t = tree(&[0, 1]);
    write_stat(&t.proc, &[(1, 1), (1, 1)]);
    let mut m = model(&t);
    fs::remove_file(t.proc.join("stat")).unwrap();
    let mut frame = PowerFrame::default();
    m.read(Timestamp(1), &mut frame);
    assert_eq!(frame.samples.len(), 2);
    for s in &frame.samples {
        assert_eq!(s.reading.as_ref().unwrap_err().kind_label(), "missing");
    }
    // Garbage content is a parse error, and the model recovers afterwards.
    fs::write(t.proc.join("stat"), "cpu0 1 2 x 4\n").unwrap();
    frame.clear();
    m.read(Timestamp(2), &mut frame);
    assert!(frame
        .samples
        .iter()
        .all(|s| s.reading.as_ref().unwrap_err().kind_label() == "parse"));
    write_stat(&t.proc, &[(0, 10), (10, 0)]);
    assert_eq!(watts(&mut m, 3), [(0, 10.0), (1, 45.0)]);
}

#[test]
fn invalid_params_are_rejected_naming_the_field() {
    let t = tree(&[0]);
    write_stat(&t.proc, &[(1, 1)]);
    let cases = [
        (f64::NAN, 45.0, "idle_watts"),
        (-1.0, 45.0, "idle_watts"),
        (f64::INFINITY, 45.0, "idle_watts"),
        (10.0, f64::NAN, "max_watts"),
        (10.0, f64::INFINITY, "max_watts"),
        (10.0, 10_000.0, "max_watts"),
        (50.0, 45.0, "max_watts"),
    ];
    for (idle_watts, max_watts, field) in cases {
        let params = ModelParams {
            idle_watts,
            max_watts,
            ..ModelParams::default()
        };
        let err = Model::new(&t.proc, &t.sys, params).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{params:?}");
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
    // Edge values that are fine: a constant model, and zero.
    for (idle_watts, max_watts) in [(0.0, 0.0), (30.0, 30.0), (0.0, 9_999.0)] {
        let params = ModelParams {
            idle_watts,
            max_watts,
            ..ModelParams::default()
        };
        assert!(Model::new(&t.proc, &t.sys, params).is_ok(), "{params:?}");
    }
}

/// Issue 7: with no curve configured, idle and max are joined by Fan, Weber and Barroso's
/// empirical shape `2u - u^1.4`, read off at the SPECpower load levels and interpolated.
#[test]
fn default_curve_is_concave_issue_7() {
    let cases = [
        // (busy, idle jiffies, expected watts for 10 W idle / 45 W max)
        (0, 100, 10.0),
        (50, 50, 31.7376), // 10 + 35 * (1 - 0.5^1.4)
        (25, 75, 22.4180), // halfway between the 20 % (20.3229) and 30 % (24.5131) points
        (100, 0, 45.0),
    ];
    for (busy, idle, expect) in cases {
        let t = tree(&[0]);
        write_stat(&t.proc, &[(busy, idle)]);
        let mut m = Model::new(&t.proc, &t.sys, ModelParams::default()).unwrap();
        let got = watts(&mut m, 1)[0].1;
        assert!(
            (got - expect).abs() < 1e-3,
            "busy {busy}: {got} vs {expect}"
        );
    }
}

#[test]
fn an_explicit_curve_and_dram_zones() {
    let t = tree(&[0, 1]);
    write_stat(&t.proc, &[(0, 0), (0, 0)]);
    let params = ModelParams {
        curve: Some([
            50.0, 80.0, 95.0, 105.0, 113.0, 120.0, 127.0, 134.0, 142.0, 151.0, 160.0,
        ]),
        dram: Some(DramParams {
            idle_watts: 4.0,
            max_watts: 12.0,
        }),
        ..ModelParams::default()
    };
    let mut m = Model::new(&t.proc, &t.sys, params).unwrap();
    let zones: Vec<(String, ZoneKind, bool)> = m
        .zones()
        .iter()
        .map(|z| (z.id.clone(), z.kind, z.estimated))
        .collect();
    assert_eq!(
        zones,
        [
            ("model:package-0".into(), ZoneKind::Package, true),
            ("model:package-1".into(), ZoneKind::Package, true),
            ("model:dram-0".into(), ZoneKind::Dram, true),
            ("model:dram-1".into(), ZoneKind::Dram, true),
        ]
    );
    watts(&mut m, 1);
    // Socket 0 at 15 %: between 80 and 95 W; socket 1 fully busy.
    write_stat(&t.proc, &[(15, 85), (100, 0)]);
    let w = watts(&mut m, 2);
    assert_eq!(w.len(), 4);
    assert!((w[0].1 - 87.5).abs() < 1e-6, "{w:?}");
    assert_eq!(w[1], (1, 160.0));
    assert!((w[2].1 - 5.2).abs() < 1e-6, "{w:?}");
    assert_eq!(w[3], (1, 12.0));
}

/// Issue 14: the host layer's one rule for `/proc/stat`: a malformed per-CPU line is
/// skipped (that CPU's time counts at its next good line), the other CPUs still give the
/// estimate; only a file with no good per-CPU line at all is an error.
#[test]
fn a_malformed_cpu_line_is_skipped_not_fatal_issue_14() {
    let t = tree(&[0, 0]);
    write_stat(&t.proc, &[(0, 100), (0, 100)]);
    let mut m = model(&t);
    assert_eq!(watts(&mut m, 1), [(0, 10.0)]);
    // cpu1's line is cut: cpu0 alone (fully busy since) gives the utilisation.
    fs::write(
        t.proc.join("stat"),
        "cpu  100 0 0 200 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0 0 0\ncpu1 0 0\n",
    )
    .unwrap();
    assert_eq!(watts(&mut m, 2), [(0, 45.0)]);
    // cpu1 is back, 100 idle jiffies later: its whole gap counts now, cpu0 was idle too.
    write_stat(&t.proc, &[(100, 200), (0, 300)]);
    assert_eq!(watts(&mut m, 3), [(0, 10.0)]);
    // Nothing usable: a per-zone parse error.
    fs::write(t.proc.join("stat"), "cpu  1 2 3 4\ncpu0 x\n").unwrap();
    let mut frame = PowerFrame::default();
    m.read(Timestamp(4), &mut frame);
    assert!(frame.samples.iter().all(|s| s.reading.is_err()));
}
