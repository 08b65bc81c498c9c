//! Embedding the sources too: read this machine's meters and processes for a few seconds.
//!
//! `cargo run -p kepler-examples --example live`
//!
//! Uses RAPL when it is readable and the model estimate otherwise, like the exporter.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kepler_core::*;
use kepler_sources::{MeterContext, ModelParams, ProcfsActivity, ProcfsOptions, METERS};

fn main() {
    let ctx = MeterContext {
        model: ModelParams::default(),
        ..MeterContext::new(PathBuf::from("/sys"), PathBuf::from("/proc"))
    };
    let mut meter = METERS
        .iter()
        .find_map(|m| match (m.build)(&ctx) {
            Ok(s) => {
                println!("meter: {}", m.name);
                Some(s)
            }
            Err(e) => {
                println!("meter {} skipped: {e}", m.name);
                None
            }
        })
        .expect("the model meter always builds");
    let mut activity = ProcfsActivity::new(ProcfsOptions::new("/proc")).expect("/proc is readable");

    let origin = Instant::now();
    let now = || Timestamp(origin.elapsed().as_nanos() as u64);
    let mut engine = Attributor::default();
    let mut pf = PowerFrame::default();
    let mut af = ActivityFrame::default();
    let mut snap = None;
    for _ in 0..3 {
        pf.clear();
        let at = now();
        activity.read(at, &mut af).expect("procfs read");
        meter.read(now(), &mut pf);
        snap = Some(engine.step(&pf, Some(&af), now()));
        std::thread::sleep(Duration::from_millis(500));
    }
    let snap = snap.expect("stepped");
    for z in &snap.zones {
        println!(
            "{} {} ({}{}): {:.2} W",
            z.info.kind,
            z.info.index,
            z.info.source,
            if z.info.estimated { ", estimated" } else { "" },
            z.power
        );
    }
    let mut top: Vec<_> = snap.processes.iter().collect();
    top.sort_by_key(|p| std::cmp::Reverse(p.energy.total.sum()));
    for p in top.iter().take(5) {
        println!(
            "  {:>7} {:<16} {:.3} J",
            p.pid,
            p.info.comm,
            p.energy.total.sum() as f64 / 1e6
        );
    }
}
