//! Self-metrics of the optional components around the engine: the eBPF activity source
//! (`kepler_exporter_bpf_*`) and the Kubernetes pod informer (`kepler_kube_*`).
//!
//! Their counters come in as plain structs ([`BpfStats`], [`KubeStats`]) that the runtime
//! copies from `kepler-bpf` and `kepler-k8s` each tick, so that this crate, which alone names
//! and renders metric families, needs neither of those crates. Every value is written as a
//! float (`1.0`, not `1`), as these families always have been.

use std::time::Duration;

use super::{Kind, Out};

/// Counters of the eBPF activity source at the latest read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BpfStats {
    /// Programs attached (3 when healthy).
    pub programs_attached: u32,
    /// Slots holding a process at the latest read.
    pub map_entries: u64,
    /// Number of slots.
    pub map_capacity: u64,
    /// Charges lost since start because no slot was free.
    pub events_dropped: u64,
    /// Slots of exited processes freed since start.
    pub entries_deleted: u64,
    /// Switches out of a thread whose switch in the program did not see, since start.
    pub slices_unseen: u64,
    /// Reads that found a process's time below its previous report, since start.
    pub held_back: u64,
    /// How long the latest read took.
    pub read_duration: Duration,
}

/// Counters of the pod informer, copied from its cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubeStats {
    /// Whether the first pod list succeeded.
    pub synced: bool,
    /// Pods cached, including deleted ones still retained.
    pub pods: u64,
    /// Container ids cached.
    pub containers: u64,
    /// Container ids cached as belonging to no pod.
    pub negative_entries: u64,
    /// Lookups of an id in no pod and not in the negative cache.
    pub misses: u64,
    /// Lookups answered by the negative cache.
    pub negative_hits: u64,
    /// Where pods come from, with that mode's error counters.
    pub mode: KubeMode,
    /// Request counters of the mode's requests, in label order (`kubelet_pods`; or `list`,
    /// `watch`).
    pub requests: Vec<KubeRequestStats>,
}

/// Where the informer gets pods, with the counters only that mode has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeMode {
    /// Polls of the kubelet's `/pods`.
    Kubelet {
        /// Failed polls.
        poll_errors: u64,
    },
    /// A watch on the API server.
    ApiServer {
        /// Watch restarts after an error.
        watch_errors: u64,
        /// Watch restarts with a full relist (410 Gone).
        relists: u64,
    },
}

impl Default for KubeMode {
    fn default() -> Self {
        KubeMode::Kubelet { poll_errors: 0 }
    }
}

/// Counters of one kind of request to the kubelet or the API server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubeRequestStats {
    /// The `request` label (`kubelet_pods`, `list`, `watch`).
    pub request: &'static str,
    /// Requests answered successfully.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Time spent in all of them, seconds.
    pub seconds_total: f64,
    /// Time the latest one took, seconds.
    pub last_seconds: f64,
}

/// A family with one unlabelled sample.
fn single(o: &mut Out, name: &str, kind: Kind, help: &str, value: f64) {
    o.header(name, kind, help);
    o.open(name);
    o.close_f64(value);
}

pub(super) fn bpf(o: &mut Out, s: &BpfStats) {
    let families: [(&str, Kind, &str, f64); 8] = [
        (
            "kepler_exporter_bpf_programs_attached",
            Kind::Gauge,
            "eBPF programs of the activity source attached.",
            f64::from(s.programs_attached),
        ),
        (
            "kepler_exporter_bpf_map_entries",
            Kind::Gauge,
            "Processes holding a slot of the eBPF source at the latest read.",
            s.map_entries as f64,
        ),
        (
            "kepler_exporter_bpf_map_capacity",
            Kind::Gauge,
            "Slots of the eBPF source: how many processes it can account at once.",
            s.map_capacity as f64,
        ),
        (
            "kepler_exporter_bpf_events_dropped_total",
            Kind::Counter,
            "CPU-time charges lost because every slot of the eBPF source was taken.",
            s.events_dropped as f64,
        ),
        (
            "kepler_exporter_bpf_entries_deleted_total",
            Kind::Counter,
            "Slots of exited processes freed after they were reported.",
            s.entries_deleted as f64,
        ),
        (
            "kepler_exporter_bpf_slices_unseen_total",
            Kind::Counter,
            "Context switches out of a thread whose switch in the eBPF program did not see: \
             that slice of CPU time is lost.",
            s.slices_unseen as f64,
        ),
        (
            "kepler_exporter_bpf_reports_held_back_total",
            Kind::Counter,
            "Reads that found a process's CPU time below its previous report (a race \
             between the caches read) and reported the previous value.",
            s.held_back as f64,
        ),
        (
            "kepler_exporter_bpf_read_duration_seconds",
            Kind::Gauge,
            "Time the latest read of the eBPF slots and frame build took.",
            s.read_duration.as_secs_f64(),
        ),
    ];
    for (name, kind, help, value) in families {
        single(o, name, kind, help, value);
    }
}

pub(super) fn kube(o: &mut Out, s: &KubeStats) {
    let families: [(&str, Kind, &str, u64); 6] = [
        (
            "kepler_kube_synced",
            Kind::Gauge,
            "1 once the first pod list (kubelet poll or API-server list) succeeded.",
            u64::from(s.synced),
        ),
        (
            "kepler_kube_cache_pods",
            Kind::Gauge,
            "Pods of this node in the metadata cache, including deleted ones still retained.",
            s.pods,
        ),
        (
            "kepler_kube_cache_containers",
            Kind::Gauge,
            "Container ids in the metadata cache.",
            s.containers,
        ),
        (
            "kepler_kube_negative_cache_entries",
            Kind::Gauge,
            "Container ids cached as belonging to no pod (sandboxes, system containers).",
            s.negative_entries,
        ),
        (
            "kepler_kube_cache_misses_total",
            Kind::Counter,
            "Lookups of a container id in no pod and not in the negative cache; never a request.",
            s.misses,
        ),
        (
            "kepler_kube_negative_cache_hits_total",
            Kind::Counter,
            "Lookups answered by the negative cache.",
            s.negative_hits,
        ),
    ];
    for (name, kind, help, value) in families {
        single(o, name, kind, help, value as f64);
    }
    match s.mode {
        KubeMode::Kubelet { poll_errors } => single(
            o,
            "kepler_kube_poll_errors_total",
            Kind::Counter,
            "Failed kubelet pod list polls; the last known pods are kept.",
            poll_errors as f64,
        ),
        KubeMode::ApiServer {
            watch_errors,
            relists,
        } => {
            let name = "kepler_kube_watch_restarts_total";
            o.header(
                name,
                Kind::Counter,
                "Pod watch restarts: after an error (then resumed), or with a full relist (410 Gone).",
            );
            for (reason, n) in [("error", watch_errors), ("relist", relists)] {
                o.open(name);
                o.label("reason", reason);
                o.close_f64(n as f64);
            }
        }
    }
    if s.requests.is_empty() {
        return;
    }
    let name = "kepler_kube_requests_total";
    o.header(
        name,
        Kind::Counter,
        "Requests to the kubelet or API server, by request and result.",
    );
    for r in &s.requests {
        for (result, n) in [("ok", r.ok), ("error", r.failed)] {
            o.open(name);
            o.label("request", r.request);
            o.label("result", result);
            o.close_f64(n as f64);
        }
    }
    type Value = fn(&KubeRequestStats) -> f64;
    let per_request: [(&str, Kind, &str, Value); 2] = [
        (
            "kepler_kube_request_duration_seconds_total",
            Kind::Counter,
            "Time spent in requests to the kubelet or API server (to the response head).",
            |r| r.seconds_total,
        ),
        (
            "kepler_kube_last_request_duration_seconds",
            Kind::Gauge,
            "Time the latest request to the kubelet or API server took.",
            |r| r.last_seconds,
        ),
    ];
    for (name, kind, help, value) in per_request {
        o.header(name, kind, help);
        for r in &s.requests {
            o.open(name);
            o.label("request", r.request);
            o.close_f64(value(r));
        }
    }
}
