//! The engine: readings and activity in, an immutable [`Snapshot`] out.

use std::sync::Arc;

use crate::activity::{ActivityFrame, ContainerInfo, NodeCpu, PodInfo, VmInfo};
use crate::apportion::Apportioner;
use crate::counter::{Delta, ZoneCounter};
use crate::hash::FxHashMap;
use crate::snapshot::{
    Energies, EngineStats, GroupEntry, NodeZone, PerKind, ProcessEntry, Snapshot, State,
};
use crate::source::PowerFrame;
use crate::units::{watts, MicroJoules, MicroWatts, Nanos, Timestamp};
use crate::zone::ZoneKind;

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
}

impl Default for AttributorConfig {
    fn default() -> Self {
        AttributorConfig {
            terminated_ttl: Nanos::from_secs(10),
            max_terminated: Some(500),
            default_max_power: MicroWatts::from_watts(10_000.0),
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
    /// The config.
    pub fn build(self) -> AttributorConfig {
        self.0
    }
}

#[derive(Debug)]
struct ZoneState {
    entry: NodeZone,
    counter: ZoneCounter,
}

#[derive(Debug)]
struct ProcState {
    entry: ProcessEntry,
    seen_tick: u64,
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
}

impl<I> Default for Groups<I> {
    fn default() -> Self {
        Groups {
            slots: Vec::new(),
            index: FxHashMap::default(),
        }
    }
}

impl<I: Clone> Groups<I> {
    /// Marks the group live this tick and adds this tick's energy to it.
    fn charge(&mut self, id: &Arc<str>, info: &I, last: &PerKind, tick: u64) {
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
        if g.seen_tick != tick {
            g.seen_tick = tick;
            g.entry.energy.last = PerKind::default();
        }
        g.entry.state = State::Running;
        g.entry.energy.last.add(last);
        g.entry.energy.total.add(last);
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
                g.entry.energy.last = PerKind::default();
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
    procs: Vec<ProcState>,
    proc_index: FxHashMap<(u32, u64), usize>,
    containers: Groups<ContainerInfo>,
    pods: Groups<PodInfo>,
    vms: Groups<VmInfo>,
    unattributed: Energies,
    stats: EngineStats,
    tick: u64,
    // Reused buffers.
    apportioner: Apportioner,
    weights: Vec<u64>,
    weighted: Vec<usize>,
    parts: Vec<u64>,
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
            procs: Vec::new(),
            proc_index: FxHashMap::default(),
            containers: Groups::default(),
            pods: Groups::default(),
            vms: Groups::default(),
            unattributed: Energies::default(),
            stats: EngineStats::default(),
            tick: 0,
            apportioner: Apportioner::default(),
            weights: Vec::new(),
            weighted: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &AttributorConfig {
        &self.config
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

        // 1. Node usage over the interval: the active/idle split ratio, as integers.
        let (mut busy_d, mut total_d, mut interval) = (0u64, 0u64, Nanos(0));
        let had_baseline = self.last_node.is_some();
        if let Some(frame) = activity {
            if let Some(prev) = self.last_node {
                busy_d = frame.node.busy.0.saturating_sub(prev.busy.0);
                total_d = frame.node.total.0.saturating_sub(prev.total.0);
                busy_d = busy_d.min(total_d);
            }
            if let Some(prev_at) = self.last_activity_at {
                interval = frame.at.since(prev_at);
            }
            self.last_node = Some(frame.node);
            self.last_activity_at = Some(frame.at);
            if total_d > 0 {
                self.last_ratio = (busy_d, total_d);
            }
        } else {
            self.stats.missing_activity += 1;
        }
        let (ratio_num, ratio_den) = if total_d > 0 {
            (busy_d, total_d)
        } else {
            self.last_ratio
        };

        // 2. Zones: deltas, active/idle split, active energy per kind.
        let mut active_by_kind = PerKind::default();
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
                    let active = if ratio_den == 0 {
                        0
                    } else {
                        (energy.0 as u128 * ratio_num as u128 / ratio_den as u128) as u64
                    };
                    let idle = energy.0 - active;
                    z.entry.total += energy;
                    z.entry.active += MicroJoules(active);
                    z.entry.idle += MicroJoules(idle);
                    z.entry.power = watts(energy, dt);
                    z.entry.active_power = watts(MicroJoules(active), dt);
                    z.entry.idle_power = watts(MicroJoules(idle), dt);
                    if z.entry.info.kind.is_cpu() {
                        active_by_kind.0[z.entry.info.kind.index()] += active;
                    }
                }
            }
        }

        // 3. Processes: CPU-time deltas since the previous frame.
        for p in &mut self.procs {
            p.entry.energy.last = PerKind::default();
        }
        self.weights.clear();
        self.weighted.clear();
        let mut sum_d: u64 = 0;
        if let Some(frame) = activity {
            for s in &frame.processes {
                let key = (s.pid, s.start_time);
                let (slot, d) = match self.proc_index.get(&key) {
                    Some(&slot) => {
                        let p = &mut self.procs[slot];
                        // A counter that goes back is treated as no progress.
                        let d = s.cpu_time.0.saturating_sub(p.entry.cpu_time.0);
                        p.entry.cpu_time = p.entry.cpu_time.max(s.cpu_time);
                        p.entry.state = State::Running;
                        if !Arc::ptr_eq(&p.entry.info, &s.info) {
                            p.entry.info = Arc::clone(&s.info);
                        }
                        (slot, d)
                    }
                    None => {
                        // A process new since the previous frame did all its work in this
                        // interval; on the very first frame we only take a baseline.
                        let d = if had_baseline { s.cpu_time.0 } else { 0 };
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
                        });
                        (self.procs.len() - 1, d)
                    }
                };
                self.procs[slot].seen_tick = tick;
                if d > 0 {
                    self.weighted.push(slot);
                    self.weights.push(d);
                    sum_d = sum_d.saturating_add(d);
                }
            }
        }

        // 4. Attribute each CPU kind's active energy by CPU-time share; the share of node busy
        //    time that no process explains goes to `unattributed`.
        let denom = if activity.is_some() {
            busy_d.max(sum_d)
        } else {
            0
        };
        self.weights.push(denom - sum_d);
        self.unattributed.last = PerKind::default();
        for kind in ZoneKind::ALL {
            let active = active_by_kind.0[kind.index()];
            if active == 0 {
                continue;
            }
            if denom == 0 {
                self.unattributed.last.0[kind.index()] += active;
                continue;
            }
            self.apportioner
                .apportion(active, &self.weights, &mut self.parts);
            for (j, &slot) in self.weighted.iter().enumerate() {
                let e = &mut self.procs[slot].entry.energy;
                e.last.0[kind.index()] += self.parts[j];
                e.total.0[kind.index()] += self.parts[j];
            }
            self.unattributed.last.0[kind.index()] += self.parts[self.weighted.len()];
        }
        let u = self.unattributed.last;
        self.unattributed.total.add(&u);

        // 5. Roll up processes into containers, pods and VMs.
        for p in &self.procs {
            if p.seen_tick != tick {
                continue;
            }
            let last = &p.entry.energy.last;
            if let Some(c) = &p.entry.info.container {
                self.containers.charge(&c.id, c, last, tick);
                if let Some(pod) = &c.pod {
                    self.pods.charge(&pod.id, pod, last, tick);
                }
            }
            if let Some(vm) = &p.entry.info.vm {
                self.vms.charge(&vm.id, vm, last, tick);
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
            stats: self.stats,
        }
    }
}
