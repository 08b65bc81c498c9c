//! GPU accounting driven by the fake NVML backend (issue 7): time-slicing shares, exclusive
//! mode, MIG, a device that disappears, an energy counter reset, the learned idle baseline,
//! and the roll-up to containers and pods.

use std::sync::Arc;

use kepler_core::{
    ActivityFrame, Attributor, ContainerInfo, GpuAttributor, GpuConfig, GpuFrame, GpuInstance,
    GpuMode, GpuProcessSample, GpuSnapshot, MicroJoules, MicroWatts, Nanos, NodeCpu, PodInfo,
    PowerFrame, ProcessInfo, ProcessSample, Runtime, Snapshot, State, Timestamp,
};
use kepler_sources::gpu::{FakeGpu, FakeGpuDevice, GpuBackend};

const J: u64 = 1_000_000;

fn at(s: u64) -> Timestamp {
    Timestamp(s * 1_000_000_000)
}

fn info(comm: &str, container: Option<(&str, &str)>) -> Arc<ProcessInfo> {
    Arc::new({
        let mut v = ProcessInfo::new(comm, format!("/usr/bin/{comm}"));
        v.container =
            container.map(|(c, pod)| {
                ContainerInfo::new(c, format!("{c}-name"), Runtime::Containerd)
                    .with_pod(PodInfo::new(pod, format!("{pod}-name"), "ml"))
            });
        v
    })
}

/// A CPU snapshot that knows pids 101..103 (two in one container of pod p1).
fn cpu_snapshot(t: Timestamp) -> Snapshot {
    let frame = {
        let mut v = ActivityFrame::new(NodeCpu {
            busy: Nanos(t.0),
            total: Nanos(t.0 * 4),
        });
        v.processes = vec![
            ProcessSample::new(101, 11, Nanos(t.0 / 4), info("train-a", Some(("c1", "p1")))),
            ProcessSample::new(102, 12, Nanos(t.0 / 4), info("train-b", Some(("c1", "p1")))),
            ProcessSample::new(103, 13, Nanos(t.0 / 4), info("infer", Some(("c2", "p2")))),
        ];
        v
    };
    Attributor::default().step(&PowerFrame::default(), Some(&frame), t)
}

struct Rig {
    gpu: FakeGpu,
    engine: GpuAttributor,
    frame: GpuFrame,
}

impl Rig {
    fn new(devices: Vec<FakeGpuDevice>, idle: Option<f64>) -> Rig {
        Rig {
            gpu: FakeGpu::new(devices),
            engine: GpuAttributor::new(
                GpuConfig::builder()
                    .idle_power(idle.map(MicroWatts::from_watts))
                    .build(),
            ),
            frame: GpuFrame::default(),
        }
    }

    fn tick(&mut self, s: u64) -> GpuSnapshot {
        self.frame.clear();
        self.gpu.read(at(s), &mut self.frame);
        self.engine.step(&self.frame, &cpu_snapshot(at(s)), at(s))
    }
}

fn process_total(s: &GpuSnapshot, pid: u32, device: usize) -> u64 {
    s.processes
        .iter()
        .filter(|p| p.info.pid == pid && p.device == device)
        .map(|p| p.total.0)
        .sum()
}

/// node = idle + active and active = Σ processes + unattributed, per device, exactly.
fn assert_conserved(s: &GpuSnapshot) {
    for (i, d) in s.devices.iter().enumerate() {
        assert_eq!(d.total, d.idle + d.active, "device {i}");
        let procs: u64 = s
            .processes
            .iter()
            .filter(|p| p.device == i)
            .map(|p| p.total.0)
            .sum();
        assert_eq!(procs + d.unattributed.0, d.active.0, "device {i}");
    }
}

#[test]
fn time_slicing_three_processes_get_their_sm_shares_issue_7() {
    let mut d = FakeGpuDevice::new(0, 250.0);
    d.run(&[(101, 10), (102, 30), (103, 60)]);
    let mut rig = Rig::new(vec![d], Some(50.0));
    rig.tick(0);
    let s = rig.tick(1);
    let n = &s.devices[0];
    assert_eq!(
        (n.total.0, n.idle.0, n.active.0),
        (250 * J, 50 * J, 200 * J)
    );
    assert_eq!(process_total(&s, 101, 0), 20 * J);
    assert_eq!(process_total(&s, 102, 0), 60 * J);
    assert_eq!(process_total(&s, 103, 0), 120 * J);
    assert!((n.power - 250.0).abs() < 1e-9 && (n.active_power - 200.0).abs() < 1e-9);
    let p = s.processes.iter().find(|p| p.info.pid == 103).unwrap();
    assert!((p.watts - 120.0).abs() < 1e-9);
    assert_eq!(&*p.info.info.comm, "infer");
    assert_eq!(p.info.start_time, 13);
    // Roll-up: c1 holds 101 + 102, pod p1 the same; c2/p2 hold 103.
    let c1 = s.containers.iter().find(|c| &*c.info.id == "c1").unwrap();
    assert_eq!(c1.total.0, 80 * J);
    let p2 = s.pods.iter().find(|p| &*p.info.id == "p2").unwrap();
    assert_eq!(p2.total.0, 120 * J);
    assert_conserved(&s);

    // Awkward numbers still conserve exactly to the microjoule.
    rig.gpu.devices[0].power = MicroWatts(333_333_333);
    rig.gpu.devices[0].run(&[(101, 7), (102, 13), (103, 29)]);
    for t in 2..20 {
        assert_conserved(&rig.tick(t));
    }
}

#[test]
fn exclusive_mode_splits_equally() {
    let mut d = FakeGpuDevice::new(0, 100.0);
    d.mode = GpuMode::Exclusive;
    d.run(&[(101, 90), (103, 5)]);
    let mut rig = Rig::new(vec![d], Some(40.0));
    rig.tick(0);
    let s = rig.tick(2);
    assert_eq!(s.devices[0].active.0, 120 * J);
    assert_eq!(process_total(&s, 101, 0), 60 * J);
    assert_eq!(process_total(&s, 103, 0), 60 * J);
    assert_eq!(s.devices[0].mode, GpuMode::Exclusive);
}

#[test]
fn mig_instances_share_by_weight() {
    let mut d = FakeGpuDevice::new(0, 300.0);
    d.mode = GpuMode::Mig;
    d.instances = vec![
        GpuInstance { id: 1, weight: 4 },
        GpuInstance { id: 2, weight: 2 },
    ];
    d.processes = vec![
        GpuProcessSample::new(101, 0, Some(1)),
        GpuProcessSample::new(102, 0, Some(2)),
        GpuProcessSample::new(103, 0, Some(2)),
    ];
    let mut rig = Rig::new(vec![d], Some(0.0));
    rig.tick(0);
    let s = rig.tick(1);
    assert_eq!(process_total(&s, 101, 0), 200 * J);
    assert_eq!(process_total(&s, 102, 0), 50 * J);
    assert_eq!(process_total(&s, 103, 0), 50 * J);
    assert_conserved(&s);
}

#[test]
fn a_device_that_disappears_degrades_alone() {
    let mut a = FakeGpuDevice::new(0, 100.0);
    a.run(&[(101, 50)]);
    let mut b = FakeGpuDevice::new(1, 200.0);
    b.run(&[(103, 50)]);
    let mut rig = Rig::new(vec![a, b], Some(0.0));
    rig.tick(0);
    let s1 = rig.tick(1);
    assert_eq!(s1.devices[1].total.0, 200 * J);
    rig.gpu.devices[1].present = false;
    let s2 = rig.tick(2);
    let gone = &s2.devices[1];
    assert!(!gone.up);
    assert_eq!(gone.read_errors, 1);
    assert_eq!(gone.last_error.as_ref().unwrap().kind_label(), "missing");
    assert_eq!(gone.total.0, 200 * J, "kept, not reset");
    assert_eq!(gone.power, 0.0);
    assert_eq!(process_total(&s2, 103, 1), 200 * J);
    // Its process is not declared terminated for a device that could not be read.
    let p = s2.processes.iter().find(|p| p.info.pid == 103).unwrap();
    assert_eq!(p.state, State::Running);
    // The other device is untouched.
    assert_eq!(s2.devices[0].total.0, 200 * J);
    assert!(s2.devices[0].up);
    // Back after two seconds: the energy of the gap is counted, nothing is lost.
    rig.gpu.devices[1].present = true;
    let s4 = rig.tick(4);
    assert!(s4.devices[1].up);
    assert_eq!(s4.devices[1].total.0, 800 * J);
    assert_eq!(process_total(&s4, 103, 1), 800 * J);
    assert_conserved(&s4);
}

#[test]
fn an_energy_counter_reset_is_dropped_not_subtracted() {
    let mut d = FakeGpuDevice::new(0, 100.0);
    d.run(&[(101, 100)]);
    let mut rig = Rig::new(vec![d], Some(0.0));
    rig.tick(0);
    let s1 = rig.tick(1);
    assert_eq!(s1.devices[0].total.0, 100 * J);
    rig.gpu.devices[0].reset_counter();
    let s2 = rig.tick(2);
    assert_eq!(s2.devices[0].dropped_deltas, 1);
    assert_eq!(s2.devices[0].total.0, 100 * J);
    let s3 = rig.tick(3);
    assert_eq!(
        s3.devices[0].total.0,
        200 * J,
        "counts again from the new baseline"
    );
    assert_eq!(process_total(&s3, 101, 0), 200 * J);
}

#[test]
fn idle_is_learned_while_nothing_runs() {
    let d = FakeGpuDevice::new(0, 60.0);
    let mut rig = Rig::new(vec![d], None);
    rig.tick(0);
    rig.tick(1);
    rig.gpu.devices[0].power = MicroWatts::from_watts(70.0);
    let s = rig.tick(2);
    assert_eq!(
        s.devices[0].idle_baseline,
        Some(MicroWatts::from_watts(60.0))
    );
    // With nothing running, everything above the baseline is unattributed active energy.
    assert_eq!(s.devices[0].unattributed.0, 10 * J);
    rig.gpu.devices[0].power = MicroWatts::from_watts(260.0);
    rig.gpu.devices[0].run(&[(101, 80)]);
    let s = rig.tick(3);
    let n = &s.devices[0];
    assert_eq!(n.idle.0, 180 * J, "60 W for 3 s");
    assert_eq!(process_total(&s, 101, 0), 200 * J);
    assert!((n.idle_power - 60.0).abs() < 1e-9);
}

#[test]
fn unknown_pids_and_terminated_processes() {
    let mut d = FakeGpuDevice::new(0, 100.0);
    d.run(&[(999, 50), (101, 50)]);
    let mut rig = Rig::new(vec![d], Some(0.0));
    rig.tick(0);
    let s = rig.tick(1);
    let p = s.processes.iter().find(|p| p.info.pid == 999).unwrap();
    assert_eq!((&*p.info.info.comm, p.info.start_time), ("", 0));
    assert_eq!(p.total.0, 50 * J);
    // 999 exits: it keeps its energy, marked terminated, for the TTL (10 s), then goes.
    rig.gpu.devices[0].run(&[(101, 50)]);
    let s = rig.tick(2);
    let p = s.processes.iter().find(|p| p.info.pid == 999).unwrap();
    assert_eq!(p.state, State::Terminated { at: at(2) });
    assert_eq!((p.total.0, p.last.0), (50 * J, 0));
    assert_eq!(process_total(&s, 101, 0), 150 * J);
    let s = rig.tick(12);
    assert!(s.processes.iter().all(|p| p.info.pid != 999));
    assert_eq!(s.devices[0].total, MicroJoules(1200 * J));
}

#[test]
fn read_appends_and_leaves_clearing_to_the_caller() {
    let mut gpu = FakeGpu::new(vec![FakeGpuDevice::new(0, 100.0)]);
    let mut frame = GpuFrame::default();
    gpu.read(at(1), &mut frame);
    let first = frame.samples.clone();
    assert_eq!(first.len(), 1);
    // No clear in between: the first read's entry stays, the second is appended.
    gpu.read(at(2), &mut frame);
    assert_eq!(frame.samples.len(), 2);
    assert_eq!(frame.samples[0], first[0]);
}
