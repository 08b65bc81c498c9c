//! The monitor loop of kepler-rs as a library: which sources to read, and one tick.
//!
//! Every front-end (the Prometheus exporter in `kepler-bin`, `kepler run`, `kepler top`, the
//! stdout/JSON exporter, `examples/live.rs`) drives this crate, so there is one code path
//! from meter to number. It owns:
//!
//! - **source selection**, one explicit table per kind of source and no hand wiring in a
//!   binary: the CPU meter is the first of [`Options::preferred_meters`] in
//!   `kepler_sources::METERS` that builds; every `kepler_sources::PLATFORM_METERS` entry that
//!   builds, and the Redfish BMCs of this node, are read next to it; the GPU backend is the
//!   first of [`GPU_BACKENDS`] that opens; the activity source comes from
//!   [`ACTIVITY_SOURCES`], wrapped by the pod informer when Kubernetes is on;
//! - **the tick**: read the activity source and the meters as close together as possible,
//!   step the CPU engine, then the GPU accountant against the same snapshot, and return both
//!   snapshots with the self-metrics of the tick ([`Tick`]);
//! - **carbon** (`Options::carbon`, issue 20): the grid intensity is read from a constant,
//!   a file or a URL by `kepler_sources::carbon::IntensityFeed` on its own thread; each
//!   tick takes its latest value from memory and steps a `kepler_core::CarbonLedger` with
//!   the CPU snapshot, so every tick's energy is priced at that tick's intensity
//!   (`SelfStats::carbon`).
//!
//! It does not render, serve or sleep: a front-end calls [`Monitor::tick`] on its own
//! schedule and hands the [`Tick`] to `kepler-export` (or prints it).
//!
//! ```text
//!  Options ─► Monitor::builder(..).build() ─► Monitor
//!                                              │ tick(now) every interval
//!          activity ─┐                         ▼
//!   meters, Redfish ─┼─► Attributor::step ─► Snapshot ─┐
//!              GPUs ─┴────────► GpuAttributor::step ───┴─► Tick { snapshot, gpu, stats }
//! ```
//!
//! # Clocks
//!
//! The runtime has no clock of its own: `tick` takes the tick's one instant, which the
//! front-end reads from its monotonic clock right before the call. Every reading of the tick
//! (CPU meters, GPUs, activity), the engine step and the GPU step carry that one instant, so
//! each meter's delta time and the snapshot's interval measure the same span, and power is
//! delta energy over delta time of monotonic timestamps (DESIGN rule 3). The meters are read
//! first, the activity scan last, so the scan's varying duration does not shift the meters'
//! time. A background poller's value carries its own, older sample time instead
//! (`ZoneSample::sampled_at`). The runtime reads `Instant::now()` only to time its own reads
//! for the `*_duration_seconds` self-metrics. Background pollers keep their own
//! monotonic clock for their schedules and the age of their values (Redfish, the pod
//! informer), and the exposition times its rendering.
//!
//! # Example
//!
//! ```no_run
//! use kepler_runtime::{Monitor, Options};
//!
//! let origin = std::time::Instant::now();
//! let now = || kepler_core::Timestamp(origin.elapsed().as_nanos() as u64);
//! let mut monitor = Monitor::builder(Options::new("/sys", "/proc")).build()?;
//! let tick = monitor.tick(now());
//! println!("{} processes", tick.snapshot.processes.len());
//! # Ok::<(), kepler_runtime::BuildError>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod activity;
mod error;
mod gpu;
mod kube;
mod monitor;
mod options;
mod own_process;
mod select;
mod training;

pub use activity::{ActivityEntry, SelectedActivity, ACTIVITY_SOURCES};
pub use error::BuildError;
pub use gpu::{GpuBackendEntry, GPU_BACKENDS};
pub use monitor::{Monitor, MonitorBuilder, NamedSource, Tick};
pub use options::{ActivityChoice, IpmiSetup, Options, RedfishSetup};
pub use own_process::read_own_process;
pub use select::{ipmi_source, platform_sources, redfish_source, select_meter, MeterChoice};
pub use training::ModelExport;
