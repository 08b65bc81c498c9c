//! Stage 5, the roll-up: processes' energy, and containers' exited time, summed into
//! containers, pods and VMs (DESIGN.md section 4's hierarchy: a group's value is the sum of
//! its members by construction); groups with no member left are terminated like processes.

use std::sync::Arc;

use super::config::AttributorConfig;
use super::processes::ProcState;
use super::retention::retain_workloads;
use super::weigher::Target;
use crate::activity::{ActivityFrame, ContainerInfo, PodInfo, VmInfo};
use crate::hash::FxHashMap;
use crate::snapshot::{Energies, GroupEntry, State};
use crate::units::{Nanos, Timestamp};

/// Containers, pods and VMs, and the energy of container time no live process explains.
#[derive(Debug, Default)]
pub(super) struct RollUp {
    pub(super) containers: Groups<ContainerInfo>,
    pub(super) pods: Groups<PodInfo>,
    pub(super) vms: Groups<VmInfo>,
    /// See [`crate::Snapshot::exited`].
    pub(super) exited: Energies,
}

impl RollUp {
    /// Adds this tick's energy of the processes seen in `tick` to their groups. Each process
    /// caches its groups' slots: no hash of a 64-character id per tick.
    pub(super) fn processes(&mut self, procs: &mut [ProcState], tick: u64) {
        self.exited.new_tick();
        for p in procs {
            if p.seen_tick != tick {
                continue;
            }
            let last = &p.entry.energy;
            let cpu = p.own_delta;
            let slots = &mut p.group_slots;
            if let Some(c) = &p.entry.info.container {
                self.containers
                    .charge_cached(&mut slots[0], &c.id, c, last, cpu, tick);
                if let Some(pod) = &c.pod {
                    self.pods
                        .charge_cached(&mut slots[1], &pod.id, pod, last, cpu, tick);
                }
            }
            if let Some(vm) = &p.entry.info.vm {
                self.vms
                    .charge_cached(&mut slots[2], &vm.id, vm, last, cpu, tick);
            }
        }
    }

    /// Adds the energy of containers' exited time (`exited_tick`, one per
    /// [`Target::Exited`] in order) to the container, its pod and the node's `exited`.
    pub(super) fn exited(
        &mut self,
        frame: &ActivityFrame,
        targets: &[Target],
        exited_tick: &[Energies],
        tick: u64,
    ) {
        let containers = targets.iter().filter_map(|t| match t {
            Target::Exited(i) => Some(*i),
            Target::Proc(_) => None,
        });
        for (t, e) in containers.zip(exited_tick) {
            let c = &frame.containers[t].info;
            self.containers.charge(&c.id, c, e, tick);
            if let Some(pod) = &c.pod {
                self.pods.charge(&pod.id, pod, e, tick);
            }
            self.exited.add_last(e);
        }
    }

    /// Ends the tick of every level (see [`Groups::finish_tick`]); returns how many
    /// terminated groups the cap evicted.
    pub(super) fn finish_tick(
        &mut self,
        tick: u64,
        at: Timestamp,
        frame_seen: bool,
        config: &AttributorConfig,
    ) -> u64 {
        self.containers
            .finish_tick(tick, at, frame_seen, config, |c| &c.id)
            + self
                .pods
                .finish_tick(tick, at, frame_seen, config, |p| &p.id)
            + self
                .vms
                .finish_tick(tick, at, frame_seen, config, |v| &v.id)
    }
}

#[derive(Debug)]
struct GroupState<I> {
    entry: GroupEntry<I>,
    seen_tick: u64,
}

/// A set of groups (containers, pods or VMs) keyed by id, in a slab so iteration is cheap.
#[derive(Debug)]
pub(super) struct Groups<I> {
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
        self.charge_slot(slot, last, 0, tick);
    }

    /// As [`Groups::charge`] through a slot cached by the caller: the cache holds while its
    /// epoch is current and the caller's info is unchanged since it was filled.
    fn charge_cached(
        &mut self,
        cache: &mut Option<(u64, u32)>,
        id: &Arc<str>,
        info: &I,
        last: &Energies,
        cpu_ns: u64,
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
        self.charge_slot(slot, last, cpu_ns, tick);
    }

    fn charge_slot(&mut self, slot: usize, last: &Energies, cpu_ns: u64, tick: u64) {
        let g = &mut self.slots[slot];
        if g.seen_tick != tick {
            g.seen_tick = tick;
            g.entry.energy.new_tick();
        }
        g.entry.state = State::Running;
        g.entry.energy.add_last(last);
        g.entry.cpu_time = Nanos(g.entry.cpu_time.0.saturating_add(cpu_ns));
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
                        cpu_time: Nanos(0),
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
            |g| g.entry.energy.total.max(),
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

    pub(super) fn entries(&self) -> Vec<GroupEntry<I>> {
        self.slots.iter().map(|g| g.entry.clone()).collect()
    }
}
