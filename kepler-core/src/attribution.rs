//! The engine: readings and activity in, an immutable [`Snapshot`] out.
//!
//! One tick, in order:
//!
//! 1. Node CPU usage over the interval, node-wide and per socket when the frame has per-CPU
//!    times of more than one socket.
//! 2. Zone energy deltas, split into active and idle: by the usage ratio (Kepler's split) or,
//!    with [`IdlePower::Learned`], by a learned idle baseline power.
//! 3. Each process's weight: its own CPU-time delta, plus the growth of its reaped
//!    children's time (`cutime + cstime`) less what those children were already charged
//!    for. Children that lived between two frames thus reach their parent (issue 4).
//! 4. Each container with cgroup accounting: the cgroup's CPU-time delta that its live
//!    processes do not explain becomes an "exited" weight charged to the container, so
//!    short-lived processes reach their container and pod instead of the survivors.
//! 5. Each zone's active (and, under an idle policy, idle) energy is apportioned exactly by
//!    those weights; node busy time nobody explains goes to `unattributed`.
//! 6. Roll-up into containers, pods and VMs; then terminated workloads are marked, expired
//!    after the TTL and capped.

use std::sync::Arc;

use crate::activity::{ActivityFrame, ContainerInfo, NodeCpu, PodInfo, VmInfo};
use crate::apportion::Apportioner;
use crate::counter::{Delta, ZoneCounter};
use crate::hash::FxHashMap;
use crate::snapshot::{
    Energies, EngineStats, GroupEntry, IdlePolicy, NodeZone, PerKind, ProcessEntry, Snapshot, State,
};
use crate::source::PowerFrame;
use crate::units::{watts, MicroJoules, MicroWatts, Nanos, Timestamp};
use crate::zone::ZoneKind;

/// How a zone's idle energy is estimated (`attribution.idlePower`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePower {
    /// `idle = energy x (1 - CPU usage ratio)`: Kepler's split. Under load it makes idle
    /// shrink toward zero although the idle floor of the hardware does not change.
    Usage,
    /// `idle = baseline x dt` (at most the energy), where the baseline is the lowest power
    /// seen in ticks of low CPU usage. Until a low-usage tick has been seen, `Usage` is used.
    Learned {
        /// Ticks whose usage ratio is at most this, in parts per thousand, teach the baseline.
        max_usage_permille: u32,
        /// Time constant with which the baseline rises toward newer low-usage power, so that
        /// one old dip does not hold it down forever. A lower power replaces it at once.
        decay: Nanos,
    },
}

impl IdlePower {
    /// Default `max_usage_permille` of `Learned`: ticks at up to 10% usage.
    pub const DEFAULT_MAX_USAGE_PERMILLE: u32 = 100;
    /// Default `decay` of `Learned`: one hour.
    pub const DEFAULT_DECAY: Nanos = Nanos::from_secs(3600);
    /// `Learned` with its defaults.
    pub const LEARNED_DEFAULT: IdlePower = IdlePower::Learned {
        max_usage_permille: IdlePower::DEFAULT_MAX_USAGE_PERMILLE,
        decay: IdlePower::DEFAULT_DECAY,
    };
}

/// Engine settings. Build with [`AttributorConfig::builder`] or use the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributorConfig {
    /// How long a terminated workload stays in snapshots. Default 10 s (two 5 s intervals).
    pub terminated_ttl: Nanos,
    /// Most terminated workloads kept per level (process, container, pod, VM); the largest by
    /// energy win. `None` keeps all of them for the TTL.
    pub max_terminated: Option<usize>,
    /// Bound on plausible zone power when a zone states none; bigger deltas are resets.
    pub default_max_power: MicroWatts,
    /// Who gets idle energy. Default: nobody (it stays at node level, as in Kepler).
    pub idle: IdlePolicy,
    /// How idle energy is estimated. Default: from the usage ratio, as in Kepler.
    pub idle_power: IdlePower,
}

impl Default for AttributorConfig {
    fn default() -> Self {
        AttributorConfig {
            terminated_ttl: Nanos::from_secs(10),
            max_terminated: Some(500),
            default_max_power: MicroWatts::from_watts(10_000.0),
            idle: IdlePolicy::None,
            idle_power: IdlePower::Usage,
        }
    }
}

impl AttributorConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> AttributorConfigBuilder {
        AttributorConfigBuilder(AttributorConfig::default())
    }
}

/// Builds an [`AttributorConfig`].
#[derive(Debug, Clone)]
pub struct AttributorConfigBuilder(AttributorConfig);

impl AttributorConfigBuilder {
    /// Sets how long terminated workloads stay exported.
    pub fn terminated_ttl(mut self, ttl: Nanos) -> Self {
        self.0.terminated_ttl = ttl;
        self
    }
    /// Caps the number of retained terminated workloads per level.
    pub fn max_terminated(mut self, max: Option<usize>) -> Self {
        self.0.max_terminated = max;
        self
    }
    /// Sets the power bound for zones that state none.
    pub fn default_max_power(mut self, p: MicroWatts) -> Self {
        self.0.default_max_power = p;
        self
    }
    /// Sets who gets idle energy.
    pub fn idle(mut self, policy: IdlePolicy) -> Self {
        self.0.idle = policy;
        self
    }
    /// Sets how idle energy is estimated.
    pub fn idle_power(mut self, idle_power: IdlePower) -> Self {
        self.0.idle_power = idle_power;
        self
    }
    /// The config.
    pub fn build(self) -> AttributorConfig {
        self.0
    }
}

#[derive(Debug)]
struct ZoneState {
    entry: NodeZone,
    counter: ZoneCounter,
    /// Learned idle power, µW (see [`IdlePower::Learned`]).
    baseline: Option<u64>,
}

#[derive(Debug)]
struct ProcState {
    entry: ProcessEntry,
    seen_tick: u64,
    /// Parent pid at the latest frame (0: unknown).
    ppid: u32,
    /// `cutime + cstime` at the latest frame, ns.
    children_time: u64,
    /// Growth of `children_time` this tick.
    children_delta: u64,
    /// Reaped-children time not yet credited (> 0 never stays) or, when negative, time of
    /// observed children already charged to them that the next `cutime` growth repays.
    child_balance: i64,
    /// A negative balance is kept one tick (the child may be reaped after the scan read
    /// its parent), then forgiven: a parent that never reaps must not absorb later credit.
    debt_carried: bool,
    /// This tick's own CPU-time delta, ns.
    own_delta: u64,
    /// Socket of the CPU it last ran on, when per-socket data is known.
    socket: Option<u32>,
    /// Its index in this tick's targets, or `NO_TARGET`.
    target: u32,
    /// Cached (epoch, slot) of its container, pod and VM; reset when its info changes.
    group_slots: [Option<(u64, u32)>; 3],
    /// Cached (epoch, slot) of its container's cgroup state, if any.
    cgroup_slot: Option<(u64, Option<u32>)>,
}

/// A container's cgroup CPU accounting between ticks.
#[derive(Debug)]
struct CgroupState {
    id: Arc<str>,
    usage: u64,
    /// Cgroup time not explained by live processes, carried between ticks; negative when
    /// the processes' (tick-quantised) times ran ahead of the cgroup's.
    balance: i64,
    /// This tick's cgroup delta, when it had a previous sample.
    delta: Option<u64>,
    /// Sum of the own CPU-time deltas of its live processes this tick.
    explained: u64,
    /// Index of this tick's sample in `ActivityFrame::containers`.
    frame_index: usize,
    seen_tick: u64,
}

/// Containers' cgroup states in a slab, so processes can cache their container's slot.
#[derive(Debug, Default)]
struct Cgroups {
    slots: Vec<CgroupState>,
    index: FxHashMap<Arc<str>, usize>,
    /// Bumped on every insert or removal, which invalidates slots cached by processes.
    epoch: u64,
}

impl Cgroups {
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut CgroupState> {
        let &slot = self.index.get(id)?;
        self.slots.get_mut(slot)
    }

    fn insert(&mut self, id: Arc<str>, state: CgroupState) {
        self.index.insert(id, self.slots.len());
        self.slots.push(state);
        self.epoch += 1;
    }

    /// The slot of `id`'s state through the caller's cache.
    fn slot_cached(&self, cache: &mut Option<(u64, Option<u32>)>, id: &str) -> Option<usize> {
        match *cache {
            Some((epoch, slot)) if epoch == self.epoch => slot.map(|s| s as usize),
            _ => {
                let slot = self.index.get(id).copied();
                *cache = Some((self.epoch, slot.map(|s| s as u32)));
                slot
            }
        }
    }

    /// Drops the states not sampled in `tick`.
    fn retain_seen(&mut self, tick: u64) {
        if self.slots.iter().all(|c| c.seen_tick == tick) {
            return;
        }
        self.slots.retain(|c| c.seen_tick == tick);
        self.index.clear();
        for (i, c) in self.slots.iter().enumerate() {
            self.index.insert(Arc::clone(&c.id), i);
        }
        self.epoch += 1;
    }
}

#[derive(Debug)]
struct GroupState<I> {
    entry: GroupEntry<I>,
    seen_tick: u64,
}

/// A set of groups (containers, pods or VMs) keyed by id, in a slab so iteration is cheap.
#[derive(Debug)]
struct Groups<I> {
    slots: Vec<GroupState<I>>,
    index: FxHashMap<Arc<str>, usize>,
    /// Bumped whenever slots move, which invalidates slots cached by processes.
    epoch: u64,
}

impl<I> Default for Groups<I> {
    fn default() -> Self {
        Groups {
            slots: Vec::new(),
            index: FxHashMap::default(),
            epoch: 0,
        }
    }
}

impl<I: Clone + PartialEq> Groups<I> {
    /// Marks the group live this tick and adds this tick's energy to it.
    fn charge(&mut self, id: &Arc<str>, info: &I, last: &Energies, tick: u64) {
        let slot = self.slot_of(id, info, tick);
        self.charge_slot(slot, last, tick);
    }

    /// As [`Groups::charge`] through a slot cached by the caller: the cache holds while its
    /// epoch is current and the caller's info is unchanged since it was filled.
    fn charge_cached(
        &mut self,
        cache: &mut Option<(u64, u32)>,
        id: &Arc<str>,
        info: &I,
        last: &Energies,
        tick: u64,
    ) {
        let slot = match *cache {
            Some((epoch, slot)) if epoch == self.epoch => slot as usize,
            _ => {
                let slot = self.slot_of(id, info, tick);
                *cache = Some((self.epoch, slot as u32));
                slot
            }
        };
        self.charge_slot(slot, last, tick);
    }

    fn charge_slot(&mut self, slot: usize, last: &Energies, tick: u64) {
        let g = &mut self.slots[slot];
        if g.seen_tick != tick {
            g.seen_tick = tick;
            g.entry.energy.new_tick();
        }
        g.entry.state = State::Running;
        g.entry.energy.add_last(last);
    }

    /// The slot of group `id`, created when new, its info refreshed when it differs.
    fn slot_of(&mut self, id: &Arc<str>, info: &I, tick: u64) -> usize {
        let slot = match self.index.get(id) {
            Some(&s) => s,
            None => {
                self.index.insert(Arc::clone(id), self.slots.len());
                self.slots.push(GroupState {
                    entry: GroupEntry {
                        info: info.clone(),
                        state: State::Running,
                        energy: Energies::default(),
                    },
                    seen_tick: tick,
                });
                self.slots.len() - 1
            }
        };
        let g = &mut self.slots[slot];
        // Names may arrive after the first sight (pod metadata fills in the background, issue 8).
        if g.entry.info != *info {
            g.entry.info = info.clone();
        }
        slot
    }

    /// Ends a tick: groups not charged get no energy this tick; when the tick had a real
    /// activity frame (`frame_seen`) they are terminated and old ones expire.
    fn finish_tick(
        &mut self,
        tick: u64,
        at: Timestamp,
        frame_seen: bool,
        config: &AttributorConfig,
        id_of: impl Fn(&I) -> &Arc<str>,
    ) -> u64 {
        for g in &mut self.slots {
            if g.seen_tick != tick {
                g.entry.energy.new_tick();
                if frame_seen && g.entry.state == State::Running {
                    g.entry.state = State::Terminated { at };
                }
            }
        }
        if !frame_seen {
            return 0;
        }
        let before = self.slots.len();
        let evicted = retain_workloads(
            &mut self.slots,
            at,
            config,
            |g| &g.entry.state,
            |g| g.entry.energy.total.sum(),
        );
        if self.slots.len() != before {
            // Slots moved: callers' cached slots are stale.
            self.epoch += 1;
            self.index.clear();
            for (i, g) in self.slots.iter().enumerate() {
                self.index.insert(Arc::clone(id_of(&g.entry.info)), i);
            }
        }
        evicted
    }

    fn entries(&self) -> Vec<GroupEntry<I>> {
        self.slots.iter().map(|g| g.entry.clone()).collect()
    }
}

/// Who a weight belongs to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A process, by slot.
    Proc(usize),
    /// The exited-process time of a container, by its index in the frame's `containers`.
    Exited(usize),
}

/// Energy to apportion with one set of weights: node-wide, or one socket's.
#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    /// `None`: node-wide.
    socket: Option<u32>,
    busy: u64,
    total: u64,
    active: PerKind,
    idle: PerKind,
}

/// Zone kinds that exist once per socket; `psys` and platform meters are node-wide.
fn per_socket(kind: ZoneKind) -> bool {
    matches!(
        kind,
        ZoneKind::Package | ZoneKind::Core | ZoneKind::Uncore | ZoneKind::Dram
    )
}

/// Drops terminated items older than the TTL, then the smallest by energy beyond the cap.
/// Returns how many were dropped by the cap.
fn retain_workloads<T>(
    items: &mut Vec<T>,
    at: Timestamp,
    config: &AttributorConfig,
    state: impl Fn(&T) -> &State,
    energy: impl Fn(&T) -> u64,
) -> u64 {
    items.retain(|it| match state(it) {
        State::Running => true,
        State::Terminated { at: gone } => at.since(*gone) < config.terminated_ttl,
    });
    let Some(max) = config.max_terminated else {
        return 0;
    };
    let terminated = items
        .iter()
        .filter(|it| matches!(state(it), State::Terminated { .. }))
        .count();
    if terminated <= max {
        return 0;
    }
    // Keep the `max` largest terminated items; ties keep the earlier one.
    let mut sizes: Vec<(u64, usize)> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| matches!(state(it), State::Terminated { .. }))
        .map(|(i, it)| (energy(it), i))
        .collect();
    sizes.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut drop = vec![false; items.len()];
    for &(_, i) in &sizes[max..] {
        drop[i] = true;
    }
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        !drop[i - 1]
    });
    (terminated - max) as u64
}

/// Splits node energy into active and idle and attributes active energy to workloads.
///
/// Deterministic: the same sequence of inputs gives the same snapshots, bit for bit. It keeps
/// cumulative state between steps; it never reads a clock, a file or a socket.
#[derive(Debug)]
pub struct Attributor {
    config: AttributorConfig,
    zones: Vec<ZoneState>,
    zone_index: FxHashMap<String, usize>,
    last_node: Option<NodeCpu>,
    last_activity_at: Option<Timestamp>,
    /// Last known busy/total deltas, used for the split when a tick has no activity frame.
    last_ratio: (u64, u64),
    /// Per-CPU times of the previous frame, by CPU number.
    last_cpus: Vec<Option<NodeCpu>>,
    procs: Vec<ProcState>,
    proc_index: FxHashMap<(u32, u64), usize>,
    cgroups: Cgroups,
    containers: Groups<ContainerInfo>,
    pods: Groups<PodInfo>,
    vms: Groups<VmInfo>,
    unattributed: Energies,
    exited: Energies,
    stats: EngineStats,
    tick: u64,
    // Reused buffers.
    apportioner: Apportioner,
    targets: Vec<Target>,
    weights: Vec<u64>,
    sockets_of: Vec<Option<u32>>,
    bucket_weights: Vec<u64>,
    idle_weights: Vec<u64>,
    parts: Vec<u64>,
    buckets: Vec<Bucket>,
    cpu_socket: Vec<Option<u32>>,
    exited_tick: Vec<Energies>,
    debts: FxHashMap<u32, i64>,
    /// Targets that got reaped-children credit this tick.
    credited: Vec<u32>,
    /// Processes running after the previous frame; more than are seen again means exits.
    running_before: usize,
}

impl Default for Attributor {
    fn default() -> Self {
        Attributor::new(AttributorConfig::default())
    }
}

impl Attributor {
    /// A new engine with no history.
    pub fn new(config: AttributorConfig) -> Attributor {
        Attributor {
            config,
            zones: Vec::new(),
            zone_index: FxHashMap::default(),
            last_node: None,
            last_activity_at: None,
            last_ratio: (0, 0),
            last_cpus: Vec::new(),
            procs: Vec::new(),
            proc_index: FxHashMap::default(),
            cgroups: Cgroups::default(),
            containers: Groups::default(),
            pods: Groups::default(),
            vms: Groups::default(),
            unattributed: Energies::default(),
            exited: Energies::default(),
            stats: EngineStats::default(),
            tick: 0,
            apportioner: Apportioner::default(),
            targets: Vec::new(),
            weights: Vec::new(),
            sockets_of: Vec::new(),
            bucket_weights: Vec::new(),
            idle_weights: Vec::new(),
            parts: Vec::new(),
            buckets: Vec::new(),
            cpu_socket: Vec::new(),
            exited_tick: Vec::new(),
            debts: FxHashMap::default(),
            credited: Vec::new(),
            running_before: 0,
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &AttributorConfig {
        &self.config
    }

    /// Node-wide bucket first, then one per socket when the frame has per-CPU times of more
    /// than one socket and a previous frame to diff against.
    fn node_usage(&mut self, frame: &ActivityFrame) {
        self.buckets.clear();
        self.cpu_socket.clear();
        let mut node = Bucket::default();
        if let Some(prev) = self.last_node {
            node.total = frame.node.total.0.saturating_sub(prev.total.0);
            node.busy = frame
                .node
                .busy
                .0
                .saturating_sub(prev.busy.0)
                .min(node.total);
        }
        self.buckets.push(node);
        let multi = frame.cpus.iter().any(|c| c.socket != frame.cpus[0].socket);
        if multi {
            for c in &frame.cpus {
                let cpu = c.cpu as usize;
                if cpu >= self.cpu_socket.len() {
                    self.cpu_socket.resize(cpu + 1, None);
                }
                self.cpu_socket[cpu] = Some(c.socket);
                if cpu >= self.last_cpus.len() {
                    self.last_cpus.resize(cpu + 1, None);
                }
                let (busy, total) = match self.last_cpus[cpu] {
                    Some(prev) => {
                        let total = c.time.total.0.saturating_sub(prev.total.0);
                        (c.time.busy.0.saturating_sub(prev.busy.0).min(total), total)
                    }
                    None => (0, 0),
                };
                self.last_cpus[cpu] = Some(c.time);
                match self.buckets[1..]
                    .iter_mut()
                    .find(|b| b.socket == Some(c.socket))
                {
                    Some(b) => {
                        b.busy += busy;
                        b.total += total;
                    }
                    None => self.buckets.push(Bucket {
                        socket: Some(c.socket),
                        busy,
                        total,
                        ..Bucket::default()
                    }),
                }
            }
            self.buckets[1..].sort_by_key(|b| b.socket);
        }
        self.last_node = Some(frame.node);
    }

    /// Advances the engine by one tick.
    ///
    /// `activity` is `None` when the activity source failed this tick: node energy is still
    /// counted (split with the last known usage ratio) and its active part goes to
    /// `unattributed`; no workload is marked terminated for it.
    #[must_use = "the snapshot is the result of the step"]
    pub fn step(
        &mut self,
        power: &PowerFrame,
        activity: Option<&ActivityFrame>,
        at: Timestamp,
    ) -> Snapshot {
        self.tick += 1;
        let tick = self.tick;
        self.stats.ticks += 1;

        // 1. Node (and socket) usage over the interval: the active/idle split ratios.
        let mut interval = Nanos(0);
        let had_baseline = self.last_node.is_some();
        if let Some(frame) = activity {
            self.node_usage(frame);
            if let Some(prev_at) = self.last_activity_at {
                interval = frame.at.since(prev_at);
            }
            self.last_activity_at = Some(frame.at);
            if self.buckets[0].total > 0 {
                self.last_ratio = (self.buckets[0].busy, self.buckets[0].total);
            }
        } else {
            self.stats.missing_activity += 1;
            self.buckets.clear();
            self.buckets.push(Bucket::default());
        }
        let (ratio_num, ratio_den) = if self.buckets[0].total > 0 {
            (self.buckets[0].busy, self.buckets[0].total)
        } else {
            self.last_ratio
        };

        // 2. Zones: deltas, active/idle split, energy per bucket and kind.
        for sample in &power.samples {
            let zi = match self.zone_index.get(&sample.zone.id) {
                Some(&i) => i,
                None => {
                    self.zone_index
                        .insert(sample.zone.id.clone(), self.zones.len());
                    self.zones.push(ZoneState {
                        counter: ZoneCounter::new(&sample.zone, self.config.default_max_power),
                        entry: NodeZone {
                            info: Arc::clone(&sample.zone),
                            total: MicroJoules::ZERO,
                            active: MicroJoules::ZERO,
                            idle: MicroJoules::ZERO,
                            power: 0.0,
                            active_power: 0.0,
                            idle_power: 0.0,
                            has_reading: false,
                            last_error: None,
                            read_errors: 0,
                            dropped_deltas: 0,
                            wraps: 0,
                            last_read: None,
                        },
                        baseline: None,
                    });
                    self.zones.len() - 1
                }
            };
            let z = &mut self.zones[zi];
            let reading = match &sample.reading {
                Ok(r) => *r,
                Err(e) => {
                    z.entry.read_errors += 1;
                    z.entry.last_error = Some(e.clone());
                    continue;
                }
            };
            z.entry.last_error = None;
            z.entry.has_reading = true;
            z.entry.last_read = Some(sample.at);
            match z.counter.update(sample.at, reading) {
                Delta::Baseline => {}
                Delta::Implausible => z.entry.dropped_deltas += 1,
                Delta::Energy {
                    energy,
                    dt,
                    wrapped,
                } => {
                    z.entry.wraps += wrapped as u64;
                    let kind = z.entry.info.kind;
                    // A per-socket zone follows its socket's usage when that is known.
                    let bucket = if per_socket(kind) {
                        self.buckets
                            .iter()
                            .position(|b| b.socket == Some(z.entry.info.index))
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    let (num, den) = match self.buckets[bucket] {
                        b if bucket > 0 && b.total > 0 => (b.busy, b.total),
                        _ => (ratio_num, ratio_den),
                    };
                    let idle = split_idle(&self.config.idle_power, z, energy.0, dt, num, den);
                    let active = energy.0 - idle;
                    z.entry.total += energy;
                    z.entry.active += MicroJoules(active);
                    z.entry.idle += MicroJoules(idle);
                    z.entry.power = watts(energy, dt);
                    z.entry.active_power = watts(MicroJoules(active), dt);
                    z.entry.idle_power = watts(MicroJoules(idle), dt);
                    if kind.is_cpu() {
                        let b = &mut self.buckets[bucket];
                        b.active.0[kind.index()] += active;
                        b.idle.0[kind.index()] += idle;
                    }
                }
            }
        }

        // 3. Weights: each process's own CPU-time delta plus reaped-children growth, and
        //    each accounted container's time that no live process explains.
        for p in &mut self.procs {
            p.entry.energy.new_tick();
        }
        self.unattributed.new_tick();
        self.exited.new_tick();
        self.exited_tick.clear();
        self.targets.clear();
        self.weights.clear();
        self.sockets_of.clear();
        if let Some(frame) = activity {
            self.weigh(frame, had_baseline, tick);
        }

        // 4. Apportion each bucket's energy by its weights; busy time nobody explains is
        //    `unattributed`.
        let idle_policy = self.config.idle;
        let n = self.targets.len();
        let sum: u64 = self.weights.iter().sum();
        let socket_busy: u64 = self.buckets[1..].iter().map(|b| b.busy).sum();
        for bi in 0..self.buckets.len() {
            let b = self.buckets[bi];
            self.bucket_weights.clear();
            match b.socket {
                None => self.bucket_weights.extend_from_slice(&self.weights),
                Some(s) => {
                    for (w, sock) in self.weights.iter().zip(&self.sockets_of) {
                        self.bucket_weights.push(match sock {
                            Some(x) if *x == s => *w,
                            Some(_) => 0,
                            // Unknown socket: spread like the node's busy time.
                            None if socket_busy > 0 => {
                                (*w as u128 * b.busy as u128 / socket_busy as u128) as u64
                            }
                            None => 0,
                        });
                    }
                }
            }
            let bsum: u64 = if b.socket.is_none() {
                sum
            } else {
                self.bucket_weights.iter().sum()
            };
            let denom = if activity.is_some() {
                b.busy.max(bsum)
            } else {
                0
            };
            self.bucket_weights.push(denom - bsum);
            if idle_policy == IdlePolicy::Equal {
                self.idle_weights.clear();
                self.idle_weights
                    .extend(self.targets.iter().map(|t| match t {
                        Target::Proc(_) => 1,
                        Target::Exited(_) => 0,
                    }));
                // Nobody alive: idle goes to unattributed.
                self.idle_weights.push(u64::from(n == 0));
            }
            for kind in ZoneKind::ALL {
                let k = kind.index();
                let active = b.active.0[k];
                if active > 0 {
                    self.apportioner
                        .apportion(active, &self.bucket_weights, &mut self.parts);
                    if denom == 0 {
                        self.parts.clear();
                        self.parts.resize(n, 0);
                        self.parts.push(active);
                    }
                    credit_parts(
                        &self.targets,
                        &self.parts,
                        &mut self.procs,
                        &mut self.exited_tick,
                        &mut self.unattributed,
                        k,
                    );
                }
                let idle = b.idle.0[k];
                if idle > 0 && idle_policy != IdlePolicy::None {
                    let weights = match idle_policy {
                        IdlePolicy::Equal => &self.idle_weights,
                        _ => &self.bucket_weights,
                    };
                    self.apportioner.apportion(idle, weights, &mut self.parts);
                    if weights.iter().all(|&w| w == 0) {
                        self.parts.clear();
                        self.parts.resize(n, 0);
                        self.parts.push(idle);
                    }
                    credit_parts(
                        &self.targets,
                        &self.parts,
                        &mut self.procs,
                        &mut self.exited_tick,
                        &mut self.unattributed,
                        k,
                    );
                }
            }
        }

        // 5. Roll up processes, and containers' exited time, into containers, pods and VMs.
        //    Each process caches its groups' slots: no hash of a 64-character id per tick.
        for p in &mut self.procs {
            if p.seen_tick != tick {
                continue;
            }
            let last = &p.entry.energy;
            let slots = &mut p.group_slots;
            if let Some(c) = &p.entry.info.container {
                self.containers
                    .charge_cached(&mut slots[0], &c.id, c, last, tick);
                if let Some(pod) = &c.pod {
                    self.pods
                        .charge_cached(&mut slots[1], &pod.id, pod, last, tick);
                }
            }
            if let Some(vm) = &p.entry.info.vm {
                self.vms
                    .charge_cached(&mut slots[2], &vm.id, vm, last, tick);
            }
        }
        if let Some(frame) = activity {
            for (t, e) in self
                .targets
                .iter()
                .filter_map(|t| match t {
                    Target::Exited(i) => Some(*i),
                    Target::Proc(_) => None,
                })
                .zip(&self.exited_tick)
            {
                let c = &frame.containers[t].info;
                self.containers.charge(&c.id, c, e, tick);
                if let Some(pod) = &c.pod {
                    self.pods.charge(&pod.id, pod, e, tick);
                }
                self.exited.add_last(e);
            }
        }

        // 6. Terminated workloads: mark, expire, cap. Only a real frame can say who is gone.
        let frame_seen = activity.is_some();
        let config = &self.config;
        let mut evicted = 0;
        if frame_seen {
            for p in &mut self.procs {
                if p.seen_tick != tick && p.entry.state == State::Running {
                    p.entry.state = State::Terminated { at };
                }
            }
            let before = self.procs.len();
            evicted += retain_workloads(
                &mut self.procs,
                at,
                config,
                |p| &p.entry.state,
                |p| p.entry.energy.total.sum(),
            );
            if self.procs.len() != before {
                self.proc_index.clear();
                for (i, p) in self.procs.iter().enumerate() {
                    self.proc_index.insert((p.entry.pid, p.entry.start_time), i);
                }
            }
            // A cgroup missing from the frame (container gone, or its file vanished mid-read)
            // starts from a new baseline when it comes back.
            self.cgroups.retain_seen(tick);
        }
        evicted += self
            .containers
            .finish_tick(tick, at, frame_seen, config, |c| &c.id);
        evicted += self
            .pods
            .finish_tick(tick, at, frame_seen, config, |p| &p.id);
        evicted += self
            .vms
            .finish_tick(tick, at, frame_seen, config, |v| &v.id);
        self.stats.evicted += evicted;
        self.stats.live_processes = activity.map_or(0, |f| f.processes.len() as u64);
        self.stats.accounted_containers = activity.map_or(0, |f| f.containers.len() as u64);
        self.stats.terminated_processes = self
            .procs
            .iter()
            .filter(|p| p.entry.state != State::Running)
            .count() as u64;

        // 7. The snapshot.
        let mut kinds: Vec<ZoneKind> = self
            .zones
            .iter()
            .map(|z| z.entry.info.kind)
            .filter(|k| k.is_cpu())
            .collect();
        kinds.sort();
        kinds.dedup();
        Snapshot {
            at,
            interval,
            usage_ratio: if ratio_den == 0 {
                0.0
            } else {
                ratio_num as f64 / ratio_den as f64
            },
            zones: self.zones.iter().map(|z| z.entry.clone()).collect(),
            kinds,
            processes: self.procs.iter().map(|p| p.entry.clone()).collect(),
            containers: self.containers.entries(),
            pods: self.pods.entries(),
            vms: self.vms.entries(),
            unattributed: self.unattributed,
            exited: self.exited,
            idle_policy,
            stats: self.stats,
        }
    }

    /// Fills `targets`, `weights` and `sockets_of` for this tick, in one pass over the
    /// frame: own CPU time, plus reaped-children time for processes outside accounted
    /// cgroups, plus each accounted container's time that no live process explains.
    fn weigh(&mut self, frame: &ActivityFrame, had_baseline: bool, tick: u64) {
        // Containers' cgroup deltas first, so the pass over processes can tell which of
        // them their cgroup accounts.
        for (i, c) in frame.containers.iter().enumerate() {
            let usage = c.usage.0;
            match self.cgroups.get_mut(&c.info.id) {
                Some(cg) if cg.seen_tick == tick => {} // a duplicate in one frame: first wins
                Some(cg) => {
                    if usage < cg.usage {
                        // Counter went back (cgroup recreated under the same id): rebase.
                        self.stats.counter_regressions += 1;
                        cg.delta = None;
                        cg.balance = 0;
                    } else {
                        cg.delta = Some(usage - cg.usage);
                    }
                    cg.usage = usage;
                    cg.explained = 0;
                    cg.frame_index = i;
                    cg.seen_tick = tick;
                }
                None => {
                    self.cgroups.insert(
                        Arc::clone(&c.info.id),
                        CgroupState {
                            id: Arc::clone(&c.info.id),
                            usage,
                            balance: 0,
                            // New since the previous frame: all of it is this interval's.
                            delta: had_baseline.then_some(usage),
                            explained: 0,
                            frame_index: i,
                            seen_tick: tick,
                        },
                    );
                }
            }
        }

        let details = (frame.details.len() == frame.processes.len()).then_some(&frame.details);
        let accounted = !self.cgroups.is_empty();
        let equal = self.config.idle == IdlePolicy::Equal;
        let mut still_running = 0usize;
        let mut regressions = 0;
        for (i, s) in frame.processes.iter().enumerate() {
            let key = (s.pid, s.start_time);
            let detail = details.map(|d| d[i]);
            let children_now = detail.map_or(0, |d| d.children_time.0);
            let slot = match self.proc_index.get(&key) {
                Some(&slot) => {
                    let p = &mut self.procs[slot];
                    still_running += usize::from(p.entry.state == State::Running);
                    // A counter that goes back is treated as no progress.
                    if s.cpu_time < p.entry.cpu_time || children_now < p.children_time {
                        regressions += 1;
                    }
                    p.own_delta = s.cpu_time.0.saturating_sub(p.entry.cpu_time.0);
                    p.entry.cpu_time = p.entry.cpu_time.max(s.cpu_time);
                    p.children_delta = children_now.saturating_sub(p.children_time);
                    p.children_time = p.children_time.max(children_now);
                    p.entry.state = State::Running;
                    if !Arc::ptr_eq(&p.entry.info, &s.info) {
                        p.entry.info = Arc::clone(&s.info);
                        p.group_slots = [None; 3];
                        p.cgroup_slot = None;
                    }
                    slot
                }
                None => {
                    // A process new since the previous frame did all its work (and its
                    // children theirs) in this interval; on the very first frame we only
                    // take a baseline.
                    let (own, children) = if had_baseline {
                        (s.cpu_time.0, children_now)
                    } else {
                        (0, 0)
                    };
                    self.proc_index.insert(key, self.procs.len());
                    self.procs.push(ProcState {
                        entry: ProcessEntry {
                            pid: s.pid,
                            start_time: s.start_time,
                            info: Arc::clone(&s.info),
                            cpu_time: s.cpu_time,
                            state: State::Running,
                            energy: Energies::default(),
                        },
                        seen_tick: tick,
                        ppid: 0,
                        children_time: children_now,
                        children_delta: children,
                        child_balance: 0,
                        debt_carried: false,
                        own_delta: own,
                        socket: None,
                        target: NO_TARGET,
                        group_slots: [None; 3],
                        cgroup_slot: None,
                    });
                    self.procs.len() - 1
                }
            };
            let p = &mut self.procs[slot];
            p.seen_tick = tick;
            p.ppid = detail.map_or(0, |d| d.ppid);
            p.socket = detail
                .and_then(|d| d.last_cpu)
                .and_then(|c| self.cpu_socket.get(c as usize).copied().flatten());
            let cg = match &p.entry.info.container {
                Some(c) if accounted => self
                    .cgroups
                    .slot_cached(&mut p.cgroup_slot, &c.id)
                    .map(|slot| &mut self.cgroups.slots[slot])
                    .filter(|cg| cg.seen_tick == tick),
                _ => None,
            };
            let credit = match cg {
                Some(cg) => {
                    // The cgroup accounts this process's children: no cutime credit.
                    cg.explained = cg.explained.saturating_add(p.own_delta);
                    p.child_balance = 0;
                    p.debt_carried = false;
                    0
                }
                None if p.children_delta == 0 && p.child_balance == 0 => 0,
                None => {
                    p.child_balance = p.child_balance.saturating_add(clamp_i64(p.children_delta));
                    if p.child_balance >= 0 {
                        p.debt_carried = false;
                        std::mem::take(&mut p.child_balance) as u64
                    } else {
                        if p.debt_carried {
                            p.child_balance = 0;
                        }
                        p.debt_carried = !p.debt_carried;
                        0
                    }
                }
            };
            let w = p.own_delta.saturating_add(credit);
            if credit > 0 {
                self.credited.push(self.targets.len() as u32);
            }
            if w > 0 || equal {
                p.target = self.targets.len() as u32;
                self.targets.push(Target::Proc(slot));
                self.weights.push(w);
                self.sockets_of.push(p.socket);
            } else {
                p.target = NO_TARGET;
            }
        }
        self.stats.counter_regressions += regressions;

        // Processes that exited since the last frame: what they were charged is owed back
        // by their parent's `cutime` growth, which counts their whole life.
        let exits = self.running_before > still_running;
        if exits && details.is_some() {
            // Debts by parent pid: the exited are few, the live many, so only the parents'
            // slots are looked up.
            self.debts.clear();
            for p in &self.procs {
                if p.seen_tick != tick && p.entry.state == State::Running && p.ppid != 0 {
                    let owed = clamp_i64(p.entry.cpu_time.0.saturating_add(p.children_time));
                    let d = self.debts.entry(p.ppid).or_insert(0);
                    *d = d.saturating_add(owed);
                }
            }
            for s in &frame.processes {
                let Some(&owed) = self.debts.get(&s.pid) else {
                    continue;
                };
                let Some(&parent) = self.proc_index.get(&(s.pid, s.start_time)) else {
                    continue;
                };
                let pp = &mut self.procs[parent];
                // Equivalent to subtracting the debt before crediting: take it out of the
                // children's credit granted this tick (never out of the parent's own time),
                // and carry the rest as a negative balance.
                let t = pp.target;
                let granted = if t == NO_TARGET {
                    0
                } else {
                    self.weights[t as usize].saturating_sub(pp.own_delta)
                };
                let repaid = granted.min(owed as u64);
                if repaid > 0 {
                    self.weights[t as usize] -= repaid;
                }
                let rest = owed - repaid as i64;
                if rest > 0 {
                    pp.child_balance = pp.child_balance.saturating_sub(rest);
                    pp.debt_carried = false;
                }
            }
        }
        self.running_before = frame.processes.len();

        // Containers' exited time, in frame order so results do not depend on hashing.
        for c in &frame.containers {
            let Some(cg) = self.cgroups.get_mut(&c.info.id) else {
                continue;
            };
            let Some(delta) = cg.delta.take() else {
                continue;
            };
            let d = clamp_i64(delta);
            cg.balance = cg
                .balance
                .saturating_add(d)
                .saturating_sub(clamp_i64(cg.explained))
                .max(-d);
            if cg.balance > 0 {
                let residual = std::mem::take(&mut cg.balance) as u64;
                self.targets.push(Target::Exited(cg.frame_index));
                self.weights.push(residual);
                self.sockets_of.push(None);
                self.exited_tick.push(Energies::default());
            }
        }

        // A child in an accounted cgroup whose parent is outside it (an exec probe under its
        // runtime shim) is in both the cgroup's counter and the parent's `cutime`. Credits
        // may therefore take only the busy time nothing else explains; beyond that they are
        // scaled down, so that time is not counted twice.
        if !self.credited.is_empty() {
            let credit_of =
                |t: u32, weights: &[u64], procs: &[ProcState]| match self.targets[t as usize] {
                    Target::Proc(slot) => weights[t as usize].saturating_sub(procs[slot].own_delta),
                    Target::Exited(_) => 0,
                };
            let credits: u64 = self
                .credited
                .iter()
                .map(|&t| credit_of(t, &self.weights, &self.procs))
                .sum();
            let explained = self.weights.iter().sum::<u64>() - credits;
            let free = self.buckets[0].busy.saturating_sub(explained);
            if credits > free {
                for i in 0..self.credited.len() {
                    let t = self.credited[i];
                    let c = credit_of(t, &self.weights, &self.procs);
                    let kept = (c as u128 * free as u128 / credits as u128) as u64;
                    self.weights[t as usize] -= c - kept;
                }
            }
            self.credited.clear();
        }
    }
}

/// `ProcState::target` of a process with no weight this tick.
const NO_TARGET: u32 = u32::MAX;

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Adds apportioned parts (one per target, then unattributed) of kind `k`.
fn credit_parts(
    targets: &[Target],
    parts: &[u64],
    procs: &mut [ProcState],
    exited: &mut [Energies],
    unattributed: &mut Energies,
    k: usize,
) {
    let mut exited_i = 0;
    for (t, &part) in targets.iter().zip(parts) {
        match t {
            Target::Proc(slot) => procs[*slot].entry.energy.credit(k, part),
            Target::Exited(_) => {
                exited[exited_i].credit(k, part);
                exited_i += 1;
            }
        }
    }
    if let Some(&rest) = parts.get(targets.len()) {
        unattributed.credit(k, rest);
    }
}

/// The idle part of a zone's `energy` over `dt`, given the usage ratio `num / den`.
fn split_idle(
    idle_power: &IdlePower,
    z: &mut ZoneState,
    energy: u64,
    dt: Nanos,
    num: u64,
    den: u64,
) -> u64 {
    let by_usage = if den == 0 {
        energy
    } else {
        energy - (energy as u128 * num as u128 / den as u128) as u64
    };
    let IdlePower::Learned {
        max_usage_permille,
        decay,
    } = *idle_power
    else {
        return by_usage;
    };
    if dt.0 == 0 {
        return by_usage;
    }
    let power = (energy as u128 * 1_000_000_000 / dt.0 as u128) as u64;
    if den > 0 && (num as u128) * 1000 <= max_usage_permille as u128 * den as u128 {
        z.baseline = Some(match z.baseline {
            Some(b) if power >= b => {
                // Rise toward newer low-usage power with time constant `decay`.
                let step = (power - b) as u128 * dt.0 as u128 / (dt.0 as u128 + decay.0 as u128);
                b + step as u64
            }
            _ => power,
        });
    }
    match z.baseline {
        Some(b) => ((b as u128 * dt.0 as u128 / 1_000_000_000) as u64).min(energy),
        None => by_usage,
    }
}
