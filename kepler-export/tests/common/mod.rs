//! Shared fixtures: a snapshot stepped from kepler-core's fakes.

#![allow(dead_code)]

use std::sync::Arc;

use kepler_core::fakes::{process_info, FakeActivity, FakePower, FakeProcess};
use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, ContainerInfo, CpuInfo, PodInfo, PowerFrame,
    PowerSource, ProcessInfo, Runtime, Snapshot, Timestamp, VmInfo, ZoneKind,
};
use kepler_export::{BuildInfo, ExportContext, MetricsLevel, SelfStats, SourceSelf};

pub const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A comm with every character the text format must escape.
pub const WEIRD_COMM: &str = "we\"ird\\na\nme";

fn info(comm: &str, container: Option<ContainerInfo>, vm: Option<VmInfo>) -> Arc<ProcessInfo> {
    Arc::new({
        let mut v = ProcessInfo::new(comm, format!("/usr/bin/{comm}"));
        v.container = container;
        v.vm = vm;
        v
    })
}

/// Package 10 W and DRAM 2 W on socket 0; 2 CPUs; four processes (regular, container in a pod,
/// VM, weird name); `ticks` one-second ticks starting at t = 0.
pub fn snapshot(ticks: u64) -> Snapshot {
    snapshot_with_exit(ticks, None)
}

/// Like [`snapshot`], with process 100 (`busy`) exiting at `exit`.
pub fn snapshot_with_exit(ticks: u64, exit: Option<Timestamp>) -> Snapshot {
    let mut power = FakePower::constant(
        &[(ZoneKind::Package, 0, 10.0), (ZoneKind::Dram, 0, 2.0)],
        1 << 40,
    );
    let pod = PodInfo::new("pod-uid-1", "web-0", "default");
    let container = ContainerInfo::new(CONTAINER_ID, "web", Runtime::Containerd).with_pod(pod);
    let vm = VmInfo::new("vm-uuid-1", "guest", "qemu");
    let proc_ = |pid, permille, info| FakeProcess {
        pid,
        start_time: pid as u64,
        start: Timestamp(0),
        end: None,
        permille,
        info,
    };
    let mut activity = FakeActivity {
        cpus: 2,
        background_permille: 100,
        processes: vec![
            FakeProcess {
                end: exit,
                ..proc_(100, 500, process_info("busy"))
            },
            proc_(200, 250, info("nginx", Some(container), None)),
            proc_(300, 200, info("qemu-kvm", None, Some(vm))),
            proc_(400, 50, info(WEIRD_COMM, None, None)),
        ],
        failing: false,
    };
    let mut engine = Attributor::default();
    let mut pf = PowerFrame::default();
    let mut af = ActivityFrame::default();
    let mut snap = None;
    for t in 0..ticks {
        let at = Timestamp(t * 1_000_000_000);
        pf.clear();
        power.read(at, &mut pf);
        af.clear();
        activity.read(at, &mut af).unwrap();
        snap = Some(engine.step(&pf, Some(&af), at));
    }
    snap.expect("at least one tick")
}

pub fn context(level: MetricsLevel) -> ExportContext {
    ExportContext {
        node_name: "test-node".into(),
        level,
        build: BuildInfo {
            version: "0.1.0".into(),
            revision: "abc123".into(),
            branch: "main".into(),
            rust_version: "1.95.0".into(),
            arch: "x86_64".into(),
            fips: false,
            bpf: true,
        },
        cpu_info: vec![CpuInfo {
            processor: 0,
            vendor_id: "GenuineIntel".into(),
            model_name: "Fake CPU @ 2.00GHz".into(),
            physical_id: 0,
            core_id: 0,
        }],
        wall_offset_secs: 1_700_000_000.0,
        guide_aliases: false,
    }
}

pub fn stats() -> SelfStats {
    SelfStats {
        tick_duration_secs: 0.0125,
        activity_source: "fake",
        activity_errors: 0,
        sources: vec![SourceSelf {
            source: "fake".into(),
            read_duration_secs: 0.001,
            ..Default::default()
        }],
        ..Default::default()
    }
}
