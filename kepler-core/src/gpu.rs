//! GPU energy accounting (issue 7): per-device readings in, node / process / container / pod
//! GPU energy out. Pure like the rest of this crate: no I/O, no clock.
//!
//! Per device and tick, in integer microjoules and exactly:
//!
//! ```text
//!  total = idle + active            idle   = configured idle power × dt, or the learned
//!  active = Σ processes + unattributed        minimum power of ticks with no process, capped at total
//! ```
//!
//! `active` is split among the device's processes by the mode the device runs in:
//!
//! - **shared** (time-slicing): in proportion to each process's SM utilisation (the backend
//!   reports the largest sample per pid since the previous read); all zero means an equal split;
//! - **exclusive**: equally (normally one process);
//! - **MIG**: first among the GPU instances that run processes, by instance weight (slices),
//!   then equally (or by SM samples when present) among the processes of each instance.
//!
//! Processes are matched by pid to the CPU snapshot of the same tick, which gives them their
//! identity (start time), command, container and pod; GPU energy rolls up to containers and pods
//! along the same hierarchy as CPU energy. Remainders are distributed with the
//! largest-remainder method so no microjoule is created or lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::activity::{ContainerInfo, PodInfo, ProcessInfo};
use crate::apportion::Apportioner;
use crate::counter::{Delta, ZoneCounter};
use crate::error::ReadError;
use crate::snapshot::{ProcessEntry, Snapshot, State};
use crate::units::{integrate, watts, MicroJoules, MicroWatts, Nanos, Timestamp};
use crate::zone::{Metering, Reading, SourceKind, ZoneInfo, ZoneKind};

/// What does not change about a GPU for the life of the backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GpuDevice {
    /// The backend's device index (the `gpu` label).
    pub index: u32,
    /// Stable identity (`gpu_uuid`), e.g. `GPU-5c0e...`.
    pub uuid: Arc<str>,
    /// Marketing name (`gpu_name`), e.g. `NVIDIA H100 80GB HBM3`.
    pub name: Arc<str>,
    /// `vendor` label, e.g. `nvidia`.
    pub vendor: Arc<str>,
    /// Where the numbers come from (`source` of `kepler_node_power_source_info`).
    pub source: SourceKind,
}

/// How a device shares itself between processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GpuMode {
    /// Time-slicing between contexts (NVML compute mode `Default`).
    #[default]
    Shared,
    /// One context at a time (`ExclusiveProcess`).
    Exclusive,
    /// Partitioned into Multi-Instance GPU instances.
    Mig,
}

impl GpuMode {
    /// The `mode` label value.
    pub fn label(self) -> &'static str {
        match self {
            GpuMode::Shared => "shared",
            GpuMode::Exclusive => "exclusive",
            GpuMode::Mig => "mig",
        }
    }
}

/// One process seen on a device in one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GpuProcessSample {
    /// Process id as the host sees it.
    pub pid: u32,
    /// Largest SM utilisation sample (percent) since the previous read; 0 when none.
    pub sm_util: u32,
    /// The MIG GPU instance it runs on, when the driver says.
    pub instance: Option<u32>,
    /// Engine busy time since the previous read, in nanoseconds (DRM fdinfo backends; 0 from
    /// NVML). When any process of a device has some, shares follow it instead of `sm_util`.
    pub busy_ns: u64,
}

impl GpuProcessSample {
    /// Process `pid` at `sm_util` percent, on MIG instance `instance` when known.
    pub fn new(pid: u32, sm_util: u32, instance: Option<u32>) -> GpuProcessSample {
        GpuProcessSample {
            pid,
            sm_util,
            instance,
            busy_ns: 0,
        }
    }

    /// Process `pid` that kept the device's engines busy for `busy_ns` since the previous
    /// read (summed over engines), as DRM fdinfo reports it.
    pub fn with_busy_time(pid: u32, busy_ns: u64) -> GpuProcessSample {
        GpuProcessSample {
            pid,
            sm_util: 0,
            instance: None,
            busy_ns,
        }
    }
}

/// A MIG GPU instance and its relative size (compute slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuInstance {
    /// GPU instance id.
    pub id: u32,
    /// Relative size; instances that run processes share active energy in this proportion.
    pub weight: u32,
}

/// One device's reading in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GpuSample {
    /// Which device.
    pub device: Arc<GpuDevice>,
    /// When it was read.
    pub at: Timestamp,
    /// Cumulative energy (preferred) or power, or why there is none.
    pub reading: Result<Reading, ReadError>,
    /// Sharing mode.
    pub mode: GpuMode,
    /// Processes using the device.
    pub processes: Vec<GpuProcessSample>,
    /// MIG instances (empty unless `mode` is MIG).
    pub instances: Vec<GpuInstance>,
}

impl GpuSample {
    /// A reading of `device` at `at` in `mode`, with no processes or instances yet.
    pub fn new(
        device: Arc<GpuDevice>,
        at: Timestamp,
        reading: Result<Reading, ReadError>,
        mode: GpuMode,
    ) -> GpuSample {
        GpuSample {
            device,
            at,
            reading,
            mode,
            processes: Vec::new(),
            instances: Vec::new(),
        }
    }

    /// The same reading with the processes that use the device.
    pub fn with_processes(mut self, processes: Vec<GpuProcessSample>) -> Self {
        self.processes = processes;
        self
    }

    /// The same reading with the device's MIG instances.
    pub fn with_instances(mut self, instances: Vec<GpuInstance>) -> Self {
        self.instances = instances;
        self
    }
}

/// What the GPU backend read in one tick. The caller owns and reuses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuFrame {
    /// One entry per device read (a vanished device has no entry, or an error entry).
    pub samples: Vec<GpuSample>,
}

impl GpuFrame {
    /// Empties the frame, keeping its allocation.
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// A source of per-GPU readings (NVML in `kepler-sources`, a fake in its `fakes` feature).
///
/// The third source trait, beside [`crate::PowerSource`] and [`crate::ActivitySource`]: a GPU
/// is not a zone of a power source because its energy is split by the GPU's own per-process
/// utilisation, not by CPU time, so it fills its own frame for [`GpuAttributor::step`].
pub trait GpuBackend: Send {
    /// A short name for logs and metrics, e.g. `nvml`.
    fn name(&self) -> &'static str;

    /// The devices found at start.
    fn devices(&self) -> &[Arc<GpuDevice>];

    /// Appends a reading of every device to `out`, stamping readings with `at`. Like every
    /// source trait (see [`crate::PowerSource`]), it never clears `out`: the caller clears it
    /// before each tick. A device that fails gets an error entry; a device that is gone gets
    /// no entry.
    fn read(&mut self, at: Timestamp, out: &mut GpuFrame);

    /// Shown each tick's CPU snapshot after the GPU step: the live processes with their start
    /// times and CPU times. Backends that find GPU users by scanning processes (DRM fdinfo)
    /// use it to look only at new processes and those that ran; the default ignores it.
    fn observe(&mut self, _snapshot: &Snapshot) {}
}

impl<T: GpuBackend + ?Sized> GpuBackend for Box<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn devices(&self) -> &[Arc<GpuDevice>] {
        (**self).devices()
    }
    fn read(&mut self, at: Timestamp, out: &mut GpuFrame) {
        (**self).read(at, out)
    }
    fn observe(&mut self, snapshot: &Snapshot) {
        (**self).observe(snapshot)
    }
}

/// GPU accounting settings. Build one with [`GpuConfig::builder`]: new settings may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GpuConfig {
    /// Fixed idle power per device (`experimental.gpu.idlePower`); `None` learns it as the
    /// lowest power seen while no process used the device.
    pub idle_power: Option<MicroWatts>,
    /// How long terminated workloads stay exported.
    pub terminated_ttl: Nanos,
    /// Most power a device may plausibly draw; bigger deltas are counter resets and dropped.
    pub max_power: MicroWatts,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            idle_power: None,
            terminated_ttl: Nanos::from_secs(10),
            max_power: MicroWatts::from_watts(3_000.0),
        }
    }
}

impl GpuConfig {
    /// The defaults (learned idle power, 10 s TTL, 3 kW bound), to adjust.
    pub fn builder() -> GpuConfigBuilder {
        GpuConfigBuilder(GpuConfig::default())
    }
}

/// Builds a [`GpuConfig`].
#[derive(Debug, Clone)]
pub struct GpuConfigBuilder(GpuConfig);

impl GpuConfigBuilder {
    /// Sets a fixed idle power per device; `None` learns it.
    pub fn idle_power(mut self, p: Option<MicroWatts>) -> Self {
        self.0.idle_power = p;
        self
    }
    /// Sets how long terminated workloads stay exported.
    pub fn terminated_ttl(mut self, ttl: Nanos) -> Self {
        self.0.terminated_ttl = ttl;
        self
    }
    /// Sets the most power a device may plausibly draw.
    pub fn max_power(mut self, p: MicroWatts) -> Self {
        self.0.max_power = p;
        self
    }
    /// The configuration.
    pub fn build(self) -> GpuConfig {
        self.0
    }
}

/// A device's node-level accounting.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GpuNode {
    /// The device.
    pub device: Arc<GpuDevice>,
    /// Sharing mode at the latest good read.
    pub mode: GpuMode,
    /// Cumulative energy since start.
    pub total: MicroJoules,
    /// Cumulative idle share.
    pub idle: MicroJoules,
    /// Cumulative active share; `idle + active == total`.
    pub active: MicroJoules,
    /// Active energy no process explains (no process on the device).
    pub unattributed: MicroJoules,
    /// Power over the latest interval, watts.
    pub power: f64,
    /// Idle part of `power`.
    pub idle_power: f64,
    /// Active part of `power`.
    pub active_power: f64,
    /// The idle power in use (configured or learned); `None` while still unknown.
    pub idle_baseline: Option<MicroWatts>,
    /// True when the latest read succeeded.
    pub up: bool,
    /// The latest read error.
    pub last_error: Option<ReadError>,
    /// Failed reads (and reads where the device was missing) since start.
    pub read_errors: u64,
    /// Deltas dropped as implausible (counter resets) since start.
    pub dropped_deltas: u64,
}

/// GPU energy of one workload on one device.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GpuEntry<I> {
    /// Identity and metadata of the workload.
    pub info: I,
    /// Position of the device in [`GpuSnapshot::devices`].
    pub device: usize,
    /// Running or terminated.
    pub state: State,
    /// Cumulative energy; never decreases.
    pub total: MicroJoules,
    /// Energy in the latest tick.
    pub last: MicroJoules,
    /// Power over the latest tick, watts.
    pub watts: f64,
}

/// A process's identity for GPU entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcess {
    /// Process id.
    pub pid: u32,
    /// Start time (0 when the CPU snapshot did not know the process).
    pub start_time: u64,
    /// Static data (empty comm when unknown).
    pub info: Arc<ProcessInfo>,
}

/// Everything GPU-related as of one tick. Immutable; share it with `Arc`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct GpuSnapshot {
    /// Devices in the order first seen.
    pub devices: Vec<GpuNode>,
    /// Per process and device.
    pub processes: Vec<GpuEntry<GpuProcess>>,
    /// Per container and device (sums of their processes).
    pub containers: Vec<GpuEntry<ContainerInfo>>,
    /// Per pod and device (sums of their containers).
    pub pods: Vec<GpuEntry<PodInfo>>,
}

#[derive(Debug)]
struct DeviceState {
    node: GpuNode,
    counter: ZoneCounter,
    learned_idle: Option<MicroWatts>,
    idle_carry: u64,
}

/// Cumulative entries of one level, keyed for deterministic order.
#[derive(Debug)]
struct Ledger<K: Ord, I> {
    entries: BTreeMap<K, (GpuEntry<I>, u64)>,
}

impl<K: Ord, I> Default for Ledger<K, I> {
    fn default() -> Self {
        Ledger {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, I: Clone> Ledger<K, I> {
    fn charge(&mut self, key: K, info: &I, device: usize, energy: u64, dt: Nanos, tick: u64) {
        let (e, seen) = self.entries.entry(key).or_insert_with(|| {
            (
                GpuEntry {
                    info: info.clone(),
                    device,
                    state: State::Running,
                    total: MicroJoules::ZERO,
                    last: MicroJoules::ZERO,
                    watts: 0.0,
                },
                tick,
            )
        });
        if *seen != tick {
            *seen = tick;
            e.last = MicroJoules::ZERO;
        }
        e.state = State::Running;
        e.last += MicroJoules(energy);
        e.total += MicroJoules(energy);
        e.watts = watts(e.last, dt);
    }

    /// Entries not charged this tick get no energy; they are terminated when their device was
    /// read (`read_ok`) and dropped after the TTL.
    fn finish(&mut self, tick: u64, at: Timestamp, ttl: Nanos, read_ok: &[bool]) {
        for (e, seen) in self.entries.values_mut() {
            if *seen != tick {
                e.last = MicroJoules::ZERO;
                e.watts = 0.0;
                if e.state == State::Running && read_ok.get(e.device).copied().unwrap_or(false) {
                    e.state = State::Terminated { at };
                }
            }
        }
        self.entries.retain(|_, (e, _)| match e.state {
            State::Running => true,
            State::Terminated { at: gone } => at.since(gone) < ttl,
        });
    }

    fn list(&self) -> Vec<GpuEntry<I>> {
        self.entries.values().map(|(e, _)| e.clone()).collect()
    }
}

/// Splits GPU energy into idle and active and attributes active energy to processes.
///
/// Deterministic: the same frames and CPU snapshots give the same results, bit for bit.
#[derive(Debug, Default)]
pub struct GpuAttributor {
    config: GpuConfig,
    devices: Vec<DeviceState>,
    tick: u64,
    processes: Ledger<(u32, u64, usize), GpuProcess>,
    containers: Ledger<(Arc<str>, usize), ContainerInfo>,
    pods: Ledger<(Arc<str>, usize), PodInfo>,
    apportioner: Apportioner,
}

impl GpuAttributor {
    /// A new accountant with no history.
    pub fn new(config: GpuConfig) -> GpuAttributor {
        GpuAttributor {
            config,
            ..GpuAttributor::default()
        }
    }

    /// Advances by one tick. `cpu` is the CPU snapshot of the same tick, used to identify
    /// processes by pid and roll them up to containers and pods.
    #[must_use = "the snapshot is the result of the step"]
    pub fn step(&mut self, frame: &GpuFrame, cpu: &Snapshot, at: Timestamp) -> GpuSnapshot {
        self.tick += 1;
        let mut read_ok = vec![false; self.devices.len()];
        let mut seen = vec![false; self.devices.len()];
        let mut unknown: BTreeMap<u32, Arc<ProcessInfo>> = BTreeMap::new();
        let by_pid = processes_by_pid(frame, cpu);
        for sample in &frame.samples {
            let slot = self.slot(&sample.device);
            if read_ok.len() <= slot {
                read_ok.resize(slot + 1, false);
                seen.resize(slot + 1, false);
            }
            seen[slot] = true;
            let idle_power = self.config.idle_power;
            let d = &mut self.devices[slot];
            if sample.reading.is_ok() {
                read_ok[slot] = true;
            }
            let Some((active, dt)) = d.measure(sample, idle_power) else {
                continue;
            };
            let attributed = self.charge(sample, slot, active, dt, &by_pid, &mut unknown);
            self.devices[slot].node.unattributed += MicroJoules(active.0 - attributed);
        }
        self.mark_missing(&seen);
        let (tick, ttl) = (self.tick, self.config.terminated_ttl);
        self.processes.finish(tick, at, ttl, &read_ok);
        self.containers.finish(tick, at, ttl, &read_ok);
        self.pods.finish(tick, at, ttl, &read_ok);
        GpuSnapshot {
            devices: self.devices.iter().map(|d| d.node.clone()).collect(),
            processes: self.processes.list(),
            containers: self.containers.list(),
            pods: self.pods.list(),
        }
    }

    /// Splits `active` energy among the sample's processes and charges each process, its
    /// container and pod on device `slot`; returns the energy charged.
    fn charge(
        &mut self,
        sample: &GpuSample,
        slot: usize,
        active: MicroJoules,
        dt: Nanos,
        by_pid: &BTreeMap<u32, &ProcessEntry>,
        unknown: &mut BTreeMap<u32, Arc<ProcessInfo>>,
    ) -> u64 {
        let tick = self.tick;
        let parts = split(&mut self.apportioner, sample, active.0);
        let mut attributed = 0u64;
        for (p, part) in sample.processes.iter().zip(parts) {
            attributed += part;
            let (start_time, info) = identify(by_pid, p.pid, unknown);
            let proc_id = GpuProcess {
                pid: p.pid,
                start_time,
                info: Arc::clone(&info),
            };
            self.processes
                .charge((p.pid, start_time, slot), &proc_id, slot, part, dt, tick);
            if let Some(c) = &info.container {
                self.containers
                    .charge((Arc::clone(&c.id), slot), c, slot, part, dt, tick);
                if let Some(pod) = &c.pod {
                    self.pods
                        .charge((Arc::clone(&pod.id), slot), pod, slot, part, dt, tick);
                }
            }
        }
        attributed
    }

    /// A device that vanished from the frame is down until it comes back.
    fn mark_missing(&mut self, seen: &[bool]) {
        for (slot, d) in self.devices.iter_mut().enumerate() {
            if !seen.get(slot).copied().unwrap_or(false) {
                d.node.up = false;
                d.node.read_errors += 1;
                d.node.power = 0.0;
                d.node.idle_power = 0.0;
                d.node.active_power = 0.0;
                d.node.last_error = Some(ReadError::Missing {
                    what: format!("GPU {}", d.node.device.uuid),
                });
            }
        }
    }

    /// The slot of `device`, matched by UUID; new devices are appended.
    fn slot(&mut self, device: &Arc<GpuDevice>) -> usize {
        if let Some(i) = self
            .devices
            .iter()
            .position(|d| d.node.device.uuid == device.uuid)
        {
            return i;
        }
        let zone = ZoneInfo {
            id: format!("gpu:{}", device.uuid),
            kind: ZoneKind::Gpu,
            index: device.index,
            path: device.uuid.to_string(),
            source: device.source,
            // NVML's total-energy counter is 64-bit millijoules since the driver loaded: it does
            // not wrap in practice, and a value that goes back is a driver reload (a reset).
            metering: Metering::EnergyCounter { max_range: None },
            estimated: false,
            max_power: Some(self.config.max_power),
        };
        self.devices.push(DeviceState {
            counter: ZoneCounter::new(&zone, self.config.max_power),
            node: GpuNode {
                device: Arc::clone(device),
                mode: GpuMode::Shared,
                total: MicroJoules::ZERO,
                idle: MicroJoules::ZERO,
                active: MicroJoules::ZERO,
                unattributed: MicroJoules::ZERO,
                power: 0.0,
                idle_power: 0.0,
                active_power: 0.0,
                idle_baseline: self.config.idle_power,
                up: false,
                last_error: None,
                read_errors: 0,
                dropped_deltas: 0,
            },
            learned_idle: None,
            idle_carry: 0,
        });
        self.devices.len() - 1
    }
}

impl DeviceState {
    /// Takes the device's reading: its energy since the previous one split into idle
    /// (configured, else learned from ticks where nothing ran) and active. Returns the
    /// active energy and the interval, or `None` when there is no delta to account.
    fn measure(
        &mut self,
        sample: &GpuSample,
        idle_power: Option<MicroWatts>,
    ) -> Option<(MicroJoules, Nanos)> {
        let reading = match &sample.reading {
            Ok(r) => *r,
            Err(e) => {
                self.node.up = false;
                self.node.read_errors += 1;
                self.node.last_error = Some(e.clone());
                return None;
            }
        };
        self.node.up = true;
        self.node.last_error = None;
        self.node.mode = sample.mode;
        let (energy, dt) = match self.counter.update(sample.at, reading) {
            Delta::Baseline => return None,
            Delta::Implausible => {
                self.node.dropped_deltas += 1;
                return None;
            }
            Delta::Energy { energy, dt, .. } => (energy, dt),
        };
        let avg = MicroWatts((energy.0 as u128 * 1_000_000_000 / dt.0 as u128) as u64);
        if sample.processes.is_empty() {
            self.learned_idle = Some(self.learned_idle.map_or(avg, |m| m.min(avg)));
        }
        let baseline = idle_power.or(self.learned_idle);
        let idle = match baseline {
            Some(p) => {
                let (e, carry) = integrate(p, dt, self.idle_carry);
                self.idle_carry = carry;
                e.min(energy)
            }
            None => MicroJoules::ZERO,
        };
        let active = energy.saturating_sub(idle);
        self.node.idle_baseline = baseline;
        self.node.total += energy;
        self.node.idle += idle;
        self.node.active += active;
        self.node.power = watts(energy, dt);
        self.node.idle_power = watts(idle, dt);
        self.node.active_power = watts(active, dt);
        Some((active, dt))
    }
}

/// pid -> the CPU snapshot's entry (the running one, the newest when there are several),
/// built only when some GPU runs processes.
fn processes_by_pid<'a>(frame: &GpuFrame, cpu: &'a Snapshot) -> BTreeMap<u32, &'a ProcessEntry> {
    let mut m: BTreeMap<u32, &ProcessEntry> = BTreeMap::new();
    if frame.samples.iter().all(|s| s.processes.is_empty()) {
        return m;
    }
    for p in &cpu.processes {
        let better = m.get(&p.pid).is_none_or(|q| {
            (p.state == State::Running, p.start_time) > (q.state == State::Running, q.start_time)
        });
        if better {
            m.insert(p.pid, p);
        }
    }
    m
}

/// The process's identity from the CPU snapshot (its running entry with that pid, the newest
/// when there are several), else a placeholder for that pid.
fn identify(
    by_pid: &BTreeMap<u32, &ProcessEntry>,
    pid: u32,
    unknown: &mut BTreeMap<u32, Arc<ProcessInfo>>,
) -> (u64, Arc<ProcessInfo>) {
    match by_pid.get(&pid) {
        Some(p) => (p.start_time, Arc::clone(&p.info)),
        None => {
            let info = unknown.entry(pid).or_insert_with(|| {
                Arc::new(ProcessInfo {
                    comm: "".into(),
                    exe: "".into(),
                    container: None,
                    vm: None,
                })
            });
            (0, Arc::clone(info))
        }
    }
}

/// Active energy per process of `sample`, in the order of `sample.processes`; sums to
/// `active` exactly when there is at least one process.
fn split(ap: &mut Apportioner, sample: &GpuSample, active: u64) -> Vec<u64> {
    let procs = &sample.processes;
    let mut out = Vec::with_capacity(procs.len());
    if procs.is_empty() {
        return out;
    }
    // Engine busy time when the backend measures it (DRM), else SM samples (NVML); all zero
    // means an equal split.
    let by_time = procs.iter().any(|p| p.busy_ns > 0);
    let by_sm = |ap: &mut Apportioner, idx: &[usize], total: u64, out: &mut Vec<u64>| {
        let mut w: Vec<u64> = idx
            .iter()
            .map(|&i| {
                if by_time {
                    procs[i].busy_ns
                } else {
                    procs[i].sm_util as u64
                }
            })
            .collect();
        if w.iter().all(|&x| x == 0) {
            w.iter_mut().for_each(|x| *x = 1);
        }
        ap.apportion(total, &w, out);
    };
    match sample.mode {
        GpuMode::Exclusive => {
            let w = vec![1u64; procs.len()];
            ap.apportion(active, &w, &mut out);
        }
        GpuMode::Shared => {
            let idx: Vec<usize> = (0..procs.len()).collect();
            by_sm(ap, &idx, active, &mut out);
        }
        GpuMode::Mig => {
            // Instances with processes, in id order; unknown instance = its own bucket.
            let mut groups: BTreeMap<Option<u32>, Vec<usize>> = BTreeMap::new();
            for (i, p) in procs.iter().enumerate() {
                groups.entry(p.instance).or_default().push(i);
            }
            let weights: Vec<u64> = groups
                .keys()
                .map(|id| {
                    id.and_then(|id| sample.instances.iter().find(|g| g.id == id))
                        .map_or(1, |g| g.weight.max(1) as u64)
                })
                .collect();
            let mut per_group = Vec::new();
            ap.apportion(active, &weights, &mut per_group);
            out.resize(procs.len(), 0);
            let mut parts = Vec::new();
            for ((_, idx), &share) in groups.iter().zip(&per_group) {
                by_sm(ap, idx, share, &mut parts);
                for (&i, &part) in idx.iter().zip(&parts) {
                    out[i] = part;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Arc<GpuDevice> {
        Arc::new(GpuDevice {
            index: 0,
            uuid: "GPU-0".into(),
            name: "Test GPU".into(),
            vendor: "nvidia".into(),
            source: SourceKind::Fake,
        })
    }

    fn sample(mode: GpuMode, procs: &[(u32, u32, Option<u32>)]) -> GpuSample {
        GpuSample {
            device: device(),
            at: Timestamp(0),
            reading: Ok(Reading::Energy(MicroJoules(0))),
            mode,
            processes: procs
                .iter()
                .map(|&(pid, sm_util, instance)| GpuProcessSample::new(pid, sm_util, instance))
                .collect(),
            instances: vec![
                GpuInstance { id: 1, weight: 3 },
                GpuInstance { id: 2, weight: 1 },
            ],
        }
    }

    #[test]
    fn shared_split_follows_sm_shares() {
        let mut ap = Apportioner::default();
        let s = sample(
            GpuMode::Shared,
            &[(1, 10, None), (2, 30, None), (3, 60, None)],
        );
        assert_eq!(split(&mut ap, &s, 1_000), vec![100, 300, 600]);
        let s = sample(GpuMode::Shared, &[(1, 0, None), (2, 0, None)]);
        assert_eq!(split(&mut ap, &s, 11), vec![6, 5]);
    }

    #[test]
    fn shared_split_follows_engine_time_when_measured() {
        let mut ap = Apportioner::default();
        let mut s = sample(GpuMode::Shared, &[]);
        // Engine nanoseconds beyond u32 (several engines busy for seconds) weigh exactly.
        s.processes = vec![
            GpuProcessSample::with_busy_time(1, 6_000_000_000),
            GpuProcessSample::with_busy_time(2, 2_000_000_000),
            GpuProcessSample::with_busy_time(3, 0),
        ];
        assert_eq!(split(&mut ap, &s, 1_000), vec![750, 250, 0]);
    }

    #[test]
    fn exclusive_split_is_equal() {
        let mut ap = Apportioner::default();
        let s = sample(GpuMode::Exclusive, &[(1, 90, None), (2, 10, None)]);
        assert_eq!(split(&mut ap, &s, 1_000), vec![500, 500]);
    }

    #[test]
    fn mig_split_by_instance_weight_then_within() {
        let mut ap = Apportioner::default();
        // Instance 1 (weight 3) has two processes, instance 2 (weight 1) one.
        let s = sample(
            GpuMode::Mig,
            &[(1, 0, Some(1)), (2, 0, Some(2)), (3, 0, Some(1))],
        );
        assert_eq!(split(&mut ap, &s, 800), vec![300, 200, 300]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn mode(m: u8) -> GpuMode {
        match m % 3 {
            0 => GpuMode::Shared,
            1 => GpuMode::Exclusive,
            _ => GpuMode::Mig,
        }
    }

    proptest! {
        /// Per device and tick, whatever the power, processes, mode, idle setting, counter
        /// resets and missing devices: total = idle + active, active = Σ processes +
        /// unattributed, exactly, and no cumulative value ever decreases.
        #[test]
        fn gpu_energy_is_conserved_and_monotonic(
            idle in prop::option::of(0u64..400_000_000),
            ticks in prop::collection::vec(
                (0u64..5_000_000_000, 1u64..3_000_000_000, any::<bool>(), any::<bool>(), any::<u8>(),
                 prop::collection::vec((1u32..6, 0u32..101, prop::option::of(0u32..3)), 0..5)),
                1..25),
        ) {
            let device = Arc::new(GpuDevice {
                index: 0,
                uuid: "GPU-p".into(),
                name: "P".into(),
                vendor: "nvidia".into(),
                source: SourceKind::Fake,
            });
            let mut engine = GpuAttributor::new(GpuConfig {
                idle_power: idle.map(MicroWatts),
                ..GpuConfig::default()
            });
            let cpu = crate::Attributor::default().step(&Default::default(), None, Timestamp(0));
            let (mut t, mut energy) = (0u64, 0u64);
            let mut prev: Option<GpuSnapshot> = None;
            for (uw, dt, reset, absent, m, procs) in ticks {
                t += dt;
                energy = if reset { 0 } else { energy + (uw as u128 * dt as u128 / 1_000_000_000) as u64 };
                let mut frame = GpuFrame::default();
                if !absent {
                    frame.samples.push(GpuSample {
                        device: Arc::clone(&device),
                        at: Timestamp(t),
                        reading: Ok(Reading::Energy(MicroJoules(energy))),
                        mode: mode(m),
                        processes: procs.iter().map(|&(pid, sm_util, instance)| GpuProcessSample::new(pid, sm_util, instance)).collect(),
                        instances: vec![GpuInstance { id: 1, weight: 2 }],
                    });
                }
                let s = engine.step(&frame, &cpu, Timestamp(t));
                for d in &s.devices {
                    prop_assert_eq!(d.total, d.idle + d.active);
                    // Terminated entries may have expired, so compare against what is kept.
                    let procs: u64 = s.processes.iter().map(|p| p.total.0).sum();
                    prop_assert!(procs + d.unattributed.0 <= d.active.0);
                    let last: u64 = s.processes.iter().map(|p| p.last.0).sum();
                    if let Some(pd) = prev.as_ref().and_then(|p| p.devices.first()) {
                        prop_assert!(d.total >= pd.total && d.idle >= pd.idle && d.active >= pd.active);
                        let tick_active = d.active.0 - pd.active.0;
                        let tick_unattr = d.unattributed.0 - pd.unattributed.0;
                        prop_assert_eq!(last + tick_unattr, tick_active);
                    }
                }
                prev = Some(s);
            }
        }
    }
}
