//! GPU meters (issue 7): a small backend trait, NVIDIA's NVML behind it, and a fake.
//!
//! A backend lists its devices once and fills a [`kepler_core::GpuFrame`] per tick: each
//! device's cumulative energy (or power), its sharing mode, the processes on it with their
//! largest SM-utilisation sample since the previous read, and MIG instances. The split of that
//! energy among processes is pure and lives in `kepler_core::GpuAttributor`.

use std::sync::Arc;

use kepler_core::{GpuDevice, GpuFrame, Timestamp};

#[cfg(any(test, feature = "fakes"))]
mod fake;
#[cfg(feature = "nvml")]
mod nvml;

#[cfg(any(test, feature = "fakes"))]
pub use fake::{FakeGpu, FakeGpuDevice};
#[cfg(feature = "nvml")]
pub use nvml::NvmlGpu;

/// A source of per-GPU readings.
pub trait GpuBackend: Send {
    /// A short name for logs and metrics, e.g. `nvml`.
    fn name(&self) -> &'static str;

    /// The devices found at start.
    fn devices(&self) -> &[Arc<GpuDevice>];

    /// Reads every device into `out` (not cleared), stamping readings with `at`. A device
    /// that fails gets an error entry; a device that is gone gets no entry.
    fn read(&mut self, at: Timestamp, out: &mut GpuFrame);
}

impl<T: GpuBackend + ?Sized> GpuBackend for Box<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn devices(&self) -> &[Arc<GpuDevice>] {
        (**self).devices()
    }
    fn read(&mut self, at: Timestamp, out: &mut GpuFrame) {
        (**self).read(at, out)
    }
}
