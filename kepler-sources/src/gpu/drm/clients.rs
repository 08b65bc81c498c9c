//! Which processes hold DRM clients, and how busy each client kept its engines since the
//! previous scan.
//!
//! Cost is the point of this file. Listing every process's descriptors each tick would cost
//! more than the procfs scan itself, so a process's `/proc/<pid>/fd` links are read only:
//!
//! - when it is new (a pid not seen before, or seen with another start time);
//! - again after it ran (its CPU time moved: a process that did not run cannot have opened a
//!   device), after waits that double up to 64 scans (plus up to as much again, spread by pid
//!   so that processes first seen together do not come due together), so a busy process
//!   costs one listing in 64 to 127 scans and an idle one none;
//! - every scan while it holds a DRM descriptor (it may open or close more).
//!
//! The processes come from the CPU snapshot ([`DrmClients::observe`]), which already knows
//! every pid with its start time and CPU time; nothing here lists `/proc`.
//!
//! Counting follows the specification: a client (`drm-client-id`, unique per device when
//! `drm-pdev` is given) is counted once however many descriptors and processes share it;
//! a counter lower than the previous reading keeps the previous (larger) value until it
//! catches up; a client that closes between two scans loses its last interval (its fdinfo is
//! gone), so its device's energy goes to the clients that remain. Cycle-counting drivers are
//! turned into nanoseconds: busy cycles over the GPU timestamp's advance (`drm-total-cycles`)
//! times the wall time between the two scans, or busy cycles over `drm-maxfreq`.

use std::fs;
use std::path::PathBuf;

use kepler_core::{Nanos, Timestamp};
use rustc_hash::FxHashMap;

use super::fdinfo::{DrmFdinfo, EngineCounters};

/// The longest wait, in scans, before a process that keeps running is listed again.
const MAX_BACKOFF: u64 = 64;

/// One client's usage over the last scan interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientUsage {
    /// `drm-driver`.
    pub driver: String,
    /// `drm-pdev`, when the driver gives it.
    pub pdev: Option<String>,
    /// `drm-client-id`.
    pub client_id: u64,
    /// Processes holding it, ascending (several after a fork).
    pub pids: Vec<u32>,
    /// Engine busy time since the previous scan, summed over engines (ns).
    pub busy_ns: u64,
}

/// What a scan did (for tests, benches and self-metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Descriptor directories listed.
    pub listed: u64,
    /// DRM fdinfo files read.
    pub fdinfo_read: u64,
    /// Descriptor directories that could not be listed (process gone, no permission).
    pub unreadable: u64,
}

#[derive(Debug)]
struct Tracked {
    start_time: u64,
    cpu_time: Nanos,
    /// The `observe` generation that last saw it.
    seen: u64,
    /// Holds a DRM descriptor (listed every scan).
    drm: bool,
    /// To be listed at the next scan.
    pending: bool,
    /// Ran since its last listing.
    ran: bool,
    /// Scan number from which a run makes it pending again.
    due: u64,
    backoff: u64,
}

impl Tracked {
    fn new(start_time: u64, cpu_time: Nanos, seen: u64) -> Tracked {
        Tracked {
            start_time,
            cpu_time,
            seen,
            drm: false,
            pending: true,
            ran: false,
            due: 0,
            backoff: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    /// The PCI slot, else the driver name (ids are then unique per driver).
    device: String,
    id: u64,
}

/// The largest counter values seen per engine, and when.
#[derive(Debug, Default)]
struct ClientState {
    engines: Vec<EngineCounters>,
    at: Option<Timestamp>,
    seen: u64,
}

/// The DRM clients of the host's processes, scanned through `<procfs>/<pid>/fd{,info}`.
#[derive(Debug)]
pub struct DrmClients {
    procfs: PathBuf,
    procs: FxHashMap<u32, Tracked>,
    generation: u64,
    scans: u64,
    last_scan: Option<Timestamp>,
    clients: FxHashMap<ClientKey, ClientState>,
    usage: Vec<ClientUsage>,
    stats: ScanStats,
    /// Whether the last logged state had clients (`None`: nothing logged yet).
    logged_found: Option<bool>,
}

impl DrmClients {
    /// A scanner over the procfs mounted at `procfs` (`/proc`, or the host's in a container).
    pub fn new(procfs: impl Into<PathBuf>) -> DrmClients {
        DrmClients {
            procfs: procfs.into(),
            procs: FxHashMap::default(),
            generation: 0,
            scans: 0,
            last_scan: None,
            clients: FxHashMap::default(),
            usage: Vec::new(),
            stats: ScanStats::default(),
            logged_found: None,
        }
    }

    /// Takes the live processes as `(pid, start time, cumulative CPU time)`: new ones and
    /// ones that ran become due for a listing; vanished ones are forgotten.
    pub fn observe(&mut self, processes: impl IntoIterator<Item = (u32, u64, Nanos)>) {
        self.generation += 1;
        // Due processes that ran are listed at the next scan.
        let (generation, next_scan) = (self.generation, self.scans + 1);
        for (pid, start_time, cpu_time) in processes {
            let t = self
                .procs
                .entry(pid)
                .or_insert_with(|| Tracked::new(start_time, cpu_time, generation));
            if t.start_time != start_time {
                *t = Tracked::new(start_time, cpu_time, generation);
                continue;
            }
            t.seen = generation;
            if t.cpu_time != cpu_time {
                t.cpu_time = cpu_time;
                t.ran = true;
            }
            if t.ran && !t.drm && next_scan >= t.due {
                t.pending = true;
            }
        }
        self.procs.retain(|_, t| t.seen == generation);
    }

    /// Processes tracked (those of the last [`DrmClients::observe`]).
    pub fn tracked(&self) -> usize {
        self.procs.len()
    }

    /// Counters since creation.
    pub fn stats(&self) -> ScanStats {
        self.stats
    }

    /// Lists the due processes' descriptors, reads the fdinfo of every DRM descriptor, and
    /// returns each client's busy time since the previous scan, ordered by device and id.
    pub fn scan(&mut self, at: Timestamp) -> &[ClientUsage] {
        self.scans += 1;
        let scan = self.scans;
        let first_scan = self.last_scan.is_none();
        let interval = self.last_scan.map(|t| at.since(t));
        // Per client: its newest fdinfo and the processes that hold it; whether each holder
        // was already a DRM holder at the previous scan (its descriptors were read then).
        let mut found: FxHashMap<ClientKey, (DrmFdinfo, Vec<u32>, bool)> = FxHashMap::default();
        let mut path = PathBuf::new();
        for (&pid, t) in self.procs.iter_mut() {
            if !(t.pending || t.drm) {
                continue;
            }
            let was_drm = t.drm;
            let infos = list_drm_fds(&self.procfs, pid, &mut path, &mut self.stats);
            t.pending = false;
            t.ran = false;
            t.drm = !infos.is_empty();
            if !t.drm {
                // Spread by pid, so that processes first seen together (all of them at start)
                // do not come due together.
                t.due = scan + t.backoff + u64::from(pid) % t.backoff;
                t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
            }
            for info in infos {
                let Some(id) = info.client_id else { continue };
                let key = ClientKey {
                    device: info.pdev.clone().unwrap_or_else(|| info.driver.clone()),
                    id,
                };
                let slot = found
                    .entry(key)
                    .or_insert_with(|| (info, Vec::new(), false));
                if !slot.1.contains(&pid) {
                    slot.1.push(pid);
                }
                slot.2 |= was_drm;
            }
        }
        self.usage.clear();
        for (key, (info, mut pids, known_holder)) in found {
            let state = self.clients.entry(key.clone()).or_default();
            // A client on a process whose descriptors were read at the previous scan opened
            // since then: all of its time is new. Otherwise the first sight is a baseline.
            let opened_since = state.at.is_none() && known_holder && !first_scan;
            let busy = advance(state, &info.engines, at, interval, opened_since);
            state.at = Some(at);
            state.seen = scan;
            pids.sort_unstable();
            self.usage.push(ClientUsage {
                driver: info.driver,
                pdev: info.pdev,
                client_id: key.id,
                pids,
                busy_ns: busy,
            });
        }
        // Closed clients: their last interval cannot be read any more.
        self.clients.retain(|_, s| s.seen == scan);
        self.usage.sort_by(|a, b| {
            (&a.pdev, &a.driver, a.client_id).cmp(&(&b.pdev, &b.driver, b.client_id))
        });
        self.last_scan = Some(at);
        self.log_state();
        &self.usage
    }

    /// One line per change between "no DRM client" and "some".
    fn log_state(&mut self) {
        let found = !self.usage.is_empty();
        if self.logged_found == Some(found) || self.procs.is_empty() {
            return;
        }
        if found {
            tracing::info!(
                clients = self.usage.len(),
                "DRM clients found in fdinfo; GPU energy is split by their engine time"
            );
        } else {
            tracing::info!(
                processes = self.procs.len(),
                "no process has a DRM device open; GPU active energy stays unattributed"
            );
        }
        self.logged_found = Some(found);
    }
}

/// The fdinfo of every DRM descriptor of `pid` (a link into `/dev/dri/`); empty when there
/// is none or the directory cannot be read.
fn list_drm_fds(
    procfs: &std::path::Path,
    pid: u32,
    path: &mut PathBuf,
    stats: &mut ScanStats,
) -> Vec<DrmFdinfo> {
    let mut out = Vec::new();
    path.clear();
    path.push(procfs);
    path.push(pid.to_string());
    path.push("fd");
    let Ok(dir) = fs::read_dir(&*path) else {
        stats.unreadable += 1;
        return out;
    };
    stats.listed += 1;
    for entry in dir.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if !target
            .as_os_str()
            .as_encoded_bytes()
            .starts_with(b"/dev/dri/")
        {
            continue;
        }
        let mut info_path = path.with_file_name("fdinfo");
        info_path.push(entry.file_name());
        // The descriptor may close between the link and the fdinfo: skip it.
        if let Ok(text) = fs::read_to_string(&info_path) {
            stats.fdinfo_read += 1;
            if let Some(info) = DrmFdinfo::parse(&text) {
                out.push(info);
            }
        }
    }
    out
}

/// Busy nanoseconds of one client since its previous reading, updating the kept maxima.
/// `from_zero`: the client is new since the previous scan, so its counters are all new.
fn advance(
    state: &mut ClientState,
    engines: &[EngineCounters],
    at: Timestamp,
    interval: Option<Nanos>,
    from_zero: bool,
) -> u64 {
    let baseline = state.at.is_none() && !from_zero;
    let wall = match state.at {
        Some(prev) => at.since(prev).0,
        None => interval.map_or(0, |n| n.0),
    };
    let mut busy = 0u64;
    for e in engines {
        let i = match state.engines.iter().position(|k| k.name == e.name) {
            Some(i) => i,
            None => {
                state.engines.push(EngineCounters {
                    name: e.name.clone(),
                    ..EngineCounters::default()
                });
                state.engines.len() - 1
            }
        };
        let prev = &mut state.engines[i];
        let d_ns = forward(&mut prev.busy_ns, e.busy_ns);
        let d_cycles = forward(&mut prev.cycles, e.cycles);
        let d_total = forward(&mut prev.total_cycles, e.total_cycles);
        if baseline {
            continue;
        }
        let ns = if e.busy_ns.is_some() {
            d_ns
        } else if e.total_cycles.is_some() {
            // Busy cycles per GPU timestamp tick, times the wall time.
            if d_total == 0 {
                0
            } else {
                (u128::from(d_cycles) * u128::from(wall) / u128::from(d_total)) as u64
            }
        } else if let Some(hz) = e.max_freq_hz.filter(|&hz| hz > 0) {
            (u128::from(d_cycles) * 1_000_000_000 / u128::from(hz)) as u64
        } else {
            0
        };
        busy = busy.saturating_add(ns);
    }
    busy
}

/// The advance of a counter over the largest value kept, which moves up to `now`; a lower
/// value is a dip the specification says to ride out, so it adds nothing.
fn forward(kept: &mut Option<u64>, now: Option<u64>) -> u64 {
    let Some(now) = now else { return 0 };
    let before = kept.unwrap_or(0);
    if now > before || kept.is_none() {
        *kept = Some(now);
        now.saturating_sub(before)
    } else {
        0
    }
}
