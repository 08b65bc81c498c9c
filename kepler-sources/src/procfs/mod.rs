//! Per-process CPU activity from procfs: the low-privilege [`ActivitySource`].
//!
//! Each tick reads the aggregate `cpu ` line of `<root>/stat` and, for every numeric
//! directory of `<root>` (thread-group leaders only: procfs does not list threads), its
//! `stat`. What does not change for the life of a process (comm, exe, container, VM) is read
//! once, when the process is first seen, and cached under its identity (pid, starttime);
//! every later tick shares the same `Arc<ProcessInfo>`. A warm scan therefore reads one
//! `<pid>/stat` (or, for an idle process, its cheaper `schedstat`: see below) per process and
//! allocates nothing per process beyond what `std::fs::read_dir` itself does.
//!
//! Within a budget of file descriptors ([`ProcfsOptions::max_open_files`]) the `stat` file
//! of each process is kept open and re-read with `pread` at offset 0, which procfs answers
//! with fresh content. Measured on the 2-core development VM: open+read+close of a
//! `/proc/<pid>/stat` costs about 9.5 µs, a `pread` on a kept descriptor about 3 µs (with
//! 10,000 live processes both grow, to about 17 µs and 7 µs, and listing `/proc` alone
//! takes 25 ms: a warm scan of 10,089 processes took 169 ms reopening, 124 ms kept). The
//! price is kernel memory: each kept descriptor pins a seq_file buffer of about 4 KiB,
//! charged to kepler's memory cgroup. A kept descriptor is tied to the process, not to the
//! pid: once the process exits, reads fail with `ESRCH`, so PID reuse is never misread.
//!
//! The cache is refreshed when the comm in `stat` differs from the cached one: that is what
//! an `exec` looks like, and it is free to check since the comm is in the line we read anyway.
//!
//! **Idle processes are read through `schedstat`** (issue 3). On a large node most processes
//! sleep through most ticks, and the kernel's cost of a `stat` (formatting 52 fields, taking
//! the process's signal lock) dominates the scan. `<pid>/schedstat` holds the main thread's
//! scheduler run time in nanoseconds and its run count, and costs the kernel about a
//! quarter as much (10,000 kept descriptors re-read: 5.6 ms for `schedstat`, 22 ms for
//! `stat`, on the 2-core development VM). Once a process's `stat` reads the same twice, the
//! next tick reads its `schedstat` first; when that has not moved since a probe made before
//! the latest `stat` read, nothing of the process has run, its `stat` would read the same,
//! and the cached sample is repeated. This is exact, not sampled:
//! - only single-threaded processes qualify (`schedstat` counts the main thread, and one
//!   thread cannot start another without running), and kernels that print `0 0 0` (no
//!   scheduler statistics) or have no `schedstat` are read through `stat`;
//! - the one field of `stat` that changes without the process running is its parent:
//!   children are re-parented when their parent exits. After the scan, every skipped
//!   process whose parent is gone, a zombie, or a different process is read again;
//! - a probe that finds the process ran backs off (1, 2, 4, 8 ticks) before the next, so a
//!   process that runs a little every tick costs one `stat` read, as before.
//!
//! Probes share the descriptor budget with `stat` files: a quiet process keeps its probe,
//! a busy one its `stat`.
//!
//! For exact attribution under churn (issue 4) each scan also reports, per process, its
//! parent pid, its reaped children's time (`cutime + cstime`) and its last CPU
//! ([`kepler_core::ProcessDetail`]); with a cgroup root, each container's cgroup CPU counter
//! ([`CgroupUsage`]); and on multi-socket machines (by the sysfs topology, [`CpuTopology`]),
//! the per-CPU lines of `<root>/stat` with each CPU's socket.
//!
//! Parsing is hand-written (in the [`host`](crate::host) layer, shared with the model and
//! kepler-bpf) rather than through the `procfs` crate, to keep the hot loop allocation-free
//! and the dependency list short.

mod listing;

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use kepler_core::{
    ActivityFrame, ActivitySource, ProcessDetail, ProcessInfo, ProcessSample, ReadError,
    SourceError, Timestamp,
};

use crate::host::{
    self, comm_matches, parse_node_cpu, parse_schedstat, parse_stat_raw, read_error, sanitize_comm,
    Access, CgroupUsage, CpuTopology, NodeTicks, StaticReader, AUX_LIMIT, PF_KTHREAD,
};
use crate::{Error, ErrorKind};

use listing::PidListing;
/// `ESRCH`: reading a `/proc/<pid>` file of a process that exited after the open.
const ESRCH: i32 = 3;
/// `ENFILE` and `EMFILE`: the system's or this process's file descriptors are exhausted.
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
/// Upper bound of the automatic descriptor budget: about 64 MiB of kernel memory at most.
const AUTO_MAX_OPEN_FILES: usize = 16 * 1024;
/// A `<pid>/stat` line is well under 1 KiB; anything past this is not a stat line.
const STAT_LIMIT: usize = 16 * 1024;

/// Where and how [`ProcfsActivity`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcfsOptions {
    /// The procfs root: `/proc`, the host's procfs mounted in a container (`--host.procfs`),
    /// or a fake tree in tests.
    pub root: PathBuf,
    /// Clock ticks per second of the `stat` files. `None` detects it from the kernel's
    /// auxiliary vector (`<root>/self/auxv`, `AT_CLKTCK`) and falls back to 100, the value on
    /// every mainstream Linux architecture. Tests on fake trees set it to stay deterministic.
    pub user_hz: Option<u64>,
    /// How many `<pid>/stat` and `<pid>/schedstat` files may be kept open between ticks,
    /// trading about 4 KiB of kernel memory each for a read three times cheaper (see the
    /// module docs); a process holds one or both.
    /// `Some(0)` opens every file on every tick. `None` takes half of the soft
    /// `RLIMIT_NOFILE` from `<root>/self/limits`, at most 16384, and 0 when that file is
    /// unreadable (fake trees). Raising the soft limit to the hard one at start, as Go
    /// programs do, lets the budget cover large nodes.
    pub max_open_files: Option<usize>,
    /// The cgroupfs root (`<sysfs>/fs/cgroup`) whose per-container CPU counters account the
    /// processes that start and exit between two scans (issue 4). `None` reads no cgroups.
    pub cgroup_root: Option<PathBuf>,
    /// Read a quiet process's `schedstat` first and skip its `stat` when the process has
    /// not run since (see the module docs). On by default; off reads every `stat` on every
    /// tick (for comparisons).
    pub probe_idle: bool,
    /// The sysfs root whose CPU topology ([`CpuTopology`]) says which socket each CPU is
    /// on; with more than one socket, the per-CPU lines of `<root>/stat` are reported for
    /// the per-socket split. `None` reports none. [`ProcfsOptions::new`] sets `/sys`, the
    /// sysfs of the procfs's own kernel; with `--host.sysfs` set the host's.
    pub sysfs_root: Option<PathBuf>,
}

impl Default for ProcfsOptions {
    fn default() -> ProcfsOptions {
        ProcfsOptions::new("/proc")
    }
}

impl ProcfsOptions {
    /// Options for the procfs at `root`, with `USER_HZ` detected.
    pub fn new(root: impl Into<PathBuf>) -> ProcfsOptions {
        ProcfsOptions {
            root: root.into(),
            user_hz: None,
            max_open_files: None,
            cgroup_root: None,
            probe_idle: true,
            sysfs_root: Some(PathBuf::from("/sys")),
        }
    }
}

struct CacheEntry {
    /// With the pid (the map key), the process identity.
    start_time: u64,
    info: Arc<ProcessInfo>,
    /// The kept-open `stat`, within the descriptor budget.
    stat: Option<File>,
    /// The process's `schedstat`, read instead of `stat` while the process is quiet.
    probe: Probe,
    /// What the latest `stat` read gave: re-emitted while the process has not run since.
    last: LastStat,
    /// The `schedstat` (run ns, run count) of a probe made no later than the latest `stat`
    /// read: while a probe gives the same values, nothing of the process has run since.
    baseline: Option<(u64, u64)>,
    /// The latest `stat` read gave what the one before it gave: the process looks idle, so
    /// the next tick probes before reading `stat`.
    quiet: bool,
    /// Ticks left before probing again, and the current back-off (0, 1, 2, 4 or 8 ticks):
    /// a process that runs a little every tick, too little to move `stat`'s clock ticks,
    /// would otherwise pay for a probe and a `stat` on every tick.
    probe_wait: u8,
    probe_backoff: u8,
    /// The start time of the parent, as known when `stat` was last read: a skipped process
    /// whose parent is no longer that process may have been re-parented.
    parent_start: Option<u64>,
    /// The scan generation that last saw this process; older entries are evicted.
    seen: u64,
}

impl CacheEntry {
    /// How many descriptors of the budget this entry holds.
    fn kept_files(&self) -> usize {
        usize::from(self.stat.is_some()) + usize::from(matches!(self.probe, Probe::Kept(_)))
    }
}

/// The state of a process's `schedstat` probe.
enum Probe {
    /// Not open (never needed yet, or given back to the descriptor budget).
    Closed,
    /// Kept open, re-read with `pread`.
    Kept(File),
    /// No usable `schedstat` for this process (fake trees; kernels without
    /// `CONFIG_SCHED_INFO` or that print `0 0 0`): its `stat` is always read.
    Unsupported,
}

/// The fields of a `stat` read that a skipped tick repeats, and that tell whether the
/// process changed between two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct LastStat {
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// cutime + cstime, in clock ticks.
    children_ticks: u64,
    ppid: u32,
    processor: u32,
    threads: u32,
    /// State `Z` or `X`: exited, not yet reaped.
    zombie: bool,
}

impl LastStat {
    fn of(raw: &host::RawStat<'_>) -> LastStat {
        LastStat {
            cpu_ticks: raw.utime.saturating_add(raw.stime),
            children_ticks: raw.cutime.saturating_add(raw.cstime),
            ppid: raw.ppid,
            processor: raw.processor,
            threads: raw.num_threads,
            zombie: matches!(raw.state, b'Z' | b'X'),
        }
    }
}

/// The procfs activity source: cumulative CPU time of every live process, plus node totals.
///
/// Works without any privilege, on any Linux, which makes it the fallback when eBPF is
/// unavailable. Processes whose files vanish mid-scan are skipped silently (see
/// [`vanished`](Self::vanished)); malformed `stat` files are skipped and counted (see
/// [`skipped`](Self::skipped)).
pub struct ProcfsActivity {
    root: PathBuf,
    paths: PidPaths,
    /// The one buffer every `<pid>/stat` (and `<root>/stat`) is read into.
    buf: ReadBuf,
    /// Reads the static data of a process, on a cache miss.
    statics: StaticReader,
    user_hz: u64,
    cache: FxHashMap<u32, CacheEntry>,
    generation: u64,
    max_open_files: usize,
    open_files: usize,
    skipped: u64,
    vanished: u64,
    /// `stat` reads saved by probes since construction.
    quiet_skips: u64,
    /// [`ProcfsOptions::probe_idle`].
    probe_idle: bool,
    /// The pids of the current scan, ascending; the next listing starts from them.
    pids: Vec<u32>,
    listing: PidListing,
    /// (index in the frame, pid) of the processes this scan skipped as idle.
    idle_skipped: Vec<(usize, u32)>,
    /// Per-container cgroup counters, when a cgroup root is set.
    cgroups: Option<CgroupUsage>,
    /// Socket of each logical CPU when the machine has more than one socket; empty
    /// otherwise (then per-CPU lines are not read).
    topology: CpuTopology,
}

impl fmt::Debug for ProcfsActivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcfsActivity")
            .field("root", &self.root)
            .field("user_hz", &self.user_hz)
            .field("cached", &self.cache.len())
            .field("open_files", &self.open_files)
            .field("skipped", &self.skipped)
            .field("vanished", &self.vanished)
            .finish_non_exhaustive()
    }
}

impl ProcfsActivity {
    /// Opens the procfs at `opts.root`, checking that `<root>/stat` is readable and has the
    /// aggregate `cpu ` line, so a wrong `--host.procfs` fails at start rather than on
    /// every tick. Errors: `NotFound`/`PermissionDenied`/`Io` naming `<root>/stat`, or
    /// `Parse` when it has no `cpu ` line; `InvalidConfig` for a `user_hz` of 0.
    pub fn new(opts: ProcfsOptions) -> Result<ProcfsActivity, Error> {
        let user_hz = match opts.user_hz {
            Some(0) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    None,
                    "procfs user_hz must be positive",
                ))
            }
            Some(hz) => hz,
            None => host::user_hz(&opts.root),
        };
        let max_open_files = opts
            .max_open_files
            .unwrap_or_else(|| auto_max_open_files(&opts.root));
        let topology = opts
            .sysfs_root
            .as_deref()
            .map(CpuTopology::read)
            .filter(CpuTopology::is_multi_socket)
            .unwrap_or_default();
        let root = opts.root.clone();
        let mut source = ProcfsActivity {
            paths: PidPaths::new(&opts.root),
            root: opts.root,
            buf: ReadBuf::with_capacity(4096),
            statics: StaticReader::new(),
            user_hz,
            cache: FxHashMap::default(),
            generation: 0,
            max_open_files,
            open_files: 0,
            skipped: 0,
            vanished: 0,
            quiet_skips: 0,
            probe_idle: opts.probe_idle,
            idle_skipped: Vec::new(),
            pids: Vec::new(),
            listing: PidListing::new(&root),
            cgroups: opts.cgroup_root.map(CgroupUsage::new),
            topology,
        };
        let path = source.root.join("stat");
        match source.read_node() {
            Ok(_) => Ok(source),
            Err(NodeError::Io(e)) => Err(Error::io(&path, &e)),
            Err(NodeError::Parse) => Err(Error::new(
                ErrorKind::Parse,
                Some(&path),
                "no aggregate `cpu ` line",
            )),
        }
    }

    /// How many processes were skipped since construction because their `stat` was
    /// malformed, truncated or unreadable for a reason other than the process exiting.
    /// Meant for a self-metric: a steady rise points at a procfs this parser misreads.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// How many processes vanished between listing `<root>` and reading their `stat`, since
    /// construction. Expected on any busy machine; not an error.
    pub fn vanished(&self) -> u64 {
        self.vanished
    }

    /// How many `stat` reads were saved since construction because a process's `schedstat`
    /// showed it had not run since its previous read (see the module docs).
    pub fn quiet_skips(&self) -> u64 {
        self.quiet_skips
    }

    /// How many scans listed only the pids created since the previous one (see the module
    /// docs of `listing.rs`), since construction.
    pub fn incremental_listings(&self) -> u64 {
        self.listing.incremental_scans
    }

    /// How many processes have cached static data; after a scan, the number of live
    /// processes it saw. For tests and a self-metric of the cache size.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// How many `<pid>/stat` files are kept open now (within the descriptor budget).
    pub fn open_files(&self) -> usize {
        self.open_files
    }

    /// The clock ticks per second used to convert `stat` times to nanoseconds.
    pub fn user_hz(&self) -> u64 {
        self.user_hz
    }

    fn read_node(&mut self) -> Result<NodeTicks, NodeError> {
        let path = self.paths.root_file(b"stat");
        let file = File::open(path).map_err(NodeError::Io)?;
        // Per-CPU lines only matter for the per-socket split.
        let (limit, stop) = if self.topology == CpuTopology::default() {
            (STAT_LIMIT, Stop::AnyNewline)
        } else {
            (AUX_LIMIT, Stop::Eof)
        };
        self.buf.fill(&file, limit, stop).map_err(NodeError::Io)?;
        parse_node_cpu(self.buf.bytes()).ok_or(NodeError::Parse)
    }

    /// The per-CPU lines of the `/proc/stat` last read by `read_node`, with their sockets.
    fn push_cpus(&self, out: &mut ActivityFrame) {
        if self.topology != CpuTopology::default() {
            host::push_cpu_times(
                self.buf.bytes(),
                &self.topology,
                self.user_hz,
                &mut out.cpus,
            );
        }
    }

    /// How many containers have their cgroup CPU counter read each scan.
    pub fn accounted_containers(&self) -> usize {
        self.cgroups.as_ref().map_or(0, CgroupUsage::tracked)
    }

    /// Reads one process into `out`: the cached sample when its `schedstat` shows it has
    /// not run since its latest `stat` read, else its `stat`.
    fn scan_pid(&mut self, pid: u32, name: &[u8], out: &mut ActivityFrame) {
        if let Some((start_time, last, info)) = self.idle_sample(pid, name) {
            let sample = ProcessSample::new(
                pid,
                start_time,
                host::ticks_to_ns(self.user_hz, last.cpu_ticks),
                info,
            );
            let detail = detail_of(self.user_hz, &last);
            self.idle_skipped.push((out.processes.len(), pid));
            self.quiet_skips += 1;
            out.processes.push(sample);
            out.details.push(detail);
            return;
        }
        if let Some((sample, detail)) = self.read_process(pid, name) {
            out.processes.push(sample);
            out.details.push(detail);
        }
    }

    /// The identity, latest `stat` fields and static data of `pid` when it is known, quiet,
    /// single-threaded (`schedstat` counts the main thread only, and a process of one thread
    /// cannot start another without running) and its `schedstat` has not moved since a probe
    /// made no later than its latest `stat` read: then nothing in the process has run, and
    /// its `stat` would read the same. `None` means "read `stat`". Updates the probe state
    /// either way.
    fn idle_sample(&mut self, pid: u32, name: &[u8]) -> Option<(u64, LastStat, Arc<ProcessInfo>)> {
        if !self.probe_idle {
            return None;
        }
        let budget_left = self.open_files < self.max_open_files;
        let entry = self.cache.get_mut(&pid)?;
        if !entry.quiet || entry.last.threads != 1 || matches!(entry.probe, Probe::Unsupported) {
            return None;
        }
        if entry.probe_wait > 0 {
            entry.probe_wait -= 1;
            return None;
        }
        if matches!(entry.probe, Probe::Closed) {
            // A quiet process would rather keep its probe than its `stat`. Without a kept
            // descriptor a probe saves nothing over reading `stat` by path.
            if !budget_left {
                entry.stat.take()?;
                self.open_files -= 1;
            }
            match File::open(self.paths.pid_file(name, b"schedstat")) {
                Ok(f) => {
                    entry.probe = Probe::Kept(f);
                    self.open_files += 1;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::NotFound {
                        // No such file on this procfs; had the process vanished instead,
                        // its `stat` read says so next and the entry goes.
                        entry.probe = Probe::Unsupported;
                    }
                    return None;
                }
            }
        }
        let Probe::Kept(file) = &entry.probe else {
            return None;
        };
        let mut buf = [0u8; 96];
        let values = match file.read_at(&mut buf, 0) {
            Ok(n) => buf.get(..n).and_then(parse_schedstat),
            Err(_) => {
                // Gone (`ESRCH`) or unreadable: the `stat` read finds out which.
                entry.probe = Probe::Closed;
                self.open_files -= 1;
                return None;
            }
        };
        match values {
            // A kernel that does not keep scheduler statistics prints zeros.
            None | Some((0, 0)) => {
                entry.probe = Probe::Unsupported;
                self.open_files -= 1;
                None
            }
            Some(v) if entry.baseline == Some(v) => {
                entry.probe_backoff = 0;
                entry.seen = self.generation;
                Some((entry.start_time, entry.last, Arc::clone(&entry.info)))
            }
            Some(v) => {
                if entry.baseline.is_some() {
                    // It ran: back off before the next probe.
                    entry.probe_backoff = (entry.probe_backoff.saturating_mul(2)).clamp(1, 8);
                    entry.probe_wait = entry.probe_backoff;
                }
                entry.baseline = Some(v);
                None
            }
        }
    }

    /// Reads the `stat` of `pid` and updates its cache entry (loading static data for a
    /// new process, a reused pid or an exec). `None` when the process is gone or its
    /// `stat` does not parse (counted).
    fn read_process(&mut self, pid: u32, name: &[u8]) -> Option<(ProcessSample, ProcessDetail)> {
        // 1. A kept descriptor: re-read from offset 0. It fails once its process is gone.
        let mut have = false;
        if let Some(entry) = self.cache.get_mut(&pid) {
            if let Some(file) = &entry.stat {
                if self
                    .buf
                    .fill(file, STAT_LIMIT, Stop::EndsWithNewline)
                    .is_ok()
                {
                    have = true;
                } else {
                    entry.stat = None;
                    self.open_files -= 1;
                }
            }
        }
        // 2. Otherwise by path.
        let mut fresh = None;
        if !have {
            let file = match self.open_pid_stat(name) {
                Ok(f) => f,
                Err(e) => {
                    self.count_failure(&e);
                    return None;
                }
            };
            if let Err(e) = self.buf.fill(&file, STAT_LIMIT, Stop::EndsWithNewline) {
                self.count_failure(&e);
                return None;
            }
            fresh = Some(file);
        }

        let Some(raw) = parse_stat_raw(self.buf.bytes()) else {
            self.skipped += 1;
            return None;
        };
        let start_time = raw.starttime;
        let last = LastStat::of(&raw);
        let parent_start = self.cache.get(&raw.ppid).map(|p| p.start_time);
        let generation = self.generation;
        let budget_left = self.open_files < self.max_open_files;
        let info = match self.cache.get_mut(&pid) {
            Some(entry)
                if entry.start_time == start_time && comm_matches(raw.comm, &entry.info.comm) =>
            {
                entry.quiet = entry.last == last;
                entry.last = last;
                entry.parent_start = parent_start;
                entry.seen = generation;
                if entry.stat.is_none() {
                    if let Some(file) = fresh {
                        if budget_left {
                            entry.stat = Some(file);
                            self.open_files += 1;
                        } else if !entry.quiet && matches!(entry.probe, Probe::Kept(_)) {
                            // A busy process would rather keep its `stat` than its probe.
                            entry.probe = Probe::Closed;
                            entry.stat = Some(file);
                        }
                    }
                }
                Arc::clone(&entry.info)
            }
            // New process, PID reuse (new starttime) or an exec (new comm): read the rest.
            _ => {
                let comm: Arc<str> = Arc::from(sanitize_comm(raw.comm));
                let kthread = raw.flags & PF_KTHREAD != 0;
                let info = Arc::new(self.load_static(name, comm, kthread));
                let old = self.cache.remove(&pid);
                if let Some(old) = &old {
                    self.open_files -= old.kept_files();
                }
                // After an exec the kept descriptors are still the right ones; after PID
                // reuse they already failed and were dropped.
                let (stat, probe) = match old {
                    Some(old) if old.start_time == start_time => (old.stat, old.probe),
                    _ => (None, Probe::Closed),
                };
                // Counted back in, the kept ones first: a fresh `stat` only fits in what
                // they leave of the budget.
                self.open_files +=
                    usize::from(stat.is_some()) + usize::from(matches!(probe, Probe::Kept(_)));
                let stat = match stat {
                    Some(f) => Some(f),
                    None if self.open_files < self.max_open_files => {
                        fresh.inspect(|_| self.open_files += 1)
                    }
                    None => None,
                };
                let entry = CacheEntry {
                    start_time,
                    info: Arc::clone(&info),
                    stat,
                    probe,
                    last,
                    baseline: None,
                    quiet: false,
                    probe_wait: 0,
                    probe_backoff: 0,
                    parent_start,
                    seen: generation,
                };
                self.cache.insert(pid, entry);
                info
            }
        };
        let sample = ProcessSample::new(
            pid,
            start_time,
            host::ticks_to_ns(self.user_hz, last.cpu_ticks),
            info,
        );
        Some((sample, detail_of(self.user_hz, &last)))
    }

    /// A process skipped as idle keeps the parent pid of its latest `stat` read, which goes
    /// stale when the parent exits (its children are re-parented without running). After
    /// the scan, re-reads every skipped process whose parent is no longer the live process
    /// it was, so `out` is what reading every `stat` would have given.
    fn reread_orphans(&mut self, out: &mut ActivityFrame) {
        let skipped = std::mem::take(&mut self.idle_skipped);
        for &(index, pid) in &skipped {
            if self.parent_unchanged(pid) {
                continue;
            }
            self.quiet_skips -= 1;
            if let Some((sample, detail)) = self.read_process(pid, PidName::default().of(pid)) {
                if let (Some(s), Some(d)) =
                    (out.processes.get_mut(index), out.details.get_mut(index))
                {
                    *s = sample;
                    *d = detail;
                }
            }
        }
        self.idle_skipped = skipped;
        self.idle_skipped.clear();
    }

    /// Whether the parent of `pid` is still the live, not exited process it was at the
    /// latest `stat` read of `pid`.
    fn parent_unchanged(&self, pid: u32) -> bool {
        let Some(entry) = self.cache.get(&pid) else {
            return true;
        };
        if entry.last.ppid == 0 {
            return true;
        }
        self.cache.get(&entry.last.ppid).is_some_and(|parent| {
            parent.seen == self.generation
                && !parent.last.zombie
                && Some(parent.start_time) == entry.parent_start
        })
    }

    /// Opens `<root>/<pid>/stat`; when descriptors run out, gives half of the kept ones
    /// back, lowers the budget to match, and tries once more.
    fn open_pid_stat(&mut self, name: &[u8]) -> io::Result<File> {
        match File::open(self.paths.pid_file(name, b"stat")) {
            Err(e) if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) => {
                self.max_open_files = self.open_files / 2;
                let mut excess = self.open_files - self.max_open_files;
                for entry in self.cache.values_mut() {
                    if excess == 0 {
                        break;
                    }
                    if matches!(entry.probe, Probe::Kept(_)) {
                        entry.probe = Probe::Closed;
                        excess -= 1;
                        self.open_files -= 1;
                    }
                    if excess > 0 && entry.stat.take().is_some() {
                        excess -= 1;
                        self.open_files -= 1;
                    }
                }
                File::open(self.paths.pid_file(name, b"stat"))
            }
            other => other,
        }
    }

    fn count_failure(&mut self, e: &io::Error) {
        if is_vanished(e) {
            self.vanished += 1;
        } else {
            self.skipped += 1;
        }
    }

    /// Reads what does not change for the life of a process (see [`StaticReader::read`]),
    /// and starts reading its container's cgroup counter when there is one.
    fn load_static(&mut self, name: &[u8], comm: Arc<str>, kthread: bool) -> ProcessInfo {
        let dir = self.paths.pid_file(name, b"");
        let info = self.statics.read(dir, comm, kthread);
        if let (Some(c), Some(cgroups), Some(text)) = (
            &info.container,
            &mut self.cgroups,
            self.statics.cgroup_text(),
        ) {
            cgroups.register(c, text, self.generation);
        }
        info
    }
}

impl ActivitySource for ProcfsActivity {
    fn read(&mut self, _at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        let node = match self.read_node() {
            Ok(node) => node,
            Err(NodeError::Io(e)) => {
                let what = self.root.join("stat").display().to_string();
                return Err(read_error(&what, &e, Access::Procfs).into());
            }
            Err(NodeError::Parse) => {
                return Err(ReadError::Parse {
                    what: self.root.join("stat").display().to_string(),
                    detail: "no aggregate `cpu ` line".into(),
                }
                .into());
            }
        };
        out.node = node.to_cpu_time(self.user_hz);
        self.push_cpus(out);

        // List first, then read: interleaving the two costs about a third more kernel
        // time at 10,000 processes (each evicts the other's data from the CPU caches).
        let mut pids = std::mem::take(&mut self.pids);
        let cache = &self.cache;
        let listed = self
            .listing
            .list(&self.root, &mut pids, |p| cache.contains_key(&p));
        if let Err(e) = listed {
            self.pids = pids;
            let what = self.root.display().to_string();
            return Err(read_error(&what, &e, Access::Procfs).into());
        }
        self.generation = self.generation.wrapping_add(1);
        let first = out.processes.len();
        let mut name = PidName::default();
        for &pid in &pids {
            self.scan_pid(pid, name.of(pid), out);
        }
        self.pids = pids;
        self.reread_orphans(out);

        if let Some(cgroups) = &mut self.cgroups {
            cgroups.mark(out, first, self.generation);
            cgroups.read(out, self.generation);
        }

        debug_assert_eq!(
            self.open_files,
            self.cache
                .values()
                .map(CacheEntry::kept_files)
                .sum::<usize>(),
            "kept descriptors counted right"
        );
        debug_assert!(self.open_files <= self.max_open_files, "within the budget");
        // Every pid appears once per scan, so when the cache holds exactly the processes
        // seen, nothing is stale and the sweep can be skipped.
        let seen = out.processes.len() - first;
        if self.cache.len() != seen {
            let generation = self.generation;
            let open_files = &mut self.open_files;
            self.cache.retain(|_, e| {
                let live = e.seen == generation;
                if !live {
                    *open_files -= e.kept_files();
                }
                live
            });
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "procfs"
    }
}

/// The per-process detail (issue 4) of a `stat` read.
fn detail_of(user_hz: u64, last: &LastStat) -> ProcessDetail {
    ProcessDetail::new(
        last.ppid,
        host::ticks_to_ns(user_hz, last.children_ticks),
        Some(last.processor),
    )
}

enum NodeError {
    Io(io::Error),
    Parse,
}

fn is_vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH)
}

/// Half the soft `Max open files` of `<root>/self/limits` (this process, when `<root>` is
/// its procfs), capped; 0 when unknown, so an unknown limit is never exhausted.
fn auto_max_open_files(root: &Path) -> usize {
    let Ok(limits) = std::fs::read_to_string(root.join("self/limits")) else {
        return 0;
    };
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<usize>().ok())
        .map_or(0, |soft| (soft / 2).min(AUTO_MAX_OPEN_FILES))
}

/// The decimal name of a pid's directory, written without allocating.
#[derive(Default)]
struct PidName {
    digits: [u8; 10],
}

impl PidName {
    fn of(&mut self, pid: u32) -> &[u8] {
        let mut at = self.digits.len();
        let mut rest = pid;
        loop {
            at -= 1;
            self.digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        &self.digits[at..]
    }
}

/// Builds `<root>/<pid>/<leaf>` paths in one reused byte buffer, so the scan allocates no
/// path per process.
struct PidPaths {
    bytes: Vec<u8>,
    root_len: usize,
}

impl PidPaths {
    fn new(root: &Path) -> PidPaths {
        let mut bytes = root.as_os_str().as_bytes().to_vec();
        if bytes.last() != Some(&b'/') {
            bytes.push(b'/');
        }
        let root_len = bytes.len();
        bytes.reserve(32);
        PidPaths { bytes, root_len }
    }

    fn root_file(&mut self, leaf: &[u8]) -> &Path {
        self.bytes.truncate(self.root_len);
        self.bytes.extend_from_slice(leaf);
        Path::new(OsStr::from_bytes(&self.bytes))
    }

    fn pid_file(&mut self, pid: &[u8], leaf: &[u8]) -> &Path {
        self.bytes.truncate(self.root_len);
        self.bytes.extend_from_slice(pid);
        self.bytes.push(b'/');
        self.bytes.extend_from_slice(leaf);
        Path::new(OsStr::from_bytes(&self.bytes))
    }
}

/// When to stop reading a file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// At end of file.
    Eof,
    /// When the data read so far ends with a newline: a `<pid>/stat` is one line, and the
    /// kernel hands it over in one read, so this saves the read that would return 0.
    EndsWithNewline,
    /// At the first newline: only the first line of `/proc/stat` is needed, and the rest
    /// (per-CPU lines, interrupt counts) can be hundreds of kilobytes.
    AnyNewline,
}

/// A reusable read buffer: zero-filled once when it grows, never per read.
struct ReadBuf {
    data: Vec<u8>,
    len: usize,
}

impl ReadBuf {
    fn with_capacity(cap: usize) -> ReadBuf {
        ReadBuf {
            data: vec![0; cap],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.data.get(..self.len).unwrap_or_default()
    }

    /// Reads `file` from offset 0 into the buffer, up to `limit` bytes (more is silently
    /// cut). Positioned reads let a kept-open procfs file be read again without a seek.
    fn fill(&mut self, file: &File, limit: usize, stop: Stop) -> io::Result<()> {
        self.len = 0;
        loop {
            if self.len >= self.data.len() {
                if self.data.len() >= limit {
                    return Ok(());
                }
                let grown = (self.data.len() * 2).clamp(4096, limit);
                self.data.resize(grown, 0);
            }
            let Some(spare) = self.data.get_mut(self.len..) else {
                return Ok(());
            };
            let n = match file.read_at(spare, self.len as u64) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let new = self.data.get(self.len..self.len + n).unwrap_or_default();
            self.len += n;
            let done = match stop {
                Stop::Eof => false,
                Stop::EndsWithNewline => new.last() == Some(&b'\n'),
                Stop::AnyNewline => new.contains(&b'\n'),
            };
            if done {
                return Ok(());
            }
        }
    }
}
