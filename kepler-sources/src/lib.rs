//! The meters and activity readers of kepler-rs.
//!
//! Each source lives in one module and implements one of `kepler-core`'s traits:
//! [`kepler_core::PowerSource`] for meters (RAPL, hwmon, the ACPI power meter, the model
//! estimator) and [`kepler_core::ActivitySource`] for per-process CPU time (procfs). GPUs
//! (NVML, loaded at run time) sit behind the small [`kepler_core::GpuBackend`] trait. Every reader
//! takes a sysfs or procfs root, never a literal `/sys` or `/proc`, so the whole program runs on a
//! fake tree (`--host.sysfs`, `--host.procfs`). This crate does I/O but no networking and no
//! async, except behind the `redfish` and `ipmi` features (clients polling BMCs on their own threads)
//! and the `carbon` feature (the grid carbon intensity, read from a file or URL on its own thread);
//! it must not depend on `kepler-export`, `kepler-bin` or any Kubernetes crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "acpi")]
mod acpi;
#[cfg(any(feature = "redfish", feature = "ipmi"))]
pub mod bmc;
#[cfg(feature = "carbon")]
pub mod carbon;
mod error;
mod fake_meter;
pub mod gpu;
pub mod host;
#[cfg(feature = "hwmon")]
mod hwmon;
#[cfg(feature = "ipmi")]
pub mod ipmi;
mod meters;
#[cfg(feature = "model")]
mod model;
#[cfg(feature = "passthrough")]
pub mod passthrough;
#[cfg(any(feature = "rapl", feature = "passthrough"))]
mod powercap;
mod procfs;
#[cfg(feature = "rapl")]
mod rapl;
#[cfg(feature = "redfish")]
pub mod redfish;
#[cfg(any(feature = "rapl", feature = "hwmon", feature = "passthrough"))]
mod sysfs_value;
#[cfg(feature = "trained")]
pub mod trained;

#[cfg(feature = "acpi")]
pub use acpi::AcpiPowerMeter;
pub use error::{Error, ErrorKind};
pub use fake_meter::{fake_base_watts, fake_watts, FakeCpuMeter, FAKE_DEFAULT_ZONES};
pub use host::{
    parse_cgroup, parse_node_cpu, parse_stat, read_cpuinfo, sanitize_comm, vm_from_cmdline,
    CgroupMatch, NodeTicks, StatFields,
};
#[cfg(feature = "hwmon")]
pub use hwmon::{parse_hwmon_label, parse_hwmon_value, Hwmon, HwmonOptions, HwmonRole, HwmonRules};
pub use meters::{meter, MeterContext, MeterEntry, METERS, PLATFORM_METERS};
#[cfg(feature = "model")]
pub use model::{DramParams, Model, ModelParams, CURVE_POINTS, FAN_EXPONENT};
pub use procfs::{ProcfsActivity, ProcfsOptions};
#[cfg(feature = "rapl")]
pub use rapl::{parse_energy_uj, Rapl, RaplOptions};
