//! Loading the BPF object, attaching it, and reading its maps.

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kepler_core::{ActivityFrame, ActivitySource, ReadError, SourceError, Timestamp};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder};

use crate::error::Error;
use crate::frame::FrameBuilder;
use crate::privilege;
use crate::raw::{cgroup_name, CpuSlot, ProcRecord, PROC_ACCT_SIZE};

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

/// Where and how [`BpfActivity`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfOptions {
    /// The procfs of the host, for static per-process data and `/proc/stat`.
    pub procfs: PathBuf,
    /// Capacity of the process map (distinct processes between two reads, exited ones
    /// included). About 100 bytes of kernel memory each, preallocated.
    pub max_processes: u32,
}

impl Default for BpfOptions {
    fn default() -> BpfOptions {
        BpfOptions {
            procfs: "/proc".into(),
            max_processes: 32768,
        }
    }
}

/// Self-metrics of the eBPF source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BpfStats {
    /// Programs attached (3 when healthy: sched_switch, sched_process_exit, sched_process_exec).
    pub programs_attached: u32,
    /// Entries in the process map at the latest read.
    pub map_entries: u64,
    /// Capacity of the process map.
    pub map_capacity: u64,
    /// Charges lost since start because the process map was full.
    pub events_dropped: u64,
    /// Entries of exited processes deleted since start.
    pub entries_deleted: u64,
    /// How long the latest read took (maps and frame).
    pub read_duration: Duration,
}

/// The eBPF activity source: per-process on-CPU time charged at every context switch.
///
/// Needs kernel BTF and CAP_BPF + CAP_PERFMON (or root). [`BpfActivity::new`] fails with
/// [`Error::Unavailable`] naming what is missing, so the caller can fall back to procfs.
pub struct BpfActivity {
    // Links first: fields drop in order, and a link must go before its object.
    _links: Vec<Link>,
    object: Object,
    procs: MapHandle,
    slots: MapHandle,
    cgroups: MapHandle,
    keys: Vec<u8>,
    values: Vec<u8>,
    records: Vec<ProcRecord>,
    cpus: Vec<CpuSlot>,
    in_flight: Vec<(u32, u64)>,
    reads: u64,
    shared: Arc<Mutex<BpfStats>>,
    procfs: PathBuf,
    path: String,
    builder: FrameBuilder,
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
        for mut map in open.maps_mut() {
            if map.name() == "procs" {
                map.set_max_entries(opts.max_processes.max(1))
                    .map_err(|e| bpf_err("size the process map", e))?;
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
        let (procs, slots, cgroups) = (handle("procs")?, handle("cpu_slots")?, handle("cgroups")?);
        let mut links = Vec::new();
        for prog in object.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            links.push(
                prog.attach()
                    .map_err(|e| load_err(&format!("attach {name}"), e))?,
            );
        }
        let user_hz = u64::try_from(unsafe_sysconf_clk_tck()).unwrap_or(100);
        let stats = BpfStats {
            programs_attached: links.len() as u32,
            map_capacity: u64::from(procs.max_entries()),
            ..BpfStats::default()
        };
        Ok(BpfActivity {
            _links: links,
            object,
            procs,
            slots,
            cgroups,
            keys: Vec::new(),
            values: Vec::new(),
            records: Vec::new(),
            cpus: Vec::new(),
            in_flight: Vec::new(),
            reads: 0,
            shared: Arc::new(Mutex::new(stats)),
            builder: FrameBuilder::new(opts.procfs.clone(), user_hz),
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

    /// Reads the process map and the per-CPU state, without building a frame or deleting
    /// anything. The records stay valid until the next read.
    pub fn read_records(&mut self) -> Result<&[ProcRecord], Error> {
        let n = lookup_all(
            self.procs.as_fd(),
            4,
            PROC_ACCT_SIZE,
            &mut self.keys,
            &mut self.values,
        )
        .map_err(|e| bpf_err("read the process map", e))?;
        self.records.clear();
        self.records.extend((0..n).filter_map(|i| {
            ProcRecord::decode(
                self.keys.get(i * 4..i * 4 + 4)?,
                self.values
                    .get(i * PROC_ACCT_SIZE..(i + 1) * PROC_ACCT_SIZE)?,
            )
        }));
        self.cpus.clear();
        if let Some(per_cpu) = self
            .slots
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| bpf_err("read the per-CPU state", e))?
        {
            self.cpus
                .extend(per_cpu.iter().filter_map(|v| CpuSlot::decode(v)));
        }
        Ok(&self.records)
    }

    /// Deletes the entries of these processes from the process map.
    pub fn delete(&mut self, tgids: &[u32]) -> Result<(), Error> {
        delete_all(self.procs.as_fd(), tgids).map_err(|e| bpf_err("delete map entries", e))
    }

    /// Inserts a record as if the program had charged it (tests and benchmarks).
    pub fn insert_record(&self, r: &ProcRecord) -> Result<(), Error> {
        self.procs
            .update(&r.tgid.to_ne_bytes(), &r.encode_value(), MapFlags::ANY)
            .map_err(|e| bpf_err("insert a map entry", e))
    }

    fn read_frame(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        let started = Instant::now();
        self.read_records().map_err(|e| io_error(&e))?;
        self.in_flight.clear();
        for slot in &self.cpus {
            self.in_flight.extend(
                slot.pending
                    .iter()
                    .filter(|&&(tgid, ns)| tgid != 0 && ns != 0),
            );
            if slot.pid != 0 {
                let now = thread_runtime_ns(&mut self.path, &self.procfs, slot.tgid, slot.pid);
                if let Some(now) = now {
                    let ns = now.saturating_sub(slot.start_runtime_ns);
                    self.in_flight.push((slot.tgid, ns));
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
        let delete = self
            .builder
            .build(at, &self.records, &self.in_flight, &mut names, out)?;
        let deleted = delete.len();
        delete_all(self.procs.as_fd(), delete)
            .map_err(|e| io_error(&bpf_err("delete map entries", e)))?;
        self.prune_cgroups();
        self.stats.map_entries = (self.records.len() - deleted) as u64;
        self.stats.entries_deleted += deleted as u64;
        self.stats.events_dropped = self.cpus.iter().map(|c| c.dropped).sum();
        self.stats.read_duration = started.elapsed();
        if let Ok(mut shared) = self.shared.lock() {
            *shared = self.stats;
        }
        Ok(())
    }

    /// Keeps the cgroup-name map from filling: once it is three quarters full, drops the
    /// names no process in the latest read refers to.
    fn prune_cgroups(&mut self) {
        // Reading the map walks all its buckets (~0.2 ms): once every 64 reads is plenty
        // for names that arrive once per new cgroup.
        self.reads = self.reads.wrapping_add(1);
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
    fn read(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        self.read_frame(at, out)
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

fn unsafe_sysconf_clk_tck() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as i64
    } else {
        100
    }
}

fn prog_run_stats(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    // SAFETY: bpf_prog_info is plain old data; zero is a valid value.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` has `len` writable bytes.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    (ret == 0).then_some((info.run_cnt, info.run_time_ns))
}
