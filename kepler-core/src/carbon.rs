//! Carbon (issue 20, section 3): grams of CO2-equivalent per node zone, container and pod,
//! integrated tick by tick with the grid intensity in force for that tick.
//!
//! Pure like the rest of this crate: the intensity of a tick is an input (the binary's
//! poller reads it from a constant, a file or a URL, off the tick path), and nothing here
//! reads a clock or a file.
//!
//! # Why per tick, here
//!
//! `increase(kepler_node_cpu_joules_total[1d]) * kepler_carbon_intensity_grams_per_kwh`
//! multiplies a day's energy by one intensity; when the intensity changes during the day
//! (a grid does, hourly), the product is wrong by the energy spent under each other value.
//! PromQL cannot weight each joule by the intensity of its own moment. This ledger can: for
//! every tick it takes the increase of each exported energy counter (integer microjoules,
//! exact), multiplies it by the tick's intensity in `f64`, and adds it to a per-series
//! total:
//!
//! ```text
//!  grams += ΔµJ × (g/kWh) / 3.6e12          (1 kWh = 3.6e6 J = 3.6e12 µJ)
//! ```
//!
//! A tick whose intensity is unknown (`None`: no value read yet) adds nothing; its energy is
//! not charged later at another tick's intensity.
//!
//! # Retention
//!
//! The ledger keeps a series exactly as long as the snapshot keeps the matching energy
//! series: an entry whose container or pod is no longer in the snapshot (the terminated TTL
//! or the `max_terminated` cap of `attribution::retention` dropped it) is dropped too, so a
//! terminated workload's carbon stays exported, frozen, for as long as its energy does.

use std::sync::Arc;

use crate::hash::FxHashMap;
use crate::snapshot::{GroupEntry, PerKind, Snapshot};
use crate::units::{MicroJoules, Timestamp};
use crate::zone::ZoneKind;

/// Microjoules in a kilowatt-hour.
pub const MICROJOULES_PER_KWH: f64 = 3.6e12;

/// The grams of CO2e of `energy` spent at `grams_per_kwh`.
#[inline]
pub fn co2e_grams(energy: MicroJoules, grams_per_kwh: f64) -> f64 {
    energy.0 as f64 * grams_per_kwh / MICROJOULES_PER_KWH
}

/// Grams of CO2e per [`ZoneKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KindGrams(pub [f64; ZoneKind::ALL.len()]);

impl KindGrams {
    /// The grams for `kind`.
    pub fn get(&self, kind: ZoneKind) -> f64 {
        self.0[kind.index()]
    }
}

/// The carbon of one tick, aligned with the [`Snapshot`] it was stepped with: `zones[i]` is
/// the carbon of `snapshot.zones[i]`, `containers[i]` of `snapshot.containers[i]`, `pods[i]`
/// of `snapshot.pods[i]`. Every total starts at 0 and never decreases.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CarbonSnapshot {
    /// The snapshot's tick time.
    pub at: Timestamp,
    /// The intensity used for this tick, gCO2e/kWh; `None` when none was known (the tick
    /// added nothing).
    pub intensity: Option<f64>,
    /// Cumulative grams per node zone.
    pub zones: Vec<f64>,
    /// Cumulative grams per container and zone kind.
    pub containers: Vec<KindGrams>,
    /// Cumulative grams per pod and zone kind.
    pub pods: Vec<KindGrams>,
}

/// One series' state: the energy counter's value at its latest tick, and the grams so far.
#[derive(Debug, Default)]
struct Tally<E, G> {
    seen: u64,
    energy: E,
    grams: G,
}

/// The running carbon totals, stepped once per engine tick. See the module docs.
#[derive(Debug, Default)]
pub struct CarbonLedger {
    ticks: u64,
    zones: FxHashMap<String, Tally<u64, f64>>,
    containers: FxHashMap<Arc<str>, Tally<PerKind, KindGrams>>,
    pods: FxHashMap<Arc<str>, Tally<PerKind, KindGrams>>,
}

impl CarbonLedger {
    /// A ledger with nothing counted.
    pub fn new() -> CarbonLedger {
        CarbonLedger::default()
    }

    /// Adds the energy that `snap`'s counters gained since the previous step, at
    /// `intensity` gCO2e/kWh, and returns the totals aligned with `snap`.
    ///
    /// An intensity that is not a finite number `>= 0` counts as unknown. Entries for
    /// containers and pods that `snap` no longer lists are forgotten.
    #[must_use]
    pub fn step(&mut self, snap: &Snapshot, intensity: Option<f64>) -> CarbonSnapshot {
        let intensity = intensity.filter(|i| i.is_finite() && *i >= 0.0);
        self.ticks += 1;
        let tick = self.ticks;

        let mut zones = Vec::with_capacity(snap.zones.len());
        for z in &snap.zones {
            let t = match self.zones.get_mut(z.info.id.as_str()) {
                Some(t) => t,
                None => self.zones.entry(z.info.id.clone()).or_default(),
            };
            t.seen = tick;
            let delta = z.total.0.saturating_sub(t.energy);
            if let Some(i) = intensity {
                t.grams += co2e_grams(MicroJoules(delta), i);
            }
            t.energy = z.total.0;
            zones.push(t.grams);
        }
        self.zones.retain(|_, t| t.seen == tick);

        let containers = groups(
            &mut self.containers,
            &snap.containers,
            |c| &c.id,
            tick,
            intensity,
        );
        let pods = groups(&mut self.pods, &snap.pods, |p| &p.id, tick, intensity);
        CarbonSnapshot {
            at: snap.at,
            intensity,
            zones,
            containers,
            pods,
        }
    }
}

/// Steps one level of groups (containers or pods): see [`CarbonLedger::step`].
fn groups<I>(
    tallies: &mut FxHashMap<Arc<str>, Tally<PerKind, KindGrams>>,
    entries: &[GroupEntry<I>],
    id: impl Fn(&I) -> &Arc<str>,
    tick: u64,
    intensity: Option<f64>,
) -> Vec<KindGrams> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let key = id(&e.info);
        let t = match tallies.get_mut(&**key) {
            Some(t) => t,
            None => tallies.entry(key.clone()).or_default(),
        };
        t.seen = tick;
        for (k, (now, before)) in e.energy.total.0.iter().zip(t.energy.0.iter()).enumerate() {
            let delta = now.saturating_sub(*before);
            if let Some(i) = intensity {
                t.grams.0[k] += co2e_grams(MicroJoules(delta), i);
            }
        }
        t.energy = e.energy.total;
        out.push(t.grams);
    }
    tallies.retain(|_, t| t.seen == tick);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kilowatt_hour_at_400_is_400_grams() {
        assert_eq!(co2e_grams(MicroJoules(3_600_000_000_000), 400.0), 400.0);
        assert_eq!(co2e_grams(MicroJoules(0), 400.0), 0.0);
        // 1 J at 360 g/kWh is 1e-4 g.
        assert!((co2e_grams(MicroJoules(1_000_000), 360.0) - 1e-4).abs() < 1e-18);
    }
}
