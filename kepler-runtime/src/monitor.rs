//! The monitor: the sources chosen once, and the tick.

use std::sync::Arc;
use std::time::Instant;

use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, CarbonLedger, CpuInfo, GpuBackend, GpuSnapshot,
    PowerFrame, PowerSource, Snapshot, SourceReport, Timestamp,
};
use kepler_export::{CarbonStats, SelfStats, SourceSelf};
use kepler_sources::carbon::IntensityFeed;
use kepler_sources::passthrough::PassthroughWriter;

use crate::activity::BpfStatsReader;
use crate::error::BuildError;
use crate::gpu::GpuMonitor;
use crate::kube::Kube;
use crate::options::Options;
use crate::select::{ipmi_source, platform_sources, redfish_source, select_meter};
use crate::training::Trainer;

/// One power source with the name it is reported under (the `source` label of the
/// read-duration self-metric).
pub struct NamedSource {
    /// Meter name (`rapl`, `model`, `redfish`, `acpi-platform`...).
    pub name: String,
    /// The source.
    pub source: Box<dyn PowerSource>,
}

/// What one tick produced: the CPU and GPU snapshots of the same instant, and the
/// self-metrics of the loop (per-source read timings and reports, activity errors, eBPF and
/// pod informer counters).
#[derive(Debug, Clone)]
pub struct Tick {
    /// The CPU engine's snapshot.
    pub snapshot: Arc<Snapshot>,
    /// GPU accounting against that snapshot; `None` without GPU metering.
    pub gpu: Option<Arc<GpuSnapshot>>,
    /// Self-metrics for the exposition.
    pub stats: SelfStats,
}

/// Builds a [`Monitor`]: selects the sources from the tables unless given explicitly.
pub struct MonitorBuilder {
    options: Options,
    tokio: Option<tokio::runtime::Handle>,
    power: Option<Vec<NamedSource>>,
    activity: Option<Box<dyn ActivitySource>>,
    gpu: Option<Box<dyn GpuBackend>>,
}

impl MonitorBuilder {
    /// Runs the pod informer's background tasks on this runtime (a front-end that already
    /// has one, like the exporter's HTTP server). Without it, the monitor starts a
    /// one-thread runtime of its own when Kubernetes is on.
    pub fn tokio(mut self, handle: tokio::runtime::Handle) -> Self {
        self.tokio = Some(handle);
        self
    }

    /// Uses these power sources instead of selecting the CPU meter, platform meters and
    /// Redfish from the options (tests, embedders with their own meters).
    pub fn power_sources(mut self, sources: Vec<NamedSource>) -> Self {
        self.power = Some(sources);
        self
    }

    /// Uses this activity source instead of selecting one (it is still wrapped by the pod
    /// informer when Kubernetes is on).
    pub fn activity_source(mut self, source: Box<dyn ActivitySource>) -> Self {
        self.activity = Some(source);
        self
    }

    /// Uses this GPU backend instead of opening one from [`crate::GPU_BACKENDS`], accounted
    /// with `Options::gpu` (or the defaults when that is `None`).
    pub fn gpu_backend(mut self, backend: Box<dyn GpuBackend>) -> Self {
        self.gpu = Some(backend);
        self
    }

    /// Selects and starts every source. Fails on a setting that cannot be used, when no CPU
    /// meter builds, or when the requested activity source cannot start.
    pub fn build(self) -> Result<Monitor, BuildError> {
        let o = &self.options;
        let sources = match self.power {
            Some(given) => given,
            None => power_sources(o)?,
        };
        let (activity, bpf_stats) = match self.activity {
            Some(given) => (given, None),
            None => {
                let selected = crate::activity::select(o)?;
                (selected.source, selected.bpf_stats)
            }
        };
        let activity_name = activity.name();
        if let Some(main) = sources.first() {
            let zones: Vec<String> = main
                .source
                .zones()
                .iter()
                .map(|z| format!("{}-{}", z.kind.label(), z.index))
                .collect();
            tracing::info!(
                meter = %main.name,
                zones = %zones.join(","),
                estimated = main.source.zones().iter().any(|z| z.estimated),
                activity = activity_name,
                "sources selected"
            );
        }
        let cpu_info = kepler_sources::read_cpuinfo(&o.meters.procfs).unwrap_or_else(|e| {
            tracing::info!(error = %e, "no CPU info; kepler_node_cpu_info will be empty");
            Vec::new()
        });
        let (kube, activity, own_tokio) = match &o.kube {
            None => (None, activity, None),
            Some(cfg) => {
                let (handle, own) = match self.tokio {
                    Some(h) => (h, None),
                    None => {
                        let rt = tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(1)
                            .thread_name("kube-informer")
                            .enable_all()
                            .build()
                            .map_err(BuildError::Tokio)?;
                        (rt.handle().clone(), Some(rt))
                    }
                };
                let (kube, activity) = Kube::attach(cfg, &handle, activity)?;
                (Some(kube), activity, own)
            }
        };
        let gpu = match (self.gpu, o.gpu) {
            (Some(backend), cfg) => Some(GpuMonitor::new(backend, cfg.unwrap_or_default())),
            (None, None) => {
                tracing::info!("GPU metering off (experimental.gpu.enabled=false)");
                None
            }
            (None, Some(cfg)) => {
                crate::gpu::open_backend(&o.meters).map(|b| GpuMonitor::new(b, cfg))
            }
        };
        let passthrough = match &o.vm_passthrough {
            None => None,
            Some(p) => {
                Some(
                    PassthroughWriter::new(p.clone()).map_err(|e| BuildError::Setting {
                        key: "vm.passthrough.dir",
                        message: e.to_string(),
                    })?,
                )
            }
        };
        let carbon = match &o.carbon {
            None => None,
            Some(c) => {
                let feed = IntensityFeed::start(c.clone()).map_err(|e| BuildError::Setting {
                    key: "carbon.intensity",
                    message: e.to_string(),
                })?;
                tracing::info!(source = feed.kind(), "carbon metrics on");
                Some((feed, CarbonLedger::new()))
            }
        };
        let trainer = Trainer::new(
            kepler_core::CpuIdentity::from_cpus(&cpu_info),
            o.model_export.clone(),
        );
        Ok(Monitor {
            trainer,
            passthrough,
            carbon,
            sources,
            activity,
            activity_name,
            engine: Attributor::new(o.engine.clone()),
            gpu,
            power_frame: PowerFrame::default(),
            activity_frame: ActivityFrame::default(),
            activity_errors: 0,
            logged_activity_error: false,
            bpf_stats,
            cpu_info,
            kube,
            _tokio: own_tokio,
        })
    }
}

/// The power sources from the tables: the CPU meter first, then this node's Redfish and
/// IPMI BMCs, then every platform meter that builds. The BMC files are checked before any
/// meter is built, so that a bad one fails first.
fn power_sources(o: &Options) -> Result<Vec<NamedSource>, BuildError> {
    let redfish = match &o.redfish {
        Some(rf) => redfish_source(rf)?,
        None => None,
    };
    let ipmi = match &o.ipmi {
        Some(ip) => ipmi_source(ip)?,
        None => None,
    };
    let choice = select_meter(&o.meters, &o.preferred_meters);
    for (name, why) in &choice.skipped {
        // A model the user named and kepler would have used, but cannot (missing, corrupt,
        // another CPU): a configuration error, not a quiet fall back to the fixed curve.
        if name == "trained" && o.meters.trained.file.is_some() {
            return Err(BuildError::Setting {
                key: "model.file",
                message: why.clone(),
            });
        }
        tracing::info!(meter = %name, reason = %why, "meter skipped");
    }
    let Some(meter) = choice.meter else {
        return Err(BuildError::NoMeter {
            tried: o.preferred_meters.join(", "),
        });
    };
    Ok(std::iter::once(meter)
        .chain(redfish)
        .chain(ipmi)
        .chain(platform_sources(&o.meters))
        .collect())
}

/// The sources, the engines and their buffers, owned by whoever ticks (the exporter's
/// monitor thread, `kepler top`'s loop, an embedder).
pub struct Monitor {
    sources: Vec<NamedSource>,
    activity: Box<dyn ActivitySource>,
    activity_name: &'static str,
    engine: Attributor,
    gpu: Option<GpuMonitor>,
    power_frame: PowerFrame,
    activity_frame: ActivityFrame,
    activity_errors: u64,
    logged_activity_error: bool,
    bpf_stats: Option<BpfStatsReader>,
    cpu_info: Vec<CpuInfo>,
    /// Writes each VM's energy for its guest after every step (`vm.passthrough.*`).
    passthrough: Option<PassthroughWriter>,
    /// The intensity feed and the carbon totals (`carbon.*`); `None` when off.
    carbon: Option<(IntensityFeed, CarbonLedger)>,
    /// The online power model of the metered CPU zones (issue 20).
    trainer: Trainer,
    // The informer before the runtime its task runs on: fields drop in order.
    kube: Option<Kube>,
    _tokio: Option<tokio::runtime::Runtime>,
}

impl Monitor {
    /// A builder over `options`.
    pub fn builder(options: Options) -> MonitorBuilder {
        MonitorBuilder {
            options,
            tokio: None,
            power: None,
            activity: None,
            gpu: None,
        }
    }

    /// The power sources read each tick, in order (the CPU meter first when selected from
    /// the tables).
    pub fn power_sources(&self) -> &[NamedSource] {
        &self.sources
    }

    /// The activity source's name (`procfs`, `bpf`...).
    pub fn activity_name(&self) -> &'static str {
        self.activity_name
    }

    /// The node's logical CPUs, read once at build (`kepler_node_cpu_info`); empty when
    /// `cpuinfo` is unreadable.
    pub fn cpu_info(&self) -> &[CpuInfo] {
        &self.cpu_info
    }

    /// Reads every source at the tick's one instant `at`, steps the CPU engine and then the
    /// GPU accountant with it, and returns both snapshots with the tick's self-metrics.
    ///
    /// `at` comes from the front-end's monotonic clock, taken right before the call: the
    /// runtime has no clock. Every reading, the engine step and the GPU step carry it, so a
    /// meter's delta time and the snapshot's interval are the same span (DESIGN rule 3: power
    /// is delta energy over delta time). The meters (CPU, then GPU) are read first, as they
    /// are quick and their time matters most; the activity scan, whose duration grows with
    /// the number of processes and varies from tick to tick, comes last, so it does not
    /// shift the meters' time. A failed activity read is counted and logged once until it
    /// recovers; its energy goes to unattributed.
    pub fn tick(&mut self, at: Timestamp) -> Tick {
        let started = Instant::now();
        // The buffer rule of every source trait: the caller clears, sources only append.
        self.power_frame.clear();
        self.activity_frame.clear();
        let mut sources = Vec::with_capacity(self.sources.len() + 1);
        for s in &mut self.sources {
            let t0 = Instant::now();
            s.source.read(at, &mut self.power_frame);
            let read_duration_secs = t0.elapsed().as_secs_f64();
            // Zone labels and endpoint health (Redfish BMCs); empty for most sources.
            let mut report = SourceReport::default();
            s.source.report(at, &mut report);
            sources.push(SourceSelf {
                source: s.name.clone(),
                read_duration_secs,
                report,
            });
        }
        if let Some(g) = self.gpu.as_mut() {
            sources.push(g.read(at));
        }
        let activity = match self.activity.read(at, &mut self.activity_frame) {
            Ok(()) => {
                if self.logged_activity_error {
                    tracing::info!(source = self.activity_name, "activity source recovered");
                    self.logged_activity_error = false;
                }
                Some(&self.activity_frame)
            }
            Err(e) => {
                self.activity_errors += 1;
                if !self.logged_activity_error {
                    tracing::warn!(source = self.activity_name, error = %e, "activity read failed; energy goes to unattributed until it recovers");
                    self.logged_activity_error = true;
                }
                None
            }
        };
        let snapshot = self.engine.step(&self.power_frame, activity, at);
        self.trainer.observe(&snapshot, activity);
        self.trainer.maybe_export(at);
        if let Some(w) = self.passthrough.as_mut() {
            w.write(&snapshot);
        }
        let gpu = self.gpu.as_mut().map(|g| Arc::new(g.step(&snapshot, at)));
        // The intensity in force for this tick: the feed's latest value, read from memory.
        let carbon = self.carbon.as_mut().map(|(feed, ledger)| {
            let status = feed.status();
            CarbonStats {
                carbon: Arc::new(ledger.step(&snapshot, status.grams_per_kwh)),
                stale: status.stale,
                age_secs: status.age.map(|a| a.as_secs_f64()),
                read_errors: status.read_errors,
            }
        });
        let stats = SelfStats {
            carbon,
            tick_duration_secs: started.elapsed().as_secs_f64(),
            activity_source: self.activity_name,
            activity_errors: self.activity_errors,
            sources,
            bpf: self.bpf_stats.as_ref().and_then(|read| read()),
            kube: self.kube.as_ref().map(Kube::stats),
            process: None,
            model_fit: self.trainer.stats(),
        };
        tracing::debug!(
            processes = snapshot.processes.len(),
            tick_ms = stats.tick_duration_secs * 1e3,
            "tick"
        );
        Tick {
            snapshot: Arc::new(snapshot),
            gpu,
            stats,
        }
    }
}

impl Monitor {
    /// Writes the fitted power model now (`model.export`), as the monitor also does every
    /// `model.exportInterval` and when it is dropped.
    pub fn export_model(&mut self) {
        self.trainer.export_now();
    }
}

impl Drop for Monitor {
    /// The last write of the fitted model (`model.export`: "and at shutdown").
    fn drop(&mut self) {
        self.trainer.export_now();
    }
}
