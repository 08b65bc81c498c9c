//! Issue 22: the host's cost of writing every VM's passthrough tree each tick, at 1, 10 and
//! 100 VMs (package and dram zones, so two `energy_uj` files per VM), and the write volume
//! per tick at 100 VMs (printed once).
//!
//! `cargo bench -p kepler-benches --bench passthrough`
//!
//! The trees live in a temp dir; on the host they are read by virtiofsd or QEMU's 9p server
//! only when the guest reads, so the writer's cost is the host's whole cost.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, AttributorConfig, IdlePolicy, PowerFrame,
    PowerSource, ProcessInfo, Snapshot, Timestamp, VmInfo, ZoneKind,
};
use kepler_sources::passthrough::{PassthroughWriter, PassthroughWriterOptions};

const SEC: u64 = 1_000_000_000;

/// A host snapshot with `vms` QEMU processes, each its own VM, after a few ticks.
fn snapshot(vms: u32) -> Snapshot {
    let processes = (0..vms)
        .map(|i| FakeProcess {
            pid: 1000 + i,
            start_time: 1,
            start: Timestamp(0),
            end: None,
            permille: 50,
            info: Arc::new(
                ProcessInfo::new("qemu-system-x86", "/usr/bin/qemu-system-x86_64").with_vm(
                    VmInfo::new(
                        Arc::from(format!("6c0f3a1e-0000-4000-8000-{i:012}")),
                        Arc::from(format!("guest-{i}")),
                        Arc::from("kvm"),
                    ),
                ),
            ),
        })
        .collect();
    let mut activity = FakeActivity {
        cpus: 128,
        background_permille: 0,
        processes,
        failing: false,
    };
    let mut power = FakePower::constant(
        &[(ZoneKind::Package, 0, 300.0), (ZoneKind::Dram, 0, 30.0)],
        1 << 40,
    );
    let mut engine = Attributor::new(
        AttributorConfig::builder()
            .idle(IdlePolicy::CpuShare)
            .build(),
    );
    let mut snap = None;
    for t in 1..=3 {
        let (mut p, mut a) = (PowerFrame::default(), ActivityFrame::default());
        power.read(Timestamp(t * SEC), &mut p);
        activity.read(Timestamp(t * SEC), &mut a).unwrap();
        snap = Some(engine.step(&p, Some(&a), Timestamp(t * SEC)));
    }
    snap.unwrap()
}

fn writer(c: &mut Criterion) {
    let mut group = c.benchmark_group("passthrough");
    for vms in [1u32, 10, 100] {
        let snap = snapshot(vms);
        assert_eq!(snap.vms.len(), vms as usize);
        let dir = tempfile::tempdir().unwrap();
        let mut w = PassthroughWriter::new(PassthroughWriterOptions::new(dir.path())).unwrap();
        w.write(&snap);
        if vms == 100 {
            let before = w.stats();
            w.write(&snap);
            let after = w.stats();
            println!(
                "passthrough: write volume per tick at 100 VMs: {} bytes in {} files ({} renames)",
                after.bytes_written - before.bytes_written,
                after.files_written - before.files_written,
                after.files_written - before.files_written,
            );
        }
        group.bench_with_input(BenchmarkId::new("write_tick", vms), &snap, |b, snap| {
            b.iter(|| w.write(std::hint::black_box(snap)))
        });
        assert_eq!(w.stats().errors, 0);
    }
    group.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);
