//! Loading the BPF object, attaching it, and reading its maps.

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kepler_core::{ActivityFrame, ActivitySource, ReadError, SourceError, Timestamp};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder};

use rustc_hash::FxHashMap;

use crate::error::Error;
use crate::frame::{FrameBuilder, Freed, Running};
use crate::privilege;
use crate::raw::{cgroup_name, CpuSlot, PendingWay, ProcRecord, PROC_EXITED};
use crate::slots::SlotTable;
use kepler_sources::host::CpuTopology;

/// The compiled `src/bpf/activity.bpf.c` (built from source, or the committed prebuilt).
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/activity.bpf.o"));
/// Whether [`OBJECT`] was compiled from source in this build (`source`) or is the committed
/// prebuilt (`prebuilt`).
pub const OBJECT_ORIGIN: &str = env!("KEPLER_BPF_OBJECT_ORIGIN");
/// The object itself, for tests that compare it with the prebuilt.
pub const OBJECT_BYTES: &[u8] = OBJECT;

const ENOENT: i32 = libc::ENOENT;
const ENOSPC: i32 = libc::ENOSPC;
/// Entries asked for per batch call; a hash bucket never holds nearly as many.
const BATCH: u32 = 4096;
/// Every this many reads, the tgid -> slot index is read back in one batch and checked
/// against the slots (see [`BpfActivity::sweep_orphans`]).
const SWEEP_EVERY: u64 = 64;
/// How many times the ways of a process whose slot moved while it was read are read again.
const SETTLE_TRIES: usize = 3;

/// Where and how [`BpfActivity`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfOptions {
    /// The procfs of the host, for static per-process data and `/proc/stat`.
    pub procfs: PathBuf,
    /// How many processes can be accounted at once (live ones, and exited ones until they
    /// have been reported): the number of slots. About 130 bytes of kernel memory each,
    /// preallocated, of which 64 (the slot itself) are mapped into this process.
    pub max_processes: u32,
    /// The sysfs of the host: its CPU topology gives the per-CPU times of multi-socket
    /// machines their sockets, and `<sysfs>/fs/cgroup` the containers' cgroup CPU counters,
    /// as under procfs. `None` reports neither.
    pub sysfs: Option<PathBuf>,
}

impl Default for BpfOptions {
    fn default() -> BpfOptions {
        BpfOptions {
            procfs: "/proc".into(),
            max_processes: 32768,
            sysfs: Some("/sys".into()),
        }
    }
}

/// Self-metrics of the eBPF source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BpfStats {
    /// Programs attached (3 when healthy: sched_switch, sched_process_exit, sched_process_exec).
    pub programs_attached: u32,
    /// Slots holding a process at the latest read.
    pub map_entries: u64,
    /// Number of slots.
    pub map_capacity: u64,
    /// Charges lost since start because no slot was free.
    pub events_dropped: u64,
    /// Slots of exited processes freed since start.
    pub entries_deleted: u64,
    /// How long the latest read took (slots, per-CPU state and frame).
    pub read_duration: Duration,
    /// Switches out of a thread whose switch in the program did not see, since start:
    /// each loses that slice.
    pub slices_unseen: u64,
    /// Reads, since start, that found a process's time below its previous report and
    /// reported the previous value instead (see `FrameBuilder::held_back`).
    pub held_back: u64,
}

/// The eBPF activity source: per-process on-CPU time charged at every context switch.
///
/// Needs kernel BTF and CAP_BPF + CAP_PERFMON (or root). [`BpfActivity::new`] fails with
/// [`Error::Unavailable`] naming what is missing, so the caller can fall back to procfs.
pub struct BpfActivity {
    // Links first: fields drop in order, and a link must go before its object.
    _links: Vec<Link>,
    object: Object,
    /// tgid -> slot: the program's index, read back only by the orphan sweep.
    procs: MapHandle,
    /// The `acct` array, mapped into memory.
    table: SlotTable,
    free_slots: MapHandle,
    cpu_slots: MapHandle,
    cgroups: MapHandle,
    keys: Vec<u8>,
    values: Vec<u8>,
    records: Vec<ProcRecord>,
    cpus: Vec<CpuSlot>,
    /// The per-CPU state read again while settling moved slots.
    cpus_again: Vec<CpuSlot>,
    /// While settling a read: the records whose slot still moves, every slot that moved
    /// (sorted: their first ways are dropped), and the fresh ways of those that settled.
    moved: Vec<usize>,
    moved_slots: Vec<u32>,
    settled_ways: Vec<PendingWay>,
    pending: Vec<PendingWay>,
    running: Vec<Running>,
    reads: u64,
    shared: Arc<Mutex<BpfStats>>,
    procfs: PathBuf,
    path: String,
    builder: FrameBuilder,
    user_hz: u64,
    stats: BpfStats,
}

impl std::fmt::Debug for BpfActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfActivity")
            .field("stats", &self.stats)
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

fn bpf_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Bpf {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// A failure to load: the missing privilege or feature when one is missing, else the error.
fn load_err(what: &str, e: libbpf_rs::Error) -> Error {
    match privilege::missing_here() {
        Some(m) => Error::Unavailable(m),
        None => bpf_err(what, format!("{e:#}")),
    }
}

impl BpfActivity {
    /// Loads and attaches the programs. Silences libbpf's own stderr logging (process-wide):
    /// its failures come back in the returned error instead.
    pub fn new(opts: BpfOptions) -> Result<BpfActivity, Error> {
        if let Some(privilege::Missing::Btf) = privilege::missing_here() {
            return Err(Error::Unavailable(privilege::Missing::Btf));
        }
        libbpf_rs::set_print(None);
        let mut open = ObjectBuilder::default()
            .open_memory(OBJECT)
            .map_err(|e| bpf_err("open the BPF object", e))?;
        let capacity = opts.max_processes.max(1);
        for mut map in open.maps_mut() {
            if ["procs", "acct", "free_slots"].contains(&&*map.name().to_string_lossy()) {
                map.set_max_entries(capacity)
                    .map_err(|e| bpf_err("size the process maps", e))?;
            }
        }
        let object = open
            .load()
            .map_err(|e| load_err("load the BPF object", e))?;
        let handle = |name: &str| -> Result<MapHandle, Error> {
            let map = object
                .maps()
                .find(|m| m.name() == name)
                .ok_or_else(|| bpf_err("find a map", format!("no map {name:?} in the object")))?;
            MapHandle::try_from(&map).map_err(|e| bpf_err("duplicate a map descriptor", e))
        };
        let procs = handle("procs")?;
        let acct = handle("acct")?;
        let free_slots = handle("free_slots")?;
        let (cpu_slots, cgroups) = (handle("cpu_slots")?, handle("cgroups")?);
        let table = SlotTable::map(acct.as_fd(), capacity)
            .map_err(|e| bpf_err("map the process slots into memory", e))?;
        // Every slot starts free, handed out in order.
        for slot in 0..capacity {
            push_free(free_slots.as_fd(), slot).map_err(|e| bpf_err("fill the free slots", e))?;
        }
        let mut links = Vec::new();
        for prog in object.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            links.push(
                prog.attach()
                    .map_err(|e| load_err(&format!("attach {name}"), e))?,
            );
        }
        let user_hz = kepler_sources::host::user_hz(&opts.procfs);
        let stats = BpfStats {
            programs_attached: links.len() as u32,
            map_capacity: u64::from(capacity),
            ..BpfStats::default()
        };
        Ok(BpfActivity {
            _links: links,
            object,
            procs,
            table,
            free_slots,
            cpu_slots,
            cgroups,
            keys: Vec::new(),
            values: Vec::new(),
            records: Vec::new(),
            cpus: Vec::new(),
            cpus_again: Vec::new(),
            moved: Vec::new(),
            moved_slots: Vec::new(),
            settled_ways: Vec::new(),
            pending: Vec::new(),
            running: Vec::new(),
            reads: 0,
            shared: Arc::new(Mutex::new(stats)),
            builder: match &opts.sysfs {
                Some(sysfs) => FrameBuilder::new(opts.procfs.clone(), user_hz)
                    .with_topology(CpuTopology::read(sysfs))
                    .with_cgroup_root(sysfs.join("fs/cgroup")),
                None => FrameBuilder::new(opts.procfs.clone(), user_hz),
            },
            user_hz,
            procfs: opts.procfs,
            path: String::new(),
            stats,
        })
    }

    /// Self-metrics as of the latest read.
    pub fn stats(&self) -> BpfStats {
        self.stats
    }

    /// The self-metrics, updated after every read, for a reader on another thread (the
    /// exporter) while the monitor owns the source.
    pub fn shared_stats(&self) -> Arc<Mutex<BpfStats>> {
        Arc::clone(&self.shared)
    }

    /// Cumulative run count and run time of each attached program, when the kernel counts
    /// them (`sysctl kernel.bpf_stats_enabled=1`; zeros otherwise). For overhead checks.
    pub fn program_run_stats(&self) -> Vec<(String, u64, u64)> {
        self.object
            .progs()
            .map(|p| {
                let (cnt, ns) = prog_run_stats(p.as_fd()).unwrap_or((0, 0));
                (p.name().to_string_lossy().into_owned(), cnt, ns)
            })
            .collect()
    }

    /// Reads the taken slots (straight from memory) and the per-CPU state, without
    /// building a frame or freeing anything. The records stay valid until the next read.
    pub fn read_records(&mut self) -> Result<&[ProcRecord], Error> {
        self.table.read(&mut self.records);
        read_cpus(&self.cpu_slots, &mut self.cpus)?;
        self.pending.clear();
        for cpu in &self.cpus {
            self.pending
                .extend(cpu.pending.iter().filter(|w| w.tgid != 0));
        }
        self.settle_moved_slots()?;
        Ok(&self.records)
    }

    /// A process's time is its slot plus the per-CPU cache ways that name it, and the
    /// program moves a way's time into the slot when it evicts the way. A move between
    /// reading the slot and reading the ways is in neither reading: the process would be
    /// short by the way's time (all of an idle CPU's last process, easily 100 ms) until the
    /// next read. A slot grows only by such moves, so reading it again after the ways
    /// tells: unchanged, slot and ways agree; changed, the ways naming it are read again,
    /// then the slot, until the slot holds still. One still moving after that reports its
    /// slot alone for this read (the next has the rest).
    fn settle_moved_slots(&mut self) -> Result<(), Error> {
        self.moved.clear();
        self.moved_slots.clear();
        self.settled_ways.clear();
        for (i, r) in self.records.iter_mut().enumerate() {
            if let Some(now) = self.table.on_cpu_ns(r.slot) {
                if now != r.on_cpu_ns {
                    r.on_cpu_ns = now;
                    self.moved.push(i);
                    self.moved_slots.push(r.slot);
                }
            }
        }
        if self.moved.is_empty() {
            return Ok(());
        }
        self.moved_slots.sort_unstable();
        for _ in 0..SETTLE_TRIES {
            if self.moved.is_empty() {
                break;
            }
            read_cpus(&self.cpu_slots, &mut self.cpus_again)?;
            let (table, records) = (&self.table, &mut self.records);
            let mut settled = Vec::new();
            self.moved.retain(|&i| {
                let r = &mut records[i];
                match table.on_cpu_ns(r.slot) {
                    Some(now) if now != r.on_cpu_ns => {
                        r.on_cpu_ns = now;
                        true
                    }
                    _ => {
                        settled.push(r.slot);
                        false
                    }
                }
            });
            settled.sort_unstable();
            for cpu in &self.cpus_again {
                self.settled_ways.extend(
                    cpu.pending
                        .iter()
                        .filter(|w| w.tgid != 0 && settled.binary_search(&w.slot).is_ok()),
                );
            }
        }
        let moved = &self.moved_slots;
        self.pending
            .retain(|w| moved.binary_search(&w.slot).is_err());
        self.pending.extend_from_slice(&self.settled_ways);
        Ok(())
    }

    /// Frees these slots: drops each tgid's mapping when it still points to its slot,
    /// clears the slot and hands it back to the program.
    pub fn free(&mut self, freed: &[Freed]) -> Result<(), Error> {
        let mut unmap = Vec::with_capacity(freed.len());
        for f in freed {
            // A newer process of a reused pid may have mapped its own slot meanwhile.
            let mapped = self
                .procs
                .lookup(&f.tgid.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .and_then(|v| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)));
            if mapped == Some(f.slot) {
                unmap.push(f.tgid);
            }
        }
        unmap.sort_unstable();
        unmap.dedup();
        delete_all(self.procs.as_fd(), &unmap).map_err(|e| bpf_err("unmap freed slots", e))?;
        for f in freed {
            self.table.clear(f.slot);
            push_free(self.free_slots.as_fd(), f.slot)
                .map_err(|e| bpf_err("hand a slot back", e))?;
        }
        Ok(())
    }

    /// Takes a free slot and fills it with `r` as if the program had charged it (tests and
    /// benchmarks); `r.slot` is ignored. Returns the slot.
    pub fn insert_record(&self, r: &ProcRecord) -> Result<u32, Error> {
        let slot = self
            .free_slots
            .lookup_and_delete(&[])
            .map_err(|e| bpf_err("take a free slot", e))?
            .and_then(|v| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)))
            .ok_or_else(|| bpf_err("take a free slot", "none is free"))?;
        self.table.write(slot, r);
        self.procs
            .update(&r.tgid.to_ne_bytes(), &slot.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| bpf_err("map a slot", e))?;
        Ok(slot)
    }

    fn read_frame(&mut self, out: &mut ActivityFrame) -> Result<(), SourceError> {
        let started = Instant::now();
        self.read_records().map_err(|e| io_error(&e))?;
        self.reads = self.reads.wrapping_add(1);
        if self.reads.is_multiple_of(SWEEP_EVERY) {
            self.sweep_orphans();
        }
        self.running.clear();
        // Per-CPU values come in CPU order.
        for (cpu, slot) in self.cpus.iter().enumerate() {
            if slot.pid != 0 {
                let now = thread_runtime_ns(&mut self.path, &self.procfs, slot.tgid, slot.pid);
                if let Some(now) = now {
                    self.running.push(Running {
                        tgid: slot.tgid,
                        ns: now.saturating_sub(slot.start_runtime_ns),
                        cpu: cpu as u32,
                    });
                }
            }
        }
        let cgroups = &self.cgroups;
        let mut names = |id: u64| {
            cgroups
                .lookup(&id.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|v| cgroup_name(&v).to_vec())
        };
        let freed =
            self.builder
                .build(&self.records, &self.pending, &self.running, &mut names, out)?;
        let freed = freed.to_vec();
        self.free(&freed).map_err(|e| io_error(&e))?;
        self.prune_cgroups();
        self.stats.map_entries = (self.records.len() - freed.len()) as u64;
        self.stats.entries_deleted += freed.len() as u64;
        self.stats.events_dropped = self.cpus.iter().map(|c| c.dropped).sum();
        self.stats.slices_unseen = self.cpus.iter().map(|c| u64::from(c.unseen)).sum();
        self.stats.held_back = self.builder.held_back();
        self.stats.read_duration = started.elapsed();
        if let Ok(mut shared) = self.shared.lock() {
            *shared = self.stats;
        }
        Ok(())
    }

    /// A safety net for slots no exit event will ever flag: the live slots whose process is
    /// gone (a pid now mapped to a newer process's slot, or mapped to nothing and no longer
    /// in procfs with that start time). Such a slot is flagged exited here, so it is
    /// reported twice and freed like any other. Reads the tgid -> slot index in one batch.
    fn sweep_orphans(&mut self) {
        let Ok(n) = lookup_all(self.procs.as_fd(), 4, 4, &mut self.keys, &mut self.values) else {
            return;
        };
        let word = |b: &[u8], i: usize| {
            b.get(i * 4..i * 4 + 4)
                .and_then(|w| w.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        let mapped: FxHashMap<u32, u32> = (0..n)
            .filter_map(|i| Some((word(&self.keys, i)?, word(&self.values, i)?)))
            .collect();
        let start_of: FxHashMap<u32, u64> = self
            .records
            .iter()
            .map(|r| (r.slot, r.start_boottime_ns))
            .collect();
        for r in self.records.iter_mut().filter(|r| !r.exited()) {
            let dead = match mapped.get(&r.tgid) {
                Some(s) if *s == r.slot => false,
                Some(s) => start_of
                    .get(s)
                    .is_some_and(|&start| start != r.start_boottime_ns),
                None => !alive_in_procfs(&mut self.path, &self.procfs, self.user_hz, r),
            };
            if dead {
                self.table.or_flags(r.slot, PROC_EXITED);
                r.flags |= PROC_EXITED;
            }
        }
    }

    /// Keeps the cgroup-name map from filling: once it is three quarters full, drops the
    /// names no process in the latest read refers to.
    fn prune_cgroups(&mut self) {
        // Reading the map walks all its buckets (~0.2 ms): once every 64 reads is plenty
        // for names that arrive once per new cgroup.
        if self.reads % 64 != 1 {
            return;
        }
        let cap = self.cgroups.max_entries() as usize;
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let Ok(n) = lookup_all(
            self.cgroups.as_fd(),
            8,
            self.cgroups.value_size() as usize,
            &mut keys,
            &mut values,
        ) else {
            return;
        };
        if n * 4 < cap * 3 {
            return;
        }
        let live: std::collections::HashSet<u64> =
            self.records.iter().map(|r| r.cgroup_id).collect();
        for k in keys.chunks_exact(8).take(n) {
            let id = u64::from_ne_bytes(k.try_into().unwrap_or_default());
            if !live.contains(&id) {
                let _ = self.cgroups.delete(k);
            }
        }
    }
}

impl ActivitySource for BpfActivity {
    fn read(&mut self, _at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        self.read_frame(out)
    }

    fn name(&self) -> &'static str {
        "bpf"
    }
}

fn io_error(e: &Error) -> SourceError {
    SourceError::Read(ReadError::Io {
        what: "eBPF maps".into(),
        detail: e.to_string(),
    })
}

/// Every CPU's `cpu_slots` value, decoded, into `out`.
fn read_cpus(cpu_slots: &MapHandle, out: &mut Vec<CpuSlot>) -> Result<(), Error> {
    out.clear();
    if let Some(per_cpu) = cpu_slots
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| bpf_err("read the per-CPU state", e))?
    {
        // One entry per CPU, in CPU order: the index is the CPU number.
        out.extend(
            per_cpu
                .iter()
                .map(|v| CpuSlot::decode(v).unwrap_or_default()),
        );
    }
    Ok(())
}

/// Pushes `slot` onto the `free_slots` queue (`BPF_MAP_UPDATE_ELEM` with no key).
fn push_free(fd: BorrowedFd<'_>, slot: u32) -> std::io::Result<()> {
    // SAFETY: a queue map takes a NULL key and a value of its value size (4 bytes).
    let ret = unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd.as_raw_fd(),
            std::ptr::null(),
            (&slot as *const u32).cast::<c_void>(),
            0,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::from_raw_os_error(-ret));
    }
    Ok(())
}

/// Whether the process of `r` still lives: `<procfs>/<tgid>/stat` has its start time.
fn alive_in_procfs(path: &mut String, procfs: &Path, user_hz: u64, r: &ProcRecord) -> bool {
    use std::fmt::Write;
    path.clear();
    let _ = write!(path, "{}/{}/stat", procfs.display(), r.tgid);
    let Ok(bytes) = std::fs::read(&*path) else {
        return false;
    };
    let Some(stat) = kepler_sources::parse_stat(&bytes) else {
        return true; // unreadable is not proof of death
    };
    stat.starttime == kepler_sources::host::boottime_ns_to_ticks(user_hz, r.start_boottime_ns)
}

/// Reads every entry of a hash map with `BPF_MAP_LOOKUP_BATCH`, calling until the kernel
/// answers `ENOENT` (libbpf-rs 0.27.2's `lookup_batch` stops at the first short batch,
/// which a hash map returns long before its end). Returns the number of entries; keys and
/// values are packed in `keys` and `values`.
fn lookup_all(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    keys: &mut Vec<u8>,
    values: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0usize;
    let mut chunk = BATCH as usize;
    // The hash map's cursor is a bucket index (a u32); 8 bytes leave room for any map.
    let mut in_batch = 0u64;
    let mut out_batch = 0u64;
    let mut first = true;
    loop {
        let need = total + chunk;
        if keys.len() < need * key_size {
            keys.resize(need * key_size, 0);
        }
        if values.len() < need * value_size {
            values.resize(need * value_size, 0);
        }
        let mut count = chunk as u32;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            elem_flags: 0,
            flags: 0,
        };
        let in_ptr = if first {
            std::ptr::null_mut()
        } else {
            (&mut in_batch as *mut u64).cast::<c_void>()
        };
        // SAFETY: `keys` and `values` have room for `count` more entries past `total`; the
        // batch cursors are 8 bytes, more than the kernel writes for a hash map.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd.as_raw_fd(),
                in_ptr,
                (&mut out_batch as *mut u64).cast::<c_void>(),
                keys.as_mut_ptr().add(total * key_size).cast::<c_void>(),
                values.as_mut_ptr().add(total * value_size).cast::<c_void>(),
                &mut count,
                &opts,
            )
        };
        let err = if ret < 0 { -ret } else { 0 };
        if err != 0 && err != ENOENT {
            if err == ENOSPC && count == 0 {
                // One bucket holds more entries than asked for: ask for more.
                chunk *= 2;
                continue;
            }
            return Err(std::io::Error::from_raw_os_error(err));
        }
        total += count as usize;
        if err == ENOENT {
            return Ok(total);
        }
        in_batch = out_batch;
        first = false;
    }
}

/// Deletes `tgids` from the process map with `BPF_MAP_DELETE_BATCH`. An entry already gone
/// is not an error.
fn delete_all(fd: BorrowedFd<'_>, tgids: &[u32]) -> std::io::Result<()> {
    let mut done = 0usize;
    while done < tgids.len() {
        let rest = tgids.get(done..).unwrap_or_default();
        let mut count = rest.len() as u32;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `rest` holds `count` 4-byte keys.
        let ret = unsafe {
            libbpf_sys::bpf_map_delete_batch(
                fd.as_raw_fd(),
                rest.as_ptr().cast::<c_void>(),
                &mut count,
                &opts,
            )
        };
        done += count as usize;
        if ret < 0 {
            if -ret == ENOENT {
                // The key at `done` is gone already: skip it.
                done += 1;
                continue;
            }
            return Err(std::io::Error::from_raw_os_error(-ret));
        }
    }
    Ok(())
}

/// The thread's `se.sum_exec_runtime` now, from `<procfs>/<tgid>/task/<pid>/schedstat`:
/// what the CPU it runs on has given it so far, of which the map holds only the part
/// before its current slice. `None` when it is gone.
fn thread_runtime_ns(path: &mut String, procfs: &Path, tgid: u32, pid: u32) -> Option<u64> {
    use std::fmt::Write;
    path.clear();
    let _ = write!(path, "{}/{tgid}/task/{pid}/schedstat", procfs.display());
    let text = std::fs::read_to_string(&*path).ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}

fn prog_run_stats(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    // SAFETY: bpf_prog_info is plain old data; zero is a valid value.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` has `len` writable bytes.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    (ret == 0).then_some((info.run_cnt, info.run_time_ns))
}
