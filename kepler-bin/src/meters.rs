//! Wiring of the meters beyond the CPU meter (issue 7): platform meters (ACPI, hwmon
//! platform chips) read next to it, and GPUs accounted after each engine step.

use std::sync::Arc;
use std::time::Instant;

use kepler_core::{GpuAttributor, GpuConfig, GpuFrame, MicroWatts, Nanos, Snapshot};
use kepler_export::SourceSelf;
use kepler_sources::gpu::GpuBackend;
use kepler_sources::{ErrorKind, MeterContext, PLATFORM_METERS};

use crate::clock::Clock;
use crate::config::Config;
use crate::monitor::NamedSource;

/// Every platform meter that builds here; the others are logged once at info level
/// ("not present" is the normal state on most machines).
pub fn platform_sources(ctx: &MeterContext) -> Vec<NamedSource> {
    let mut out = Vec::new();
    for entry in PLATFORM_METERS.iter().filter(|m| m.enabled_by_default) {
        match (entry.build)(ctx) {
            Ok(source) => {
                tracing::info!(
                    meter = entry.name,
                    zones = source.zones().len(),
                    "platform meter: exported as platform zones"
                );
                out.push(NamedSource {
                    name: format!("{}-platform", entry.name),
                    source,
                });
            }
            Err(e) => {
                tracing::info!(meter = entry.name, reason = %e, "platform meter skipped")
            }
        }
    }
    out
}

/// A GPU backend and the GPU accountant, stepped after the CPU engine every tick.
pub struct GpuMonitor {
    backend: Box<dyn GpuBackend>,
    engine: GpuAttributor,
    frame: GpuFrame,
}

impl GpuMonitor {
    /// Accounts the GPUs of `backend` with `config`.
    pub fn new(backend: Box<dyn GpuBackend>, config: GpuConfig) -> GpuMonitor {
        GpuMonitor {
            backend,
            engine: GpuAttributor::new(config),
            frame: GpuFrame::default(),
        }
    }

    /// NVML's GPUs when `experimental.gpu.enabled` and the library and a GPU are there;
    /// otherwise `None` after one log line saying why.
    pub fn from_config(config: &Config) -> Option<GpuMonitor> {
        if !config.meters.gpu_enabled {
            tracing::info!("GPU metering off (experimental.gpu.enabled=false)");
            return None;
        }
        let gpu_config = GpuConfig {
            idle_power: config.meters.gpu_idle_watts.map(MicroWatts::from_watts),
            terminated_ttl: Nanos(config.terminated_ttl.as_nanos() as u64),
            ..GpuConfig::default()
        };
        match open_nvml() {
            Ok(backend) => {
                let names: Vec<String> = backend
                    .devices()
                    .iter()
                    .map(|d| format!("{} ({})", d.name, d.uuid))
                    .collect();
                tracing::info!(gpus = %names.join(", "), "GPU metering through NVML");
                Some(GpuMonitor::new(backend, gpu_config))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::info!(reason = %e, "no NVIDIA GPU metering");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "GPU metering off");
                None
            }
        }
    }

    /// Reads the GPUs, accounts them against `snapshot` (this tick's CPU snapshot) and
    /// stores the result in it. Returns the backend's read timing.
    pub fn tick(&mut self, snapshot: &mut Snapshot, clock: &Clock) -> SourceSelf {
        let t0 = Instant::now();
        self.frame.clear();
        let at = clock.now();
        self.backend.read(at, &mut self.frame);
        let read_duration_secs = t0.elapsed().as_secs_f64();
        snapshot.gpu = Some(Arc::new(self.engine.step(&self.frame, snapshot, at)));
        SourceSelf {
            source: self.backend.name().to_owned(),
            read_duration_secs,
            ..Default::default()
        }
    }
}

/// NVML loads `libnvidia-ml.so.1` here, at run time, not at link time.
fn open_nvml() -> Result<Box<dyn GpuBackend>, kepler_sources::Error> {
    Ok(Box::new(kepler_sources::gpu::NvmlGpu::open()?))
}
