//! Steps the engine over a fixed node of 10,000 processes in 1,000 containers and 4 zones,
//! for instruction counts under callgrind (issue 14): wall-clock benches on a shared machine
//! are noisy, instruction counts are not.
//!
//! ```text
//! cargo build --release -p kepler-core --example engine_steps
//! valgrind --tool=callgrind target/release/examples/engine_steps churn 20
//! ```
//!
//! `plain` is the node of `benches/benches/engine.rs`'s `step/10000p_1000c_4z`; `churn` adds
//! what its `step_churn` adds (details, cgroup usage, two sockets, 1% new processes a tick).
//! Only the engine's own crate is used, so the same file builds against older revisions.

use std::sync::Arc;

use kepler_core::*;

fn zone(kind: ZoneKind, index: u32) -> Arc<ZoneInfo> {
    Arc::new(
        ZoneInfo::builder(
            format!("fake:{}-{}", kind.label(), index),
            kind,
            SourceKind::Fake,
        )
        .index(index)
        .path(format!("fake/{}-{}", kind.label(), index))
        .metering(Metering::EnergyCounter {
            max_range: Some(MicroJoules(262_143_328_850)),
        })
        .estimated(false)
        .build(),
    )
}

struct Node {
    zones: Vec<Arc<ZoneInfo>>,
    activity: ActivityFrame,
    power: PowerFrame,
    usage: Vec<ContainerUsage>,
    churn: bool,
    tick: u64,
}

impl Node {
    fn new(processes: usize, containers: usize, churn: bool) -> Node {
        let zones = [
            (ZoneKind::Package, 0),
            (ZoneKind::Package, 1),
            (ZoneKind::Dram, 0),
            (ZoneKind::Dram, 1),
        ]
        .into_iter()
        .map(|(k, i)| zone(k, i))
        .collect();
        let infos: Vec<ContainerInfo> = (0..containers)
            .map(|c| {
                ContainerInfo::new(
                    format!("{c:064x}"),
                    format!("container-{c}"),
                    Runtime::Containerd,
                )
                .with_pod(PodInfo::new(
                    format!("pod-{}", c / 2),
                    format!("pod-{}", c / 2),
                    "default",
                ))
            })
            .collect();
        let processes: Vec<ProcessSample> = (0..processes)
            .map(|i| {
                ProcessSample::new(
                    1000 + i as u32,
                    42,
                    Nanos(0),
                    Arc::new({
                        let mut v = ProcessInfo::new(format!("proc-{i}"), "/usr/bin/worker");
                        v.container = (i % 10 != 0).then(|| infos[i % containers].clone());
                        v
                    }),
                )
            })
            .collect();
        // Containers in order of first appearance, as the bench lists them.
        let mut seen = std::collections::HashSet::new();
        let usage: Vec<ContainerUsage> = processes
            .iter()
            .filter_map(|p: &ProcessSample| p.info.container.clone())
            .filter(|c| seen.insert(Arc::clone(&c.id)))
            .map(|info| ContainerUsage::new(info, Nanos(0)))
            .collect();
        let mut node = Node {
            zones,
            activity: {
                let mut v = ActivityFrame::new(Default::default());
                v.processes = processes;
                v
            },
            power: PowerFrame::default(),
            usage,
            churn,
            tick: 0,
        };
        node.fill();
        node
    }

    /// The instant of the current tick: one every 5 s.
    fn at(&self) -> Timestamp {
        Timestamp(self.tick * 5_000_000_000)
    }

    fn advance(&mut self) {
        self.tick += 1;
        let mut busy = 0;
        for (i, p) in self.activity.processes.iter_mut().enumerate() {
            p.cpu_time.0 += 1_000_000 + (i as u64 % 97) * 10_000;
            busy += p.cpu_time.0;
        }
        self.activity.node = NodeCpu {
            busy: Nanos(busy),
            total: Nanos(busy * 2),
        };
        self.fill();
    }

    fn fill(&mut self) {
        self.power.clear();
        for (i, z) in self.zones.iter().enumerate() {
            let uj = [80u64, 70, 12, 10][i] * 5_000_000 * self.tick;
            self.power.push(z, Ok(Reading::Energy(MicroJoules(uj))));
        }
        if !self.churn {
            return;
        }
        let (tick, a) = (self.tick, &mut self.activity);
        for (i, p) in a.processes.iter_mut().enumerate() {
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
        for u in &mut self.usage {
            u.usage.0 += 25_000_000;
        }
        a.containers.clone_from(&self.usage);
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
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let churn = match args.next().as_deref() {
        Some("plain") | None => false,
        Some("churn") => true,
        Some(other) => panic!("unknown mode {other}: plain or churn"),
    };
    let steps: u64 = args
        .next()
        .map_or(20, |s| s.parse().expect("a number of steps"));
    let mut node = Node::new(10_000, 1_000, churn);
    let mut engine = Attributor::default();
    let _ = engine.step(&node.power, Some(&node.activity), node.at());
    let mut check = 0u64;
    for _ in 0..steps {
        node.advance();
        let snap = engine.step(&node.power, Some(&node.activity), node.at());
        check = check.wrapping_add(snap.unattributed.total.sum() + snap.processes.len() as u64);
    }
    println!("{steps} steps, check {check}");
}
