//! Stage 3, the weigher: who did the work of the interval, and how much.
//!
//! - Each process weighs its own CPU-time delta, plus the growth of its reaped children's
//!   time (`cutime + cstime`) less what those children were already charged for, so children
//!   that lived between two frames reach their parent (issue 4).
//! - Each container with cgroup accounting weighs the cgroup's CPU-time delta that its live
//!   processes do not explain: an "exited" weight, so short-lived processes reach their
//!   container and pod instead of the survivors.
//! - Children's credit never takes more than the busy time nothing else explains.

use super::cgroups::{clamp_i64, CgroupState, Cgroups};
use super::processes::{ProcState, Processes, NO_TARGET};
use crate::activity::{ActivityFrame, ProcessDetail};
use crate::hash::FxHashMap;
use crate::snapshot::{EngineStats, State};

/// Who a weight belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// A process, by slot.
    Proc(usize),
    /// The exited-process time of a container, by its index in the frame's `containers`.
    Exited(usize),
}

/// This tick's weights, one per target, with the socket each target ran on.
#[derive(Debug, Default)]
pub(super) struct Weights {
    pub(super) targets: Vec<Target>,
    pub(super) weights: Vec<u64>,
    pub(super) sockets_of: Vec<Option<u32>>,
    /// How many targets are [`Target::Exited`].
    pub(super) exited: usize,
}

impl Weights {
    /// Adds a target; returns its index.
    #[inline]
    fn push(&mut self, target: Target, weight: u64, socket: Option<u32>) -> u32 {
        let index = self.targets.len() as u32;
        self.targets.push(target);
        self.weights.push(weight);
        self.sockets_of.push(socket);
        index
    }
}

/// What the weigher needs to know of the tick besides the frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tick<'a> {
    pub(super) tick: u64,
    /// A previous frame exists (else everything seen is a baseline).
    pub(super) had_baseline: bool,
    /// This frame's socket of each CPU, by CPU number.
    pub(super) cpu_socket: &'a [Option<u32>],
    /// Node busy time over the interval, ns.
    pub(super) node_busy: u64,
    /// Under the `equal` idle policy every live process is a target, even with no weight.
    pub(super) equal: bool,
}

/// Weighs the workloads of each tick; keeps the containers' cgroup accounting between ticks.
#[derive(Debug, Default)]
pub(super) struct Weigher {
    pub(super) weights: Weights,
    pub(super) cgroups: Cgroups,
    debts: FxHashMap<u32, i64>,
    /// Targets that got reaped-children credit this tick.
    credited: Vec<u32>,
    /// Processes running after the previous frame; more than are seen again means exits.
    running_before: usize,
}

impl Weigher {
    /// Starts a tick with no weights.
    pub(super) fn new_tick(&mut self) {
        self.weights.targets.clear();
        self.weights.weights.clear();
        self.weights.sockets_of.clear();
        self.weights.exited = 0;
    }

    /// Fills this tick's weights from `frame`, in one pass over its processes.
    pub(super) fn weigh(
        &mut self,
        frame: &ActivityFrame,
        procs: &mut Processes,
        t: Tick<'_>,
        stats: &mut EngineStats,
    ) {
        // Containers' cgroup deltas first, so the pass over processes can tell which of
        // them their cgroup accounts.
        self.cgroups
            .sample(&frame.containers, t.had_baseline, t.tick, stats);
        let details = (frame.details.len() == frame.processes.len()).then_some(&frame.details[..]);
        let still_running = self.processes(frame, details, procs, t, stats);
        // Processes that exited since the last frame: what they were charged is owed back
        // by their parent's `cutime` growth, which counts their whole life.
        if self.running_before > still_running && details.is_some() {
            self.repay_exited(frame, procs, t.tick);
        }
        self.running_before = frame.processes.len();
        let weights = &mut self.weights;
        self.cgroups
            .unexplained(&frame.containers, |index, residual| {
                weights.push(Target::Exited(index), residual, None);
                weights.exited += 1;
            });
        self.cap_credits(&procs.slots, t.node_busy);
    }

    /// Weighs each process of the frame; returns how many of them were running before.
    fn processes(
        &mut self,
        frame: &ActivityFrame,
        details: Option<&[ProcessDetail]>,
        procs: &mut Processes,
        t: Tick<'_>,
        stats: &mut EngineStats,
    ) -> usize {
        let accounted = !self.cgroups.is_empty();
        let mut still_running = 0usize;
        let mut regressions = 0;
        for (i, s) in frame.processes.iter().enumerate() {
            let detail = details.map(|d| d[i]);
            let seen = procs.observe(s, detail, t.had_baseline, t.tick);
            still_running += usize::from(seen.was_running);
            regressions += u64::from(seen.regressed);
            let p = &mut procs.slots[seen.slot];
            p.seen_tick = t.tick;
            p.ppid = detail.map_or(0, |d| d.ppid);
            p.socket = detail
                .and_then(|d| d.last_cpu)
                .and_then(|c| t.cpu_socket.get(c as usize).copied().flatten());
            let cg = match &p.entry.info.container {
                Some(c) if accounted => self.cgroups.sampled(&mut p.cgroup_slot, &c.id, t.tick),
                _ => None,
            };
            let credit = children_credit(p, cg);
            let w = p.own_delta.saturating_add(credit);
            if credit > 0 {
                self.credited.push(self.weights.targets.len() as u32);
            }
            p.target = if w > 0 || t.equal {
                self.weights.push(Target::Proc(seen.slot), w, p.socket)
            } else {
                NO_TARGET
            };
        }
        stats.counter_regressions += regressions;
        still_running
    }

    /// Takes what exited processes were charged out of their parents' children's credit
    /// of this tick (never out of a parent's own time), and carries the rest as a negative
    /// balance. Debts go by parent pid: the exited are few, the live many, so only the
    /// parents' slots are looked up.
    fn repay_exited(&mut self, frame: &ActivityFrame, procs: &mut Processes, tick: u64) {
        self.debts.clear();
        for p in &procs.slots {
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
            let Some(&parent) = procs.index.get(&(s.pid, s.start_time)) else {
                continue;
            };
            let pp = &mut procs.slots[parent];
            let t = pp.target;
            let granted = if t == NO_TARGET {
                0
            } else {
                self.weights.weights[t as usize].saturating_sub(pp.own_delta)
            };
            let repaid = granted.min(owed as u64);
            if repaid > 0 {
                self.weights.weights[t as usize] -= repaid;
            }
            let rest = owed - repaid as i64;
            if rest > 0 {
                pp.child_balance = pp.child_balance.saturating_sub(rest);
                pp.debt_carried = false;
            }
        }
    }

    /// A child in an accounted cgroup whose parent is outside it (an exec probe under its
    /// runtime shim) is in both the cgroup's counter and the parent's `cutime`. Credits
    /// may therefore take only the busy time nothing else explains; beyond that they are
    /// scaled down, so that time is not counted twice.
    fn cap_credits(&mut self, procs: &[ProcState], node_busy: u64) {
        if self.credited.is_empty() {
            return;
        }
        let Weights {
            targets, weights, ..
        } = &mut self.weights;
        let credit_of = |t: u32, weights: &[u64]| match targets[t as usize] {
            Target::Proc(slot) => weights[t as usize].saturating_sub(procs[slot].own_delta),
            Target::Exited(_) => 0,
        };
        let credits: u64 = self.credited.iter().map(|&t| credit_of(t, weights)).sum();
        let explained = weights.iter().sum::<u64>() - credits;
        let free = node_busy.saturating_sub(explained);
        if credits > free {
            for &t in &self.credited {
                let c = credit_of(t, weights);
                let kept = (c as u128 * free as u128 / credits as u128) as u64;
                weights[t as usize] -= c - kept;
            }
        }
        self.credited.clear();
    }
}

/// The reaped-children time credited to `p` this tick. None when its cgroup accounts its
/// children (`cg`, whose explained time grows by `p`'s own); else the growth of its
/// children's time, less a debt of children already charged, which is kept one tick.
#[inline]
fn children_credit(p: &mut ProcState, cg: Option<&mut CgroupState>) -> u64 {
    match cg {
        Some(cg) => {
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
    }
}
