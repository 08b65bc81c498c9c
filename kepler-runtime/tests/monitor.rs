//! The runtime as front-ends drive it: sources from the tables or given explicitly, one tick
//! returning the CPU and GPU snapshots of the same instant with the loop's self-metrics, and
//! build errors that name the setting at fault.

use std::sync::Arc;

use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::{GpuConfig, MicroWatts, Nanos, ProcessInfo, Timestamp, ZoneKind};
use kepler_k8s::InformerConfig;
use kepler_runtime::{ActivityChoice, BuildError, Monitor, NamedSource, Options, RedfishSetup};
use kepler_sources::gpu::{FakeGpu, FakeGpuDevice};

fn activity(failing: bool) -> FakeActivity {
    FakeActivity {
        cpus: 2,
        background_permille: 0,
        processes: vec![FakeProcess {
            pid: 101,
            start_time: 101,
            start: Timestamp(0),
            end: None,
            permille: 1000,
            info: Arc::new(ProcessInfo::new("train", "/usr/bin/train")),
        }],
        failing,
    }
}

/// Options whose tables find nothing to build: only explicit sources are used.
fn options() -> Options {
    let mut o = Options::new("/nonexistent/sys", "/nonexistent/proc");
    o.gpu = None;
    o
}

fn fake_monitor(failing_activity: bool, gpu: bool) -> Monitor {
    let mut b = Monitor::builder(options())
        .power_sources(vec![NamedSource {
            name: "fake".into(),
            source: Box::new(FakePower::constant(
                &[(ZoneKind::Package, 0, 100.0)],
                1 << 40,
            )),
        }])
        .activity_source(Box::new(activity(failing_activity)));
    if gpu {
        let mut d = FakeGpuDevice::new(0, 200.0);
        d.run(&[(101, 50)]);
        b = b.gpu_backend(Box::new(FakeGpu::new(vec![d])));
    }
    b.build().expect("explicit sources always build")
}

#[test]
fn one_instant_per_tick_and_both_snapshots_come_back() {
    let mut m = fake_monitor(false, true);
    assert_eq!(m.activity_name(), "fake");
    // Ticks 1 s apart; the front-end hands each tick its one instant.
    let mut last = None;
    for t in 1..=3u64 {
        last = Some(m.tick(Timestamp(t * 1_000_000_000)));
    }
    let tick = last.unwrap();
    let at = Timestamp(3_000_000_000);
    assert_eq!(
        tick.snapshot.at, at,
        "the engine steps at the tick's instant"
    );
    assert_eq!(
        tick.snapshot.interval,
        Nanos::from_secs(1),
        "the activity interval is the span between ticks, the same as the meter's"
    );
    // The meter is read 1 s apart: 100 W over 1 s.
    let zone = &tick.snapshot.zones[0];
    assert!((zone.power - 100.0).abs() < 1e-6, "{}", zone.power);
    let gpu = tick
        .gpu
        .as_deref()
        .expect("GPU snapshot beside the CPU one");
    assert_eq!(gpu.devices.len(), 1);
    // The GPU's process is the CPU snapshot's process 101, with its command.
    assert_eq!(gpu.processes.len(), 1);
    assert_eq!(&*gpu.processes[0].info.info.comm, "train");
    let sources: Vec<&str> = tick
        .stats
        .sources
        .iter()
        .map(|s| s.source.as_str())
        .collect();
    assert_eq!(sources, ["fake", "fake"], "the meter, then the GPU backend");
    assert_eq!(tick.stats.activity_source, "fake");
    assert_eq!(tick.stats.activity_errors, 0);
    assert!(tick.stats.bpf.is_none() && tick.stats.kube.is_none());
}

#[test]
fn failed_activity_reads_are_counted_and_energy_is_unattributed() {
    let mut m = fake_monitor(true, false);
    let first = m.tick(Timestamp(1_000_000_000));
    let second = m.tick(Timestamp(2_000_000_000));
    assert_eq!(first.stats.activity_errors, 1);
    assert_eq!(second.stats.activity_errors, 2);
    assert_eq!(second.snapshot.stats.missing_activity, 2);
    assert!(second.snapshot.processes.is_empty());
    assert!(second.gpu.is_none(), "no GPU backend, no GPU snapshot");
}

#[test]
fn tables_pick_the_model_and_procfs_on_a_machine_without_meters() {
    let sys = tempfile::tempdir().unwrap();
    let mut o = Options::new(sys.path(), "/proc");
    o.activity = ActivityChoice::Procfs;
    o.gpu = None;
    let mut m = Monitor::builder(o)
        .build()
        .expect("the model always builds");
    let names: Vec<&str> = m.power_sources().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["model"],
        "no RAPL, no hwmon, no platform meter here"
    );
    assert_eq!(m.activity_name(), "procfs");
    m.tick(Timestamp(1_000_000_000));
    let tick = m.tick(Timestamp(2_000_000_000));
    assert!(
        tick.snapshot
            .processes
            .iter()
            .any(|p| p.pid == std::process::id()),
        "this test's own process is read from /proc"
    );
    assert!(tick.snapshot.zones.iter().all(|z| z.info.estimated));
}

fn build_error(o: Options) -> BuildError {
    match Monitor::builder(o).build() {
        Ok(_) => panic!("built"),
        Err(e) => e,
    }
}

#[test]
fn build_errors_name_what_is_wrong() {
    let sys = tempfile::tempdir().unwrap();
    let mut o = Options::new(sys.path(), "/proc");
    o.preferred_meters = vec!["rapl".into(), "nosuch".into()];
    let e = build_error(o);
    assert!(matches!(e, BuildError::NoMeter { .. }), "{e}");
    assert!(e.to_string().contains("tried rapl, nosuch"), "{e}");

    let mut o = options();
    o.redfish = Some(RedfishSetup {
        node_name: "n".into(),
        config_file: sys.path().join("missing.yaml"),
        options: Default::default(),
    });
    match build_error(o) {
        BuildError::Setting { key, .. } => {
            assert_eq!(key, "experimental.platform.redfish.configFile")
        }
        e => panic!("{e}"),
    }

    // The informer refuses an empty node name before any request, on the monitor's own
    // async runtime (no front-end runtime given).
    let mut o = Options::new(sys.path(), "/proc");
    o.activity = ActivityChoice::Procfs;
    o.kube = Some(InformerConfig::new(" "));
    match build_error(o) {
        BuildError::Setting { key, .. } => assert_eq!(key, "kube.nodeName"),
        e => panic!("{e}"),
    }

    // Without the `bpf` feature an explicit eBPF choice fails instead of falling back.
    if !cfg!(feature = "bpf") {
        let mut o = Options::new(sys.path(), "/proc");
        o.activity = ActivityChoice::Bpf;
        let e = build_error(o);
        assert!(e.to_string().starts_with("activity.source=bpf: "), "{e}");
    }
}

#[test]
fn gpu_settings_apply_to_a_given_backend() {
    let mut o = options();
    o.gpu = Some(
        GpuConfig::builder()
            .idle_power(Some(MicroWatts::from_watts(50.0)))
            .build(),
    );
    let d = FakeGpuDevice::new(0, 80.0);
    let mut m = Monitor::builder(o)
        .power_sources(vec![])
        .activity_source(Box::new(activity(false)))
        .gpu_backend(Box::new(FakeGpu::new(vec![d])))
        .build()
        .unwrap();
    m.tick(Timestamp(1_000_000_000));
    let tick = m.tick(Timestamp(2_000_000_000));
    let node = &tick.gpu.as_deref().unwrap().devices[0];
    assert!((node.idle_power - 50.0).abs() < 1e-6, "{}", node.idle_power);
}
