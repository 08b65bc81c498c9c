//! `kepler top`'s two feeds agree (issue 18): one runtime tick (fake meters, processes in
//! containers and pods, fake GPUs) read directly by local mode and read back from the
//! exporter's exposition of the same tick by remote mode give the same frame, number for
//! number. The view cannot tell which way its numbers came.

mod support;

use kepler_bin::top::exposition::frame_from_exposition;
use kepler_bin::top::local::frame_from_tick;
use kepler_bin::top::model::Level;
use kepler_core::fakes::FakeActivity;
use kepler_core::ZoneKind;
use kepler_export::{ExportContext, MetricsLevel};
use kepler_sources::gpu::{FakeGpu, FakeGpuDevice};
use support::fake_node::{constant_meter, gpu_options, last_tick, pod_process, render};

#[test]
fn local_and_remote_frames_of_one_tick_are_equal() {
    let mut a = FakeGpuDevice::new(0, 300.0);
    a.run(&[(101, 25), (102, 75)]);
    let gpu = FakeGpu::new(vec![a, FakeGpuDevice::new(1, 60.0)]);
    let meter = constant_meter(
        "fake",
        &[(ZoneKind::Package, 0, 80.0), (ZoneKind::Dram, 0, 9.0)],
    );
    let activity = FakeActivity {
        cpus: 4,
        background_permille: 100,
        processes: vec![
            pod_process(101, "train", "c1", "p1", 700),
            pod_process(102, "infer \"q\"", "c2", "p1", 300),
            pod_process(103, "web", "c3", "p2", 100),
        ],
        failing: false,
    };
    let tick = last_tick(
        gpu_options(Some(50.0)),
        vec![meter],
        activity,
        gpu,
        4,
        1_000_000_000,
    );
    let context = ExportContext {
        node_name: "gpu-node".into(),
        level: MetricsLevel::all(),
        ..Default::default()
    };
    let text = render(&tick, &context);

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
