//! Local mode: the runtime in-process, exactly as the exporter builds it (the same options
//! from the same flags and file, the same sources, engine and rules), one tick per refresh.
//! A tick becomes a [`Frame`] here; nothing else of the view knows about snapshots.

use std::collections::HashMap;

use kepler_core::{GpuSnapshot, Snapshot, ZoneKind};
use kepler_runtime::{BuildError, Monitor, Tick};

use super::model::{Frame, Level, Parents, Workload, ZoneLine, KINDS};
use crate::clock::Clock;
use crate::config::Config;
use crate::run::runtime_options;

/// The in-process runtime and the clock that stamps its ticks.
pub struct LocalFeed {
    monitor: Monitor,
    clock: Clock,
    node: String,
}

impl LocalFeed {
    /// Selects and opens the sources as the exporter does for `config`; background tasks
    /// (the pod informer) run on `tokio`.
    pub fn start(config: &Config, tokio: tokio::runtime::Handle) -> Result<LocalFeed, BuildError> {
        let monitor = Monitor::builder(runtime_options(config))
            .tokio(tokio)
            .build()?;
        Ok(LocalFeed {
            monitor,
            clock: Clock::start(),
            node: config.node_name.clone(),
        })
    }

    /// Reads every source once and steps the engine.
    pub fn tick(&mut self) -> Frame {
        let tick = self.monitor.tick(self.clock.now());
        frame_from_tick(&tick, &self.node)
    }
}

/// The view of one tick.
pub fn frame_from_tick(tick: &Tick, node: &str) -> Frame {
    frame_from_snapshot(&tick.snapshot, tick.gpu.as_deref(), node)
}

/// The view of a CPU snapshot and, when GPUs are metered, its GPU snapshot.
pub fn frame_from_snapshot(snap: &Snapshot, gpu: Option<&GpuSnapshot>, node: &str) -> Frame {
    let micro = |uj: u64| uj as f64 / 1e6;
    let mut zones: Vec<ZoneLine> = snap
        .zones
        .iter()
        .map(|z| ZoneLine {
            kind: z.info.kind,
            path: z.info.path.clone(),
            source: z.info.source.label().into(),
            estimated: z.info.estimated,
            watts: (z.has_reading && snap.interval.0 > 0).then_some(z.power),
            joules: micro(z.total.0),
        })
        .collect();
    let mut kinds = snap.kinds.clone();
    if let Some(g) = gpu {
        zones.extend(g.devices.iter().map(|d| ZoneLine {
            kind: ZoneKind::Gpu,
            path: d.device.uuid.to_string(),
            source: d.device.source.label().into(),
            estimated: false,
            watts: d.up.then_some(d.power),
            joules: micro(d.total.0),
        }));
        if !g.devices.is_empty() {
            kinds.push(ZoneKind::Gpu);
        }
    }
    let per_kind = |e: &kepler_core::Energies| {
        let mut watts = [0.0; KINDS];
        let mut joules = [0.0; KINDS];
        for &k in &snap.kinds {
            watts[k.index()] = snap.watts(e.last.get(k));
            joules[k.index()] = micro(e.total.get(k).0);
        }
        (watts, joules)
    };

    let mut processes: Vec<Workload> = snap
        .processes
        .iter()
        .map(|p| {
            let (watts, joules) = per_kind(&p.energy);
            let container = p.info.container.as_ref();
            Workload {
                id: p.pid.to_string(),
                name: p.info.comm.to_string(),
                state: p.state.label().into(),
                watts,
                joules,
                cpu_seconds: Some(p.cpu_time.0 as f64 / 1e9),
                parents: Parents {
                    container: container.map(|c| c.id.to_string()),
                    pod: container
                        .and_then(|c| c.pod.as_ref())
                        .map(|p| p.id.to_string()),
                    vm: p.info.vm.as_ref().map(|v| v.id.to_string()),
                },
            }
        })
        .collect();
    let mut containers: Vec<Workload> = snap
        .containers
        .iter()
        .map(|c| {
            let (watts, joules) = per_kind(&c.energy);
            let name = if c.info.name.is_empty() {
                c.info.id.to_string()
            } else {
                c.info.name.to_string()
            };
            Workload {
                id: c.info.id.to_string(),
                name,
                state: c.state.label().into(),
                watts,
                joules,
                ..Workload::default()
            }
        })
        .collect();
    let mut pods: Vec<Workload> = snap
        .pods
        .iter()
        .map(|p| {
            let (watts, joules) = per_kind(&p.energy);
            Workload {
                id: p.info.id.to_string(),
                name: format!("{}/{}", p.info.namespace, p.info.name),
                state: p.state.label().into(),
                watts,
                joules,
                ..Workload::default()
            }
        })
        .collect();
    let vms: Vec<Workload> = snap
        .vms
        .iter()
        .map(|v| {
            let (watts, joules) = per_kind(&v.energy);
            Workload {
                id: v.info.id.to_string(),
                name: v.info.name.to_string(),
                state: v.state.label().into(),
                watts,
                joules,
                ..Workload::default()
            }
        })
        .collect();

    if let Some(g) = gpu {
        // GPU energy is kept per device: a workload's GPU columns add up its devices.
        let index: HashMap<u32, usize> = snap
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pid, i))
            .collect();
        for e in &g.processes {
            if let Some(&i) = index.get(&e.info.pid) {
                add_gpu(&mut processes[i], e.watts, e.total.0);
            }
        }
        add_gpu_groups(
            &mut containers,
            g.containers
                .iter()
                .map(|e| (&*e.info.id, e.watts, e.total.0)),
        );
        add_gpu_groups(
            &mut pods,
            g.pods.iter().map(|e| (&*e.info.id, e.watts, e.total.0)),
        );
    }

    let mut levels: [Vec<Workload>; 4] = Default::default();
    levels[Level::Process.index()] = processes;
    levels[Level::Container.index()] = containers;
    levels[Level::Pod.index()] = pods;
    levels[Level::Vm.index()] = vms;
    Frame {
        at_secs: snap.at.0 as f64 / 1e9,
        node: node.to_string(),
        zones,
        usage_ratio: Some(snap.usage_ratio),
        kinds,
        levels,
    }
}

fn add_gpu(w: &mut Workload, watts: f64, total_uj: u64) {
    w.watts[ZoneKind::Gpu.index()] += watts;
    w.joules[ZoneKind::Gpu.index()] += total_uj as f64 / 1e6;
}

fn add_gpu_groups<'a>(rows: &mut [Workload], entries: impl Iterator<Item = (&'a str, f64, u64)>) {
    let index: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id.clone(), i))
        .collect();
    for (id, watts, total) in entries {
        if let Some(&i) = index.get(id) {
            add_gpu(&mut rows[i], watts, total);
        }
    }
}
