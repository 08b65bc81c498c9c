//! The Redfish [`PowerSource`]: platform zones from the poller's cache, never from the network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kepler_core::{
    Metering, MicroWatts, PowerFrame, PowerSource, SourceKind, SourceReport, Timestamp, ZoneInfo,
    ZoneKind,
};

use super::config::{BmcConfig, RedfishOptions};
use super::error::FetchErrorKind;
use super::model::PowerReading;
use super::poller::{BmcShared, Poller};
use crate::bmc::{poll_stamp, report, BmcZone};
use crate::Error;

/// Readings above this are garbage, not power (the largest power shelves draw ~33 kW).
const MAX_PLATFORM_WATTS: f64 = 1_000_000.0;

#[derive(Debug)]
struct ZoneEntry {
    z: BmcZone,
    /// The `read` call that last saw it in a fresh poll.
    seen: u64,
}

/// Platform power of this node's BMCs, polled in the background.
///
/// Zones (`ZoneKind::Platform`, source `redfish`) appear as the BMCs are first walked: one
/// per PowerControl entry (or EnvironmentMetrics value, PSU input, chassis power sensor).
/// [`PowerSource::read`] copies the latest cached walk of each BMC, stamped with the time
/// it was taken; a walk older than the staleness limit gives `Stale` errors instead, and a
/// zone missing from a fresh walk (its chassis failed) gives `Missing`.
#[derive(Debug)]
pub struct Redfish {
    bmcs: Vec<Arc<BmcShared>>,
    staleness: Duration,
    zones: Vec<Arc<ZoneInfo>>,
    entries: Vec<ZoneEntry>,
    index: HashMap<(usize, String), usize>,
    reads: u64,
    /// Per BMC: the poll last seen and the timestamp given to it, so that every read of one
    /// poll carries the same timestamp (the engine then counts its energy once).
    stamps: Vec<Option<(Instant, Timestamp)>>,
    poller: Poller,
}

fn zone_key(r: &PowerReading) -> String {
    format!("{}\u{1f}{}\u{1f}{}", r.chassis_id, r.kind.label(), r.id)
}

impl Redfish {
    /// Starts polling `bmcs` in the background and returns at once.
    pub fn start(bmcs: Vec<BmcConfig>, opts: RedfishOptions) -> Result<Redfish, Error> {
        let shared: Vec<Arc<BmcShared>> = bmcs
            .iter()
            .map(|b| Arc::new(BmcShared::new(&b.id)))
            .collect();
        let staleness = opts.staleness;
        let poller = Poller::start(bmcs.into_iter().zip(shared.iter().cloned()).collect(), opts)?;
        let stamps = vec![None; shared.len()];
        Ok(Redfish {
            bmcs: shared,
            staleness,
            zones: Vec::new(),
            entries: Vec::new(),
            index: HashMap::new(),
            reads: 0,
            stamps,
            poller,
        })
    }

    /// The ids of the BMCs polled.
    pub fn bmc_ids(&self) -> Vec<&str> {
        self.bmcs.iter().map(|b| b.id.as_str()).collect()
    }

    /// Stops polling and deletes open sessions. Dropping does the same.
    pub fn shutdown(&mut self) {
        self.poller.stop();
    }

    fn entry(&mut self, bmc: usize, r: &PowerReading) -> usize {
        let key = (bmc, zone_key(r));
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let bmc_id = &self.bmcs[bmc].id;
        let zone = Arc::new(
            ZoneInfo::builder(
                format!(
                    "redfish:{bmc_id}:{}:{}:{}",
                    r.chassis_id,
                    r.kind.label(),
                    r.id
                ),
                ZoneKind::Platform,
                SourceKind::Redfish,
            )
            .index(self.entries.len() as u32)
            .path(format!("redfish://{bmc_id}{}#{}", r.resource, r.id))
            .metering(Metering::PowerGauge)
            .estimated(false)
            .max_power(Some(MicroWatts::from_watts(MAX_PLATFORM_WATTS)))
            .build(),
        );
        let labels: Arc<[(&'static str, String)]> = Arc::from(vec![
            ("bmc_id", bmc_id.clone()),
            ("chassis_id", r.chassis_id.clone()),
            ("power_control_id", r.id.clone()),
            ("power_control_name", r.name.clone()),
            // The same entry as Go Kepler 0.11 labels it (issue 17): both spellings on one
            // series, so EP-001 and upstream dashboards both work.
            ("source_id", r.id.clone()),
            ("source_name", r.name.clone()),
            ("source_type", r.kind.upstream_type().into()),
        ]);
        self.zones.push(Arc::clone(&zone));
        self.entries.push(ZoneEntry {
            z: BmcZone {
                zone,
                labels,
                bmc,
                latest: None,
            },
            seen: 0,
        });
        self.index.insert(key, self.entries.len() - 1);
        self.entries.len() - 1
    }
}

impl PowerSource for Redfish {
    /// The zones seen so far; grows as BMCs are first walked.
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        self.reads += 1;
        let gen = self.reads;
        let now = Instant::now();
        for b in 0..self.bmcs.len() {
            let (readings, polled_at) = {
                let st = self.bmcs[b].lock();
                (Arc::clone(&st.last_good), st.polled_at)
            };
            let Some(polled_at) = polled_at else {
                continue;
            };
            let age = now.saturating_duration_since(polled_at);
            let fresh = age <= self.staleness;
            if fresh {
                let ts = poll_stamp(&mut self.stamps[b], polled_at, at, age);
                for r in readings.iter() {
                    if !(r.watts.is_finite() && r.watts <= MAX_PLATFORM_WATTS) {
                        continue;
                    }
                    let i = self.entry(b, r);
                    let e = &mut self.entries[i];
                    if e.seen == gen {
                        continue; // the same zone twice in one walk: keep the first
                    }
                    e.seen = gen;
                    e.z.push_watts(r.watts, ts, out);
                }
            }
            for e in self
                .entries
                .iter_mut()
                .filter(|e| e.z.bmc == b && e.seen != gen)
            {
                e.z.push_absent(fresh, out);
            }
        }
    }

    fn report(&self, at: Timestamp, out: &mut SourceReport) {
        report(
            self.entries.iter().map(|e| &e.z),
            &self.bmcs,
            &FetchErrorKind::ALL.map(FetchErrorKind::label),
            at,
            out,
        );
    }
}
