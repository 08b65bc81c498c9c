//! The monitor loop: read every source, step the engine, render once, publish.

use std::time::Instant;

use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, PowerFrame, PowerSource, SourceReport,
};
use kepler_export::{ExportContext, Exposition, ExtraMetric, MetricsHandle, SelfStats, SourceSelf};

use crate::clock::Clock;

/// One power source with the name it is reported under.
pub struct NamedSource {
    /// Meter name (`rapl`, `model`...).
    pub name: String,
    /// The source.
    pub source: Box<dyn PowerSource>,
}

/// Everything one tick needs, owned by the monitor thread.
pub struct Monitor {
    /// Power sources, read in order.
    pub sources: Vec<NamedSource>,
    /// The activity source.
    pub activity: Box<dyn ActivitySource>,
    /// The engine.
    pub engine: Attributor,
    /// Labels and info for rendering.
    pub context: ExportContext,
    /// Where expositions are published.
    pub handle: MetricsHandle,
    /// The program's clock.
    pub clock: Clock,
    power_frame: PowerFrame,
    activity_frame: ActivityFrame,
    activity_errors: u64,
    last_tick_secs: f64,
    logged_activity_error: bool,
    /// Self-metrics of other components (the pod informer), collected at every tick.
    pub extra_stats: Option<ExtraStats>,
    /// GPUs, accounted after the CPU engine each tick (issue 7); `None` without GPUs.
    pub gpu: Option<crate::meters::GpuMonitor>,
}

/// A collector of extra self-metrics, called once per tick.
pub type ExtraStats = Box<dyn Fn() -> Vec<ExtraMetric> + Send>;

impl Monitor {
    /// A monitor over the given parts.
    pub fn new(
        sources: Vec<NamedSource>,
        activity: Box<dyn ActivitySource>,
        engine: Attributor,
        context: ExportContext,
        handle: MetricsHandle,
        clock: Clock,
    ) -> Monitor {
        Monitor {
            sources,
            activity,
            engine,
            context,
            handle,
            clock,
            power_frame: PowerFrame::default(),
            activity_frame: ActivityFrame::default(),
            activity_errors: 0,
            last_tick_secs: 0.0,
            logged_activity_error: false,
            extra_stats: None,
            gpu: None,
        }
    }

    /// Reads, steps, renders and publishes once.
    pub fn tick(&mut self) {
        let started = Instant::now();
        self.power_frame.clear();
        let mut source_stats = Vec::with_capacity(self.sources.len());
        // Activity first, then the meters right after it, so both cover the same interval.
        let at = self.clock.now();
        let activity = match self.activity.read(at, &mut self.activity_frame) {
            Ok(()) => {
                if self.logged_activity_error {
                    tracing::info!(source = self.activity.name(), "activity source recovered");
                    self.logged_activity_error = false;
                }
                Some(&self.activity_frame)
            }
            Err(e) => {
                self.activity_errors += 1;
                if !self.logged_activity_error {
                    tracing::warn!(source = self.activity.name(), error = %e, "activity read failed; energy goes to unattributed until it recovers");
                    self.logged_activity_error = true;
                }
                None
            }
        };
        for s in &mut self.sources {
            let t0 = Instant::now();
            let at = self.clock.now();
            s.source.read(at, &mut self.power_frame);
            let read_duration_secs = t0.elapsed().as_secs_f64();
            // Zone labels and endpoint health (Redfish BMCs); empty for most sources.
            let mut report = SourceReport::default();
            s.source.report(at, &mut report);
            source_stats.push(SourceSelf {
                source: s.name.clone(),
                read_duration_secs,
                report,
            });
        }
        let at = self.clock.now();
        let mut snapshot = self.engine.step(&self.power_frame, activity, at);
        if let Some(gpu) = self.gpu.as_mut() {
            source_stats.push(gpu.tick(&mut snapshot, &self.clock));
        }
        let stats = SelfStats {
            tick_duration_secs: self.last_tick_secs,
            activity_source: self.activity.name(),
            activity_errors: self.activity_errors,
            sources: source_stats,
            extra: self.extra_stats.as_ref().map(|f| f()).unwrap_or_default(),
        };
        let exposition = Exposition::render(&snapshot, &self.context, &stats);
        self.handle.publish(exposition);
        self.last_tick_secs = started.elapsed().as_secs_f64();
        tracing::debug!(
            processes = snapshot.processes.len(),
            tick_ms = self.last_tick_secs * 1e3,
            "tick"
        );
    }
}
