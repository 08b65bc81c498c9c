//! Workloads shared by the benchmarks: a node with many processes and containers, and real
//! sleeping processes to give a procfs scan a node-sized process table.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use kepler_core::{
    ActivityFrame, ContainerInfo, Nanos, NodeCpu, PodInfo, PowerFrame, ProcessInfo, ProcessSample,
    Reading, Runtime, Timestamp, ZoneInfo, ZoneKind,
};

/// A synthetic node: `processes` processes spread over `containers` containers (one pod per
/// two containers; a tenth of the processes outside any container), and 4 RAPL zones.
pub struct SyntheticNode {
    /// The zones (package and dram on two sockets).
    pub zones: Vec<Arc<ZoneInfo>>,
    /// The activity frame, updated in place by [`SyntheticNode::advance`].
    pub activity: ActivityFrame,
    /// The power frame of the current tick.
    pub power: PowerFrame,
    tick: u64,
}

impl SyntheticNode {
    /// Builds the node at tick 0.
    pub fn new(processes: usize, containers: usize) -> SyntheticNode {
        let zones = [
            (ZoneKind::Package, 0),
            (ZoneKind::Package, 1),
            (ZoneKind::Dram, 0),
            (ZoneKind::Dram, 1),
        ]
        .into_iter()
        .map(|(k, i)| kepler_core::fakes::counter_zone(k, i, Some(262_143_328_850)))
        .collect();
        let container_infos: Vec<ContainerInfo> = (0..containers)
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
        let processes = (0..processes)
            .map(|i| {
                ProcessSample::new(
                    1000 + i as u32,
                    42,
                    Nanos(0),
                    Arc::new({
                        let mut v = ProcessInfo::new(format!("proc-{i}"), "/usr/bin/worker");
                        v.container = (i % 10 != 0 && containers > 0)
                            .then(|| container_infos[i % containers].clone());
                        v
                    }),
                )
            })
            .collect();
        let mut node = SyntheticNode {
            zones,
            activity: {
                let mut v = ActivityFrame::new(NodeCpu::default());
                v.processes = processes;
                v
            },
            power: PowerFrame::default(),
            tick: 0,
        };
        node.fill_power();
        node
    }

    /// The instant of the current tick, to pass to `step`: one every 5 s.
    pub fn at(&self) -> Timestamp {
        Timestamp(self.tick * 5_000_000_000)
    }

    /// Moves to the next 5 s tick: every process runs a little, the counters advance.
    pub fn advance(&mut self) {
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
        self.fill_power();
    }

    fn fill_power(&mut self) {
        self.power.clear();
        for (i, z) in self.zones.iter().enumerate() {
            let watts = [80u64, 70, 12, 10][i];
            let uj = watts * 5_000_000 * self.tick;
            self.power
                .push(z, Ok(Reading::Energy(kepler_core::MicroJoules(uj))));
        }
    }
}

/// Steps an engine over a few ticks of `node` and returns the last snapshot: the input of
/// the rendering and scrape benchmarks.
pub fn snapshot_of(node: &mut SyntheticNode) -> kepler_core::Snapshot {
    let mut engine = kepler_core::Attributor::default();
    let mut snap = engine.step(&node.power, Some(&node.activity), node.at());
    for _ in 0..3 {
        node.advance();
        snap = engine.step(&node.power, Some(&node.activity), node.at());
    }
    snap
}

/// Sleeping children that are killed and reaped on drop.
pub struct Sleepers(Vec<Child>);

impl Sleepers {
    /// Starts `n` `sleep 3600` processes.
    pub fn start(n: usize) -> Sleepers {
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

    /// Starts as many as `KEPLER_BENCH_PROCESSES` says (none when unset or not a number).
    pub fn from_env() -> Sleepers {
        let n = std::env::var("KEPLER_BENCH_PROCESSES")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        Sleepers::start(n)
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
