//! A warm procfs scan of the live processes of this machine (budget: 50 ms for 10,000).
//!
//! `cargo bench -p kepler-benches --bench procfs` scans whatever runs now; with
//! `KEPLER_BENCH_PROCESSES=10000` it first starts that many sleeping processes (and stops
//! them afterwards) so the scan sees a node-sized process table.

use std::process::{Child, Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kepler_core::{ActivityFrame, ActivitySource, Timestamp};
use kepler_sources::{ProcfsActivity, ProcfsOptions};

/// Sleeping children that are killed and reaped on drop.
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn start(n: usize) -> Sleepers {
        let children = (0..n)
            .map(|_| {
                Command::new("sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn sleep (raise `ulimit -u` for large counts)")
            })
            .collect();
        Sleepers(children)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn scan(c: &mut Criterion) {
    let extra = std::env::var("KEPLER_BENCH_PROCESSES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let _sleepers = Sleepers::start(extra);
    let mut group = c.benchmark_group("procfs");
    for (name, max_open_files) in [("warm_scan/kept_open", None), ("warm_scan/reopen", Some(0))] {
        let mut source = ProcfsActivity::new(ProcfsOptions {
            max_open_files,
            ..ProcfsOptions::default()
        })
        .expect("/proc");
        let mut frame = ActivityFrame::default();
        source.read(Timestamp(0), &mut frame).expect("cold scan");
        let live = frame.processes.len();
        eprintln!(
            "{name}: {live} processes, {} stat files kept open",
            source.open_files()
        );
        group.throughput(Throughput::Elements(live as u64));
        let mut t = 0;
        group.bench_function(format!("{name}/{live}p"), |b| {
            b.iter(|| {
                t += 1;
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
