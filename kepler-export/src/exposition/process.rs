//! kepler's own process metrics (`exporter.prometheus.debugCollectors: [process]`): the
//! `process_*` families Prometheus client libraries export, with their names and units, so
//! the dashboards and alerts written for Go Kepler's process collector keep working.

use super::{Kind, Out};

/// kepler's own process at the latest tick, read by the runtime from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The open files soft limit; `None` when unlimited or unreadable.
    pub max_fds: Option<u64>,
    /// Start time since the Unix epoch, seconds.
    pub start_time_seconds: f64,
}

pub(super) fn render(o: &mut Out, p: &ProcessStats) {
    let gauges: [(&str, &str, Option<f64>); 5] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Some(p.resident_bytes as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Some(p.virtual_bytes as f64),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            Some(p.open_fds as f64),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds.map(|m| m as f64),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Some(p.start_time_seconds),
        ),
    ];
    let name = "process_cpu_seconds_total";
    o.header(
        name,
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
    );
    o.open(name);
    o.close_f64(p.cpu_seconds);
    for (name, help, value) in gauges {
        let Some(v) = value else { continue };
        o.header(name, Kind::Gauge, help);
        o.open(name);
        o.close_f64(v);
    }
}
