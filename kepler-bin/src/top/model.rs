//! What `kepler top` shows, as plain values: one [`Frame`] per refresh, whatever produced it
//! (the in-process runtime or a remote exposition). Drawing reads these and nothing else, so
//! the view can be tested without a terminal and both modes draw the same way.

use kepler_core::ZoneKind;

/// Number of zone kinds: per-kind arrays below are indexed by [`ZoneKind::index`].
pub const KINDS: usize = ZoneKind::ALL.len();

/// Which workloads the table lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// One row per process.
    Process,
    /// One row per container.
    Container,
    /// One row per pod.
    Pod,
    /// One row per virtual machine.
    Vm,
}

impl Level {
    /// Every level, in tab order.
    pub const ALL: [Level; 4] = [Level::Process, Level::Container, Level::Pod, Level::Vm];

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            Level::Process => "Processes",
            Level::Container => "Containers",
            Level::Pod => "Pods",
            Level::Vm => "VMs",
        }
    }

    /// Heading of the identity column.
    pub fn id_heading(self) -> &'static str {
        match self {
            Level::Process => "PID",
            Level::Container => "CONTAINER",
            Level::Pod => "POD ID",
            Level::Vm => "VM ID",
        }
    }

    /// Position in [`Level::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The next level, wrapping around.
    pub fn next(self) -> Level {
        Level::ALL[(self.index() + 1) % Level::ALL.len()]
    }
}

/// The column the table is sorted by; numbers sort largest first, names A to Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// Power over the latest interval.
    Watts,
    /// CPU use over the latest interval.
    Cpu,
    /// Energy since the workload was first seen.
    Joules,
    /// Name, then id.
    Name,
}

impl SortKey {
    /// Every key, in the order `s` cycles through them.
    pub const ALL: [SortKey; 4] = [SortKey::Watts, SortKey::Cpu, SortKey::Joules, SortKey::Name];

    /// The next key, wrapping around.
    pub fn next(self) -> SortKey {
        let i = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        SortKey::ALL[(i + 1) % SortKey::ALL.len()]
    }

    /// Short name for the status line.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Watts => "watts",
            SortKey::Cpu => "cpu",
            SortKey::Joules => "joules",
            SortKey::Name => "name",
        }
    }
}

/// One meter zone of the node.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneLine {
    /// What it measures.
    pub kind: ZoneKind,
    /// Where the reading comes from (a sysfs path, a BMC, a GPU uuid): zones of one kind on
    /// several sockets or devices are told apart by it.
    pub path: String,
    /// The meter (`rapl`, `hwmon`, `model`, `nvml`, ...).
    pub source: String,
    /// An estimate, not a measurement.
    pub estimated: bool,
    /// Power over the latest interval; `None` before the zone has two readings.
    pub watts: Option<f64>,
    /// Energy since start.
    pub joules: f64,
}

/// One process, container, pod or VM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Workload {
    /// Unique at its level: a pid, container id, pod id or VM id.
    pub id: String,
    /// What a person recognises: the command, container name, `namespace/pod` or VM name.
    pub name: String,
    /// `running` or `terminated`.
    pub state: String,
    /// Power over the latest interval per zone kind, watts.
    pub watts: [f64; KINDS],
    /// Energy since first seen per zone kind, joules.
    pub joules: [f64; KINDS],
    /// Cumulative CPU time, seconds (processes only; groups add up their processes' rates).
    pub cpu_seconds: Option<f64>,
    /// For a process: the container, pod and VM it belongs to (ids), for the roll-up of CPU%.
    pub parents: Parents,
}

/// The groups a process belongs to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parents {
    /// Container id.
    pub container: Option<String>,
    /// Pod id.
    pub pod: Option<String>,
    /// VM id.
    pub vm: Option<String>,
}

impl Parents {
    /// The parent id at `level` (none for [`Level::Process`]).
    pub fn at(&self, level: Level) -> Option<&str> {
        match level {
            Level::Process => None,
            Level::Container => self.container.as_deref(),
            Level::Pod => self.pod.as_deref(),
            Level::Vm => self.vm.as_deref(),
        }
    }
}

/// Everything one refresh shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// Seconds on a monotonic clock when the numbers were taken (for CPU rates).
    pub at_secs: f64,
    /// The node's name.
    pub node: String,
    /// Node zones, CPU zones first, in the exporter's order.
    pub zones: Vec<ZoneLine>,
    /// Node CPU busy fraction over the latest interval, when known.
    pub usage_ratio: Option<f64>,
    /// CPU zone kinds workloads are charged for (GPU added when GPU energy is attributed).
    pub kinds: Vec<ZoneKind>,
    /// Workloads per level, indexed by [`Level::index`].
    pub levels: [Vec<Workload>; 4],
}

impl Frame {
    /// The distinct meters the zones come from, in first-seen order (`rapl`, `rapl+nvml`...).
    pub fn sources(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for z in &self.zones {
            if !z.source.is_empty() && !out.contains(&z.source.as_str()) {
                out.push(&z.source);
            }
        }
        out
    }

    /// True when any zone is an estimate.
    pub fn estimated(&self) -> bool {
        self.zones.iter().any(|z| z.estimated)
    }

    /// The workloads at `level`.
    pub fn workloads(&self, level: Level) -> &[Workload] {
        &self.levels[level.index()]
    }
}
