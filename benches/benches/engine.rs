//! `Attributor::step` with 10,000 processes, 1,000 containers and 4 zones (budget: 1 ms),
//! and the carbon ledger stepped on its snapshot (issue 20).
//!
//! `cargo bench -p kepler-benches --bench engine`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kepler_benches::SyntheticNode;
use kepler_core::Attributor;

/// Runs `iters` engine steps and returns the time spent in `step` alone: advancing the node
/// and `prepare` (the frame a source would have filled) are not timed.
fn timed_steps(
    iters: u64,
    node: &mut SyntheticNode,
    engine: &mut Attributor,
    mut prepare: impl FnMut(&mut SyntheticNode),
) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        node.advance();
        prepare(node);
        let t = Instant::now();
        let snap = engine.step(&node.power, Some(&node.activity), node.at());
        std::hint::black_box(&snap);
        drop(snap);
        spent += t.elapsed();
    }
    spent
}

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    for &(procs, containers) in &[(1_000usize, 100usize), (10_000, 1_000)] {
        group.bench_function(format!("step/{procs}p_{containers}c_4z"), |b| {
            let mut node = SyntheticNode::new(procs, containers);
            let mut engine = Attributor::default();
            let _ = engine.step(&node.power, Some(&node.activity), node.at());
            b.iter_custom(|iters| timed_steps(iters, &mut node, &mut engine, |_| {}));
        });
    }
    group.finish();
}

/// The same node under churn (issue 4): every process reports its parent, reaped children's
/// time and last CPU on two sockets, every container its cgroup usage, and 1% of the
/// processes are replaced by new ones each tick.
fn step_churn(c: &mut Criterion) {
    use kepler_core::{ContainerUsage, CpuTime, Nanos, NodeCpu, ProcessDetail};
    let mut group = c.benchmark_group("engine");
    let (procs, containers) = (10_000usize, 1_000usize);
    group.bench_function(
        format!("step_churn/{procs}p_{containers}c_4z_2sockets"),
        |b| {
            let mut node = SyntheticNode::new(procs, containers);
            let mut engine = Attributor::default();
            let mut usage: Vec<ContainerUsage> = Vec::new();
            for p in &node.activity.processes {
                if let Some(c) = &p.info.container {
                    if !usage.iter().any(|u| u.info.id == c.id) {
                        usage.push(ContainerUsage::new(c.clone(), Nanos(0)));
                    }
                }
            }
            let mut tick = 0u64;
            let mut fill = |node: &mut SyntheticNode, tick: u64| {
                let a = &mut node.activity;
                for (i, p) in a.processes.iter_mut().enumerate() {
                    // 1% new processes each tick (PID reuse with a new start time).
                    if (i as u64 + tick).is_multiple_of(100) {
                        p.start_time = 42 + tick;
                    }
                }
                a.details.clear();
                a.details.extend((0..a.processes.len()).map(|i| {
                    ProcessDetail::new(
                        1000 + (i as u32 % 50),
                        Nanos(tick * 1_000_000 * (i as u64 % 3)),
                        Some(i as u32 % 2),
                    )
                }));
                for u in &mut usage {
                    u.usage.0 += 25_000_000;
                }
                a.containers.clone_from(&usage);
                a.cpus.clear();
                for cpu in 0..2u32 {
                    a.cpus.push(CpuTime::new(
                        cpu,
                        cpu,
                        NodeCpu {
                            busy: Nanos(a.node.busy.0 / 2),
                            total: Nanos(a.node.total.0 / 2),
                        },
                    ));
                }
            };
            fill(&mut node, tick);
            let _ = engine.step(&node.power, Some(&node.activity), node.at());
            b.iter_custom(|iters| {
                timed_steps(iters, &mut node, &mut engine, |node| {
                    tick += 1;
                    fill(node, tick);
                })
            });
        },
    );
    group.finish();
}

/// Issue 20: `CarbonLedger::step` on the snapshot of that node (1,000 containers, 500 pods,
/// 4 zones): what `carbon.intensity` adds to a tick. Only the ledger's step is timed.
fn carbon_ledger(c: &mut Criterion) {
    use kepler_core::CarbonLedger;
    let mut group = c.benchmark_group("engine");
    group.bench_function("carbon_ledger/10000p_1000c_4z", |b| {
        let mut node = SyntheticNode::new(10_000, 1_000);
        let mut engine = Attributor::default();
        let mut ledger = CarbonLedger::new();
        let snap = engine.step(&node.power, Some(&node.activity), node.at());
        let _ = ledger.step(&snap, Some(400.0));
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                node.advance();
                let snap = engine.step(&node.power, Some(&node.activity), node.at());
                let t = Instant::now();
                let carbon = ledger.step(&snap, Some(400.0 + (i % 7) as f64));
                spent += t.elapsed();
                std::hint::black_box(&carbon);
            }
            spent
        });
    });
    group.finish();
}

criterion_group!(benches, step, step_churn, carbon_ledger);
criterion_main!(benches);
