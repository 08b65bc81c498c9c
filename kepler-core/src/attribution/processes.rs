//! The process table: each workload by identity (pid, start time), so PID reuse is a new
//! workload (rule 5 of DESIGN.md section 3), with the per-process state the other stages keep
//! between ticks.

use std::sync::Arc;

use super::config::AttributorConfig;
use super::retention::retain_workloads;
use crate::activity::{ProcessDetail, ProcessSample};
use crate::hash::FxHashMap;
use crate::snapshot::{Energies, ProcessEntry, State};
use crate::units::Timestamp;

/// `ProcState::target` of a process with no weight this tick.
pub(super) const NO_TARGET: u32 = u32::MAX;

#[derive(Debug)]
pub(super) struct ProcState {
    pub(super) entry: ProcessEntry,
    pub(super) seen_tick: u64,
    /// Parent pid at the latest frame (0: unknown).
    pub(super) ppid: u32,
    /// `cutime + cstime` at the latest frame, ns.
    pub(super) children_time: u64,
    /// Growth of `children_time` this tick.
    pub(super) children_delta: u64,
    /// Reaped-children time not yet credited (> 0 never stays) or, when negative, time of
    /// observed children already charged to them that the next `cutime` growth repays.
    pub(super) child_balance: i64,
    /// A negative balance is kept one tick (the child may be reaped after the scan read
    /// its parent), then forgiven: a parent that never reaps must not absorb later credit.
    pub(super) debt_carried: bool,
    /// This tick's own CPU-time delta, ns.
    pub(super) own_delta: u64,
    /// Socket of the CPU it last ran on, when per-socket data is known.
    pub(super) socket: Option<u32>,
    /// Its index in this tick's targets, or `NO_TARGET`.
    pub(super) target: u32,
    /// Cached (epoch, slot) of its container, pod and VM; reset when its info changes.
    pub(super) group_slots: [Option<(u64, u32)>; 3],
    /// Cached (epoch, slot) of its container's cgroup state, if any.
    pub(super) cgroup_slot: Option<(u64, Option<u32>)>,
}

/// What [`Processes::observe`] learnt of one sample.
pub(super) struct Observed {
    /// The process's slot.
    pub(super) slot: usize,
    /// It was running after the previous frame too.
    pub(super) was_running: bool,
    /// Its CPU or children's time went back (treated as no progress).
    pub(super) regressed: bool,
}

/// Every process seen and not yet expired, in a slab indexed by identity.
#[derive(Debug, Default)]
pub(super) struct Processes {
    pub(super) slots: Vec<ProcState>,
    pub(super) index: FxHashMap<(u32, u64), usize>,
}

impl Processes {
    /// Starts a tick: nothing attributed to anyone yet.
    pub(super) fn new_tick(&mut self) {
        for p in &mut self.slots {
            p.entry.energy.new_tick();
        }
    }

    /// Takes a process's sample: its own CPU-time delta and its reaped children's growth
    /// since the previous frame. A process new since the previous frame did all its work
    /// (and its children theirs) in this interval; on the very first frame (no
    /// `had_baseline`) it only takes a baseline.
    #[inline]
    pub(super) fn observe(
        &mut self,
        s: &ProcessSample,
        detail: Option<ProcessDetail>,
        had_baseline: bool,
        tick: u64,
    ) -> Observed {
        let children_now = detail.map_or(0, |d| d.children_time.0);
        let Some(&slot) = self.index.get(&(s.pid, s.start_time)) else {
            let (own, children) = if had_baseline {
                (s.cpu_time.0, children_now)
            } else {
                (0, 0)
            };
            let slot = self.insert(s, own, children_now, children, tick);
            return Observed {
                slot,
                was_running: false,
                regressed: false,
            };
        };
        let p = &mut self.slots[slot];
        let was_running = p.entry.state == State::Running;
        // A counter that goes back is treated as no progress.
        let regressed = s.cpu_time < p.entry.cpu_time || children_now < p.children_time;
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
        Observed {
            slot,
            was_running,
            regressed,
        }
    }

    fn insert(
        &mut self,
        s: &ProcessSample,
        own_delta: u64,
        children_time: u64,
        children_delta: u64,
        tick: u64,
    ) -> usize {
        self.index.insert((s.pid, s.start_time), self.slots.len());
        self.slots.push(ProcState {
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
            children_time,
            children_delta,
            child_balance: 0,
            debt_carried: false,
            own_delta,
            socket: None,
            target: NO_TARGET,
            group_slots: [None; 3],
            cgroup_slot: None,
        });
        self.slots.len() - 1
    }

    /// Rule 5: processes missing from this tick's frame are terminated as of `at` (their
    /// energy stays theirs), expire after the TTL, and the smallest go beyond the cap.
    /// Returns how many the cap evicted.
    pub(super) fn retire(&mut self, tick: u64, at: Timestamp, config: &AttributorConfig) -> u64 {
        for p in &mut self.slots {
            if p.seen_tick != tick && p.entry.state == State::Running {
                p.entry.state = State::Terminated { at };
            }
        }
        let before = self.slots.len();
        let evicted = retain_workloads(
            &mut self.slots,
            at,
            config,
            |p| &p.entry.state,
            |p| p.entry.energy.total.sum(),
            |p| p.entry.energy.total.max(),
        );
        if self.slots.len() != before {
            self.index.clear();
            for (i, p) in self.slots.iter().enumerate() {
                self.index.insert((p.entry.pid, p.entry.start_time), i);
            }
        }
        evicted
    }

    /// Terminated processes still retained.
    pub(super) fn terminated(&self) -> u64 {
        self.slots
            .iter()
            .filter(|p| p.entry.state != State::Running)
            .count() as u64
    }

    /// The processes' entries, for the snapshot.
    pub(super) fn entries(&self) -> Vec<ProcessEntry> {
        self.slots.iter().map(|p| p.entry.clone()).collect()
    }
}
