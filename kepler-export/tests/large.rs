//! A node-sized snapshot: 10,000 processes x 4 zones + 1,000 containers. Checks the render is
//! complete and that its gzip body
//! matches; the time it takes is measured by `cargo bench -p kepler-benches --bench export`.

use std::io::Read;
use std::sync::Arc;

use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, ContainerInfo, PodInfo, PowerFrame, PowerSource,
    ProcessInfo, Runtime, Snapshot, Timestamp, ZoneKind,
};
use kepler_export::{ExportContext, Exposition, MetricsLevel, SelfStats};

fn big_snapshot(processes: u32, containers: u32) -> Snapshot {
    let mut power = FakePower::constant(
        &[
            (ZoneKind::Package, 0, 120.0),
            (ZoneKind::Core, 0, 80.0),
            (ZoneKind::Uncore, 0, 5.0),
            (ZoneKind::Dram, 0, 20.0),
        ],
        1 << 40,
    );
    let infos: Vec<Option<ContainerInfo>> = (0..containers)
        .map(|c| {
            Some(
                ContainerInfo::new(
                    format!("{c:064x}"),
                    format!("container-{c}"),
                    Runtime::Containerd,
                )
                .with_pod(PodInfo::new(
                    format!("pod-{c:08}-0000-0000-0000-000000000000"),
                    format!("pod-{c}"),
                    "default",
                )),
            )
        })
        .collect();
    let procs = (0..processes)
        .map(|i| FakeProcess {
            pid: 1000 + i,
            start_time: u64::from(i),
            start: Timestamp(0),
            end: None,
            permille: 1 + u64::from(i % 7),
            info: Arc::new({
                let mut v = ProcessInfo::new(
                    format!("worker-{i}"),
                    format!("/usr/local/bin/some-service-{}", i % 50),
                );
                v.container = if containers > 0 && i % 2 == 0 {
                    infos[(i / 2 % containers) as usize].clone()
                } else {
                    None
                };
                v
            }),
        })
        .collect();
    let mut activity = FakeActivity {
        cpus: 64,
        background_permille: 10,
        processes: procs,
        failing: false,
    };
    let mut engine = Attributor::default();
    let mut pf = PowerFrame::default();
    let mut af = ActivityFrame::default();
    let mut snap = None;
    for t in 0..3u64 {
        let at = Timestamp(t * 5_000_000_000);
        pf.clear();
        power.read(at, &mut pf);
        af.clear();
        activity.read(at, &mut af).unwrap();
        snap = Some(engine.step(&pf, Some(&af), at));
    }
    snap.unwrap()
}

#[test]
fn ten_thousand_processes_render_completely() {
    let snap = big_snapshot(10_000, 1_000);
    assert_eq!(snap.kinds.len(), 4);
    assert_eq!(snap.containers.len(), 1_000);
    let ctx = ExportContext {
        node_name: "worker-node-17.example.internal".into(),
        level: MetricsLevel::all(),
        ..Default::default()
    };
    let e = Exposition::render(&snap, None, &ctx, &SelfStats::default());
    // Every process has joules and watts per zone plus its info; containers likewise.
    let expected = 10_000 * (2 * 4 + 1) + 1_000 * 2 * 4 * 2;
    assert!(e.samples() > expected, "{} samples", e.samples());
    let text = std::str::from_utf8(e.text()).expect("utf-8");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("kepler_process_cpu_joules_total{"))
            .count(),
        10_000 * 4
    );
    // The lazily compressed body inflates back to the same text.
    let mut inflated = String::new();
    flate2::read::GzDecoder::new(&e.text_gzip()[..])
        .read_to_string(&mut inflated)
        .expect("gunzip");
    assert_eq!(inflated, text);
}
