//! The process fold (issue 21, "The Prometheus bill"): per-process series only for the
//! processes that matter, and one `type="other"` series per container (per VM, and one for
//! the node's host processes) that carries the energy of the rest, so that sums still add up
//! exactly.
//!
//! A node with 10,000 processes exports about 50,000 process series at `--metrics all`;
//! across a thousand nodes no Prometheus holds that. Most of those processes sleep: their
//! series are flat lines that cost a Prometheus head series each. The fold keeps the
//! processes with energy, and pays for the rest with one aggregate per container.
//!
//! # Which processes are shown
//!
//! Each tick, running processes are ranked by their energy in the tick (the widest zone,
//! [`PerKind::max`]; ties by pid then start time, so the result is deterministic).
//!
//! - A process is **promoted** when it has energy in the tick, ranks within the top
//!   `top_n` (when set) and its energy is at least `min_uj` (when set).
//! - A shown process **stays** shown while it ranks within the top `2 × top_n` with at least
//!   `min_uj / 2` (hysteresis: a process near the edge does not flap in and out). After
//!   [`DEMOTE_AFTER_TICKS`] consecutive ticks outside that band it is **demoted**.
//! - With `top_n`, at most `2 × top_n` running processes are shown: beyond that, the
//!   lowest-ranked of those kept by the band or the grace ticks are demoted first.
//! - A shown process that exits stays shown, with its final value, for as long as the
//!   engine keeps it (`monitor.terminatedTTL`), as every process does without the fold.
//!
//! # Why every exported counter is monotonic
//!
//! Each exported counter is a sum of non-negative per-tick deltas, never a difference:
//!
//! - a shown process's counter is the sum of its energy over the ticks in which it was
//!   shown. It starts at 0 when the process is first shown, pauses while it is demoted (its
//!   series is absent then), and resumes from the same value if it is shown again: a series
//!   that comes back never comes back lower, so Prometheus sees no reset.
//! - `other` is the sum, over ticks, of the energy of its members that were not shown in
//!   that tick, plus the container's energy that no listed process explains (processes that
//!   started and exited between two ticks: [`kepler_core::Snapshot::exited`]). A process
//!   that is promoted later takes nothing back from `other`; from then on its new energy
//!   goes to its own series.
//!
//! The fold never subtracts what was already exported, which is why it cannot simply
//! export "container minus shown": that difference drops whenever a process is promoted
//! with a history.
//!
//! # Conservation
//!
//! Per zone kind, in integer µJ, for every container at every tick: `other` plus the
//! counters of every process series ever exported for the container (the final value of the
//! ones no longer exported included) equals the container's energy counter. Per tick this is
//! `Δother + Σ Δshown = Δcontainer`, exactly what `sum(increase(...))` over the process
//! series of a container adds up. The same holds for each VM (`kepler_vm_cpu_joules_total`)
//! and, for host processes, against the sum of their energy. The property test in
//! `tests/fold.rs` checks both rules over random sequences of ticks.
//!
//! # Cost
//!
//! State is kept only for processes that were ever shown and still exist, and for groups
//! that still exist. A tick costs one selection (`select_nth_unstable`, linear) over the
//! running processes and one hash look-up per process.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use kepler_core::{PerKind, ProcessEntry, Snapshot, State, ZoneKind};

/// Consecutive ticks a shown process may spend outside the keep band before it is demoted.
pub const DEMOTE_AFTER_TICKS: u8 = 3;

/// Which processes keep series of their own (`exporter.prometheus.process.*`). The default
/// (both 0) folds nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FoldConfig {
    /// Show at most the top this-many running processes by energy per tick (plus the
    /// hysteresis band, see the module docs); 0: no rank limit.
    pub top_n: usize,
    /// Show only processes with at least this much energy in a tick (widest zone, µJ);
    /// 0: no threshold.
    pub min_uj: u64,
}

impl FoldConfig {
    /// True when the fold does anything.
    pub fn is_enabled(&self) -> bool {
        self.top_n > 0 || self.min_uj > 0
    }
}

/// What an `other` series aggregates: one container's processes, one VM's (outside any
/// container), or the node's host processes (neither).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FoldGroup {
    /// Processes outside any container and VM.
    Host,
    /// A container's processes (`container_id`).
    Container(Arc<str>),
    /// A VM's processes outside containers (`vm_id`).
    Vm(Arc<str>),
}

impl FoldGroup {
    /// The group of a process.
    pub fn of(p: &ProcessEntry) -> FoldGroup {
        if let Some(c) = &p.info.container {
            FoldGroup::Container(Arc::clone(&c.id))
        } else if let Some(v) = &p.info.vm {
            FoldGroup::Vm(Arc::clone(&v.id))
        } else {
            FoldGroup::Host
        }
    }

    /// The `container_id` label.
    pub fn container_id(&self) -> &str {
        match self {
            FoldGroup::Container(id) => id,
            _ => "",
        }
    }

    /// The `vm_id` label.
    pub fn vm_id(&self) -> &str {
        match self {
            FoldGroup::Vm(id) => id,
            _ => "",
        }
    }
}

/// One `other` series: the folded energy of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherSeries {
    /// Whose processes.
    pub group: FoldGroup,
    /// The container's (or VM's) state; host processes are always running.
    pub state: State,
    /// Cumulative folded energy per zone kind; never decreases.
    pub total: PerKind,
    /// Folded energy of the latest tick.
    pub last: PerKind,
}

/// The fold's result for one snapshot: which of its processes are shown, with what counter,
/// and the `other` series. Valid for the snapshot it was made from only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldedProcesses {
    /// `(index in snapshot.processes, exported counter)`, in snapshot order.
    shown: Vec<(usize, PerKind)>,
    /// By group: host, containers by id, VMs by id.
    others: Vec<OtherSeries>,
    /// `snapshot.processes.len()`, to refuse a snapshot it was not made from.
    processes: usize,
}

impl FoldedProcesses {
    /// The shown processes: index into the snapshot's `processes` and the exported energy
    /// counter (energy while shown), in snapshot order.
    pub fn shown(&self) -> &[(usize, PerKind)] {
        &self.shown
    }

    /// The `other` series that have folded any energy, host first, then containers and VMs
    /// by id.
    pub fn others(&self) -> &[OtherSeries] {
        &self.others
    }

    /// True when this was made from a snapshot with `processes` processes.
    pub(crate) fn fits(&self, processes: usize) -> bool {
        self.processes == processes
    }
}

/// A process that was shown at least once.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    exported: PerKind,
    shown: bool,
    /// Consecutive ticks out of the keep band while shown.
    strikes: u8,
    /// The tick it was last in a snapshot.
    seen: u64,
}

#[derive(Debug, Clone, Default)]
struct GroupState {
    total: PerKind,
    last: PerKind,
    /// Σ energy of the group's processes in this tick (shown or not).
    members: PerKind,
    running: bool,
    seen: u64,
}

/// The fold's state, kept across ticks: step it once per snapshot, in tick order.
#[derive(Debug, Default)]
pub struct ProcessFold {
    config: FoldConfig,
    tick: u64,
    procs: HashMap<(u32, u64), Tracked>,
    groups: HashMap<FoldGroup, GroupState>,
    /// Scratch, reused: ranking keys, per-process decisions, group of each process.
    keys: Vec<Key>,
    decisions: Vec<bool>,
    out: FoldedProcesses,
}

/// Ranking key: more energy first, then lower pid, then earlier start.
type Key = (Reverse<u64>, u32, u64);

fn key(p: &ProcessEntry) -> Key {
    (Reverse(p.energy.last.max()), p.pid, p.start_time)
}

/// The `n`-th smallest key (1-based) of `keys`, or `None` when there are at most `n`.
fn cut(keys: &mut [Key], n: usize) -> Option<Key> {
    if n == 0 || keys.len() <= n {
        return None;
    }
    Some(*keys.select_nth_unstable(n - 1).1)
}

impl ProcessFold {
    /// A fold with `config`.
    pub fn new(config: FoldConfig) -> ProcessFold {
        ProcessFold {
            config,
            ..ProcessFold::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> FoldConfig {
        self.config
    }

    /// Folds the processes of `snap`, the engine's next snapshot.
    pub fn step(&mut self, snap: &Snapshot) -> &FoldedProcesses {
        self.tick += 1;
        let tick = self.tick;
        let FoldConfig { top_n, min_uj } = self.config;

        // Rank the running processes: the cut keys of the top N and of the 2N band.
        self.keys.clear();
        self.keys.extend(
            snap.processes
                .iter()
                .filter(|p| p.state == State::Running)
                .map(key),
        );
        let top_cut = cut(&mut self.keys, top_n);
        let band_cut = cut(&mut self.keys, top_n.saturating_mul(2));
        let within = |k: &Key, c: &Option<Key>| c.as_ref().is_none_or(|c| k <= c);

        // Decide who is shown this tick.
        self.decisions.clear();
        let mut kept: Vec<(Key, usize)> = Vec::new();
        let mut promoted_running = 0usize;
        for (i, p) in snap.processes.iter().enumerate() {
            let running = p.state == State::Running;
            let e = p.energy.last.max();
            let k = key(p);
            let candidate = running && e > 0 && e >= min_uj && within(&k, &top_cut);
            let in_band =
                running && e > 0 && e.saturating_mul(2) >= min_uj && within(&k, &band_cut);
            let id = (p.pid, p.start_time);
            let shown = match self.procs.get_mut(&id) {
                Some(t) => {
                    t.seen = tick;
                    if candidate {
                        t.shown = true;
                        t.strikes = 0;
                    } else if t.shown && running {
                        t.strikes = if in_band { 0 } else { t.strikes + 1 };
                        if t.strikes >= DEMOTE_AFTER_TICKS {
                            t.shown = false;
                            t.strikes = 0;
                        }
                    }
                    t.shown
                }
                None if candidate => {
                    self.procs.insert(
                        id,
                        Tracked {
                            exported: PerKind::default(),
                            shown: true,
                            strikes: 0,
                            seen: tick,
                        },
                    );
                    true
                }
                None => false,
            };
            if shown && running {
                if candidate {
                    promoted_running += 1;
                } else {
                    kept.push((k, i));
                }
            }
            self.decisions.push(shown);
        }
        // The cap: at most 2N running processes shown; the top N always are.
        if top_n > 0 {
            let room = top_n.saturating_mul(2).saturating_sub(promoted_running);
            if kept.len() > room {
                kept.sort_unstable();
                for &(_, i) in &kept[room..] {
                    let p = &snap.processes[i];
                    if let Some(t) = self.procs.get_mut(&(p.pid, p.start_time)) {
                        t.shown = false;
                        t.strikes = 0;
                    }
                    self.decisions[i] = false;
                }
            }
        }

        // Credit this tick's energy to the shown counters or to `other`.
        for g in self.groups.values_mut() {
            g.last = PerKind::default();
            g.members = PerKind::default();
            g.running = false;
        }
        self.out.shown.clear();
        for (i, p) in snap.processes.iter().enumerate() {
            let group = FoldGroup::of(p);
            let g = match self.groups.get_mut(&group) {
                Some(g) => g,
                None => self.groups.entry(group).or_default(),
            };
            g.seen = tick;
            g.running |= p.state == State::Running;
            g.members.add(&p.energy.last);
            if self.decisions[i] {
                if let Some(t) = self.procs.get_mut(&(p.pid, p.start_time)) {
                    t.exported.add(&p.energy.last);
                    self.out.shown.push((i, t.exported));
                }
            } else {
                g.last.add(&p.energy.last);
            }
        }
        // Container energy no listed process explains goes to the container's `other`.
        let mut states: HashMap<FoldGroup, State> = HashMap::new();
        for c in &snap.containers {
            let group = FoldGroup::Container(Arc::clone(&c.info.id));
            let g = self.groups.entry(group.clone()).or_default();
            g.seen = tick;
            let mut residual = PerKind::default();
            for k in ZoneKind::ALL {
                let i = k.index();
                residual.0[i] = c.energy.last.0[i].saturating_sub(g.members.0[i]);
            }
            g.last.add(&residual);
            states.insert(group, c.state);
        }
        for v in &snap.vms {
            states.insert(FoldGroup::Vm(Arc::clone(&v.info.id)), v.state);
        }

        self.procs.retain(|_, t| t.seen == tick);
        // A container or VM the engine no longer holds starts again from 0 if its id comes
        // back, and so does its `other`. Host processes come and go, but their `other` is
        // one series for the node's lifetime: it is never dropped (that would reset it).
        self.groups
            .retain(|group, g| g.seen == tick || *group == FoldGroup::Host);
        self.out.others.clear();
        for (group, g) in self.groups.iter_mut() {
            g.total.add(&g.last);
            if g.total.is_zero() {
                continue;
            }
            let state = match states.get(group) {
                Some(&s) => s,
                None if g.running || *group == FoldGroup::Host => State::Running,
                None => State::Terminated { at: snap.at },
            };
            self.out.others.push(OtherSeries {
                group: group.clone(),
                state,
                total: g.total,
                last: g.last,
            });
        }
        self.out
            .others
            .sort_unstable_by(|a, b| a.group.cmp(&b.group));
        self.out.processes = snap.processes.len();
        &self.out
    }
}
