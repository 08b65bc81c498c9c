//! The IPMI [`PowerSource`]: one platform zone per BMC, from the poller's cache, never from
//! the network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kepler_core::{
    EndpointStatus, Metering, MicroWatts, Nanos, PowerFrame, PowerSource, ReadError, Reading,
    SourceKind, SourceReport, Timestamp, ZoneInfo, ZoneKind, ZoneLabels,
};

use super::client::{IpmiErrorKind, Method};
use super::config::{IpmiBmcConfig, IpmiOptions};
use super::poller::{IpmiPoller, IpmiShared};
use crate::Error;

/// Readings above this are garbage, not power (DCMI's u16 tops out at 65535 W anyway).
const MAX_PLATFORM_WATTS: f64 = 1_000_000.0;

#[derive(Debug)]
struct ZoneEntry {
    zone: Arc<ZoneInfo>,
    labels: Arc<[(&'static str, String)]>,
    bmc: usize,
    method: Method,
    latest: Option<Reading>,
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

/// `at` moved back by `age`: when a poll that finished `age` ago happened on the caller's clock.
fn stamp(at: Timestamp, age: Duration) -> Timestamp {
    Timestamp(at.0.saturating_sub(age.as_nanos().min(u64::MAX as u128) as u64))
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
            .position(|e| e.bmc == bmc && &e.method == method)
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
            zone,
            labels,
            bmc,
            method: method.clone(),
            latest: None,
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
                (st.sample.clone(), st.polled_at)
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
                    let ts = match self.stamps[b] {
                        Some((seen, ts)) if seen == polled_at => ts,
                        _ => {
                            let ts = stamp(at, age);
                            self.stamps[b] = Some((polled_at, ts));
                            ts
                        }
                    };
                    let i = self.entry(b, &sample.method);
                    let reading = Reading::Power(MicroWatts::from_watts(w));
                    let e = &mut self.entries[i];
                    e.latest = Some(reading);
                    out.push_sampled(&e.zone, ts, Ok(reading));
                    Some(i)
                }
                _ => None,
            };
            for (i, e) in self.entries.iter_mut().enumerate() {
                if e.bmc != b || Some(i) == current {
                    continue;
                }
                e.latest = None;
                let what = e.zone.path.clone();
                let err = if fresh {
                    ReadError::Missing { what }
                } else {
                    ReadError::Stale { what }
                };
                out.push(&e.zone, Err(err));
            }
        }
    }

    fn report(&self, at: Timestamp, out: &mut SourceReport) {
        let now = Instant::now();
        for e in &self.entries {
            out.zones.push(ZoneLabels {
                zone: Arc::clone(&e.zone),
                labels: Arc::clone(&e.labels),
                latest: e.latest,
            });
        }
        for b in &self.bmcs {
            let st = b.lock();
            out.endpoints.push(EndpointStatus {
                id: b.id.clone(),
                up: st.up,
                last_success: st
                    .polled_at
                    .map(|t| stamp(at, now.saturating_duration_since(t))),
                last_duration: Nanos(st.last_duration.as_nanos().min(u64::MAX as u128) as u64),
                polls: st.polls,
                errors: IpmiErrorKind::ALL
                    .iter()
                    .map(|k| (k.label(), st.errors[k.index()]))
                    .collect(),
            });
        }
    }
}
