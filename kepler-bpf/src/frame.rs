//! Turns the BPF maps' records into the same [`ActivityFrame`] the procfs source fills.
//!
//! Identity is (tgid, start time in clock ticks since boot), computed from the group
//! leader's `start_boottime` exactly as the kernel computes field 22 of `/proc/<pid>/stat`,
//! so a process has the same key here as under procfs. What does not change for the life
//! of a process (exe, container, VM) is read from procfs once, through kepler-sources' host
//! layer (the same reader procfs uses), and cached under that key; a changed comm (an exec)
//! reloads it. Processes that exited before they were ever read have no procfs entry left:
//! their container comes from the cgroup id the BPF program recorded, resolved through the
//! containers of live processes seen in the same cgroup, else through the cgroup's
//! directory name the program saved.
//!
//! **Frames mean what procfs frames mean** (issue 14). Besides the samples, a frame carries
//! what the engine's churn and per-socket rules need, as under procfs:
//! - `details`, one per process: the parent (from the program, updated at exit, when the
//!   parent's `cutime` is what grows), the reaped children's time (from `<pid>/stat` when a
//!   process is first seen and again while its children exit; for an exited process, its
//!   `signal->cutime + cstime` recorded by the program at exit) and the last CPU (the CPU
//!   running it now, else the last one the program saw it come to);
//! - `containers`: each container's cgroup CPU counter, found from the cgroup file of its
//!   first live process, as procfs does;
//! - `cpus`: on multi-socket machines (by the sysfs topology), the per-CPU lines of
//!   `/proc/stat` with their sockets.
//!
//! Counters are totals: the program counts a process's time from the moment it is attached,
//! so the first time a live process is seen its `<pid>/stat` total (or, when it has one
//! thread, its exact `schedstat`) seeds it: the time it ran before the program saw it is
//! added to everything the program reports for it. A process started after the attach has
//! a total no larger than what the program counted, and gets no seed.
//!
//! **The exported process set is every live process**, as under procfs: the first read
//! lists procfs once and reports each process the program has not seen run from that
//! listing (its `stat` values, which do not change while it sleeps), until it runs (then
//! its slot takes over, seeded) or exits (its exit takes a slot). Dropping sleepers would
//! save series (3,000 sleepers: 15,396 series under procfs, 609 under eBPF), but the list
//! of processes would then depend on the source and on when kepler started, and a sleeper
//! that wakes would show its whole life's CPU time as one interval's work.
//!
//! Exited processes are reported on two reads (their final slice is charged at their last
//! context switch, which can land just after the first read), then their slots are handed
//! back to be freed. Two slots can hold one process (two of its threads seen first at the
//! same instant on two CPUs, or a pid reused while its old mapping was being removed): they
//! are reported as one process, the sum of both, and freed together.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use kepler_core::{
    ActivityFrame, ContainerInfo, Nanos, ProcessDetail, ProcessInfo, ProcessSample, ReadError,
};
use kepler_sources::host::{
    boottime_ns_to_ticks, parse_cgroup, parse_node_cpu, parse_schedstat, parse_stat,
    push_cpu_times, read_error, sanitize_comm, ticks_to_ns, Access, CgroupUsage, CpuTopology,
    StatFields, StaticReader,
};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::raw::{PendingWay, ProcRecord, COMM_LEN, PROC_KTHREAD};

/// How many reads an exited process is reported on before its entry is deleted.
const EXITED_READS: u8 = 2;
/// `PF_KTHREAD` in field 9 of `/proc/<pid>/stat`.
const PF_KTHREAD: u32 = 0x0020_0000;
/// Reads during which a parent whose child exited has its `stat` read again: its `cutime`
/// grows when it reaps the child, which may be a little after the exit.
const REAP_READS: u8 = 4;
/// Every this many reads, the processes reported from the first listing are checked to
/// still exist (zombies at the listing are reaped without ever running again).
const DORMANT_SWEEP: u64 = 16;

/// The current slice of a thread on a CPU, not yet in the maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Running {
    /// Its process.
    pub tgid: u32,
    /// Nanoseconds it has run since it was switched in.
    pub ns: u64,
    /// The CPU it runs on.
    pub cpu: u32,
}

struct Cached {
    info: Arc<ProcessInfo>,
    comm: [u8; COMM_LEN],
    seen: u64,
    exited_reads: u8,
    /// The on-CPU time last reported: a process is never reported below it.
    reported: u64,
    /// Added to what the slots say: the time reported from slots freed before this one was
    /// taken (see `Gone`), and the time the process ran before the program saw it (the
    /// seed, see the module docs).
    base: u64,
    /// Parent, reaped children's time and last CPU, as last known.
    detail: ProcessDetail,
    /// This read: the index of its sample in the frame, its slots, whether one is exited.
    index: usize,
    slot: u32,
    more_slots: Vec<u32>,
    exited: bool,
}

/// A slot whose process has been reported exited twice: free it, and drop the tgid's
/// mapping to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    /// The slot of the `acct` array.
    pub slot: u32,
    /// The process it held.
    pub tgid: u32,
}

/// A process whose slots were freed after its exit was reported twice. A process can still
/// run after that, when reads come faster than its exit (a task preempted inside
/// `do_exit`); its final switch then takes a new slot holding only that tail. Reported as
/// its earlier total plus the tail, under the same identity and static data, it goes on
/// where it stopped instead of starting again from the tail.
struct Gone {
    reported: u64,
    info: Arc<ProcessInfo>,
    comm: [u8; COMM_LEN],
    detail: ProcessDetail,
    generation: u64,
}

/// Reads a freed process is remembered for.
const GONE_READS: u64 = 16;

struct CachedContainer {
    container: Option<ContainerInfo>,
    seen: u64,
}

/// A process of the first listing that the program has not seen run yet: reported from
/// its procfs values, which do not change while it sleeps.
struct Dormant {
    start_time: u64,
    cpu_time: Nanos,
    detail: ProcessDetail,
    info: Arc<ProcessInfo>,
}

/// What a process's `<pid>/stat` (and `schedstat`) say now.
struct Probe {
    stat: StatFields,
    /// Its total CPU time: `utime + stime`, or the exact `schedstat` run time when it has
    /// one thread and that is larger (`stat` is truncated to clock ticks).
    total: Nanos,
}

/// Builds activity frames from BPF records; owns the per-process static-data cache.
pub struct FrameBuilder {
    procfs: PathBuf,
    user_hz: u64,
    statics: StaticReader,
    /// Sockets of the CPUs, when more than one: then per-CPU times are reported.
    topology: CpuTopology,
    /// Containers' cgroup CPU counters, when a cgroup root is set.
    cgroups: Option<CgroupUsage>,
    cache: HashMap<(u32, u64), Cached>,
    containers: HashMap<u64, CachedContainer>,
    /// Pending time of the per-CPU caches by (slot, tgid, start_boottime): a way may still
    /// name a slot freed and taken by another process since. Running slices by tgid, with
    /// the CPU of the latest.
    pending: HashMap<(u32, u32, u64), u64>,
    running: HashMap<u32, (u64, u32)>,
    generation: u64,
    exited: Vec<(u32, u64)>,
    gone: HashMap<(u32, u64), Gone>,
    freed: Vec<Freed>,
    held_back: u64,
    /// Whether procfs has been listed for the processes that did not run since the attach.
    listed: bool,
    dormant: HashMap<u32, Dormant>,
    /// Parents whose children exited, and the reads left to read their `stat` again.
    reaping: HashMap<u32, u8>,
    stat_buf: Vec<u8>,
    path: String,
}

impl std::fmt::Debug for FrameBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBuilder")
            .field("procfs", &self.procfs)
            .field("user_hz", &self.user_hz)
            .field("cached", &self.cache.len())
            .field("dormant", &self.dormant.len())
            .finish_non_exhaustive()
    }
}

impl FrameBuilder {
    /// A builder reading static data and node totals under `procfs`, converting start
    /// times with `user_hz` clock ticks per second
    /// ([`kepler_sources::host::user_hz`]). No per-CPU times and no cgroup counters until
    /// [`with_topology`](Self::with_topology) and [`with_cgroup_root`](Self::with_cgroup_root).
    pub fn new(procfs: impl Into<PathBuf>, user_hz: u64) -> FrameBuilder {
        FrameBuilder {
            procfs: procfs.into(),
            user_hz: user_hz.max(1),
            statics: StaticReader::new(),
            topology: CpuTopology::default(),
            cgroups: None,
            cache: HashMap::default(),
            containers: HashMap::default(),
            pending: HashMap::default(),
            running: HashMap::default(),
            generation: 0,
            exited: Vec::new(),
            gone: HashMap::default(),
            freed: Vec::new(),
            held_back: 0,
            listed: false,
            dormant: HashMap::default(),
            reaping: HashMap::default(),
            stat_buf: Vec::new(),
            path: String::new(),
        }
    }

    /// Reports per-CPU times with their sockets when `topology` has more than one socket
    /// (the per-socket split; one socket needs none).
    pub fn with_topology(mut self, topology: CpuTopology) -> FrameBuilder {
        self.topology = if topology.is_multi_socket() {
            topology
        } else {
            CpuTopology::default()
        };
        self
    }

    /// Reports containers' cgroup CPU counters found under `root` (`<sysfs>/fs/cgroup`).
    pub fn with_cgroup_root(mut self, root: PathBuf) -> FrameBuilder {
        self.cgroups = Some(CgroupUsage::new(root));
        self
    }

    /// Processes with cached static data (those the program has seen run).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Processes reported from the first procfs listing because the program has not seen
    /// them run since it was attached.
    pub fn dormant(&self) -> usize {
        self.dormant.len()
    }

    /// Reports held at a process's previous on-CPU time, since start, because this read
    /// found less (a thread that moved between CPUs, or exited, while the caches were being
    /// read: microsecond windows, caught up by the next read).
    pub fn held_back(&self) -> u64 {
        self.held_back
    }

    /// Fills `out` from `records` (the taken slots), `pending` (time in the per-CPU
    /// caches not added to its slot yet) and `running` (the current slices of running
    /// threads). `cgroup_name` looks a cgroup id up in the BPF program's `cgroups` map.
    /// Returns the slots whose processes are done: free them.
    pub fn build(
        &mut self,
        records: &[ProcRecord],
        pending: &[PendingWay],
        running: &[Running],
        cgroup_name: &mut dyn FnMut(u64) -> Option<Vec<u8>>,
        out: &mut ActivityFrame,
    ) -> Result<&[Freed], ReadError> {
        let first = out.processes.len();
        self.read_node(out)?;
        self.generation = self.generation.wrapping_add(1);
        self.freed.clear();
        self.exited.clear();
        self.pending.clear();
        self.running.clear();
        for w in pending.iter().filter(|w| w.tgid != 0) {
            let e = self
                .pending
                .entry((w.slot, w.tgid, w.start_boottime_ns))
                .or_default();
            *e = e.saturating_add(w.ns);
        }
        for r in running {
            let e = self.running.entry(r.tgid).or_default();
            *e = (e.0.saturating_add(r.ns), r.cpu);
        }
        // Live processes first: they teach which container each cgroup id belongs to, which
        // the exited ones (no procfs entry left) then reuse.
        for pass_exited in [false, true] {
            for r in records.iter().filter(|r| r.exited() == pass_exited) {
                self.push(r, cgroup_name, out);
            }
        }
        self.hold_monotonic(out);
        self.settle_exited();
        let from_records = out.processes.len() - first;
        self.push_dormant(out);
        self.reread_parents(out);
        if let Some(cgroups) = &mut self.cgroups {
            cgroups.mark(out, first, self.generation);
            cgroups.read(out, self.generation);
        }
        let generation = self.generation;
        if self.cache.len() > from_records {
            self.cache.retain(|_, c| c.seen == generation);
        }
        if generation.is_multiple_of(GONE_READS) {
            self.gone
                .retain(|_, g| generation.wrapping_sub(g.generation) < GONE_READS);
        }
        if generation.is_multiple_of(64) {
            self.containers
                .retain(|_, c| generation.wrapping_sub(c.seen) < 64);
        }
        Ok(&self.freed)
    }

    /// Keeps each process's on-CPU time from going back between reads: the sources of one
    /// reading (slot, cache ways, running slices) are not read at one instant. Done after
    /// all slots are in, as a process with two slots is their sum.
    fn hold_monotonic(&mut self, out: &mut ActivityFrame) {
        let generation = self.generation;
        for c in self.cache.values_mut().filter(|c| c.seen == generation) {
            let Some(p) = out.processes.get_mut(c.index) else {
                continue;
            };
            if p.cpu_time.0 < c.reported {
                p.cpu_time = Nanos(c.reported);
                self.held_back += 1;
            } else {
                c.reported = p.cpu_time.0;
            }
        }
    }

    /// Counts a read for every process reported exited in it, and frees the slots of those
    /// reported twice. A per-CPU cache way may still name a freed slot (a CPU that has run
    /// nothing new since): its time was in both reports, and the program adds it to the
    /// slot only while the slot still belongs to that process, so freeing loses nothing
    /// and charges no one else. Waiting for the way to go would keep the slot for as long
    /// as that CPU stays quiet.
    fn settle_exited(&mut self) {
        for key in std::mem::take(&mut self.exited) {
            let Some(c) = self.cache.get_mut(&key) else {
                continue;
            };
            c.exited_reads = c.exited_reads.saturating_add(1);
            if c.detail.ppid != 0 {
                self.reaping.insert(c.detail.ppid, REAP_READS);
            }
            let slots = || std::iter::once(c.slot).chain(c.more_slots.iter().copied());
            if c.exited_reads < EXITED_READS {
                continue;
            }
            self.freed
                .extend(slots().map(|slot| Freed { slot, tgid: key.0 }));
            if let Some(c) = self.cache.remove(&key) {
                self.gone.insert(
                    key,
                    Gone {
                        reported: c.reported,
                        info: c.info,
                        comm: c.comm,
                        detail: c.detail,
                        generation: self.generation,
                    },
                );
            }
        }
    }

    fn push(
        &mut self,
        r: &ProcRecord,
        cgroup_name: &mut dyn FnMut(u64) -> Option<Vec<u8>>,
        out: &mut ActivityFrame,
    ) {
        let start_time = boottime_ns_to_ticks(self.user_hz, r.start_boottime_ns);
        let key = (r.tgid, start_time);
        let generation = self.generation;
        let mut extra = self
            .pending
            .get(&(r.slot, r.tgid, r.start_boottime_ns))
            .copied()
            .unwrap_or(0);
        let mut running_on = None;
        if !r.exited() {
            if let Some((ns, cpu)) = self.running.remove(&r.tgid) {
                extra = extra.saturating_add(ns);
                running_on = Some(cpu);
            }
        }
        let mut cpu_time = r.on_cpu_ns.saturating_add(extra);
        let index = out.processes.len();
        let (info, detail) = match self.cache.get_mut(&key) {
            // A second slot of a process already in this frame: one process, both times.
            Some(c) if c.seen == generation => {
                c.more_slots.push(r.slot);
                if r.exited() && !c.exited {
                    c.exited = true;
                    self.exited.push(key);
                }
                if let Some(p) = out.processes.get_mut(c.index) {
                    p.cpu_time = Nanos(p.cpu_time.0.saturating_add(cpu_time));
                }
                return;
            }
            Some(c) if c.comm == r.comm => {
                c.seen = generation;
                c.index = index;
                c.slot = r.slot;
                c.more_slots.clear();
                c.exited = r.exited();
                update_detail(&mut c.detail, r, running_on);
                cpu_time = cpu_time.saturating_add(c.base);
                (Arc::clone(&c.info), c.detail)
            }
            // New process, or an exec (new comm): read the rest.
            _ => {
                let known = match self.cache.get(&key) {
                    Some(c) => Some((c.exited_reads, c.reported, c.base, None, c.detail)),
                    None => match self.gone.remove(&key) {
                        Some(g) if g.comm == r.comm => {
                            Some((0, g.reported, g.reported, Some(g.info), g.detail))
                        }
                        _ => None,
                    },
                };
                let (exited_reads, reported, base, info, mut detail) = match known {
                    Some(k) => k,
                    None => {
                        // First sight: its procfs total seeds it, its stat gives the detail.
                        // A process of the first listing keeps its static data (its exe
                        // and VM are gone from procfs once it exits).
                        let dormant = self
                            .dormant
                            .remove(&r.tgid)
                            .filter(|d| d.start_time == start_time);
                        let (seed, detail) =
                            self.first_sight(r, start_time, cpu_time, dormant.as_ref());
                        let info = dormant
                            .filter(|d| *d.info.comm == *sanitize_comm(r.comm_bytes()))
                            .map(|d| d.info);
                        (0, 0, seed, info, detail)
                    }
                };
                update_detail(&mut detail, r, running_on);
                let info = info.unwrap_or_else(|| Arc::new(self.load_static(r, cgroup_name)));
                cpu_time = cpu_time.saturating_add(base);
                self.cache.insert(
                    key,
                    Cached {
                        info: Arc::clone(&info),
                        comm: r.comm,
                        seen: generation,
                        exited_reads,
                        reported,
                        base,
                        detail,
                        index,
                        slot: r.slot,
                        more_slots: Vec::new(),
                        exited: r.exited(),
                    },
                );
                (info, detail)
            }
        };
        if let Some(c) = self.containers.get_mut(&r.cgroup_id) {
            c.seen = generation;
        }
        if r.exited() {
            self.exited.push(key);
        }
        out.processes.push(ProcessSample::new(
            r.tgid,
            start_time,
            Nanos(cpu_time),
            info,
        ));
        out.details.push(detail);
    }

    /// The seed and detail of a process the program reports for the first time: its procfs
    /// total beyond what the program counted (`counted`), and its parent, reaped children's
    /// time and CPU from its `stat`. A process gone from procfs (it exited before this
    /// read) is seeded with its total at the first listing when it was listed (it slept
    /// until it ran to its exit), else it started after the attach: no seed. Its detail is
    /// what the program recorded at its exit.
    fn first_sight(
        &mut self,
        r: &ProcRecord,
        start_time: u64,
        counted: u64,
        dormant: Option<&Dormant>,
    ) -> (u64, ProcessDetail) {
        let recorded = ProcessDetail::new(r.ppid, Nanos(r.children_ns), Some(r.last_cpu));
        let listed = dormant.map_or(0, |d| d.cpu_time.0);
        if r.exited() {
            return (listed, recorded);
        }
        match self.probe(r.tgid) {
            Some(p) if p.stat.starttime == start_time => (
                p.total.0.saturating_sub(counted),
                ProcessDetail::new(
                    p.stat.ppid,
                    self.ticks(p.stat.cutime.saturating_add(p.stat.cstime)),
                    Some(p.stat.processor),
                ),
            ),
            _ => (listed, recorded),
        }
    }

    fn ticks(&self, ticks: u64) -> Nanos {
        ticks_to_ns(self.user_hz, ticks)
    }

    /// Reads `<procfs>/<pid>/stat`, and its `schedstat` when it has one thread.
    fn probe(&mut self, pid: u32) -> Option<Probe> {
        use std::fmt::Write;
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/", self.procfs.display());
        let dir_len = self.path.len();
        self.path.push_str("stat");
        let stat = parse_stat(&std::fs::read(&self.path).ok()?)?;
        let mut total = self.ticks(stat.utime.saturating_add(stat.stime));
        if stat.num_threads == 1 {
            self.path.truncate(dir_len);
            self.path.push_str("schedstat");
            if let Some((run_ns, _)) = std::fs::read(&self.path)
                .ok()
                .and_then(|b| parse_schedstat(&b))
            {
                total = total.max(Nanos(run_ns));
            }
        }
        Some(Probe { stat, total })
    }

    /// Static data of a process: from procfs while it lives (the host layer's reader, as
    /// under procfs), from what the BPF program recorded once it is gone.
    fn load_static(
        &mut self,
        r: &ProcRecord,
        cgroup_name: &mut dyn FnMut(u64) -> Option<Vec<u8>>,
    ) -> ProcessInfo {
        let comm: Arc<str> = Arc::from(sanitize_comm(r.comm_bytes()).as_ref());
        let kthread = r.flags & PROC_KTHREAD != 0;
        if kthread || r.exited() {
            // Kernel threads live in the root cgroup; a gone process left only its cgroup id.
            let container = match kthread {
                true => None,
                false => self.container_of_cgroup(r.cgroup_id, cgroup_name),
            };
            let mut info = ProcessInfo::new(comm, Arc::clone(self.statics.empty()));
            info.container = container;
            return info;
        }
        let dir = self.procfs.join(r.tgid.to_string());
        let mut info = self.statics.read(&dir, comm, false);
        match self.statics.cgroup_text() {
            Some(text) => {
                if let (Some(c), Some(cgroups)) = (&info.container, &mut self.cgroups) {
                    cgroups.register(c, text, self.generation);
                }
                // The record's cgroup id is where the process was first seen; it may have
                // moved since. Teach the id's container only when the process is still in
                // that cgroup (same directory name), so that exited processes of the id
                // are not charged to where this one went.
                let text = String::from_utf8_lossy(text);
                let still_there = cgroup_v2_leaf(&text).is_some_and(|leaf| {
                    cgroup_name(r.cgroup_id).is_some_and(|n| n == leaf.as_bytes())
                });
                if still_there {
                    self.containers.insert(
                        r.cgroup_id,
                        CachedContainer {
                            container: info.container.clone(),
                            seen: self.generation,
                        },
                    );
                }
            }
            None => info.container = self.container_of_cgroup(r.cgroup_id, cgroup_name),
        }
        info
    }

    fn container_of_cgroup(
        &mut self,
        id: u64,
        cgroup_name: &mut dyn FnMut(u64) -> Option<Vec<u8>>,
    ) -> Option<ContainerInfo> {
        if let Some(c) = self.containers.get(&id) {
            return c.container.clone();
        }
        // Only the directory's own name is known: enough for every runtime's scope name,
        // though a pod id carried by a parent directory is lost.
        let name = cgroup_name(id)?;
        let path = format!("0::/{}\n", String::from_utf8_lossy(&name));
        let container = parse_cgroup(&path).map(|m| m.into_container(self.statics.empty()));
        self.containers.insert(
            id,
            CachedContainer {
                container: container.clone(),
                seen: self.generation,
            },
        );
        container
    }

    /// Reports the processes of the first listing that the program has not seen run (see
    /// the module docs); lists procfs on the first read.
    fn push_dormant(&mut self, out: &mut ActivityFrame) {
        if !self.listed {
            self.listed = true;
            self.list_procfs(out);
        }
        if self.generation.is_multiple_of(DORMANT_SWEEP) && !self.dormant.is_empty() {
            let procfs = &self.procfs;
            self.dormant
                .retain(|pid, _| procfs.join(pid.to_string()).exists());
        }
        let generation = self.generation;
        for (&pid, d) in &self.dormant {
            // Seen through a record in this frame already (a new slot for an older pid).
            if self
                .cache
                .get(&(pid, d.start_time))
                .is_some_and(|c| c.seen == generation)
            {
                continue;
            }
            out.processes.push(ProcessSample::new(
                pid,
                d.start_time,
                d.cpu_time,
                Arc::clone(&d.info),
            ));
            out.details.push(d.detail);
        }
    }

    /// Lists procfs once: every process without a record in this frame becomes dormant.
    fn list_procfs(&mut self, out: &ActivityFrame) {
        let Ok(entries) = std::fs::read_dir(&self.procfs) else {
            return;
        };
        let seen: HashSet<u32> = out.processes.iter().map(|p| p.pid).collect();
        let pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| !seen.contains(pid))
            .collect();
        for pid in pids {
            let Some(p) = self.probe(pid) else {
                continue; // gone meanwhile, or unreadable: procfs skips it too
            };
            let comm: Arc<str> = Arc::from(p.stat.comm.as_str());
            let kthread = p.stat.flags & PF_KTHREAD != 0;
            let dir = self.procfs.join(pid.to_string());
            let info = self.statics.read(&dir, comm, kthread);
            if let (Some(c), Some(cgroups), Some(text)) = (
                &info.container,
                &mut self.cgroups,
                self.statics.cgroup_text(),
            ) {
                cgroups.register(c, text, self.generation);
            }
            self.dormant.insert(
                pid,
                Dormant {
                    start_time: p.stat.starttime,
                    // As procfs reports it: clock ticks of stat.
                    cpu_time: self.ticks(p.stat.utime.saturating_add(p.stat.stime)),
                    detail: ProcessDetail::new(
                        p.stat.ppid,
                        self.ticks(p.stat.cutime.saturating_add(p.stat.cstime)),
                        Some(p.stat.processor),
                    ),
                    info: Arc::new(info),
                },
            );
        }
    }

    /// Reads again the `stat` of the live processes whose children exited lately: their
    /// reaped-children time grows when they reap them, which the program does not see.
    fn reread_parents(&mut self, out: &mut ActivityFrame) {
        if self.reaping.is_empty() {
            return;
        }
        let generation = self.generation;
        let mut targets = Vec::new();
        for (i, p) in out.processes.iter().enumerate() {
            if self.reaping.contains_key(&p.pid) {
                targets.push((i, p.pid, p.start_time));
            }
        }
        for (i, pid, start_time) in targets {
            let key = (pid, start_time);
            if self.cache.get(&key).is_some_and(|c| c.exited) {
                continue;
            }
            let Some(p) = self.probe(pid) else { continue };
            if p.stat.starttime != start_time {
                continue;
            }
            let children = self.ticks(p.stat.cutime.saturating_add(p.stat.cstime));
            let Some(d) = out.details.get_mut(i) else {
                continue;
            };
            d.children_time = d.children_time.max(children);
            d.ppid = p.stat.ppid;
            let d = *d;
            if let Some(c) = self.cache.get_mut(&key).filter(|c| c.seen == generation) {
                c.detail.children_time = d.children_time;
                c.detail.ppid = d.ppid;
            } else if let Some(dm) = self.dormant.get_mut(&pid) {
                dm.detail.children_time = d.children_time;
                dm.detail.ppid = d.ppid;
            }
        }
        self.reaping.retain(|_, left| {
            *left -= 1;
            *left > 0
        });
    }

    /// Node totals from the aggregate `cpu ` line of `<procfs>/stat`, and on multi-socket
    /// machines the per-CPU lines with their sockets, as the procfs source reads them.
    fn read_node(&mut self, out: &mut ActivityFrame) -> Result<(), ReadError> {
        let path = self.procfs.join("stat");
        self.stat_buf.clear();
        let what = || path.display().to_string();
        let mut file =
            std::fs::File::open(&path).map_err(|e| read_error(&what(), &e, Access::Procfs))?;
        io::Read::read_to_end(&mut file, &mut self.stat_buf)
            .map_err(|e| read_error(&what(), &e, Access::Procfs))?;
        let ticks = parse_node_cpu(&self.stat_buf).ok_or_else(|| ReadError::Parse {
            what: what(),
            detail: "no aggregate `cpu ` line".into(),
        })?;
        out.node = ticks.to_cpu_time(self.user_hz);
        if self.topology.is_multi_socket() {
            push_cpu_times(&self.stat_buf, &self.topology, self.user_hz, &mut out.cpus);
        }
        Ok(())
    }
}

/// What a record says of a known process: an exited one's parent and children's time are
/// the program's (taken at exit), its CPU the last one the program saw; a running one runs
/// on `running_on`.
fn update_detail(d: &mut ProcessDetail, r: &ProcRecord, running_on: Option<u32>) {
    if r.exited() {
        if r.ppid != 0 {
            d.ppid = r.ppid;
        }
        d.children_time = d.children_time.max(Nanos(r.children_ns));
    }
    d.last_cpu = Some(running_on.unwrap_or(r.last_cpu));
}

/// The last component of the cgroup v2 (`0::`) path in a `/proc/<pid>/cgroup` text ("" for
/// the root).
fn cgroup_v2_leaf(text: &str) -> Option<&str> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim_end();
    Some(path.rsplit('/').next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::PROC_EXITED;
    use kepler_core::Runtime;

    const ID: &str = "3f2a9c1b7e4d8a6f0b5c2e9d1a7f3b8c4e6d0a2f9b1c7e5d3a8f6b4c2e0d9a7f";

    fn comm(s: &str) -> [u8; COMM_LEN] {
        let mut c = [0u8; COMM_LEN];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    fn rec(tgid: u32, ns: u64, cgroup_id: u64, flags: u32, name: &str) -> ProcRecord {
        ProcRecord {
            slot: tgid + 1000,
            tgid,
            on_cpu_ns: ns,
            start_boottime_ns: 5_000_000_000 + u64::from(tgid) * 10_000_000,
            cgroup_id,
            last_cpu: 0,
            flags,
            comm: comm(name),
            ppid: 1,
            children_ns: 0,
        }
    }

    /// A procfs tree with `/stat` and one process in a docker container.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("stat"),
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\n",
        )
        .unwrap();
        let p = root.join("10");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(
            p.join("cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .unwrap();
        std::fs::write(p.join("cmdline"), b"sh\0-c\0work\0").unwrap();
        std::os::unix::fs::symlink("/bin/sh", p.join("exe")).unwrap();
        dir
    }

    fn no_names(_: u64) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn live_and_exited_processes_of_one_cgroup_share_the_container() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        // The child 11 exited before it was ever read: no procfs entry, same cgroup id.
        let records = [
            rec(11, 4_000_000, 900, PROC_EXITED, "child"),
            rec(10, 7_000_000, 900, 0, "sh"),
        ];
        let mut names = |id: u64| (id == 900).then(|| format!("docker-{ID}.scope").into_bytes());
        let freed = b
            .build(&records, &[], &[], &mut names, &mut out)
            .unwrap()
            .to_vec();
        assert!(freed.is_empty(), "exited entries are reported twice first");
        assert_eq!(out.node.busy, Nanos(1_500_000_000));
        assert_eq!(out.node.total, Nanos(10_000_000_000));
        assert_eq!(out.processes.len(), 2);
        let parent = out.processes.iter().find(|p| p.pid == 10).unwrap();
        let child = out.processes.iter().find(|p| p.pid == 11).unwrap();
        assert_eq!(&*parent.info.exe, "/bin/sh");
        assert_eq!(parent.start_time, 510, "start_boottime / (1e9 / USER_HZ)");
        let c = parent.info.container.as_ref().unwrap();
        assert_eq!(&*c.id, ID);
        assert_eq!(c.runtime, Runtime::Docker);
        assert_eq!(child.info.container, parent.info.container);
        assert_eq!(&*child.info.comm, "child");
        assert_eq!(child.cpu_time, Nanos(4_000_000));

        // Second read: the exited entry is reported once more, then handed back. The frame
        // starts with a sentinel the caller put there: the builder appends and keeps it.
        let sentinel = ProcessSample::new(u32::MAX, 7, Nanos(42), Arc::clone(&child.info));
        out.clear();
        out.processes.push(sentinel.clone());
        out.details.push(ProcessDetail::default());
        let freed = b
            .build(&records, &[], &[], &mut names, &mut out)
            .unwrap()
            .to_vec();
        assert_eq!(
            freed,
            vec![Freed {
                slot: 1011,
                tgid: 11
            }]
        );
        assert_eq!(
            out.processes[0], sentinel,
            "the caller's entry is kept, first"
        );
        assert_eq!(out.processes.len(), 3);
        assert_eq!(out.details.len(), 3, "details stay one per process");
    }

    #[test]
    fn a_process_that_moved_does_not_lend_its_container_to_its_old_cgroup() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        // 10 was first seen in cgroup 1 (the root), then moved into the container; 13
        // exited in the root cgroup.
        let records = [rec(13, 1, 1, PROC_EXITED, "cron"), rec(10, 1, 1, 0, "sh")];
        let mut names = |id: u64| (id == 1).then(Vec::new);
        out.clear();
        b.build(&records, &[], &[], &mut names, &mut out).unwrap();
        let by_pid = |pid| out.processes.iter().find(|p| p.pid == pid).unwrap();
        assert!(by_pid(10).info.container.is_some());
        assert_eq!(by_pid(13).info.container, None);
    }

    #[test]
    fn unknown_cgroup_resolves_through_the_saved_name() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        let records = [rec(12, 1, 901, PROC_EXITED, "job")];
        let mut names = |id: u64| (id == 901).then(|| format!("crio-{ID}.scope").into_bytes());
        out.clear();
        b.build(&records, &[], &[], &mut names, &mut out).unwrap();
        let c = out.processes[0].info.container.as_ref().unwrap();
        assert_eq!(c.runtime, Runtime::CriO);
        assert_eq!(&*c.id, ID);
    }

    #[test]
    fn running_process_is_credited_its_current_slice() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        let records = [rec(10, 1_000, 900, 0, "sh")];
        // Two threads of it on a CPU now; an unknown process's slice is ignored.
        let run = |tgid, ns, cpu| Running { tgid, ns, cpu };
        let in_flight = [run(10, 600, 0), run(10, 400, 1), run(99, 5, 0)];
        out.clear();
        b.build(&records, &[], &in_flight, &mut no_names, &mut out)
            .unwrap();
        assert_eq!(out.processes[0].cpu_time, Nanos(2_000));
    }

    #[test]
    fn static_data_is_cached_until_an_exec_changes_the_comm() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        b.build(
            &[rec(10, 1, 900, 0, "sh")],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        let first = Arc::clone(&out.processes[0].info);
        out.clear();
        b.build(
            &[rec(10, 2, 900, 0, "sh")],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        assert!(Arc::ptr_eq(&first, &out.processes[0].info));
        out.clear();
        b.build(
            &[rec(10, 3, 900, 0, "make")],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        assert_eq!(&*out.processes[0].info.comm, "make");
        assert_eq!(b.cached(), 1);
        out.clear();
        b.build(&[], &[], &[], &mut no_names, &mut out).unwrap();
        assert_eq!(b.cached(), 0, "processes gone from the map leave the cache");
    }

    #[test]
    fn kernel_threads_have_no_exe_or_container() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        b.build(
            &[rec(10, 1, 900, PROC_KTHREAD, "kworker/0:1")],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        assert_eq!(&*out.processes[0].info.exe, "");
        assert_eq!(out.processes[0].info.container, None);
    }

    #[test]
    fn missing_proc_stat_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let e = b
            .build(&[], &[], &[], &mut no_names, &mut ActivityFrame::default())
            .unwrap_err();
        assert!(
            matches!(e, ReadError::Missing { ref what } if what.ends_with("stat")),
            "{e}"
        );
    }

    #[test]
    fn node_ticks_match_the_procfs_rule() {
        let ticks = |line: &str| parse_node_cpu(line.as_bytes()).map(|t| (t.busy, t.total));
        assert_eq!(ticks("cpu  1 2 3 4 5 6 7 8 9 10\n"), Some((27, 36)));
        assert_eq!(ticks("cpu  1 2 3 4\n"), Some((6, 10)));
        assert_eq!(ticks("cpu  1 2\n"), None);
        assert_eq!(ticks("intr 5\n"), None);
    }

    #[test]
    fn two_slots_of_one_process_are_one_sample_and_freed_together() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        let first = rec(10, 3_000, 900, 0, "sh");
        let second = ProcRecord {
            slot: 7,
            on_cpu_ns: 2_000,
            ..first
        };
        out.clear();
        b.build(&[first, second], &[], &[], &mut no_names, &mut out)
            .unwrap();
        assert_eq!(out.processes.len(), 1);
        assert_eq!(out.processes[0].cpu_time, Nanos(5_000));
        // It exits: one slot is flagged (the other is the one it no longer maps to).
        let exited = ProcRecord {
            flags: PROC_EXITED,
            ..first
        };
        for t in [2, 3] {
            out.clear();
            let freed = b
                .build(&[exited, second], &[], &[], &mut no_names, &mut out)
                .unwrap()
                .to_vec();
            assert_eq!(out.processes.len(), 1);
            assert_eq!(out.processes[0].cpu_time, Nanos(5_000));
            if t == 2 {
                assert!(freed.is_empty());
            } else {
                let mut slots: Vec<u32> = freed.iter().map(|f| f.slot).collect();
                slots.sort_unstable();
                assert_eq!(slots, vec![7, first.slot]);
                assert!(freed.iter().all(|f| f.tgid == 10));
            }
        }
    }

    #[test]
    fn time_pending_in_a_cpu_cache_counts_and_the_slot_is_freed_after_two_reports() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        let r = rec(11, 1_000, 900, PROC_EXITED, "child");
        let way = |tgid, start_boottime_ns, ns| PendingWay {
            tgid,
            slot: r.slot,
            ns,
            start_boottime_ns,
        };
        // Ways of other processes that once had this slot (another pid; the same pid
        // reused) do not count.
        let start = r.start_boottime_ns;
        let pending = [
            way(11, start, 500),
            way(12, start, 70),
            way(11, start + 1, 9),
        ];
        for t in 1..=2 {
            out.clear();
            let freed = b
                .build(&[r], &pending, &[], &mut no_names, &mut out)
                .unwrap()
                .to_vec();
            assert_eq!(out.processes[0].cpu_time, Nanos(1_500), "read {t}");
            if t == 1 {
                assert!(freed.is_empty(), "reported once: kept");
            } else {
                // Freed though a way still names it: its time was in both reports.
                assert_eq!(
                    freed,
                    vec![Freed {
                        slot: r.slot,
                        tgid: 11
                    }]
                );
            }
        }
    }

    #[test]
    fn a_lower_reading_is_held_at_the_previous_report_and_counted() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        let mut times = Vec::new();
        for ns in [1_000, 900, 1_200] {
            let r = rec(12, ns, 900, 0, "busy");
            out.clear();
            b.build(&[r], &[], &[], &mut no_names, &mut out).unwrap();
            times.push(out.processes[0].cpu_time.0);
        }
        assert_eq!(times, vec![1_000, 1_000, 1_200]);
        assert_eq!(b.held_back(), 1);
    }

    #[test]
    fn a_process_running_again_after_its_slot_was_freed_goes_on_from_its_total() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        let r = rec(13, 4_000, 900, PROC_EXITED, "dying");
        for _ in 1..=2 {
            out.clear();
            b.build(&[r], &[], &[], &mut no_names, &mut out).unwrap();
        }
        // Freed after two reports; then its final switch took a new slot with the tail.
        let tail = ProcRecord {
            slot: r.slot + 1,
            on_cpu_ns: 30,
            ..r
        };
        let info = Arc::clone(&out.processes[0].info);
        out.clear();
        b.build(&[tail], &[], &[], &mut no_names, &mut out).unwrap();
        let p = &out.processes[0];
        assert_eq!((p.pid, p.cpu_time), (13, Nanos(4_030)));
        assert!(Arc::ptr_eq(&p.info, &info), "same static data");
        assert_eq!(b.held_back(), 0);
        // Another process that reuses the pid later starts from its own time.
        let reused = ProcRecord {
            slot: r.slot + 2,
            on_cpu_ns: 10,
            start_boottime_ns: r.start_boottime_ns + 1_000_000_000,
            flags: 0,
            ..r
        };
        out.clear();
        b.build(&[reused], &[], &[], &mut no_names, &mut out)
            .unwrap();
        assert_eq!(out.processes[0].cpu_time, Nanos(10));
    }
}
