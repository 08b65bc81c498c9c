//! A warm procfs scan of the live processes of this machine (budget: 50 ms for 10,000).
//!
//! `cargo bench -p kepler-benches --bench procfs` scans whatever runs now; with
//! `KEPLER_BENCH_PROCESSES=10000` it first starts that many sleeping processes (and stops
//! them afterwards) so the scan sees a node-sized process table.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kepler_benches::Sleepers;
use kepler_core::{ActivityFrame, ActivitySource, Timestamp};
use kepler_sources::{ProcfsActivity, ProcfsOptions};

fn scan(c: &mut Criterion) {
    let _sleepers = Sleepers::from_env();
    let mut group = c.benchmark_group("procfs");
    // Kept descriptors with idle processes read through their `schedstat` (the default),
    // kept descriptors reading every `stat`, and every `stat` reopened each tick.
    for (name, max_open_files, probe_idle) in [
        ("warm_scan/kept_open", None, true),
        ("warm_scan/kept_open_no_probe", None, false),
        ("warm_scan/reopen", Some(0), false),
    ] {
        let mut source = ProcfsActivity::new(ProcfsOptions {
            max_open_files,
            probe_idle,
            ..ProcfsOptions::default()
        })
        .expect("/proc");
        let mut frame = ActivityFrame::default();
        // The cold scan, then the two that give idle processes their probe baselines.
        for t in 0..3 {
            frame.clear();
            source.read(Timestamp(t), &mut frame).expect("cold scan");
        }
        let live = frame.processes.len();
        let skips = source.quiet_skips();
        frame.clear();
        source.read(Timestamp(3), &mut frame).expect("warm scan");
        eprintln!(
            "{name}: {live} processes, {} files kept open, {} of them skipped as idle",
            source.open_files(),
            source.quiet_skips() - skips
        );
        group.throughput(Throughput::Elements(live as u64));
        let mut t = 3;
        group.bench_function(format!("{name}/{live}p"), |b| {
            b.iter(|| {
                t += 1;
                frame.clear();
                source.read(Timestamp(t), &mut frame).expect("scan");
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = scan
}
criterion_main!(benches);
