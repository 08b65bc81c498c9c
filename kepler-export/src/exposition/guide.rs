//! The setup guide's series (`exporter.prometheus.compat: [guide]`, issue 17): the names
//! the Kepler setup guide's queries, dashboards and alerts use, made from the same snapshot
//! as the native families, with `container`, `pod`, `namespace` and `node` labels.
//!
//! Zones nest (package contains core and uncore; psys contains package), so a workload's
//! "all zones" energy is the zones that do not overlap: package + dram when there is a
//! package, else psys, else every CPU zone. GPU energy is added on top. Node power is the
//! platform meter's when one exists (it covers the whole machine), else package + dram.

use std::collections::HashMap;

use kepler_core::{GpuSnapshot, Snapshot, ZoneKind};

use super::{push_seconds_close, ExportContext, Kind, Out};

/// The `pod` label: the pod's name, or its UID while Kubernetes has not named it (without
/// `kube.enabled`), so that `by (pod)` still tells pods apart.
fn pod_name(p: &kepler_core::PodInfo) -> &str {
    if p.name.is_empty() {
        &p.id
    } else {
        &p.name
    }
}

/// The CPU zones whose sum counts nothing twice.
fn disjoint(kinds: &[ZoneKind]) -> Vec<ZoneKind> {
    if kinds.contains(&ZoneKind::Package) {
        kinds
            .iter()
            .copied()
            .filter(|k| matches!(k, ZoneKind::Package | ZoneKind::Dram))
            .collect()
    } else if kinds.contains(&ZoneKind::Psys) {
        vec![ZoneKind::Psys]
    } else {
        kinds.to_vec()
    }
}

pub(super) fn render(o: &mut Out, snap: &Snapshot, gpu: Option<&GpuSnapshot>, ctx: &ExportContext) {
    let zones = disjoint(&snap.kinds);
    let sum = |e: &kepler_core::PerKind| zones.iter().map(|&k| e.get(k).0).sum::<u64>();
    let node = ctx.node_name.as_str();
    let gpu_containers: HashMap<&str, (u64, f64)> = gpu
        .map(|g| {
            let mut m: HashMap<&str, (u64, f64)> = HashMap::new();
            for c in &g.containers {
                let e = m.entry(&*c.info.id).or_default();
                e.0 += c.total.0;
                e.1 += c.watts;
            }
            m
        })
        .unwrap_or_default();

    if ctx.level.container && !snap.containers.is_empty() {
        let labels = |o: &mut Out, c: &kepler_core::ContainerEntry| {
            o.label("container", &c.info.name);
            o.label("pod", c.info.pod.as_ref().map_or("", pod_name));
            o.label(
                "namespace",
                c.info.pod.as_ref().map_or("", |p| &p.namespace),
            );
            o.label("node", node);
            o.label("container_id", &c.info.id);
        };
        let name = "kepler_container_joules_total";
        o.header(
            name,
            Kind::Counter,
            "Setup guide alias: energy of the container over zones that do not overlap (package + dram, or psys) plus GPUs, in joules.",
        );
        for c in &snap.containers {
            o.open(name);
            labels(o, c);
            let g = gpu_containers.get(&*c.info.id).map_or(0, |g| g.0);
            o.close_uj(sum(&c.energy.total) + g);
        }
        let name = "kepler_container_power_watts";
        o.header(
            name,
            Kind::Gauge,
            "Setup guide alias: power of the container over zones that do not overlap plus GPUs, in watts.",
        );
        for c in &snap.containers {
            o.open(name);
            labels(o, c);
            let g = gpu_containers.get(&*c.info.id).map_or(0.0, |g| g.1);
            o.close_f64(snap.watts(kepler_core::MicroJoules(sum(&c.energy.last))) + g);
        }
        let name = "kepler_container_cpu_time_seconds_total";
        o.header(
            name,
            Kind::Counter,
            "Setup guide alias of kepler_container_cpu_seconds_total, in seconds.",
        );
        for c in &snap.containers {
            o.open(name);
            labels(o, c);
            push_seconds_close(o, c.cpu_time.0);
        }
    }

    if ctx.level.process && !snap.processes.is_empty() {
        let name = "kepler_process_power_watts";
        o.header(
            name,
            Kind::Gauge,
            "Setup guide alias: power of the process over zones that do not overlap, in watts.",
        );
        for p in &snap.processes {
            o.open(name);
            o.label_raw("pid", itoa::Buffer::new().format(p.pid));
            o.label("comm", &p.info.comm);
            let c = p.info.container.as_ref();
            o.label("container", c.map_or("", |c| &c.name));
            o.label("pod", c.and_then(|c| c.pod.as_ref()).map_or("", pod_name));
            o.label(
                "namespace",
                c.and_then(|c| c.pod.as_ref()).map_or("", |p| &p.namespace),
            );
            o.label("node", node);
            o.close_f64(snap.watts(kepler_core::MicroJoules(sum(&p.energy.last))));
        }
    }

    if !ctx.level.node {
        return;
    }
    let read = || snap.zones.iter().filter(|z| z.has_reading);
    let platform: Vec<_> = read()
        .filter(|z| z.info.kind == ZoneKind::Platform && z.last_error.is_none())
        .collect();
    // One platform meter is the machine; several (BMC entries that may nest) are not
    // summed: the largest stands for the machine.
    let (node_watts, node_uj) = match platform.iter().max_by(|a, b| a.power.total_cmp(&b.power)) {
        Some(z) => (z.power, z.total.0),
        None => read()
            .filter(|z| matches!(z.info.kind, ZoneKind::Package | ZoneKind::Dram))
            .fold((0.0, 0), |(w, e), z| (w + z.power, e + z.total.0)),
    };
    let gauge = |o: &mut Out, name: &str, help: &str, v: f64| {
        o.header(name, Kind::Gauge, help);
        o.open(name);
        o.label("node", node);
        o.close_f64(v);
    };
    gauge(
        o,
        "kepler_node_power_watts",
        "Setup guide alias: node power, the platform meter's when there is one, else package + dram, in watts.",
        node_watts,
    );
    let name = "kepler_node_energy_joules_total";
    o.header(
        name,
        Kind::Counter,
        "Setup guide alias: node energy, the platform meter's when there is one, else package + dram, in joules.",
    );
    o.open(name);
    o.label("node", node);
    o.close_uj(node_uj);
    let cpu_watts: f64 = read()
        .filter(|z| z.info.kind == ZoneKind::Package)
        .map(|z| z.power)
        .sum();
    gauge(
        o,
        "kepler_node_cpu_power_watts",
        "Setup guide alias: CPU package power of the node, in watts.",
        cpu_watts,
    );
    if let Some(g) = gpu.filter(|g| !g.devices.is_empty()) {
        gauge(
            o,
            "kepler_node_gpu_power_watts",
            "Setup guide alias: power of all GPUs of the node, in watts.",
            g.devices.iter().map(|d| d.power).sum(),
        );
    }
    gauge(
        o,
        "kepler_node_cpu_utilization",
        "Setup guide alias of kepler_node_cpu_usage_ratio: busy share of the node's CPU time over the latest interval (0 to 1).",
        snap.usage_ratio,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_zones_count_nothing_twice() {
        use ZoneKind::*;
        assert_eq!(disjoint(&[Package, Core, Uncore, Dram]), [Package, Dram]);
        assert_eq!(disjoint(&[Psys, Core]), [Psys]);
        assert_eq!(disjoint(&[Core, Dram]), [Core, Dram]);
    }
}
