//! JSON lines (`--exporter.json[=PATH]`): one document per tick for scripts and logs.
//!
//! The schema is versioned by its `schema` field (`kepler.tick/v1`): fields are only added
//! within a version; a rename or removal makes `v2`. Energies are joules since kepler
//! started (exact to the microjoule), power is watts over the tick's interval, both per zone
//! name. The README documents every field.

use std::collections::BTreeMap;

use kepler_core::{Energies, GpuSnapshot, Snapshot, ZoneKind};
use serde::Serialize;

use crate::exposition::ExportContext;

/// The `schema` value of this version.
pub const JSON_SCHEMA: &str = "kepler.tick/v1";

#[derive(Serialize)]
struct Doc<'a> {
    schema: &'static str,
    node: &'a str,
    time: f64,
    interval_seconds: f64,
    cpu_usage_ratio: f64,
    zones: Vec<Zone<'a>>,
    processes: Vec<Process<'a>>,
    containers: Vec<Container<'a>>,
    pods: Vec<Pod<'a>>,
    vms: Vec<Vm<'a>>,
    gpus: Vec<Gpu<'a>>,
}

#[derive(Serialize)]
struct Zone<'a> {
    zone: &'static str,
    path: &'a str,
    source: &'static str,
    estimated: bool,
    joules: f64,
    watts: f64,
    active_joules: f64,
    active_watts: f64,
    idle_joules: f64,
    idle_watts: f64,
}

#[derive(Serialize)]
struct Use {
    joules: BTreeMap<&'static str, f64>,
    watts: BTreeMap<&'static str, f64>,
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    comm: &'a str,
    exe: &'a str,
    r#type: &'static str,
    state: &'static str,
    container_id: &'a str,
    vm_id: &'a str,
    cpu_seconds: f64,
    #[serde(flatten)]
    energy: Use,
}

#[derive(Serialize)]
struct Container<'a> {
    id: &'a str,
    name: &'a str,
    runtime: &'static str,
    pod_id: &'a str,
    state: &'static str,
    cpu_seconds: f64,
    #[serde(flatten)]
    energy: Use,
}

#[derive(Serialize)]
struct Pod<'a> {
    id: &'a str,
    name: &'a str,
    namespace: &'a str,
    state: &'static str,
    #[serde(flatten)]
    energy: Use,
}

#[derive(Serialize)]
struct Vm<'a> {
    id: &'a str,
    name: &'a str,
    hypervisor: &'a str,
    state: &'static str,
    #[serde(flatten)]
    energy: Use,
}

#[derive(Serialize)]
struct Gpu<'a> {
    uuid: &'a str,
    name: &'a str,
    joules: f64,
    watts: f64,
    idle_watts: f64,
}

fn uj(v: u64) -> f64 {
    v as f64 / 1e6
}

/// One tick as one line of JSON (no trailing newline).
pub fn render_json(snap: &Snapshot, gpu: Option<&GpuSnapshot>, ctx: &ExportContext) -> String {
    let kinds: &[ZoneKind] = &snap.kinds;
    let usage = |e: &Energies| Use {
        joules: kinds
            .iter()
            .map(|&k| (k.label(), uj(e.total.get(k).0)))
            .collect(),
        watts: kinds
            .iter()
            .map(|&k| (k.label(), snap.watts(e.last.get(k))))
            .collect(),
    };
    let doc = Doc {
        schema: JSON_SCHEMA,
        node: &ctx.node_name,
        time: ctx.wall_offset_secs + snap.at.0 as f64 / 1e9,
        interval_seconds: snap.interval.0 as f64 / 1e9,
        cpu_usage_ratio: snap.usage_ratio,
        zones: snap
            .zones
            .iter()
            .filter(|z| z.has_reading)
            .map(|z| Zone {
                zone: z.info.kind.label(),
                path: &z.info.path,
                source: z.info.source.label(),
                estimated: z.info.estimated,
                joules: uj(z.total.0),
                watts: z.power,
                active_joules: uj(z.active.0),
                active_watts: z.active_power,
                idle_joules: uj(z.idle.0),
                idle_watts: z.idle_power,
            })
            .collect(),
        processes: if ctx.level.process {
            snap.processes
                .iter()
                .map(|p| Process {
                    pid: p.pid,
                    comm: &p.info.comm,
                    exe: &p.info.exe,
                    r#type: p.info.type_label(),
                    state: p.state.label(),
                    container_id: p.info.container.as_ref().map_or("", |c| &c.id),
                    vm_id: p.info.vm.as_ref().map_or("", |v| &v.id),
                    cpu_seconds: p.cpu_time.0 as f64 / 1e9,
                    energy: usage(&p.energy),
                })
                .collect()
        } else {
            Vec::new()
        },
        containers: if ctx.level.container {
            snap.containers
                .iter()
                .map(|c| Container {
                    id: &c.info.id,
                    name: &c.info.name,
                    runtime: c.info.runtime.label(),
                    pod_id: c.info.pod.as_ref().map_or("", |p| &p.id),
                    state: c.state.label(),
                    cpu_seconds: c.cpu_time.0 as f64 / 1e9,
                    energy: usage(&c.energy),
                })
                .collect()
        } else {
            Vec::new()
        },
        pods: if ctx.level.pod {
            snap.pods
                .iter()
                .map(|p| Pod {
                    id: &p.info.id,
                    name: &p.info.name,
                    namespace: &p.info.namespace,
                    state: p.state.label(),
                    energy: usage(&p.energy),
                })
                .collect()
        } else {
            Vec::new()
        },
        vms: if ctx.level.vm {
            snap.vms
                .iter()
                .map(|v| Vm {
                    id: &v.info.id,
                    name: &v.info.name,
                    hypervisor: &v.info.hypervisor,
                    state: v.state.label(),
                    energy: usage(&v.energy),
                })
                .collect()
        } else {
            Vec::new()
        },
        gpus: gpu.map_or_else(Vec::new, |g| {
            g.devices
                .iter()
                .map(|d| Gpu {
                    uuid: &d.device.uuid,
                    name: &d.device.name,
                    joules: uj(d.total.0),
                    watts: d.power,
                    idle_watts: d.idle_power,
                })
                .collect()
        }),
    };
    // Plain data of strings and finite or non-finite floats: serde_json writes non-finite
    // floats as null, so this cannot fail.
    serde_json::to_string(&doc).unwrap_or_default()
}
