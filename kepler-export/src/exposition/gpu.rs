//! GPU metrics (issue 7): node GPU energy split into idle and active, per-process, container
//! and pod GPU energy, with Kepler's labels `gpu`, `gpu_uuid`, `gpu_name`, `vendor`.
//!
//! Everything comes from the tick's [`kepler_core::GpuSnapshot`], which the runtime returns
//! beside the CPU snapshot; nothing is written when there is none (no GPU metering).

use kepler_core::{GpuDevice, GpuSnapshot};

use super::{push_label, Arena, ExportContext, Kind, Out};

/// `,gpu="0",gpu_uuid="...",gpu_name="...",vendor="..."`.
fn device_labels(b: &mut Vec<u8>, d: &GpuDevice) {
    push_label(b, "gpu", itoa::Buffer::new().format(d.index));
    push_label(b, "gpu_uuid", &d.uuid);
    push_label(b, "gpu_name", &d.name);
    push_label(b, "vendor", &d.vendor);
}

pub(super) fn render(o: &mut Out, g: &GpuSnapshot, ctx: &ExportContext) {
    if g.devices.is_empty() {
        return;
    }
    let dev = Arena::build(&g.devices, |b, n| device_labels(b, &n.device));
    if ctx.level.node {
        node(o, g, &dev);
    }
    health(o, g, &dev);
    if ctx.level.process && !g.processes.is_empty() {
        let pre = Arena::build(&g.processes, |b, p| {
            let i = &p.info.info;
            push_label(b, "pid", itoa::Buffer::new().format(p.info.pid));
            push_label(b, "comm", &i.comm);
            push_label(b, "exe", &i.exe);
            push_label(b, "type", i.type_label());
            push_label(
                b,
                "container_id",
                i.container.as_ref().map_or("", |c| &c.id),
            );
            push_label(b, "vm_id", i.vm.as_ref().map_or("", |v| &v.id));
            push_label(b, "state", p.state.label());
            b.extend_from_slice(dev.get(p.device));
        });
        pair(
            o,
            "process",
            "the process, by its share of the GPU's SM utilisation (equal in exclusive mode, by instance under MIG)",
            &pre,
            g.processes.iter().map(|p| (p.total.0, p.watts)),
        );
    }
    if ctx.level.container && !g.containers.is_empty() {
        let pre = Arena::build(&g.containers, |b, c| {
            push_label(b, "container_id", &c.info.id);
            push_label(b, "container_name", &c.info.name);
            push_label(b, "runtime", c.info.runtime.label());
            push_label(b, "pod_id", c.info.pod.as_ref().map_or("", |p| &p.id));
            push_label(b, "state", c.state.label());
            b.extend_from_slice(dev.get(c.device));
        });
        pair(
            o,
            "container",
            "the container (sum of its processes)",
            &pre,
            g.containers.iter().map(|c| (c.total.0, c.watts)),
        );
    }
    if ctx.level.pod && !g.pods.is_empty() {
        let pre = Arena::build(&g.pods, |b, p| {
            push_label(b, "pod_id", &p.info.id);
            push_label(b, "pod_name", &p.info.name);
            push_label(b, "pod_namespace", &p.info.namespace);
            push_label(b, "state", p.state.label());
            b.extend_from_slice(dev.get(p.device));
        });
        pair(
            o,
            "pod",
            "the pod (sum of its containers)",
            &pre,
            g.pods.iter().map(|p| (p.total.0, p.watts)),
        );
    }
}

/// `kepler_<level>_gpu_joules_total` and `kepler_<level>_gpu_watts`.
fn pair(
    o: &mut Out,
    level: &str,
    whom: &str,
    pre: &Arena,
    values: impl Iterator<Item = (u64, f64)> + Clone,
) {
    let joules = format!("kepler_{level}_gpu_joules_total");
    o.header(
        &joules,
        Kind::Counter,
        &format!("GPU energy attributed to {whom}, in joules."),
    );
    for (i, (uj, _)) in values.clone().enumerate() {
        o.open(&joules);
        o.labels(pre.get(i));
        o.close_uj(uj);
    }
    let watts = format!("kepler_{level}_gpu_watts");
    o.header(
        &watts,
        Kind::Gauge,
        &format!("GPU power attributed to {whom} over the latest interval, in watts."),
    );
    for (i, (_, w)) in values.enumerate() {
        o.open(&watts);
        o.labels(pre.get(i));
        o.close_f64(w);
    }
}

fn node(o: &mut Out, g: &GpuSnapshot, dev: &Arena) {
    type Value = fn(&kepler_core::GpuNode) -> (Option<u64>, f64);
    let families: [(&str, Kind, &str, Value); 7] = [
        (
            "kepler_node_gpu_joules_total",
            Kind::Counter,
            "Energy consumed by the GPU since the exporter started, in joules.",
            |n| (Some(n.total.0), 0.0),
        ),
        (
            "kepler_node_gpu_watts",
            Kind::Gauge,
            "Power drawn by the GPU over the latest interval, in watts.",
            |n| (None, n.power),
        ),
        (
            "kepler_node_gpu_idle_joules_total",
            Kind::Counter,
            "Idle part of the GPU energy (configured idle power, or the lowest power seen with no process), in joules.",
            |n| (Some(n.idle.0), 0.0),
        ),
        (
            "kepler_node_gpu_idle_watts",
            Kind::Gauge,
            "Idle part of the GPU power, in watts.",
            |n| (None, n.idle_power),
        ),
        (
            "kepler_node_gpu_active_joules_total",
            Kind::Counter,
            "Active part of the GPU energy (total minus idle), in joules.",
            |n| (Some(n.active.0), 0.0),
        ),
        (
            "kepler_node_gpu_active_watts",
            Kind::Gauge,
            "Active part of the GPU power, in watts.",
            |n| (None, n.active_power),
        ),
        (
            "kepler_node_gpu_unattributed_joules_total",
            Kind::Counter,
            "Active GPU energy of intervals when no process used the GPU, in joules.",
            |n| (Some(n.unattributed.0), 0.0),
        ),
    ];
    for (name, kind, help, value) in families {
        o.header(name, kind, help);
        for (i, n) in g.devices.iter().enumerate() {
            o.open(name);
            o.labels(dev.get(i));
            match value(n) {
                (Some(uj), _) => o.close_uj(uj),
                (None, w) => o.close_f64(w),
            }
        }
    }
    let name = "kepler_node_gpu_info";
    o.header(
        name,
        Kind::Gauge,
        "GPUs of the node and how they are shared (shared, exclusive, mig); the value is always 1.",
    );
    for (i, n) in g.devices.iter().enumerate() {
        o.open(name);
        o.labels(dev.get(i));
        o.label_raw("mode", n.mode.label());
        o.close_u64(1);
    }
}

/// Self-metrics of each GPU, exported at every level.
fn health(o: &mut Out, g: &GpuSnapshot, dev: &Arena) {
    let name = "kepler_exporter_gpu_up";
    o.header(
        name,
        Kind::Gauge,
        "1 when the GPU's latest read succeeded, 0 when it failed or the device is gone.",
    );
    for (i, n) in g.devices.iter().enumerate() {
        o.open(name);
        o.labels(dev.get(i));
        o.close_u64(u64::from(n.up));
    }
    let name = "kepler_exporter_gpu_read_errors_total";
    o.header(
        name,
        Kind::Counter,
        "Failed or missing reads of the GPU since start.",
    );
    for (i, n) in g.devices.iter().enumerate() {
        o.open(name);
        o.labels(dev.get(i));
        o.close_u64(n.read_errors);
    }
    let name = "kepler_exporter_gpu_dropped_deltas_total";
    o.header(
        name,
        Kind::Counter,
        "GPU energy deltas dropped as implausible (energy counter resets after a driver reload).",
    );
    for (i, n) in g.devices.iter().enumerate() {
        o.open(name);
        o.labels(dev.get(i));
        o.close_u64(n.dropped_deltas);
    }
}
