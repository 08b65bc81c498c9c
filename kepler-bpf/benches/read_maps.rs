//! Reading the eBPF source at 10,000 processes (issue 5 budget: <= 2 ms per tick): the walk
//! over the mmapped slots and the per-CPU state, the frame build with a warm static-data
//! cache, and the freeing of exited processes' slots. Needs root; prints a reason and does nothing
//! otherwise.
//!
//! `cargo bench -p kepler-bpf --features libbpf --bench read_maps`

use criterion::{criterion_group, criterion_main, Criterion};
use kepler_bpf::{BpfActivity, BpfOptions, ProcRecord, PROC_EXITED};
use kepler_core::{ActivityFrame, ActivitySource, Timestamp};

const PROCESSES: u32 = 10_000;
/// Synthetic tgids far above this machine's live pids, so that they never collide.
const BASE: u32 = 3_000_000;

fn record(i: u32, flags: u32) -> ProcRecord {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"worker");
    ProcRecord {
        slot: 0, // taken by insert_record
        tgid: BASE + i,
        on_cpu_ns: u64::from(i) * 1_000,
        start_boottime_ns: 1_000_000_000 + u64::from(i),
        cgroup_id: 1,
        last_cpu: 0,
        flags,
        comm,
        ppid: 1,
        children_ns: 0,
    }
}

fn read_maps(c: &mut Criterion) {
    let capacity = std::env::var("KEPLER_BENCH_MAP_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BpfOptions::default().max_processes);
    let mut src = match BpfActivity::new(BpfOptions {
        max_processes: capacity,
        ..BpfOptions::default()
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    for i in 0..PROCESSES {
        src.insert_record(&record(i, 0)).unwrap();
    }
    let mut frame = ActivityFrame::default();
    src.read(Timestamp(0), &mut frame).unwrap();
    let mut g = c.benchmark_group("bpf");
    g.bench_function("slots_read_10k_processes", |b| {
        b.iter(|| src.read_records().unwrap().len());
    });
    g.bench_function("read_10k_processes", |b| {
        b.iter(|| {
            frame.clear();
            src.read(Timestamp(1), &mut frame).unwrap()
        });
    });
    // 1% of the processes exit per tick: their slots are read twice, then freed.
    let mut next = 0u32;
    g.bench_function("read_10k_with_100_exits", |b| {
        b.iter(|| {
            for _ in 0..100 {
                src.insert_record(&record(PROCESSES + next, PROC_EXITED))
                    .unwrap();
                next += 1;
            }
            frame.clear();
            src.read(Timestamp(2), &mut frame).unwrap()
        });
    });
    g.finish();
    eprintln!("map entries after the run: {}", src.stats().map_entries);
}

criterion_group!(benches, read_maps);
criterion_main!(benches);
