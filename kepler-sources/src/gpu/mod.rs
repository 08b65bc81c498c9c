//! GPU meters: NVIDIA's NVML (issue 7) and any DRM driver through fdinfo and hwmon (issue 19)
//! behind `kepler_core::GpuBackend`, and a fake.
//!
//! A backend lists its devices once and fills a [`kepler_core::GpuFrame`] per tick: each
//! device's cumulative energy (or power), its sharing mode, the processes on it with their
//! largest SM-utilisation sample since the previous read, and MIG instances. The split of that
//! energy among processes is pure and lives in `kepler_core::GpuAttributor`.

#[cfg(feature = "drm")]
mod drm;
#[cfg(any(test, feature = "fakes"))]
mod fake;
#[cfg(feature = "nvml")]
mod nvml;

#[cfg(feature = "drm")]
pub use drm::{ClientUsage, DrmClients, DrmFdinfo, DrmGpu, DrmOptions, EngineCounters, ScanStats};
#[cfg(any(test, feature = "fakes"))]
pub use fake::{FakeGpu, FakeGpuDevice};
#[cfg(feature = "nvml")]
pub use nvml::NvmlGpu;

/// The backend trait lives in `kepler-core` beside the other source traits; re-exported here
/// so that `kepler_sources::gpu::GpuBackend` keeps working.
pub use kepler_core::GpuBackend;
