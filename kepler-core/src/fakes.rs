//! Fake sources shared by the tests of every crate and by examples (feature `fakes`).
//!
//! They are deterministic: their readings depend only on the timestamps they are given.

use std::sync::Arc;

use crate::activity::{ActivityFrame, NodeCpu, ProcessInfo, ProcessSample};
use crate::error::{ReadError, SourceError};
use crate::source::{ActivitySource, PowerFrame, PowerSource};
use crate::units::{MicroJoules, MicroWatts, Nanos, Timestamp};
use crate::zone::{Metering, Reading, SourceKind, ZoneInfo, ZoneKind};

/// A zone description for tests: an energy counter of `kind` on socket `index`.
pub fn counter_zone(kind: ZoneKind, index: u32, max_range: Option<u64>) -> Arc<ZoneInfo> {
    let id = format!("fake:{}-{}", kind.label(), index);
    let zone = ZoneInfo::builder(id, kind, SourceKind::Fake)
        .index(index)
        .path(format!("fake/{}-{}", kind.label(), index))
        .energy_counter(max_range.map(MicroJoules))
        .build();
    Arc::new(zone)
}

/// A power source whose zones draw constant power, as energy counters that wrap.
#[derive(Debug, Clone)]
pub struct FakePower {
    zones: Vec<Arc<ZoneInfo>>,
    watts: Vec<MicroWatts>,
    /// Zones (by position) that fail on read.
    pub failing: Vec<bool>,
}

impl FakePower {
    /// Zones drawing the given constant power; counters wrap at `max_range` µJ.
    pub fn constant(zones: &[(ZoneKind, u32, f64)], max_range: u64) -> FakePower {
        FakePower {
            zones: zones
                .iter()
                .map(|&(k, i, _)| counter_zone(k, i, Some(max_range)))
                .collect(),
            watts: zones
                .iter()
                .map(|&(_, _, w)| MicroWatts::from_watts(w))
                .collect(),
            failing: vec![false; zones.len()],
        }
    }

    /// The counter value of zone `i` at `at`.
    pub fn energy_at(&self, i: usize, at: Timestamp) -> MicroJoules {
        let range = match self.zones[i].metering {
            Metering::EnergyCounter { max_range: Some(r) } => r.0,
            _ => u64::MAX,
        };
        let uj = (self.watts[i].0 as u128 * at.0 as u128 / 1_000_000_000) as u64;
        MicroJoules(uj % range.max(1))
    }
}

impl PowerSource for FakePower {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }
    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        for i in 0..self.zones.len() {
            let reading = if self.failing[i] {
                Err(ReadError::Io {
                    what: self.zones[i].id.clone(),
                    detail: "injected".into(),
                })
            } else {
                Ok(Reading::Energy(self.energy_at(i, at)))
            };
            out.push(&self.zones[i], reading);
        }
    }
}

/// A scripted process for [`FakeActivity`]: runs `share` of one CPU from `start` to `end`.
#[derive(Debug, Clone)]
pub struct FakeProcess {
    /// Process id.
    pub pid: u32,
    /// Start time (identity).
    pub start_time: u64,
    /// When it appears.
    pub start: Timestamp,
    /// When it exits (`None`: never).
    pub end: Option<Timestamp>,
    /// Fraction of one CPU it uses, in parts per thousand.
    pub permille: u64,
    /// Static data.
    pub info: Arc<ProcessInfo>,
}

/// An activity source driven by a script of processes on `cpus` CPUs.
#[derive(Debug, Clone)]
pub struct FakeActivity {
    /// Number of CPUs.
    pub cpus: u64,
    /// Busy time of the node not caused by any listed process, per mille of one CPU.
    pub background_permille: u64,
    /// The processes.
    pub processes: Vec<FakeProcess>,
    /// When true, `read` fails.
    pub failing: bool,
}

impl FakeActivity {
    /// CPU time of `p` at `at`.
    pub fn cpu_time(p: &FakeProcess, at: Timestamp) -> Nanos {
        let end = p.end.map_or(at, |e| e.min(at));
        Nanos(end.since(p.start).0 * p.permille / 1000)
    }
}

impl ActivitySource for FakeActivity {
    fn read(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        if self.failing {
            return Err(SourceError::Unavailable("injected".into()));
        }
        let mut busy = at.0 * self.background_permille / 1000;
        for p in &self.processes {
            busy += FakeActivity::cpu_time(p, at).0;
            if p.start <= at && p.end.is_none_or(|e| at < e) {
                out.processes.push(ProcessSample {
                    pid: p.pid,
                    start_time: p.start_time,
                    cpu_time: FakeActivity::cpu_time(p, at),
                    info: Arc::clone(&p.info),
                });
            }
        }
        let total = at.0 * self.cpus;
        out.node = NodeCpu {
            busy: Nanos(busy.min(total)),
            total: Nanos(total),
        };
        Ok(())
    }
    fn name(&self) -> &'static str {
        "fake"
    }
}

/// Plain process info for tests.
pub fn process_info(comm: &str) -> Arc<ProcessInfo> {
    Arc::new(ProcessInfo {
        comm: comm.into(),
        exe: format!("/usr/bin/{comm}").into(),
        container: None,
        vm: None,
    })
}
