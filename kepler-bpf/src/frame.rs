//! Turns the BPF maps' records into the same [`ActivityFrame`] the procfs source fills.
//!
//! Identity is (tgid, start time in clock ticks since boot), computed from the group
//! leader's `start_boottime` exactly as the kernel computes field 22 of `/proc/<pid>/stat`,
//! so a process has the same key here as under procfs. What does not change for the life
//! of a process (exe, container, VM) is read from procfs once, with kepler-sources' own
//! cgroup and command-line parsers, and cached under that key; a changed comm (an exec)
//! reloads it. Processes that exited before they were ever read have no procfs entry left:
//! their container comes from the cgroup id the BPF program recorded, resolved through the
//! containers of live processes seen in the same cgroup, else through the cgroup's
//! directory name the program saved.
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
    ActivityFrame, ContainerInfo, Nanos, NodeCpu, ProcessInfo, ProcessSample, ReadError, Timestamp,
};
use kepler_sources::host::{
    boottime_ns_to_ticks, parse_cgroup, parse_node_cpu, read_error, sanitize_comm, ticks_to_ns,
    Access, StaticReader,
};

use rustc_hash::FxHashMap as HashMap;

use crate::raw::{PendingWay, ProcRecord, COMM_LEN, PROC_KTHREAD};

/// How many reads an exited process is reported on before its entry is deleted.
const EXITED_READS: u8 = 2;

struct Cached {
    info: Arc<ProcessInfo>,
    comm: [u8; COMM_LEN],
    seen: u64,
    exited_reads: u8,
    /// The on-CPU time last reported: a process is never reported below it.
    reported: u64,
    /// Time reported from slots freed before this one was taken (see `Gone`).
    base: u64,
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
    generation: u64,
}

/// Reads a freed process is remembered for.
const GONE_READS: u64 = 16;

struct CachedContainer {
    container: Option<ContainerInfo>,
    seen: u64,
}

/// Builds activity frames from BPF records; owns the per-process static-data cache.
pub struct FrameBuilder {
    procfs: PathBuf,
    user_hz: u64,
    statics: StaticReader,
    cache: HashMap<(u32, u64), Cached>,
    containers: HashMap<u64, CachedContainer>,
    /// Pending time of the per-CPU caches by (slot, tgid, start_boottime): a way may still
    /// name a slot freed and taken by another process since. Running slices by tgid.
    pending: HashMap<(u32, u32, u64), u64>,
    running: HashMap<u32, u64>,
    generation: u64,
    exited: Vec<(u32, u64)>,
    gone: HashMap<(u32, u64), Gone>,
    freed: Vec<Freed>,
    held_back: u64,
    stat_buf: String,
}

impl std::fmt::Debug for FrameBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBuilder")
            .field("procfs", &self.procfs)
            .field("user_hz", &self.user_hz)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl FrameBuilder {
    /// A builder reading static data and node totals under `procfs`, converting start
    /// times with `user_hz` clock ticks per second
    /// ([`kepler_sources::host::user_hz`]).
    pub fn new(procfs: impl Into<PathBuf>, user_hz: u64) -> FrameBuilder {
        FrameBuilder {
            procfs: procfs.into(),
            user_hz,
            statics: StaticReader::new(),
            cache: HashMap::default(),
            containers: HashMap::default(),
            pending: HashMap::default(),
            running: HashMap::default(),
            generation: 0,
            exited: Vec::new(),
            gone: HashMap::default(),
            freed: Vec::new(),
            held_back: 0,
            stat_buf: String::new(),
        }
    }

    /// Processes with cached static data.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Reports held at a process's previous on-CPU time, since start, because this read
    /// found less (a thread that moved between CPUs, or exited, while the caches were being
    /// read: microsecond windows, caught up by the next read).
    pub fn held_back(&self) -> u64 {
        self.held_back
    }

    /// Fills `out` from `records` (the taken slots), `pending` (time in the per-CPU
    /// caches not added to its slot yet) and `running` ((tgid, ns): the current slice of a
    /// running thread). `cgroup_name` looks a cgroup id up in the BPF program's `cgroups`
    /// map. Returns the slots whose processes are done: free them.
    pub fn build(
        &mut self,
        at: Timestamp,
        records: &[ProcRecord],
        pending: &[PendingWay],
        running: &[(u32, u64)],
        cgroup_name: &mut dyn FnMut(u64) -> Option<Vec<u8>>,
        out: &mut ActivityFrame,
    ) -> Result<&[Freed], ReadError> {
        out.clear();
        out.at = at;
        out.node = self.read_node()?;
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
        for &(tgid, ns) in running {
            *self.running.entry(tgid).or_default() += ns;
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
        let generation = self.generation;
        if self.cache.len() > out.processes.len() {
            self.cache.retain(|_, c| c.seen == generation);
        }
        if generation % GONE_READS == 0 {
            self.gone
                .retain(|_, g| generation.wrapping_sub(g.generation) < GONE_READS);
        }
        if generation % 64 == 0 {
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
        if !r.exited() {
            extra = extra.saturating_add(self.running.remove(&r.tgid).unwrap_or(0));
        }
        let mut cpu_time = r.on_cpu_ns.saturating_add(extra);
        let index = out.processes.len();
        let info = match self.cache.get_mut(&key) {
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
                cpu_time = cpu_time.saturating_add(c.base);
                Arc::clone(&c.info)
            }
            // New process, or an exec (new comm): read the rest.
            _ => {
                let (exited_reads, reported, base, info) = match self.cache.get(&key) {
                    Some(c) => (c.exited_reads, c.reported, c.base, None),
                    None => match self.gone.remove(&key) {
                        Some(g) if g.comm == r.comm => (0, g.reported, g.reported, Some(g.info)),
                        _ => (0, 0, 0, None),
                    },
                };
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
                        index,
                        slot: r.slot,
                        more_slots: Vec::new(),
                        exited: r.exited(),
                    },
                );
                info
            }
        };
        if let Some(c) = self.containers.get_mut(&r.cgroup_id) {
            c.seen = generation;
        }
        if r.exited() {
            self.exited.push(key);
        }
        out.processes.push(ProcessSample {
            pid: r.tgid,
            start_time,
            cpu_time: Nanos(cpu_time),
            info,
        });
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
            return ProcessInfo {
                comm,
                exe: Arc::clone(self.statics.empty()),
                container,
                vm: None,
            };
        }
        let dir = self.procfs.join(r.tgid.to_string());
        let mut info = self.statics.read(&dir, comm, false);
        match self.statics.cgroup_text() {
            Some(text) => {
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

    /// Node totals from the aggregate `cpu ` line of `<procfs>/stat`, as the procfs source
    /// computes them.
    fn read_node(&mut self) -> Result<NodeCpu, ReadError> {
        let path = self.procfs.join("stat");
        self.stat_buf.clear();
        let what = || path.display().to_string();
        let mut file =
            std::fs::File::open(&path).map_err(|e| read_error(&what(), &e, Access::Procfs))?;
        io::Read::read_to_string(&mut file, &mut self.stat_buf)
            .map_err(|e| read_error(&what(), &e, Access::Procfs))?;
        let ticks = parse_node_cpu(self.stat_buf.as_bytes()).ok_or_else(|| ReadError::Parse {
            what: path.display().to_string(),
            detail: "no aggregate `cpu ` line".into(),
        })?;
        let ns = |t: u64| ticks_to_ns(self.user_hz, t);
        Ok(NodeCpu {
            busy: ns(ticks.busy),
            total: ns(ticks.total),
        })
    }
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
            .build(Timestamp(1), &records, &[], &[], &mut names, &mut out)
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

        // Second read: the exited entry is reported once more, then handed back.
        let freed = b
            .build(Timestamp(2), &records, &[], &[], &mut names, &mut out)
            .unwrap()
            .to_vec();
        assert_eq!(
            freed,
            vec![Freed {
                slot: 1011,
                tgid: 11
            }]
        );
        assert_eq!(out.processes.len(), 2);
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
        b.build(Timestamp(1), &records, &[], &[], &mut names, &mut out)
            .unwrap();
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
        b.build(Timestamp(1), &records, &[], &[], &mut names, &mut out)
            .unwrap();
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
        let in_flight = [(10, 600), (10, 400), (99, 5)];
        b.build(
            Timestamp(1),
            &records,
            &[],
            &in_flight,
            &mut no_names,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.processes[0].cpu_time, Nanos(2_000));
    }

    #[test]
    fn static_data_is_cached_until_an_exec_changes_the_comm() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        b.build(
            Timestamp(1),
            &[rec(10, 1, 900, 0, "sh")],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        let first = Arc::clone(&out.processes[0].info);
        b.build(
            Timestamp(2),
            &[rec(10, 2, 900, 0, "sh")],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        assert!(Arc::ptr_eq(&first, &out.processes[0].info));
        b.build(
            Timestamp(3),
            &[rec(10, 3, 900, 0, "make")],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        assert_eq!(&*out.processes[0].info.comm, "make");
        assert_eq!(b.cached(), 1);
        b.build(Timestamp(4), &[], &[], &[], &mut no_names, &mut out)
            .unwrap();
        assert_eq!(b.cached(), 0, "processes gone from the map leave the cache");
    }

    #[test]
    fn kernel_threads_have_no_exe_or_container() {
        let dir = tree();
        let mut b = FrameBuilder::new(dir.path(), 100);
        let mut out = ActivityFrame::default();
        b.build(
            Timestamp(1),
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
            .build(
                Timestamp(1),
                &[],
                &[],
                &[],
                &mut no_names,
                &mut ActivityFrame::default(),
            )
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
        b.build(
            Timestamp(1),
            &[first, second],
            &[],
            &[],
            &mut no_names,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.processes.len(), 1);
        assert_eq!(out.processes[0].cpu_time, Nanos(5_000));
        // It exits: one slot is flagged (the other is the one it no longer maps to).
        let exited = ProcRecord {
            flags: PROC_EXITED,
            ..first
        };
        for t in [2, 3] {
            let freed = b
                .build(
                    Timestamp(t),
                    &[exited, second],
                    &[],
                    &[],
                    &mut no_names,
                    &mut out,
                )
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
            let freed = b
                .build(Timestamp(t), &[r], &pending, &[], &mut no_names, &mut out)
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
        for (t, ns) in [(1, 1_000), (2, 900), (3, 1_200)] {
            let r = rec(12, ns, 900, 0, "busy");
            b.build(Timestamp(t), &[r], &[], &[], &mut no_names, &mut out)
                .unwrap();
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
        for t in 1..=2 {
            b.build(Timestamp(t), &[r], &[], &[], &mut no_names, &mut out)
                .unwrap();
        }
        // Freed after two reports; then its final switch took a new slot with the tail.
        let tail = ProcRecord {
            slot: r.slot + 1,
            on_cpu_ns: 30,
            ..r
        };
        let info = Arc::clone(&out.processes[0].info);
        b.build(Timestamp(3), &[tail], &[], &[], &mut no_names, &mut out)
            .unwrap();
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
        b.build(Timestamp(4), &[reused], &[], &[], &mut no_names, &mut out)
            .unwrap();
        assert_eq!(out.processes[0].cpu_time, Nanos(10));
    }
}
