//! Stage 2, the zone ledger: each zone's reading becomes an energy delta (rules 1-3 of
//! DESIGN.md section 3: cumulative from 0, wraps unwrapped, implausible deltas dropped and
//! counted, power over the read timestamps), split into active and idle (`node = active +
//! idle`, exactly). The CPU kinds' shares are handed to the zone's usage bucket for the
//! workloads.

use std::sync::Arc;

use super::config::IdlePower;
use super::usage::{Interval, NodeUsage};
use crate::counter::{Delta, ZoneCounter};
use crate::hash::FxHashMap;
use crate::snapshot::NodeZone;
use crate::source::{PowerFrame, ZoneSample};
use crate::units::{watts, MicroJoules, MicroWatts, Nanos, Timestamp};
use crate::zone::ZoneKind;

#[derive(Debug)]
struct ZoneState {
    entry: NodeZone,
    counter: ZoneCounter,
    /// Learned idle power, µW (see [`IdlePower::Learned`]).
    baseline: Option<u64>,
}

/// Every zone seen, in the order first seen.
#[derive(Debug, Default)]
pub(super) struct ZoneLedger {
    zones: Vec<ZoneState>,
    index: FxHashMap<String, usize>,
}

impl ZoneLedger {
    /// Accounts this tick's readings (taken at `at` unless sampled earlier), adding the CPU kinds' active and idle energy to
    /// `usage`'s buckets.
    pub(super) fn account(
        &mut self,
        power: &PowerFrame,
        at: Timestamp,
        usage: &mut NodeUsage,
        interval: &Interval,
        default_max_power: MicroWatts,
        idle_power: &IdlePower,
    ) {
        for sample in &power.samples {
            let zi = self.slot(sample, default_max_power);
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
            let read_at = sample.sampled_at.unwrap_or(at);
            z.entry.last_read = Some(read_at);
            match z.counter.update(read_at, reading) {
                Delta::Baseline => {}
                Delta::Implausible => z.entry.dropped_deltas += 1,
                Delta::Energy {
                    energy,
                    dt,
                    wrapped,
                } => {
                    z.entry.wraps += wrapped as u64;
                    split(z, energy, dt, usage, interval.ratio, idle_power);
                }
            }
        }
    }

    /// The slot of the sample's zone, created on first sight.
    fn slot(&mut self, sample: &ZoneSample, default_max_power: MicroWatts) -> usize {
        if let Some(&i) = self.index.get(&sample.zone.id) {
            return i;
        }
        self.index.insert(sample.zone.id.clone(), self.zones.len());
        self.zones.push(ZoneState {
            counter: ZoneCounter::new(&sample.zone, default_max_power),
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

    /// The zones' node-level accounting, for the snapshot.
    pub(super) fn entries(&self) -> Vec<NodeZone> {
        self.zones.iter().map(|z| z.entry.clone()).collect()
    }

    /// The CPU zone kinds present, sorted: the kinds workloads are exported for.
    pub(super) fn cpu_kinds(&self) -> Vec<ZoneKind> {
        let mut kinds: Vec<ZoneKind> = self
            .zones
            .iter()
            .map(|z| z.entry.info.kind)
            .filter(|k| k.is_cpu())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// Splits one accepted delta into active and idle by the usage of the zone's bucket and
/// books both: on the zone, and for CPU kinds on the bucket the workloads share.
fn split(
    z: &mut ZoneState,
    energy: MicroJoules,
    dt: Nanos,
    usage: &mut NodeUsage,
    ratio: (u64, u64),
    idle_power: &IdlePower,
) {
    let kind = z.entry.info.kind;
    // A per-socket zone follows its socket's usage when that is known.
    let bucket = usage.bucket_of(&z.entry.info);
    let (num, den) = usage.ratio_of(bucket, ratio);
    let idle = split_idle(idle_power, &mut z.baseline, energy.0, dt, num, den);
    let active = energy.0 - idle;
    z.entry.total += energy;
    z.entry.active += MicroJoules(active);
    z.entry.idle += MicroJoules(idle);
    z.entry.power = watts(energy, dt);
    z.entry.active_power = watts(MicroJoules(active), dt);
    z.entry.idle_power = watts(MicroJoules(idle), dt);
    if kind.is_cpu() {
        let b = &mut usage.buckets[bucket];
        b.active.0[kind.index()] += active;
        b.idle.0[kind.index()] += idle;
    }
}

/// The idle part of a zone's `energy` over `dt`, given the usage ratio `num / den`;
/// `baseline` is the zone's learned idle power under [`IdlePower::Learned`].
fn split_idle(
    idle_power: &IdlePower,
    baseline: &mut Option<u64>,
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
        *baseline = Some(match *baseline {
            Some(b) if power >= b => {
                // Rise toward newer low-usage power with time constant `decay`.
                let step = (power - b) as u128 * dt.0 as u128 / (dt.0 as u128 + decay.0 as u128);
                b + step as u64
            }
            _ => power,
        });
    }
    match *baseline {
        Some(b) => ((b as u128 * dt.0 as u128 / 1_000_000_000) as u64).min(energy),
        None => by_usage,
    }
}
