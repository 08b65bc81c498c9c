//! Containers' cgroup CPU accounting between ticks: the kernel's count of every task that ran
//! in a container, including processes that started and exited between two frames (issue 4).

use std::sync::Arc;

use crate::activity::ContainerUsage;
use crate::hash::FxHashMap;
use crate::snapshot::EngineStats;

/// A container's cgroup CPU accounting between ticks.
#[derive(Debug)]
pub(super) struct CgroupState {
    id: Arc<str>,
    usage: u64,
    /// Cgroup time not explained by live processes, carried between ticks; negative when
    /// the processes' (tick-quantised) times ran ahead of the cgroup's.
    balance: i64,
    /// This tick's cgroup delta, when it had a previous sample.
    delta: Option<u64>,
    /// Sum of the own CPU-time deltas of its live processes this tick.
    pub(super) explained: u64,
    /// Index of this tick's sample in `ActivityFrame::containers`.
    frame_index: usize,
    seen_tick: u64,
}

/// Containers' cgroup states in a slab, so processes can cache their container's slot.
#[derive(Debug, Default)]
pub(super) struct Cgroups {
    slots: Vec<CgroupState>,
    index: FxHashMap<Arc<str>, usize>,
    /// Bumped on every insert or removal, which invalidates slots cached by processes.
    epoch: u64,
}

impl Cgroups {
    /// Takes this tick's cgroup usages: each one's delta since its previous sample. A
    /// cgroup new since the previous frame did all its work in this interval; one whose
    /// counter went back (recreated under the same id) starts again from its new value.
    pub(super) fn sample(
        &mut self,
        containers: &[ContainerUsage],
        had_baseline: bool,
        tick: u64,
        stats: &mut EngineStats,
    ) {
        for (i, c) in containers.iter().enumerate() {
            let usage = c.usage.0;
            match self.get_mut(&c.info.id) {
                Some(cg) if cg.seen_tick == tick => {} // a duplicate in one frame: first wins
                Some(cg) => {
                    if usage < cg.usage {
                        stats.counter_regressions += 1;
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
                None => self.insert(
                    Arc::clone(&c.info.id),
                    CgroupState {
                        id: Arc::clone(&c.info.id),
                        usage,
                        balance: 0,
                        delta: had_baseline.then_some(usage),
                        explained: 0,
                        frame_index: i,
                        seen_tick: tick,
                    },
                ),
            }
        }
    }

    /// The cgroup time of this tick that no live process explains, per container in frame
    /// order (so results do not depend on hashing): `(index in the frame, time)`. Time the
    /// processes ran ahead of the cgroup is carried as a negative balance, at most one
    /// tick's delta deep.
    pub(super) fn unexplained(
        &mut self,
        containers: &[ContainerUsage],
        mut residual: impl FnMut(usize, u64),
    ) {
        for c in containers {
            let Some(cg) = self.get_mut(&c.info.id) else {
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
                residual(cg.frame_index, std::mem::take(&mut cg.balance) as u64);
            }
        }
    }

    /// The state of the container `id` sampled this tick, through the process's `cache`.
    #[inline]
    pub(super) fn sampled(
        &mut self,
        cache: &mut Option<(u64, Option<u32>)>,
        id: &str,
        tick: u64,
    ) -> Option<&mut CgroupState> {
        let slot = self.slot_cached(cache, id)?;
        Some(&mut self.slots[slot]).filter(|cg| cg.seen_tick == tick)
    }

    pub(super) fn is_empty(&self) -> bool {
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
    pub(super) fn retain_seen(&mut self, tick: u64) {
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

/// `v` as an `i64`, saturating.
pub(super) fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
