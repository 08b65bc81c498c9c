//! `kepler top`'s two feeds agree (issue 18): one runtime tick (fake meters, processes in
//! containers and pods, fake GPUs) read directly by local mode and read back from the
//! exporter's exposition of the same tick by remote mode give the same frame, number for
//! number. The view cannot tell which way its numbers came.

use std::sync::Arc;

use kepler_bin::top::exposition::frame_from_exposition;
use kepler_bin::top::local::frame_from_tick;
use kepler_bin::top::model::Level;
use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::{
    ContainerInfo, GpuConfig, MicroWatts, PodInfo, ProcessInfo, Runtime, Timestamp, ZoneKind,
};
use kepler_export::{ExportContext, Exposition, MetricsLevel};
use kepler_runtime::{Monitor, NamedSource, Options};
use kepler_sources::gpu::{FakeGpu, FakeGpuDevice};

fn process(pid: u32, comm: &str, container: &str, pod: &str, permille: u64) -> FakeProcess {
    FakeProcess {
        pid,
        start_time: pid as u64,
        start: Timestamp(0),
        end: None,
        permille,
        info: Arc::new(
            ProcessInfo::new(comm, format!("/usr/bin/{comm}")).with_container(
                ContainerInfo::new(container, format!("{container}-name"), Runtime::Containerd)
                    .with_pod(PodInfo::new(pod, format!("{pod}-name"), "ml")),
            ),
        ),
    }
}

#[test]
fn local_and_remote_frames_of_one_tick_are_equal() {
    let mut a = FakeGpuDevice::new(0, 300.0);
    a.run(&[(101, 25), (102, 75)]);
    let gpu = FakeGpu::new(vec![a, FakeGpuDevice::new(1, 60.0)]);
    let power = FakePower::constant(
        &[(ZoneKind::Package, 0, 80.0), (ZoneKind::Dram, 0, 9.0)],
        1 << 40,
    );
    let activity = FakeActivity {
        cpus: 4,
        background_permille: 100,
        processes: vec![
            process(101, "train", "c1", "p1", 700),
            process(102, "infer \"q\"", "c2", "p1", 300),
            process(103, "web", "c3", "p2", 100),
        ],
        failing: false,
    };
    let mut options = Options::new("/sys", "/proc");
    options.gpu = Some(
        GpuConfig::builder()
            .idle_power(Some(MicroWatts::from_watts(50.0)))
            .build(),
    );
    let mut monitor = Monitor::builder(options)
        .power_sources(vec![NamedSource {
            name: "fake".into(),
            source: Box::new(power),
        }])
        .activity_source(Box::new(activity))
        .gpu_backend(Box::new(gpu))
        .build()
        .expect("monitor");
    let mut tick = None;
    for t in 1..=4 {
        tick = Some(monitor.tick(Timestamp(t * 1_000_000_000)));
    }
    let tick = tick.unwrap();
    let context = ExportContext {
        node_name: "gpu-node".into(),
        level: MetricsLevel::all(),
        ..Default::default()
    };
    let text = Exposition::render(&tick.snapshot, tick.gpu.as_deref(), &context, &tick.stats);
    let text = String::from_utf8(text.text().to_vec()).unwrap();

    let local = frame_from_tick(&tick, "gpu-node");
    let mut remote = frame_from_exposition(&text, 0.0).unwrap();
    // Their clocks differ (monotonic vs the exposition's Unix time); nothing else may.
    remote.at_secs = local.at_secs;
    assert_eq!(local, remote);

    // And the frame holds what the fakes made: CPU zones, then the GPUs.
    assert_eq!(
        local.kinds,
        [ZoneKind::Package, ZoneKind::Dram, ZoneKind::Gpu]
    );
    let kinds: Vec<ZoneKind> = local.zones.iter().map(|z| z.kind).collect();
    assert_eq!(
        kinds,
        [
            ZoneKind::Package,
            ZoneKind::Dram,
            ZoneKind::Gpu,
            ZoneKind::Gpu
        ]
    );
    assert!((local.zones[0].watts.unwrap() - 80.0).abs() < 1e-6);
    let procs = local.workloads(Level::Process);
    assert_eq!(procs.len(), 3);
    let train = procs.iter().find(|p| p.id == "101").unwrap();
    assert_eq!(train.parents.pod.as_deref(), Some("p1"));
    assert!(train.watts[ZoneKind::Gpu.index()] > 0.0, "{train:?}");
    assert!(
        train.watts[ZoneKind::Package.index()]
            > procs.iter().find(|p| p.id == "103").unwrap().watts[ZoneKind::Package.index()]
    );
    let pods = local.workloads(Level::Pod);
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().any(|p| p.name == "ml/p1-name"));
    assert_eq!(local.workloads(Level::Container).len(), 3);
}
