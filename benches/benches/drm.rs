//! What DRM fdinfo scanning (issue 19) adds to a procfs tick (budget: about 10%).
//!
//! `KEPLER_BENCH_PROCESSES=10000 cargo bench -p kepler-benches --bench drm` starts that many
//! sleeping processes, then times on the real `/proc`, warm:
//!
//! - `procfs_tick`: the procfs activity scan (the baseline);
//! - `drm_scan`: what the DRM backend adds per tick, the client scanner shown the scan's
//!   processes and scanning, where no process ran since the previous tick (no process has a
//!   DRM device here, so this is the bookkeeping);
//! - `drm_scan_all_running`: the same where every process ran since the previous tick, so each
//!   is listed again on its backoff (the worst case of a busy node), after 300 ticks so that
//!   the backoffs have reached their steady state.

use criterion::{criterion_group, criterion_main, Criterion};
use kepler_benches::Sleepers;
use kepler_core::{ActivityFrame, ActivitySource, Nanos, Timestamp};
use kepler_sources::gpu::DrmClients;
use kepler_sources::{ProcfsActivity, ProcfsOptions};

fn bench(c: &mut Criterion) {
    let _sleepers = Sleepers::from_env();
    let mut procfs = ProcfsActivity::new(ProcfsOptions::default()).expect("/proc");
    let mut frame = ActivityFrame::default();
    let mut t = 0;
    for _ in 0..3 {
        t += 1;
        frame.clear();
        procfs.read(Timestamp(t), &mut frame).expect("cold scan");
    }
    let live = frame.processes.len();
    let mut group = c.benchmark_group("drm");
    group.bench_function(format!("procfs_tick/{live}p"), |b| {
        b.iter(|| {
            t += 1;
            frame.clear();
            procfs.read(Timestamp(t), &mut frame).expect("scan");
        })
    });
    // The processes of one real scan, shown to the DRM scanner tick after tick.
    let processes: Vec<(u32, u64, u64)> = frame
        .processes
        .iter()
        .map(|p| (p.pid, p.start_time, p.cpu_time.0))
        .collect();
    for all_running in [false, true] {
        let mut clients = DrmClients::new("/proc");
        let tick = |clients: &mut DrmClients, n: u64| {
            let bump = if all_running { n } else { 0 };
            clients.observe(
                processes
                    .iter()
                    .map(|&(pid, start, cpu)| (pid, start, Nanos(cpu + bump))),
            );
            clients.scan(Timestamp(n)).len()
        };
        // The cold listing of every process, and the backoffs' first rounds, untimed.
        let mut n = 0;
        for _ in 0..300 {
            n += 1;
            tick(&mut clients, n);
        }
        let name = if all_running {
            "drm_scan_all_running"
        } else {
            "drm_scan"
        };
        let (listed, start) = (clients.stats().listed, n);
        let mut found = 0;
        group.bench_function(format!("{name}/{live}p"), |b| {
            b.iter(|| {
                n += 1;
                found = tick(&mut clients, n);
            })
        });
        eprintln!(
            "{name}: {:.1} descriptor listings per tick over {} ticks, {found} DRM clients",
            (clients.stats().listed - listed) as f64 / (n - start).max(1) as f64,
            n - start
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
