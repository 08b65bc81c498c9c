//! Per-process CPU activity from procfs: the low-privilege [`ActivitySource`].
//!
//! Each tick reads the aggregate `cpu ` line of `<root>/stat` and, for every numeric
//! directory of `<root>` (thread-group leaders only: procfs does not list threads), its
//! `stat`. What does not change for the life of a process (comm, exe, container, VM) is read
//! once, when the process is first seen, and cached under its identity (pid, starttime);
//! every later tick shares the same `Arc<ProcessInfo>`. A warm scan therefore reads one
//! `<pid>/stat` per process and allocates nothing per process beyond what
//! `std::fs::read_dir` itself does.
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
//! For exact attribution under churn (issue 4) each scan also reports, per process, its
//! parent pid, its reaped children's time (`cutime + cstime`) and its last CPU
//! ([`kepler_core::ProcessDetail`]); with a cgroup root, each container's cgroup CPU counter
//! (see `cgroup_usage.rs`); and on multi-socket machines (by `<root>/cpuinfo`), the per-CPU
//! lines of `<root>/stat` with each CPU's socket.
//!
//! Parsing is hand-written (see `stat.rs`) rather than through the `procfs` crate, to keep
//! the hot loop allocation-free and the dependency list short.

mod cgroup;
mod cgroup_usage;
mod cpuinfo;
mod stat;
mod vm;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    ActivityFrame, ActivitySource, CpuTime, Nanos, NodeCpu, ProcessDetail, ProcessInfo,
    ProcessSample, ReadError, SourceError, Timestamp,
};

use crate::{Error, ErrorKind};

pub use cgroup::{parse_cgroup, CgroupMatch};
pub use cpuinfo::read_cpuinfo;
pub use stat::{parse_node_cpu, parse_stat, sanitize_comm, NodeTicks, StatFields};
pub use vm::vm_from_cmdline;

use cgroup_usage::CgroupUsage;
use stat::{comm_matches, parse_per_cpu, parse_stat_raw, PF_KTHREAD};

/// The Linux `USER_HZ` on every mainstream architecture; used when it cannot be detected.
const DEFAULT_USER_HZ: u64 = 100;
/// `AT_CLKTCK` in the auxiliary vector: the kernel's `USER_HZ`, handed to every process.
const AT_CLKTCK: usize = 17;
/// `ESRCH`: reading a `/proc/<pid>` file of a process that exited after the open.
const ESRCH: i32 = 3;
/// `ENFILE` and `EMFILE`: the system's or this process's file descriptors are exhausted.
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
/// Upper bound of the automatic descriptor budget: about 64 MiB of kernel memory at most.
const AUTO_MAX_OPEN_FILES: usize = 16 * 1024;
/// A `<pid>/stat` line is well under 1 KiB; anything past this is not a stat line.
const STAT_LIMIT: usize = 16 * 1024;
/// Enough for the cgroup file of any real process and a QEMU command line.
const AUX_LIMIT: usize = 256 * 1024;

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
    /// How many `<pid>/stat` files may be kept open between ticks, trading about 4 KiB of
    /// kernel memory per process for a read three times cheaper (see the module docs).
    /// `Some(0)` opens every file on every tick. `None` takes half of the soft
    /// `RLIMIT_NOFILE` from `<root>/self/limits`, at most 16384, and 0 when that file is
    /// unreadable (fake trees). Raising the soft limit to the hard one at start, as Go
    /// programs do, lets the budget cover large nodes.
    pub max_open_files: Option<usize>,
    /// The cgroupfs root (`<sysfs>/fs/cgroup`) whose per-container CPU counters account the
    /// processes that start and exit between two scans (issue 4). `None` reads no cgroups.
    pub cgroup_root: Option<PathBuf>,
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
        }
    }
}

struct CacheEntry {
    /// With the pid (the map key), the process identity.
    start_time: u64,
    info: Arc<ProcessInfo>,
    /// The kept-open `stat`, within the descriptor budget.
    file: Option<File>,
    /// The scan generation that last saw this process; older entries are evicted.
    seen: u64,
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
    /// For the files read once per process (cgroup, cmdline), on a cache miss.
    aux: ReadBuf,
    user_hz: u64,
    cache: HashMap<u32, CacheEntry>,
    generation: u64,
    max_open_files: usize,
    open_files: usize,
    skipped: u64,
    vanished: u64,
    empty: Arc<str>,
    /// Per-container cgroup counters, when a cgroup root is set.
    cgroups: Option<CgroupUsage>,
    /// Socket of each logical CPU, indexed by CPU, when the machine has more than one
    /// socket; empty otherwise (then per-CPU lines are not read).
    cpu_socket: Vec<Option<u32>>,
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
            None => detect_user_hz(&opts.root),
        };
        let max_open_files = opts
            .max_open_files
            .unwrap_or_else(|| auto_max_open_files(&opts.root));
        let cpu_socket = socket_map(&opts.root);
        let mut source = ProcfsActivity {
            paths: PidPaths::new(&opts.root),
            root: opts.root,
            buf: ReadBuf::with_capacity(4096),
            aux: ReadBuf::with_capacity(4096),
            user_hz,
            cache: HashMap::new(),
            generation: 0,
            max_open_files,
            open_files: 0,
            skipped: 0,
            vanished: 0,
            empty: Arc::from(""),
            cgroups: opts.cgroup_root.map(CgroupUsage::new),
            cpu_socket,
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

    fn ticks_to_ns(&self, ticks: u64) -> Nanos {
        let ns = u128::from(ticks) * 1_000_000_000 / u128::from(self.user_hz.max(1));
        Nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn read_node(&mut self) -> Result<NodeTicks, NodeError> {
        let path = self.paths.root_file(b"stat");
        let file = File::open(path).map_err(NodeError::Io)?;
        // Per-CPU lines only matter for the per-socket split.
        let (limit, stop) = if self.cpu_socket.is_empty() {
            (STAT_LIMIT, Stop::AnyNewline)
        } else {
            (AUX_LIMIT, Stop::Eof)
        };
        self.buf.fill(&file, limit, stop).map_err(NodeError::Io)?;
        parse_node_cpu(self.buf.bytes()).ok_or(NodeError::Parse)
    }

    /// The per-CPU lines of the `/proc/stat` last read by `read_node`, with their sockets.
    fn push_cpus(&self, out: &mut ActivityFrame) {
        if self.cpu_socket.is_empty() {
            return;
        }
        parse_per_cpu(self.buf.bytes(), |cpu, ticks| {
            if let Some(Some(socket)) = self.cpu_socket.get(cpu as usize) {
                out.cpus.push(CpuTime {
                    cpu,
                    socket: *socket,
                    time: NodeCpu {
                        busy: self.ticks_to_ns(ticks.busy),
                        total: self.ticks_to_ns(ticks.total),
                    },
                });
            }
        });
    }

    /// How many containers have their cgroup CPU counter read each scan.
    pub fn accounted_containers(&self) -> usize {
        self.cgroups.as_ref().map_or(0, CgroupUsage::tracked)
    }

    /// Reads one process into `out`, from the cache when it is known.
    fn scan_pid(&mut self, pid: u32, name: &[u8], out: &mut ActivityFrame) {
        // 1. A kept descriptor: re-read from offset 0. It fails once its process is gone.
        let mut have = false;
        if let Some(entry) = self.cache.get_mut(&pid) {
            if let Some(file) = &entry.file {
                if self
                    .buf
                    .fill(file, STAT_LIMIT, Stop::EndsWithNewline)
                    .is_ok()
                {
                    have = true;
                } else {
                    entry.file = None;
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
                    return;
                }
            };
            if let Err(e) = self.buf.fill(&file, STAT_LIMIT, Stop::EndsWithNewline) {
                self.count_failure(&e);
                return;
            }
            fresh = Some(file);
        }

        let Some(raw) = parse_stat_raw(self.buf.bytes()) else {
            self.skipped += 1;
            return;
        };
        let start_time = raw.starttime;
        let cpu_time = self.ticks_to_ns(raw.utime.saturating_add(raw.stime));
        let detail = ProcessDetail {
            ppid: raw.ppid,
            children_time: self.ticks_to_ns(raw.cutime.saturating_add(raw.cstime)),
            last_cpu: Some(raw.processor),
        };
        let generation = self.generation;
        let keep = self.open_files < self.max_open_files;
        let info = match self.cache.get_mut(&pid) {
            Some(entry)
                if entry.start_time == start_time && comm_matches(raw.comm, &entry.info.comm) =>
            {
                entry.seen = generation;
                if entry.file.is_none() && keep && fresh.is_some() {
                    entry.file = fresh;
                    self.open_files += 1;
                }
                Arc::clone(&entry.info)
            }
            // New process, PID reuse (new starttime) or an exec (new comm): read the rest.
            _ => {
                let comm: Arc<str> = Arc::from(sanitize_comm(raw.comm));
                let kthread = raw.flags & PF_KTHREAD != 0;
                let info = Arc::new(self.load_static(name, comm, kthread));
                // After an exec the kept descriptor is still the right one.
                let file = match self.cache.remove(&pid).and_then(|old| old.file) {
                    Some(old) => Some(old),
                    None if keep => fresh.inspect(|_| self.open_files += 1),
                    None => None,
                };
                self.cache.insert(
                    pid,
                    CacheEntry {
                        start_time,
                        info: Arc::clone(&info),
                        file,
                        seen: generation,
                    },
                );
                info
            }
        };
        out.processes.push(ProcessSample {
            pid,
            start_time,
            cpu_time,
            info,
        });
        out.details.push(detail);
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
                    if entry.file.take().is_some() {
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

    /// Reads what does not change for the life of a process. Every part degrades on its
    /// own: an unreadable `exe` (kernel threads, other users' processes without
    /// `CAP_SYS_PTRACE`) is "", an unreadable cgroup or cmdline is "no container"/"no VM".
    fn load_static(&mut self, name: &[u8], comm: Arc<str>, kthread: bool) -> ProcessInfo {
        if kthread {
            // Kernel threads have no exe, no cmdline and live in the root cgroup.
            return ProcessInfo {
                comm,
                exe: Arc::clone(&self.empty),
                container: None,
                vm: None,
            };
        }
        let exe = match std::fs::read_link(self.paths.pid_file(name, b"exe")) {
            Ok(target) => Arc::from(target.to_string_lossy()),
            Err(_) => Arc::clone(&self.empty),
        };
        let container = match self
            .aux
            .fill_path(self.paths.pid_file(name, b"cgroup"), AUX_LIMIT)
        {
            Ok(()) => {
                let found = parse_cgroup(&String::from_utf8_lossy(self.aux.bytes()))
                    .map(|m| m.into_container(&self.empty));
                if let (Some(c), Some(cgroups)) = (&found, &mut self.cgroups) {
                    cgroups.register(c, self.aux.bytes(), self.generation);
                }
                found
            }
            Err(_) => None,
        };
        let vm = match self
            .aux
            .fill_path(self.paths.pid_file(name, b"cmdline"), AUX_LIMIT)
        {
            Ok(()) => vm_from_cmdline(self.aux.bytes()),
            Err(_) => None,
        };
        ProcessInfo {
            comm,
            exe,
            container,
            vm,
        }
    }
}

impl ActivitySource for ProcfsActivity {
    fn read(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        out.clear();
        out.at = at;
        let node = match self.read_node() {
            Ok(node) => node,
            Err(NodeError::Io(e)) => {
                return Err(read_error(&self.root.join("stat"), &e).into());
            }
            Err(NodeError::Parse) => {
                return Err(ReadError::Parse {
                    what: self.root.join("stat").display().to_string(),
                    detail: "no aggregate `cpu ` line".into(),
                }
                .into());
            }
        };
        out.node = NodeCpu {
            busy: self.ticks_to_ns(node.busy),
            total: self.ticks_to_ns(node.total),
        };
        self.push_cpus(out);

        let dir = std::fs::read_dir(&self.root).map_err(|e| read_error(&self.root, &e))?;
        self.generation = self.generation.wrapping_add(1);
        let first = out.processes.len();
        for entry in dir {
            // A failing readdir ends the iteration; what was read so far is still good.
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let name = name.as_bytes();
            let Some(pid) = stat::parse_u32(name) else {
                continue;
            };
            self.scan_pid(pid, name, out);
        }

        if let Some(cgroups) = &mut self.cgroups {
            cgroups.mark(out, first, self.generation);
            cgroups.read(out, self.generation);
        }

        // Every pid appears once per scan, so when the cache holds exactly the processes
        // seen, nothing is stale and the sweep can be skipped.
        let seen = out.processes.len() - first;
        if self.cache.len() != seen {
            let generation = self.generation;
            let open_files = &mut self.open_files;
            self.cache.retain(|_, e| {
                let live = e.seen == generation;
                if !live && e.file.is_some() {
                    *open_files -= 1;
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

enum NodeError {
    Io(io::Error),
    Parse,
}

fn is_vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH)
}

/// The per-file [`ReadError`] of a procfs read that failed with `e`: missing, not permitted
/// (naming the access needed) or another I/O error, naming `path`.
pub fn read_error(path: &Path, e: &io::Error) -> ReadError {
    let what = path.display().to_string();
    match e.kind() {
        io::ErrorKind::NotFound => ReadError::Missing { what },
        io::ErrorKind::PermissionDenied => ReadError::NotPermitted {
            what,
            needs: "read access to procfs".into(),
        },
        _ => ReadError::Io {
            what,
            detail: e.to_string(),
        },
    }
}

/// Socket of each logical CPU from `<root>/cpuinfo`, when there is more than one socket.
fn socket_map(root: &Path) -> Vec<Option<u32>> {
    let Ok(cpus) = read_cpuinfo(root) else {
        return Vec::new();
    };
    let Some(first) = cpus.first() else {
        return Vec::new();
    };
    if cpus.iter().all(|c| c.physical_id == first.physical_id) {
        return Vec::new();
    }
    let mut map = Vec::new();
    for c in &cpus {
        let i = c.processor as usize;
        if i >= 65_536 {
            continue; // not a real CPU number: ignore rather than allocate
        }
        if i >= map.len() {
            map.resize(i + 1, None);
        }
        map[i] = Some(c.physical_id);
    }
    map
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

/// `USER_HZ` from `<root>/self/auxv`. Reading it through the root keeps fake trees (which
/// have no `self`) on the default, and a host procfs mounted in a container gives the
/// running kernel's value, which is the host's.
fn detect_user_hz(root: &Path) -> u64 {
    let Ok(auxv) = std::fs::read(root.join("self/auxv")) else {
        return DEFAULT_USER_HZ;
    };
    const WORD: usize = std::mem::size_of::<usize>();
    for pair in auxv.chunks_exact(2 * WORD) {
        let (key, val) = pair.split_at(WORD);
        let (Ok(key), Ok(val)) = (<[u8; WORD]>::try_from(key), <[u8; WORD]>::try_from(val)) else {
            break;
        };
        if usize::from_ne_bytes(key) == AT_CLKTCK {
            let hz = usize::from_ne_bytes(val) as u64;
            // A sane USER_HZ; anything else means we misread the vector.
            return if (1..=100_000).contains(&hz) {
                hz
            } else {
                DEFAULT_USER_HZ
            };
        }
    }
    DEFAULT_USER_HZ
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

    /// Reads the file at `path` to its end, up to `limit` bytes (more is silently cut).
    fn fill_path(&mut self, path: &Path, limit: usize) -> io::Result<()> {
        let file = File::open(path)?;
        self.fill(&file, limit, Stop::Eof)
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
