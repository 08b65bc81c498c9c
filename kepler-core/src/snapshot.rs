//! The immutable result of one engine step.

use std::sync::Arc;

use crate::activity::{ContainerInfo, PodInfo, ProcessInfo, VmInfo};
use crate::error::ReadError;
use crate::units::{watts, MicroJoules, Nanos, Timestamp};
use crate::zone::{ZoneInfo, ZoneKind};

/// One value per [`ZoneKind`], in µJ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerKind(pub [u64; ZoneKind::ALL.len()]);

impl PerKind {
    /// The value for `kind`.
    pub fn get(&self, kind: ZoneKind) -> MicroJoules {
        MicroJoules(self.0[kind.index()])
    }

    /// Adds `other` element-wise.
    pub fn add(&mut self, other: &PerKind) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// Sum over all kinds.
    pub fn sum(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The largest value: the energy of the widest zone (package or psys on RAPL), which
    /// includes the narrower ones, so that nested zones are not counted twice.
    pub fn max(&self) -> u64 {
        self.0.iter().copied().max().unwrap_or(0)
    }

    /// True when every value is 0.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&x| x == 0)
    }
}

/// Whether a workload is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Seen in the latest activity frame.
    Running,
    /// Gone since `at`; kept for the terminated TTL so every scraper sees its final energy.
    Terminated {
        /// When it was first found missing.
        at: Timestamp,
    },
}

impl State {
    /// The `state` label value.
    pub fn label(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Terminated { .. } => "terminated",
        }
    }
}

/// Energy of a workload: cumulative since it was first seen, and this tick's share.
///
/// With an idle policy other than `none`, `total` and `last` include the workload's share
/// of idle energy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Energies {
    /// Cumulative energy per zone kind; never decreases.
    pub total: PerKind,
    /// Energy attributed in the latest tick (0 for terminated workloads).
    pub last: PerKind,
}

impl Energies {
    /// Starts a new tick: nothing attributed yet.
    pub(crate) fn new_tick(&mut self) {
        self.last = PerKind::default();
    }

    /// Adds `e` µJ of kind index `kind` to this tick.
    pub(crate) fn credit(&mut self, kind: usize, e: u64) {
        self.last.0[kind] = self.last.0[kind].saturating_add(e);
        self.total.0[kind] = self.total.0[kind].saturating_add(e);
    }

    /// Adds another workload's latest tick (a roll-up from members).
    pub(crate) fn add_last(&mut self, other: &Energies) {
        self.last.add(&other.last);
        self.total.add(&other.last);
    }
}

/// A meter zone's node-level accounting.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeZone {
    /// The zone.
    pub info: Arc<ZoneInfo>,
    /// Cumulative energy since start.
    pub total: MicroJoules,
    /// Cumulative active share (`total * usage ratio`, tick by tick).
    pub active: MicroJoules,
    /// Cumulative idle share; `active + idle == total` always.
    pub idle: MicroJoules,
    /// Power over the zone's latest interval, watts.
    pub power: f64,
    /// Active part of `power`.
    pub active_power: f64,
    /// Idle part of `power`.
    pub idle_power: f64,
    /// True once a reading has been accepted.
    pub has_reading: bool,
    /// The latest read error, cleared by the next good read.
    pub last_error: Option<ReadError>,
    /// Failed reads since start.
    pub read_errors: u64,
    /// Deltas dropped as implausible (resets, bad reads) since start.
    pub dropped_deltas: u64,
    /// Counter wraps handled since start.
    pub wraps: u64,
    /// When the latest good reading was taken.
    pub last_read: Option<Timestamp>,
}

/// A process and its energy.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProcessEntry {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// Static data.
    pub info: Arc<ProcessInfo>,
    /// Cumulative CPU time at its latest observation.
    pub cpu_time: Nanos,
    /// Running or terminated.
    pub state: State,
    /// Attributed energy.
    pub energy: Energies,
}

/// A container, pod or VM: its identity, state and energy (the sum of its processes').
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GroupEntry<I> {
    /// Identity and metadata.
    pub info: I,
    /// Running while any member process runs.
    pub state: State,
    /// Attributed energy.
    pub energy: Energies,
    /// CPU time of its member processes while they were members, summed tick by tick
    /// (`kepler_container_cpu_seconds_total`); never decreases.
    pub cpu_time: Nanos,
}

/// A container's entry.
pub type ContainerEntry = GroupEntry<ContainerInfo>;
/// A pod's entry.
pub type PodEntry = GroupEntry<PodInfo>;
/// A VM's entry.
pub type VmEntry = GroupEntry<VmInfo>;

/// Who gets node idle energy (`attribution.idle`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdlePolicy {
    /// Idle stays at node level, as Kepler does: workloads get active energy only.
    #[default]
    None,
    /// Idle is split like active energy, by CPU-time share (unattributed time included).
    CpuShare,
    /// Idle is split equally among the processes alive in the tick.
    Equal,
}

impl IdlePolicy {
    /// The config value: `none`, `cpu-share` or `equal`.
    pub fn label(self) -> &'static str {
        match self {
            IdlePolicy::None => "none",
            IdlePolicy::CpuShare => "cpu-share",
            IdlePolicy::Equal => "equal",
        }
    }
}

/// Counters about the engine itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Ticks stepped.
    pub ticks: u64,
    /// Ticks without an activity frame (its energy went to `unattributed`).
    pub missing_activity: u64,
    /// Processes in the latest activity frame.
    pub live_processes: u64,
    /// Terminated processes still retained.
    pub terminated_processes: u64,
    /// Terminated workloads dropped early by the `max_terminated` cap.
    pub evicted: u64,
    /// Containers with cgroup CPU accounting in the latest frame.
    pub accounted_containers: u64,
    /// Ticks where a cgroup or process counter went backwards (treated as a new baseline).
    pub counter_regressions: u64,
}

/// Everything the exporter needs, as of one tick. Immutable; share it with `Arc`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// When the tick happened.
    pub at: Timestamp,
    /// Activity interval of this tick (0 on the first tick).
    pub interval: Nanos,
    /// Node CPU usage ratio over the interval, 0..=1.
    pub usage_ratio: f64,
    /// Node zones in the order first seen.
    pub zones: Vec<NodeZone>,
    /// CPU zone kinds present, i.e. the kinds workloads are exported for.
    pub kinds: Vec<ZoneKind>,
    /// Processes, running and recently terminated.
    pub processes: Vec<ProcessEntry>,
    /// Containers.
    pub containers: Vec<ContainerEntry>,
    /// Pods.
    pub pods: Vec<PodEntry>,
    /// VMs.
    pub vms: Vec<VmEntry>,
    /// Active energy that no workload explains (kernel threads gone, time unaccounted...).
    /// Under an idle policy other than `none` it also holds the matching share of idle.
    pub unattributed: Energies,
    /// Energy of container CPU time that no live process explains: processes that started
    /// and exited between two ticks, and the last moments of those that exited. It is
    /// charged to the container (and pod) whose cgroup accounted the time, so a container's
    /// energy can exceed the sum of its listed processes by this much.
    pub exited: Energies,
    /// How node idle energy is handled.
    pub idle_policy: IdlePolicy,
    /// Engine counters.
    pub stats: EngineStats,
}

impl Snapshot {
    /// Watts of an energy delta taken over this snapshot's interval.
    pub fn watts(&self, delta: MicroJoules) -> f64 {
        watts(delta, self.interval)
    }

    /// Sum over zones of `kind` of (total, active, idle) node energy.
    pub fn node_energy(&self, kind: ZoneKind) -> (MicroJoules, MicroJoules, MicroJoules) {
        self.zones
            .iter()
            .filter(|z| z.info.kind == kind)
            .fold(Default::default(), |(t, a, i), z| {
                (t + z.total, a + z.active, i + z.idle)
            })
    }
}
