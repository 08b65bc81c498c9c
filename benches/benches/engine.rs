//! `Attributor::step` with 10,000 processes, 1,000 containers and 4 zones (budget: 1 ms).
//!
//! `cargo bench -p kepler-benches --bench engine`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kepler_benches::SyntheticNode;
use kepler_core::Attributor;

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    for &(procs, containers) in &[(1_000usize, 100usize), (10_000, 1_000)] {
        group.bench_function(format!("step/{procs}p_{containers}c_4z"), |b| {
            let mut node = SyntheticNode::new(procs, containers);
            let mut engine = Attributor::default();
            let _ = engine.step(&node.power, Some(&node.activity), node.activity.at);
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    node.advance(); // not timed: the frame a source would have filled
                    let t = Instant::now();
                    let snap = engine.step(&node.power, Some(&node.activity), node.activity.at);
                    std::hint::black_box(&snap);
                    drop(snap);
                    spent += t.elapsed();
                }
                spent
            });
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
