//! Embedding the engine: step it with your own readings and read the snapshot.
//!
//! `cargo run -p examples --example embed`
//!
//! A tool that already has power numbers (from its own meter, a simulator, a trace file)
//! and process CPU times can use `kepler-core` alone: no files, no clock, no threads, and
//! no test fakes: zones, frames and processes have constructors.

use std::sync::Arc;
use std::time::Duration;

use kepler_core::*;

/// A package that draws 30 W, as a RAPL-like counter that wraps every 100 J.
const WATTS: u64 = 30;
const RANGE_UJ: u64 = 100_000_000;
const CPUS: u64 = 4;

fn main() {
    let zone = Arc::new(
        ZoneInfo::builder("embed:package-0", ZoneKind::Package, SourceKind::Model)
            .energy_counter(Some(MicroJoules(RANGE_UJ)))
            .estimated(true)
            .build(),
    );
    // "encoder" uses 1.5 CPUs, "logger" a tenth of one; the rest of the machine 0.2.
    let processes = [
        (
            100,
            Arc::new(ProcessInfo::new("encoder", "/usr/bin/encoder")),
            1500,
        ),
        (
            200,
            Arc::new(ProcessInfo::new("logger", "/usr/bin/logger")),
            100,
        ),
    ];
    let background_permille = 200;

    let mut engine = Attributor::new(AttributorConfig::default());
    let mut power = PowerFrame::with_capacity(1);
    let mut activity = ActivityFrame::default();
    let mut snapshot = None;
    for second in 0..=10u64 {
        // Time is an input: here, simulated seconds.
        let elapsed = Nanos::from(Duration::from_secs(second));
        let at = Timestamp(0).plus(elapsed);
        let energy = (WATTS * 1_000_000 * second) % RANGE_UJ;
        power.clear();
        power.push(&zone, Ok(Reading::Energy(MicroJoules(energy))));

        let cpu_of = |permille: u64| Nanos(elapsed.0 * permille / 1000);
        let mut busy = cpu_of(background_permille);
        activity.clear();
        for (pid, info, permille) in &processes {
            let cpu = cpu_of(*permille);
            busy = busy.saturating_add(cpu);
            let sample = ProcessSample::new(*pid, u64::from(*pid), cpu, Arc::clone(info));
            activity.processes.push(sample);
        }
        activity.node = NodeCpu::new(busy, Nanos(elapsed.0 * CPUS));
        snapshot = Some(engine.step(&power, Some(&activity), at));
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
    assert_eq!(active.checked_add(idle), Some(total));
    let mut attributed = MicroJoules::ZERO;
    for p in &snap.processes {
        let e = p.energy.total.get(ZoneKind::Package);
        attributed = attributed.saturating_add(e);
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
    assert_eq!(attributed.checked_add(unattributed), Some(active));
}
