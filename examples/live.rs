//! Embedding the runtime: read this machine's meters and processes for a few seconds, with
//! the same source selection and tick as the exporter.
//!
//! `cargo run -p examples --example live`
//!
//! Uses RAPL when it is readable and the model estimate otherwise, like the exporter
//! (`Options::preferred_meters` defaults to `[rapl, hwmon, trained, model]`).

use std::time::{Duration, Instant};

use kepler_core::Timestamp;
use kepler_runtime::{Monitor, Options};

fn main() {
    let mut monitor = Monitor::builder(Options::new("/sys", "/proc"))
        .build()
        .expect("the model meter always builds and /proc is readable");
    for s in monitor.power_sources() {
        println!("meter: {}", s.name);
    }
    println!("activity: {}", monitor.activity_name());

    // The front-end owns the clock and gives each tick its one instant.
    let origin = Instant::now();
    let now = || Timestamp(origin.elapsed().as_nanos() as u64);
    let mut last = None;
    for _ in 0..3 {
        last = Some(monitor.tick(now()));
        std::thread::sleep(Duration::from_millis(500));
    }
    let tick = last.expect("ticked");
    let snap = &tick.snapshot;
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
    if let Some(gpu) = &tick.gpu {
        for g in &gpu.devices {
            println!(
                "gpu {} ({}): {:.2} W",
                g.device.index, g.device.name, g.power
            );
        }
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
