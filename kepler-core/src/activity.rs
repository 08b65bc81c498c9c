//! What an activity source reports: per-process CPU time with identity, and node CPU totals.

use std::sync::Arc;

use crate::units::Nanos;

/// Node-wide cumulative CPU time, as `/proc/stat`'s first line gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCpu {
    /// Time all CPUs spent doing work (everything but idle and iowait).
    pub busy: Nanos,
    /// Time all CPUs existed (busy + idle + iowait).
    pub total: Nanos,
}

impl NodeCpu {
    /// Cumulative busy and total CPU time.
    pub fn new(busy: Nanos, total: Nanos) -> NodeCpu {
        NodeCpu { busy, total }
    }
}

/// The container runtime that owns a container, from its cgroup path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Runtime {
    /// Docker (moby).
    Docker,
    /// containerd, directly or through CRI.
    Containerd,
    /// CRI-O.
    CriO,
    /// Podman, rootful or rootless.
    Podman,
    /// A bare id under a kubelet `kubepods` cgroup (cgroupfs driver): the runtime behind
    /// the kubelet is not in the path (Go Kepler's `kubernetes`).
    Kubernetes,
    /// A container id was found but the runtime is not known.
    Unknown,
}

impl Runtime {
    /// The `runtime` label value.
    pub fn label(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "crio",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Unknown => "unknown",
        }
    }
}

/// A pod as the node sees it. Name and namespace come from Kubernetes when enabled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct PodInfo {
    /// Pod UID (dashes, as Kubernetes writes it).
    pub id: Arc<str>,
    /// Pod name; empty when unknown.
    pub name: Arc<str>,
    /// Pod namespace; empty when unknown.
    pub namespace: Arc<str>,
}

impl PodInfo {
    /// A pod by UID, name and namespace (either may be empty while unknown).
    pub fn new(
        id: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
        namespace: impl Into<Arc<str>>,
    ) -> PodInfo {
        PodInfo {
            id: id.into(),
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

/// A container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ContainerInfo {
    /// Full container id (64 hex characters for most runtimes).
    pub id: Arc<str>,
    /// Container name; empty when unknown.
    pub name: Arc<str>,
    /// Who runs it.
    pub runtime: Runtime,
    /// The pod it belongs to, when it runs under Kubernetes.
    pub pod: Option<PodInfo>,
}

impl ContainerInfo {
    /// A container outside any pod; add one with [`ContainerInfo::with_pod`].
    pub fn new(id: impl Into<Arc<str>>, name: impl Into<Arc<str>>, runtime: Runtime) -> Self {
        ContainerInfo {
            id: id.into(),
            name: name.into(),
            runtime,
            pod: None,
        }
    }

    /// The same container in `pod`.
    pub fn with_pod(mut self, pod: PodInfo) -> Self {
        self.pod = Some(pod);
        self
    }
}

/// A virtual machine a process (its hypervisor process) runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct VmInfo {
    /// VM id (the `-uuid`, else the `-name`).
    pub id: Arc<str>,
    /// VM name; may equal the id.
    pub name: Arc<str>,
    /// The hypervisor, e.g. `qemu` or `kvm`.
    pub hypervisor: Arc<str>,
}

impl VmInfo {
    /// A VM by id, name and hypervisor.
    pub fn new(
        id: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
        hypervisor: impl Into<Arc<str>>,
    ) -> VmInfo {
        VmInfo {
            id: id.into(),
            name: name.into(),
            hypervisor: hypervisor.into(),
        }
    }
}

/// What does not change for the life of a process: cached by the source, shared by `Arc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Short command name (`/proc/<pid>/comm`), sanitized to one line.
    pub comm: Arc<str>,
    /// Executable path; empty when unreadable.
    pub exe: Arc<str>,
    /// The container, when the process runs in one.
    pub container: Option<ContainerInfo>,
    /// The VM, when the process is a hypervisor for one.
    pub vm: Option<VmInfo>,
}

impl ProcessInfo {
    /// A process outside containers and VMs; see [`ProcessInfo::with_container`] and
    /// [`ProcessInfo::with_vm`].
    pub fn new(comm: impl Into<Arc<str>>, exe: impl Into<Arc<str>>) -> ProcessInfo {
        ProcessInfo {
            comm: comm.into(),
            exe: exe.into(),
            container: None,
            vm: None,
        }
    }

    /// The same process in `container`.
    pub fn with_container(mut self, container: ContainerInfo) -> Self {
        self.container = Some(container);
        self
    }

    /// The same process as the hypervisor of `vm`.
    pub fn with_vm(mut self, vm: VmInfo) -> Self {
        self.vm = Some(vm);
        self
    }

    /// The `type` label: `vm`, `container` or `regular`.
    pub fn type_label(&self) -> &'static str {
        if self.vm.is_some() {
            "vm"
        } else if self.container.is_some() {
            "container"
        } else {
            "regular"
        }
    }
}

/// One process in one activity frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessSample {
    /// Process id (tgid).
    pub pid: u32,
    /// Start time since boot in clock ticks; with the pid, the process identity.
    pub start_time: u64,
    /// Cumulative on-CPU time of the process (user + system).
    pub cpu_time: Nanos,
    /// Static data.
    pub info: Arc<ProcessInfo>,
}

impl ProcessSample {
    /// Process `pid` started at `start_time` (its identity) with `cpu_time` so far.
    pub fn new(pid: u32, start_time: u64, cpu_time: Nanos, info: Arc<ProcessInfo>) -> Self {
        ProcessSample {
            pid,
            start_time,
            cpu_time,
            info,
        }
    }
}

/// One read of an activity source. The caller owns it and reuses it across ticks.
///
/// Only `node` and `processes` are required; the frame's time is the tick's instant, given
/// to [`crate::Attributor::step`]. The other fields are optional extras
/// (empty when a source cannot provide them) that make attribution exact under churn
/// (issue 4): build a frame with `..Default::default()` so new extras never break a source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActivityFrame {
    /// Node CPU totals.
    pub node: NodeCpu,
    /// Every live process.
    pub processes: Vec<ProcessSample>,
    /// Either empty (unknown) or exactly one entry per `processes` entry, in the same order:
    /// parent pid, reaped children's CPU time and last CPU. Kept apart from
    /// [`ProcessSample`] so sources that do not know them need not change.
    pub details: Vec<ProcessDetail>,
    /// Cumulative CPU usage of containers, from the kernel's cgroup accounting, which
    /// includes processes that started and exited between two frames.
    pub containers: Vec<ContainerUsage>,
    /// Per-CPU cumulative times with the CPU's socket; empty on single-socket machines or
    /// when the topology is unknown (the engine then splits node-wide, as before).
    pub cpus: Vec<CpuTime>,
}

impl ActivityFrame {
    /// An empty frame with node totals `node`; push processes to it.
    pub fn new(node: NodeCpu) -> ActivityFrame {
        ActivityFrame {
            node,
            ..ActivityFrame::default()
        }
    }

    /// Empties the frame for reuse, keeping its allocation.
    pub fn clear(&mut self) {
        self.processes.clear();
        self.details.clear();
        self.containers.clear();
        self.cpus.clear();
        self.node = NodeCpu::default();
    }
}

/// What a source knows of a process beyond its own CPU time (`/proc/<pid>/stat` fields 4,
/// 16, 17 and 39; an eBPF source gets them from `task_struct` and the sched events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessDetail {
    /// Parent process id (0 when unknown).
    pub ppid: u32,
    /// Cumulative CPU time (user + system) of the process's children that exited and were
    /// waited for (`cutime + cstime`). Its growth is the work of children too short-lived
    /// to be seen, which the engine credits to the parent.
    pub children_time: Nanos,
    /// The CPU the process last ran on, for the per-socket split; `None` when unknown.
    pub last_cpu: Option<u32>,
}

impl ProcessDetail {
    /// Parent pid (0: unknown), reaped children's CPU time and last CPU.
    pub fn new(ppid: u32, children_time: Nanos, last_cpu: Option<u32>) -> ProcessDetail {
        ProcessDetail {
            ppid,
            children_time,
            last_cpu,
        }
    }
}

/// A container's cumulative CPU time from its cgroup (`cpu.stat usage_usec` on cgroup v2,
/// `cpuacct.usage` on v1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerUsage {
    /// The container, with the same id its processes report.
    pub info: ContainerInfo,
    /// Cumulative CPU time of every task that ever ran in the container's cgroup.
    pub usage: Nanos,
}

impl ContainerUsage {
    /// `info`'s cgroup has run `usage` of CPU time so far.
    pub fn new(info: ContainerInfo, usage: Nanos) -> ContainerUsage {
        ContainerUsage { info, usage }
    }
}

/// One logical CPU's cumulative times (a `cpuN` line of `/proc/stat`) and its socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuTime {
    /// Logical CPU number.
    pub cpu: u32,
    /// Socket (`physical_package_id`); matches the `index` of per-socket zones.
    pub socket: u32,
    /// Busy and total time of this CPU.
    pub time: NodeCpu,
}

impl CpuTime {
    /// Logical CPU `cpu` on socket `socket` with its cumulative times.
    pub fn new(cpu: u32, socket: u32, time: NodeCpu) -> CpuTime {
        CpuTime { cpu, socket, time }
    }
}

/// One logical CPU as `/proc/cpuinfo` describes it, for `kepler_node_cpu_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CpuInfo {
    /// Logical CPU number (`processor`).
    pub processor: u32,
    /// `vendor_id` (e.g. `GenuineIntel`, `AuthenticAMD`); on ARM the `CPU implementer`.
    pub vendor_id: String,
    /// `model name`.
    pub model_name: String,
    /// Socket (`physical id`), 0 when absent.
    pub physical_id: u32,
    /// Core within the socket (`core id`), 0 when absent.
    pub core_id: u32,
}
