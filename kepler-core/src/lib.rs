//! The pure engine of kepler-rs.
//!
//! This crate reads no files, opens no sockets and reads no clock. Meter readings, process
//! activity and a timestamp go in; an immutable [`Snapshot`] comes out. Everything that touches
//! the machine lives in other crates (`kepler-sources`, `kepler-bpf`, `kepler-k8s`) and talks
//! to this one through two traits, [`PowerSource`] and [`ActivitySource`]. It must not depend
//! on any I/O, async or platform crate; `thiserror` and `serde` (derives for the trained
//! power model's file form) are its only dependencies.
//!
//! ```text
//!  PowerSource::read ──► PowerFrame ─┐
//!                                    ├─► Attributor::step(power, activity, at) ──► Snapshot
//!  ActivitySource::read ► ActivityFrame┘        (wrap-safe deltas, active/idle split,
//!                                                CPU-time shares, roll-up, TTL)
//! ```
//!
//! The invariants, per zone kind and tick, in integer microjoules:
//! `node = active + idle` and `active = Σ workloads + unattributed`, exactly. Counters that
//! wrap are unwrapped with the zone's range; deltas beyond the zone's plausible power are
//! dropped and counted. Every cumulative value starts at 0 and never decreases.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use kepler_core::*;
//!
//! let zone = Arc::new(
//!     ZoneInfo::builder("demo:package-0", ZoneKind::Package, SourceKind::Fake)
//!         .energy_counter(Some(MicroJoules(1_000_000_000)))
//!         .build(),
//! );
//! let info = Arc::new(ProcessInfo::new("busy", "/bin/busy"));
//! let mut engine = Attributor::default();
//! let mut power = PowerFrame::default();
//! let mut activity = ActivityFrame::default();
//!
//! // Tick 1 takes a baseline; tick 2 spends 10 J while the CPU is 50% busy, all of it
//! // by one process.
//! for (t, uj, busy_ns, cpu_ns) in [(0u64, 0u64, 0u64, 0u64), (1, 10_000_000, 1_000_000_000, 1_000_000_000)] {
//!     let at = Timestamp(t * 1_000_000_000);
//!     power.clear();
//!     power.push(&zone, Ok(Reading::Energy(MicroJoules(uj))));
//!     activity.clear();
//!     activity.node = NodeCpu::new(Nanos(busy_ns), Nanos(2 * busy_ns));
//!     activity.processes.push(ProcessSample::new(7, 1, Nanos(cpu_ns), info.clone()));
//!     let snap = engine.step(&power, Some(&activity), at);
//!     let z = &snap.zones[0];
//!     assert_eq!(z.total, z.active + z.idle);
//!     let workloads: u64 = snap.processes.iter().map(|p| p.energy.total.get(ZoneKind::Package).0).sum();
//!     assert_eq!(workloads + snap.unattributed.total.get(ZoneKind::Package).0, z.active.0);
//! }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod activity;
mod apportion;
mod attribution;
mod carbon;
mod counter;
mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
mod gpu;
mod hash;
mod regression;
mod report;
mod snapshot;
mod source;
mod units;
mod zone;

pub use activity::{
    ActivityFrame, ContainerInfo, ContainerUsage, CpuInfo, CpuTime, NodeCpu, PodInfo,
    ProcessDetail, ProcessInfo, ProcessSample, Runtime, VmInfo,
};
pub use attribution::{Attributor, AttributorConfig, AttributorConfigBuilder, IdlePower};
pub use carbon::{co2e_grams, CarbonLedger, CarbonSnapshot, KindGrams, MICROJOULES_PER_KWH};
pub use error::{ReadError, SourceError};
pub use gpu::{
    GpuAttributor, GpuBackend, GpuConfig, GpuConfigBuilder, GpuDevice, GpuEntry, GpuFrame,
    GpuInstance, GpuMode, GpuNode, GpuProcess, GpuProcessSample, GpuSample, GpuSnapshot,
};
pub use regression::{
    CpuIdentity, Features, FitStats, Input, ModelError, PowerModel, ZoneFit, ZoneModel,
    ZonePredictor, DEFAULT_KNOTS, DEFAULT_LAMBDA, MAX_COEFFICIENT, MAX_TERMS, MODEL_FORMAT,
    MODEL_VERSION,
};
pub use report::{EndpointStatus, SourceReport, ZoneLabels};
pub use snapshot::{
    ContainerEntry, Energies, EngineStats, GroupEntry, IdlePolicy, NodeZone, PerKind, PodEntry,
    ProcessEntry, Snapshot, State, VmEntry,
};
pub use source::{ActivitySource, PowerFrame, PowerSource, ZoneSample};
pub use units::{integrate, watts, MicroJoules, MicroWatts, Nanos, Timestamp};
pub use zone::{Metering, Reading, SourceKind, ZoneInfo, ZoneInfoBuilder, ZoneKind};
