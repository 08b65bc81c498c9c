//! The library surface for `cargo add kepler-core` users (issue 14): zones, frames and
//! workloads can be built without struct literals, so fields added later with defaults do
//! not break them.

use std::sync::Arc;
use std::time::Duration;

use kepler_core::*;

#[test]
fn zone_builder_defaults_and_setters_issue_14() {
    let plain = ZoneInfo::builder("x:package-0", ZoneKind::Package, SourceKind::Rapl).build();
    assert_eq!(
        plain,
        ZoneInfo::builder("x:package-0", ZoneKind::Package, SourceKind::Rapl)
            .index(0)
            .path("x:package-0")
            .metering(Metering::EnergyCounter { max_range: None })
            .estimated(false)
            .build()
    );
    let gauge = ZoneInfo::builder("bmc:1", ZoneKind::Platform, SourceKind::Redfish)
        .index(3)
        .path("https://bmc/redfish/v1/Chassis/1/Power")
        .power_gauge()
        .estimated(true)
        .max_power(MicroWatts::from_watts(2_000.0))
        .build();
    assert_eq!(gauge.index, 3);
    assert_eq!(gauge.path, "https://bmc/redfish/v1/Chassis/1/Power");
    assert_eq!(gauge.metering, Metering::PowerGauge);
    assert!(gauge.estimated);
    assert_eq!(gauge.max_power, Some(MicroWatts(2_000_000_000)));
    let counter = ZoneInfo::builder("c", ZoneKind::Dram, SourceKind::Fake)
        .power_gauge()
        .energy_counter(Some(MicroJoules(7)))
        .build();
    assert_eq!(
        counter.metering,
        Metering::EnergyCounter {
            max_range: Some(MicroJoules(7))
        }
    );
}

#[test]
fn workload_constructors_fill_every_field_issue_14() {
    let pod = PodInfo::new("uid-1", "web", "default");
    let container = ContainerInfo::new("abc", "nginx", Runtime::CriO).with_pod(pod.clone());
    assert_eq!(container.pod.as_ref(), Some(&pod));
    let vm = VmInfo::new("vm-1", "guest", "qemu");
    let info = ProcessInfo::new("nginx", "/usr/sbin/nginx")
        .with_container(container.clone())
        .with_vm(vm.clone());
    assert_eq!(
        info,
        ProcessInfo::new("nginx", "/usr/sbin/nginx")
            .with_container(container.clone())
            .with_vm(vm)
    );
    let info = Arc::new(info);
    let s = ProcessSample::new(7, 99, Nanos(5), Arc::clone(&info));
    assert_eq!((s.pid, s.start_time, s.cpu_time), (7, 99, Nanos(5)));
    let d = ProcessDetail::new(1, Nanos(3), Some(2));
    assert_eq!(
        (d.ppid, d.children_time, d.last_cpu),
        (1, Nanos(3), Some(2))
    );
    let u = ContainerUsage::new(container.clone(), Nanos(11));
    assert_eq!((u.info, u.usage), (container, Nanos(11)));
    let node = NodeCpu::new(Nanos(1), Nanos(4));
    assert_eq!((node.busy, node.total), (Nanos(1), Nanos(4)));
    let cpu = CpuTime::new(3, 1, node);
    assert_eq!((cpu.cpu, cpu.socket, cpu.time), (3, 1, node));
    let frame = ActivityFrame::new(node);
    assert_eq!(frame.node, node);
    assert!(frame.processes.is_empty() && frame.details.is_empty());
}

/// A frame built with the constructors steps the engine like one built field by field,
/// and conservation holds.
#[test]
fn engine_steps_on_constructed_frames_issue_14() {
    let zone = Arc::new(
        ZoneInfo::builder("z", ZoneKind::Package, SourceKind::Fake)
            .energy_counter(Some(MicroJoules(1 << 40)))
            .build(),
    );
    let info = Arc::new(ProcessInfo::new("p", "/bin/p"));
    let mut engine = Attributor::default();
    let mut snap = None;
    for s in 0..3u64 {
        let at = Timestamp(0).plus(Nanos::from(Duration::from_secs(s)));
        let mut power = PowerFrame::with_capacity(1);
        power.samples.push(ZoneSample::new(
            Arc::clone(&zone),
            Ok(Reading::Energy(MicroJoules(s * 20_000_000))),
        ));
        let mut activity = ActivityFrame::new(NodeCpu::new(Nanos(s * 600), Nanos(s * 1000)));
        let sample = ProcessSample::new(1, 1, Nanos(s * 300), Arc::clone(&info));
        activity.processes.push(sample);
        snap = Some(engine.step(&power, Some(&activity), at));
    }
    let snap = snap.unwrap();
    let z = &snap.zones[0];
    assert_eq!(z.total, MicroJoules(40_000_000));
    assert_eq!(z.active.checked_add(z.idle), Some(z.total));
    let p = snap.processes[0].energy.total.get(ZoneKind::Package);
    let rest = snap.unattributed.total.get(ZoneKind::Package);
    assert_eq!(p.checked_add(rest), Some(z.active));
    // Half of the busy time is the process's: half of the active energy.
    assert_eq!(p, MicroJoules(z.active.0 / 2));
}
