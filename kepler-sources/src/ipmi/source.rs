//! The IPMI [`PowerSource`]: one platform zone per BMC, from the poller's cache, never from
//! the network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kepler_core::{
    Metering, MicroWatts, PowerFrame, PowerSource, SourceKind, SourceReport, Timestamp, ZoneInfo,
    ZoneKind,
};

use super::client::{IpmiErrorKind, Method};
use super::config::{IpmiBmcConfig, IpmiOptions};
use super::poller::{IpmiPoller, IpmiShared};
use crate::bmc::{poll_stamp, report, BmcZone};
use crate::Error;

/// Readings above this are garbage, not power (DCMI's u16 tops out at 65535 W anyway).
const MAX_PLATFORM_WATTS: f64 = 1_000_000.0;

#[derive(Debug)]
struct ZoneEntry {
    z: BmcZone,
    method: Method,
}

/// Platform power of this node's BMCs over IPMI, polled in the background.
///
/// One zone (`ZoneKind::Platform`, source `ipmi`) per BMC and way of reading it (DCMI, or
/// the SDR Watts sensor), created at its first reading. [`PowerSource::read`] copies the
/// latest cached sample of each BMC, stamped with the time it was taken; a sample older
/// than the staleness limit gives `Stale`, and an inactive measurement gives `Missing`.
#[derive(Debug)]
pub struct Ipmi {
    bmcs: Vec<Arc<IpmiShared>>,
    staleness: Duration,
    zones: Vec<Arc<ZoneInfo>>,
    entries: Vec<ZoneEntry>,
    /// Per BMC: the poll last seen and the timestamp given to it, so every read of one poll
    /// carries the same timestamp (the engine then counts its energy once).
    stamps: Vec<Option<(Instant, Timestamp)>>,
    poller: IpmiPoller,
}

impl Ipmi {
    /// Starts polling `bmcs` in the background and returns at once.
    pub fn start(bmcs: Vec<IpmiBmcConfig>, opts: IpmiOptions) -> Result<Ipmi, Error> {
        let shared: Vec<Arc<IpmiShared>> = bmcs
            .iter()
            .map(|b| Arc::new(IpmiShared::new(&b.id)))
            .collect();
        let staleness = opts.staleness;
        let poller =
            IpmiPoller::start(bmcs.into_iter().zip(shared.iter().cloned()).collect(), opts)?;
        Ok(Ipmi {
            stamps: vec![None; shared.len()],
            bmcs: shared,
            staleness,
            zones: Vec::new(),
            entries: Vec::new(),
            poller,
        })
    }

    /// The ids of the BMCs polled.
    pub fn bmc_ids(&self) -> Vec<&str> {
        self.bmcs.iter().map(|b| b.id.as_str()).collect()
    }

    /// Stops polling and closes sessions. Dropping does the same.
    pub fn shutdown(&mut self) {
        self.poller.stop();
    }

    fn entry(&mut self, bmc: usize, method: &Method) -> usize {
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.z.bmc == bmc && &e.method == method)
        {
            return i;
        }
        let bmc_id = &self.bmcs[bmc].id;
        let (what, name) = match method {
            Method::Dcmi => ("dcmi".to_string(), "DCMI Get Power Reading".to_string()),
            Method::Sdr(sensor) => (format!("sdr:{sensor}"), sensor.clone()),
        };
        let zone = Arc::new(
            ZoneInfo::builder(
                format!("ipmi:{bmc_id}:{what}"),
                ZoneKind::Platform,
                SourceKind::Ipmi,
            )
            .index(self.entries.len() as u32)
            .path(format!("ipmi://{bmc_id}#{what}"))
            .metering(Metering::PowerGauge)
            .estimated(false)
            .max_power(Some(MicroWatts::from_watts(MAX_PLATFORM_WATTS)))
            .build(),
        );
        let labels: Arc<[(&'static str, String)]> = Arc::from(vec![
            ("bmc_id", bmc_id.clone()),
            ("source_type", method.label().to_string()),
            ("source_name", name),
        ]);
        self.zones.push(Arc::clone(&zone));
        self.entries.push(ZoneEntry {
            z: BmcZone {
                zone,
                labels,
                bmc,
                latest: None,
            },
            method: method.clone(),
        });
        self.entries.len() - 1
    }
}

impl PowerSource for Ipmi {
    /// The zones seen so far; grows as BMCs first answer.
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        let now = Instant::now();
        for b in 0..self.bmcs.len() {
            let (sample, polled_at) = {
                let st = self.bmcs[b].lock();
                (st.last_good.clone(), st.polled_at)
            };
            let (Some(sample), Some(polled_at)) = (sample, polled_at) else {
                continue;
            };
            let age = now.saturating_duration_since(polled_at);
            let fresh = age <= self.staleness;
            let valid = sample
                .watts
                .filter(|w| w.is_finite() && (0.0..=MAX_PLATFORM_WATTS).contains(w));
            let current = match (fresh, valid) {
                (true, Some(w)) => {
                    let ts = poll_stamp(&mut self.stamps[b], polled_at, at, age);
                    let i = self.entry(b, &sample.method);
                    self.entries[i].z.push_watts(w, ts, out);
                    Some(i)
                }
                _ => None,
            };
            for (i, e) in self.entries.iter_mut().enumerate() {
                if e.z.bmc != b || Some(i) == current {
                    continue;
                }
                e.z.push_absent(fresh, out);
            }
        }
    }

    fn report(&self, at: Timestamp, out: &mut SourceReport) {
        report(
            self.entries.iter().map(|e| &e.z),
            &self.bmcs,
            &IpmiErrorKind::ALL.map(IpmiErrorKind::label),
            at,
            out,
        );
    }
}
