//! The meters and activity readers of kepler-rs.
//!
//! Each source lives in one module and implements one of `kepler-core`'s traits:
//! [`kepler_core::PowerSource`] for meters (RAPL, the model estimator) and
//! [`kepler_core::ActivitySource`] for per-process CPU time (procfs). Every reader takes a
//! sysfs or procfs root, never a literal `/sys` or `/proc`, so the whole program runs on a
//! fake tree (`--host.sysfs`, `--host.procfs`). This crate does I/O but no networking and no
//! async; it must not depend on `kepler-export`, `kepler-bin` or any HTTP or Kubernetes crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod meters;
#[cfg(feature = "model")]
mod model;
mod procfs;
#[cfg(feature = "rapl")]
mod rapl;

pub use error::{Error, ErrorKind};
pub use meters::{meter, MeterContext, MeterEntry, METERS};
#[cfg(feature = "model")]
pub use model::{Model, ModelParams};
pub use procfs::{
    parse_cgroup, parse_stat, read_cpuinfo, vm_from_cmdline, CgroupMatch, ProcfsActivity,
    ProcfsOptions, StatFields,
};
#[cfg(feature = "rapl")]
pub use rapl::{parse_energy_uj, Rapl, RaplOptions};
