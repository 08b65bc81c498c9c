//! Embedding the engine: step it with your own readings and read the snapshot.
//!
//! `cargo run -p kepler-examples --example embed`
//!
//! A tool that already has power numbers (from its own meter, a simulator, a trace file)
//! and process CPU times can use `kepler-core` alone: no files, no clock, no threads.

use std::sync::Arc;

use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::*;

fn main() {
    // A 30 W package whose counter wraps every 100 J, and two processes on 4 CPUs:
    // "encoder" uses 1.5 CPUs, "logger" a tenth of one.
    let mut power = FakePower::constant(&[(ZoneKind::Package, 0, 30.0)], 100_000_000);
    let process = |pid, comm: &str, permille| FakeProcess {
        pid,
        start_time: pid as u64,
        start: Timestamp(0),
        end: None,
        permille,
        info: Arc::new(ProcessInfo {
            comm: comm.into(),
            exe: format!("/usr/bin/{comm}").into(),
            container: None,
            vm: None,
        }),
    };
    let mut activity = FakeActivity {
        cpus: 4,
        background_permille: 200,
        processes: vec![process(100, "encoder", 1500), process(200, "logger", 100)],
        failing: false,
    };

    let mut engine = Attributor::new(AttributorConfig::default());
    let mut power_frame = PowerFrame::default();
    let mut activity_frame = ActivityFrame::default();
    let mut snapshot = None;
    for second in 0..=10u64 {
        // Time is an input: here, simulated seconds.
        let at = Timestamp(second * 1_000_000_000);
        power_frame.clear();
        power.read(at, &mut power_frame);
        activity
            .read(at, &mut activity_frame)
            .expect("fake activity");
        snapshot = Some(engine.step(&power_frame, Some(&activity_frame), at));
    }
    let snap = snapshot.expect("stepped");

    let (total, active, idle) = snap.node_energy(ZoneKind::Package);
    println!(
        "node package: {:.3} J = {:.3} J active + {:.3} J idle (usage {:.0}%)",
        total.as_joules(),
        active.as_joules(),
        idle.as_joules(),
        snap.usage_ratio * 100.0
    );
    assert_eq!(total, active + idle);
    let mut attributed = 0;
    for p in &snap.processes {
        let e = p.energy.total.get(ZoneKind::Package);
        attributed += e.0;
        println!(
            "  pid {:>4} {:<8} {:>8.3} J  {:>6.2} W",
            p.pid,
            p.info.comm,
            e.as_joules(),
            snap.watts(p.energy.last.get(ZoneKind::Package))
        );
    }
    let unattributed = snap.unattributed.total.get(ZoneKind::Package);
    println!("  unattributed   {:>8.3} J", unattributed.as_joules());
    // Conservation is exact, in integer microjoules.
    assert_eq!(attributed + unattributed.0, active.0);
}
