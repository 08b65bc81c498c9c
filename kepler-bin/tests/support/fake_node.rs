//! One node made of fake sources (absent hardware: meters, processes, GPUs) under the real
//! wiring: `kepler_runtime::Monitor` ticked in simulated time, then the exporter's
//! exposition, as the binary's loop does. Tests that check what reaches the exposition or
//! `kepler top` build their node here and differ only in the fakes they pass.

use std::sync::Arc;

use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::{
    ContainerInfo, GpuConfig, MicroWatts, PodInfo, ProcessInfo, Runtime, Timestamp, ZoneKind,
};
use kepler_export::{ExportContext, Exposition};
use kepler_runtime::{Monitor, NamedSource, Options, Tick};
use kepler_sources::gpu::FakeGpu;

/// A process `comm` burning `permille` of a CPU in container `container` of pod `pod`
/// (namespace `ml`); names are the ids with `-name` appended.
pub fn pod_process(pid: u32, comm: &str, container: &str, pod: &str, permille: u64) -> FakeProcess {
    FakeProcess {
        pid,
        start_time: pid as u64,
        start: Timestamp(0),
        end: None,
        permille,
        info: Arc::new(
            ProcessInfo::new(comm, format!("/usr/bin/{comm}")).with_container(
                ContainerInfo::new(container, format!("{container}-name"), Runtime::Containerd)
                    .with_pod(PodInfo::new(pod, format!("{pod}-name"), "ml")),
            ),
        ),
    }
}

/// A meter named `name` whose `(kind, index, watts)` zones draw constant power.
pub fn constant_meter(name: &str, zones: &[(ZoneKind, u32, f64)]) -> NamedSource {
    NamedSource {
        name: name.into(),
        source: Box::new(FakePower::constant(zones, 1 << 40)),
    }
}

/// Runtime options with GPUs on, their idle power fixed at `idle_watts` where given.
pub fn gpu_options(idle_watts: Option<f64>) -> Options {
    let mut options = Options::new("/sys", "/proc");
    options.gpu = Some(
        GpuConfig::builder()
            .idle_power(idle_watts.map(MicroWatts::from_watts))
            .build(),
    );
    options
}

/// Builds the real monitor over these fakes and ticks it `ticks` times, `step_ns` of
/// simulated time apart; the last tick (the first ones only prime the counters).
pub fn last_tick(
    options: Options,
    meters: Vec<NamedSource>,
    activity: FakeActivity,
    gpu: FakeGpu,
    ticks: u64,
    step_ns: u64,
) -> Tick {
    let mut monitor = Monitor::builder(options)
        .power_sources(meters)
        .activity_source(Box::new(activity))
        .gpu_backend(Box::new(gpu))
        .build()
        .expect("monitor");
    let mut tick = None;
    for t in 1..=ticks {
        tick = Some(monitor.tick(Timestamp(t * step_ns)));
    }
    tick.expect("ticked at least once")
}

/// The exporter's text exposition of `tick` (CPU and GPU snapshots).
pub fn render(tick: &Tick, context: &ExportContext) -> String {
    let e = Exposition::render(&tick.snapshot, tick.gpu.as_deref(), context, &tick.stats);
    String::from_utf8(e.text().to_vec()).unwrap()
}
