//! GPUs (issue 7): the backend table, and the accountant stepped after the CPU engine.

use std::time::Instant;

use kepler_core::{
    GpuAttributor, GpuBackend, GpuConfig, GpuFrame, GpuSnapshot, Snapshot, Timestamp,
};
use kepler_export::SourceSelf;
use kepler_sources::gpu::{DrmGpu, DrmOptions};
use kepler_sources::{ErrorKind, MeterContext};

/// One row of the GPU backend table.
#[derive(Debug)]
pub struct GpuBackendEntry {
    /// The backend's name, e.g. `nvml`.
    pub name: &'static str,
    /// Opens the backend over the host's sysfs and procfs roots; the error says why it cannot
    /// run here (library or device absent).
    pub open: fn(&MeterContext) -> Result<Box<dyn GpuBackend>, kepler_sources::Error>,
}

/// Every GPU backend this build knows, tried in order; the first that opens is used.
/// NVML comes first: on NVIDIA machines it knows the processes, and the DRM backend would
/// find no hwmon power channel for them anyway.
pub static GPU_BACKENDS: &[GpuBackendEntry] = &[
    GpuBackendEntry {
        name: "nvml",
        open: open_nvml,
    },
    GpuBackendEntry {
        name: "drm",
        open: open_drm,
    },
];

/// NVML loads `libnvidia-ml.so.1` here, at run time, not at link time.
fn open_nvml(_: &MeterContext) -> Result<Box<dyn GpuBackend>, kepler_sources::Error> {
    Ok(Box::new(kepler_sources::gpu::NvmlGpu::open()?))
}

/// Any DRM driver (amdgpu, i915, xe, ...): per-process engine time from `/proc/<pid>/fdinfo`,
/// device power from the card's hwmon.
fn open_drm(roots: &MeterContext) -> Result<Box<dyn GpuBackend>, kepler_sources::Error> {
    let options = DrmOptions::new(&roots.sysfs, &roots.procfs);
    Ok(Box::new(DrmGpu::open(options)?))
}

/// The first backend of [`GPU_BACKENDS`] that opens; `None` after one log line per backend
/// saying why not ("not found" is the normal state on machines without GPUs).
pub(crate) fn open_backend(roots: &MeterContext) -> Option<Box<dyn GpuBackend>> {
    for entry in GPU_BACKENDS {
        match (entry.open)(roots) {
            Ok(backend) => {
                let names: Vec<String> = backend
                    .devices()
                    .iter()
                    .map(|d| format!("{} ({})", d.name, d.uuid))
                    .collect();
                tracing::info!(backend = entry.name, gpus = %names.join(", "), "GPU metering");
                return Some(backend);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::info!(backend = entry.name, reason = %e, "no GPU metering")
            }
            Err(e) => tracing::warn!(backend = entry.name, error = %e, "GPU metering off"),
        }
    }
    None
}

/// A GPU backend and the GPU accountant, stepped after the CPU engine every tick.
pub(crate) struct GpuMonitor {
    backend: Box<dyn GpuBackend>,
    engine: GpuAttributor,
    frame: GpuFrame,
}

impl GpuMonitor {
    pub(crate) fn new(backend: Box<dyn GpuBackend>, config: GpuConfig) -> GpuMonitor {
        GpuMonitor {
            backend,
            engine: GpuAttributor::new(config),
            frame: GpuFrame::default(),
        }
    }

    /// Reads the GPUs at the tick's instant `at`, right after the CPU meters so that every
    /// meter of the tick is read close to `at`. Returns the backend's read timing.
    pub(crate) fn read(&mut self, at: Timestamp) -> SourceSelf {
        let t0 = Instant::now();
        self.frame.clear();
        self.backend.read(at, &mut self.frame);
        SourceSelf {
            source: self.backend.name().to_owned(),
            read_duration_secs: t0.elapsed().as_secs_f64(),
            ..Default::default()
        }
    }

    /// Accounts the GPUs read at `at` against `snapshot`, this tick's CPU snapshot (which
    /// names the processes).
    pub(crate) fn step(&mut self, snapshot: &Snapshot, at: Timestamp) -> GpuSnapshot {
        let gpu = self.engine.step(&self.frame, snapshot, at);
        // Process-scanning backends (DRM fdinfo) learn this tick's processes for the next read.
        self.backend.observe(snapshot);
        gpu
    }
}
