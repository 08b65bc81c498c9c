//! The engine: readings and activity in, an immutable [`Snapshot`] out.
//!
//! One tick is a sequence of stages, each with its own state and scratch buffers, each
//! enforcing energy rules of DESIGN.md section 3:
//!
//! 1. [`usage`]: node CPU usage over the interval, node-wide and per socket when the frame
//!    has per-CPU times of more than one socket.
//! 2. [`zones`]: each zone's reading becomes a wrap-safe, plausible energy delta (rules
//!    1-3), split into active and idle (`node = active + idle`) by the usage ratio (Kepler's
//!    split) or, with [`IdlePower::Learned`], by a learned idle baseline power.
//! 3. [`weigher`]: each process weighs its own CPU-time delta plus its reaped children's
//!    time not yet charged; each container with cgroup accounting weighs the time its live
//!    processes do not explain (issue 4). Identity is (pid, start time) ([`processes`]).
//! 4. [`distributor`]: each bucket's active (and, under an idle policy, idle) energy is
//!    apportioned exactly by those weights (rule 4: `active = Σ workloads + unattributed`).
//! 5. [`rollup`]: processes and containers' exited time roll up into containers, pods and
//!    VMs.
//! 6. [`retention`]: workloads gone from the frame are terminated, keep their energy for
//!    the TTL and then expire, within a cap (rule 5).

mod cgroups;
mod config;
mod distributor;
mod processes;
mod retention;
mod rollup;
mod usage;
mod weigher;
mod zones;

pub use config::{AttributorConfig, AttributorConfigBuilder, IdlePower};

use crate::activity::ActivityFrame;
use crate::snapshot::{EngineStats, IdlePolicy, Snapshot};
use crate::source::PowerFrame;
use crate::units::Timestamp;

use distributor::Distributor;
use processes::Processes;
use rollup::RollUp;
use usage::{Interval, NodeUsage};
use weigher::{Tick, Weigher};
use zones::ZoneLedger;

/// Splits node energy into active and idle and attributes active energy to workloads.
///
/// Deterministic: the same sequence of inputs gives the same snapshots, bit for bit. It keeps
/// cumulative state between steps; it never reads a clock, a file or a socket.
#[derive(Debug)]
pub struct Attributor {
    config: AttributorConfig,
    tick: u64,
    stats: EngineStats,
    usage: NodeUsage,
    zones: ZoneLedger,
    procs: Processes,
    weigher: Weigher,
    distributor: Distributor,
    rollup: RollUp,
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
            tick: 0,
            stats: EngineStats::default(),
            usage: NodeUsage::default(),
            zones: ZoneLedger::default(),
            procs: Processes::default(),
            weigher: Weigher::default(),
            distributor: Distributor::default(),
            rollup: RollUp::default(),
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &AttributorConfig {
        &self.config
    }

    /// Advances the engine by one tick.
    ///
    /// `at` is the tick's one instant, from a monotonic clock: the activity frame and every
    /// zone reading without a `sampled_at` count as read at `at`, so the activity interval
    /// and each meter's delta time (DESIGN rule 3: power is delta energy over delta time)
    /// are measured between the same instants. Readers should take `at` once, right before
    /// reading the meters, and read activity just before it.
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
        self.stats.ticks += 1;
        let interval = self.usage.observe(activity, at, &mut self.stats);
        self.zones.account(
            power,
            at,
            &mut self.usage,
            &interval,
            self.config.default_max_power,
            &self.config.idle_power,
        );
        self.weigh(activity, &interval);
        self.distributor.distribute(
            &self.usage.buckets,
            &self.weigher.weights,
            &mut self.procs.slots,
            activity.is_some(),
            self.config.idle,
        );
        self.roll_up(activity);
        self.retire(activity, at);
        self.snapshot(at, &interval)
    }

    /// Stage 3: this tick's weights (none without a frame).
    fn weigh(&mut self, activity: Option<&ActivityFrame>, interval: &Interval) {
        self.procs.new_tick();
        self.weigher.new_tick();
        let Some(frame) = activity else {
            return;
        };
        let tick = Tick {
            tick: self.tick,
            had_baseline: interval.had_baseline,
            cpu_socket: &self.usage.cpu_socket,
            node_busy: self.usage.node_busy(),
            equal: self.config.idle == IdlePolicy::Equal,
        };
        self.weigher
            .weigh(frame, &mut self.procs, tick, &mut self.stats);
    }

    /// Stage 5: groups get their members' energy of this tick.
    fn roll_up(&mut self, activity: Option<&ActivityFrame>) {
        self.rollup.processes(&mut self.procs.slots, self.tick);
        if let Some(frame) = activity {
            let exited = &self.distributor.exited_tick;
            self.rollup
                .exited(frame, &self.weigher.weights.targets, exited, self.tick);
        }
    }

    /// Stage 6: terminated workloads are marked, expired after the TTL and capped. Only a
    /// real frame can say who is gone.
    fn retire(&mut self, activity: Option<&ActivityFrame>, at: Timestamp) {
        let frame_seen = activity.is_some();
        let mut evicted = 0;
        if frame_seen {
            evicted += self.procs.retire(self.tick, at, &self.config);
            // A cgroup missing from the frame (container gone, or its file vanished
            // mid-read) starts from a new baseline when it comes back.
            self.weigher.cgroups.retain_seen(self.tick);
        }
        evicted += self
            .rollup
            .finish_tick(self.tick, at, frame_seen, &self.config);
        self.stats.evicted += evicted;
        self.stats.live_processes = activity.map_or(0, |f| f.processes.len() as u64);
        self.stats.accounted_containers = activity.map_or(0, |f| f.containers.len() as u64);
        self.stats.terminated_processes = self.procs.terminated();
    }

    /// The immutable result of the tick.
    fn snapshot(&self, at: Timestamp, interval: &Interval) -> Snapshot {
        let (num, den) = interval.ratio;
        Snapshot {
            at,
            interval: interval.dt,
            usage_ratio: if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            },
            zones: self.zones.entries(),
            kinds: self.zones.cpu_kinds(),
            processes: self.procs.entries(),
            containers: self.rollup.containers.entries(),
            pods: self.rollup.pods.entries(),
            vms: self.rollup.vms.entries(),
            unattributed: self.distributor.unattributed,
            exited: self.rollup.exited,
            idle_policy: self.config.idle,
            stats: self.stats,
        }
    }
}
