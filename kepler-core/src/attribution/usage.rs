//! Stage 1, node usage: how busy the CPUs were over the interval, node-wide and per socket.
//!
//! The busy share of CPU time is what splits a zone's energy into active and idle (Kepler's
//! split), and each socket's busy time is what that socket's workloads share.

use crate::activity::{ActivityFrame, NodeCpu};
use crate::snapshot::{EngineStats, PerKind};
use crate::units::{Nanos, Timestamp};
use crate::zone::{ZoneInfo, ZoneKind};

/// Energy to apportion with one set of weights: node-wide, or one socket's.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Bucket {
    /// `None`: node-wide.
    pub(super) socket: Option<u32>,
    /// Busy CPU time over the interval, ns.
    pub(super) busy: u64,
    /// All CPU time over the interval, ns.
    pub(super) total: u64,
    /// Active energy of this tick per zone kind, filled by the zone ledger.
    pub(super) active: PerKind,
    /// Idle energy of this tick per zone kind, filled by the zone ledger.
    pub(super) idle: PerKind,
}

/// What this tick's activity frame says about the interval.
#[derive(Debug, Clone, Copy)]
pub(super) struct Interval {
    /// Time since the previous activity frame (0 on the first, or without a frame).
    pub(super) dt: Nanos,
    /// Whether a previous frame existed: without one, everything seen is only a baseline.
    pub(super) had_baseline: bool,
    /// Node busy and total time of the split: this tick's, else the last known.
    pub(super) ratio: (u64, u64),
}

/// Node and per-socket CPU usage between activity frames.
#[derive(Debug, Default)]
pub(super) struct NodeUsage {
    last_node: Option<NodeCpu>,
    last_activity_at: Option<Timestamp>,
    /// Last known busy/total deltas, used for the split when a tick has no activity frame.
    last_ratio: (u64, u64),
    /// Per-CPU times of the previous frame, by CPU number.
    last_cpus: Vec<Option<NodeCpu>>,
    /// This frame's socket of each CPU, by CPU number.
    pub(super) cpu_socket: Vec<Option<u32>>,
    /// Node-wide bucket first, then one per socket in socket order.
    pub(super) buckets: Vec<Bucket>,
}

impl NodeUsage {
    /// Takes this tick's frame, read at the tick's instant `at`, or notes that there is none
    /// (then the last known ratio splits the energy and everything active goes to
    /// `unattributed`).
    pub(super) fn observe(
        &mut self,
        activity: Option<&ActivityFrame>,
        at: Timestamp,
        stats: &mut EngineStats,
    ) -> Interval {
        let mut dt = Nanos(0);
        let had_baseline = self.last_node.is_some();
        if let Some(frame) = activity {
            self.node_usage(frame);
            if let Some(prev_at) = self.last_activity_at {
                dt = at.since(prev_at);
            }
            self.last_activity_at = Some(at);
            if self.buckets[0].total > 0 {
                self.last_ratio = (self.buckets[0].busy, self.buckets[0].total);
            }
        } else {
            stats.missing_activity += 1;
            self.buckets.clear();
            self.buckets.push(Bucket::default());
        }
        let ratio = if self.buckets[0].total > 0 {
            (self.buckets[0].busy, self.buckets[0].total)
        } else {
            self.last_ratio
        };
        Interval {
            dt,
            had_baseline,
            ratio,
        }
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
            self.socket_usage(frame);
        }
        self.last_node = Some(frame.node);
    }

    /// One bucket per socket from the per-CPU times, sorted by socket.
    fn socket_usage(&mut self, frame: &ActivityFrame) {
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

    /// The bucket whose usage splits `zone`: its socket's for a per-socket zone when that
    /// socket is known, else the node's (0).
    pub(super) fn bucket_of(&self, zone: &ZoneInfo) -> usize {
        if per_socket(zone.kind) {
            self.buckets
                .iter()
                .position(|b| b.socket == Some(zone.index))
                .unwrap_or(0)
        } else {
            0
        }
    }

    /// The usage ratio (busy, total) of `bucket`, falling back to the node's `ratio`.
    pub(super) fn ratio_of(&self, bucket: usize, ratio: (u64, u64)) -> (u64, u64) {
        match self.buckets[bucket] {
            b if bucket > 0 && b.total > 0 => (b.busy, b.total),
            _ => ratio,
        }
    }

    /// Node busy time over the interval.
    pub(super) fn node_busy(&self) -> u64 {
        self.buckets[0].busy
    }
}

/// Zone kinds that exist once per socket; `psys` and platform meters are node-wide.
fn per_socket(kind: ZoneKind) -> bool {
    matches!(
        kind,
        ZoneKind::Package | ZoneKind::Core | ZoneKind::Uncore | ZoneKind::Dram
    )
}
