//! The online power model (issue 20): where the CPU meter measures, every tick adds one
//! sample per zone (the zone's watts against its socket's busy fraction) to a
//! [`kepler_core::ZoneFit`], whose error the exposition reports (`kepler_model_*`) and which
//! is written, on request, as a model file (`model.export`) that a node without a meter
//! loads with the `trained` meter.
//!
//! The sample of a tick pairs the power the engine integrated over the tick with the CPU
//! time of the same tick: both are deltas between the same two reads, so the busy fraction
//! explains exactly the interval the watts cover. A zone's first reading (a counter's
//! baseline), a dropped delta, a failed read and a zone sampled by a background poller (not
//! at the tick's instant) give no sample.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kepler_core::{
    ActivityFrame, CpuIdentity, Features, Input, Nanos, NodeCpu, PowerModel, Snapshot, Timestamp,
    ZoneFit, ZoneInfo,
};
use kepler_export::ModelFit;

/// Where and how often the fitted model is written (`model.export`, `model.exportInterval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelExport {
    /// The model file, replaced atomically at each write.
    pub path: PathBuf,
    /// Time between writes; the model is also written when the monitor finishes.
    pub interval: Duration,
}

/// One metered zone's fit.
struct ZoneTrack {
    info: Arc<ZoneInfo>,
    fit: ZoneFit,
    /// Its failed reads and dropped deltas as of the previous tick: a tick that adds to
    /// either has no fresh power.
    read_errors: u64,
    dropped_deltas: u64,
}

/// Fits every metered CPU zone, tick by tick.
pub(crate) struct Trainer {
    cpu: CpuIdentity,
    zones: Vec<ZoneTrack>,
    /// Cumulative (busy, total) CPU time per socket and of the node, as of the last frame.
    prev_sockets: Vec<(u32, NodeCpu)>,
    prev_node: Option<NodeCpu>,
    /// Scratch: this tick's busy fraction per socket.
    socket_busy: Vec<(u32, f64)>,
    sockets_now: Vec<(u32, NodeCpu)>,
    export: Option<ModelExport>,
    next_export: Option<Timestamp>,
    export_failed: bool,
}

/// Busy fraction of a delta of cumulative times; `None` when no time passed.
fn busy_fraction(now: NodeCpu, prev: NodeCpu) -> Option<f64> {
    let total = now.total.0.checked_sub(prev.total.0)?;
    let busy = now.busy.0.checked_sub(prev.busy.0)?;
    (total > 0).then(|| (busy as f64 / total as f64).clamp(0.0, 1.0))
}

impl Trainer {
    pub(crate) fn new(cpu: CpuIdentity, export: Option<ModelExport>) -> Trainer {
        Trainer {
            cpu,
            zones: Vec::new(),
            prev_sockets: Vec::new(),
            prev_node: None,
            socket_busy: Vec::new(),
            sockets_now: Vec::new(),
            export,
            next_export: None,
            export_failed: false,
        }
    }

    /// Adds this tick's samples; `activity` is `None` when the activity read failed.
    pub(crate) fn observe(&mut self, snap: &Snapshot, activity: Option<&ActivityFrame>) {
        let Some(frame) = activity else {
            // The next delta of CPU time would span two ticks' worth of power: start over.
            self.prev_node = None;
            self.prev_sockets.clear();
            return;
        };
        let node_busy = self.prev_node.and_then(|p| busy_fraction(frame.node, p));
        self.prev_node = Some(frame.node);
        // Per-socket sums of the per-CPU lines (empty on one socket: the node's then).
        self.sockets_now.clear();
        for c in &frame.cpus {
            match self.sockets_now.iter_mut().find(|(s, _)| *s == c.socket) {
                Some((_, t)) => {
                    t.busy = Nanos(t.busy.0.saturating_add(c.time.busy.0));
                    t.total = Nanos(t.total.0.saturating_add(c.time.total.0));
                }
                None => self.sockets_now.push((c.socket, c.time)),
            }
        }
        self.socket_busy.clear();
        for &(s, now) in &self.sockets_now {
            let prev = self.prev_sockets.iter().find(|(p, _)| *p == s);
            if let Some(u) = prev.and_then(|&(_, p)| busy_fraction(now, p)) {
                self.socket_busy.push((s, u));
            }
        }
        std::mem::swap(&mut self.prev_sockets, &mut self.sockets_now);

        for z in &snap.zones {
            // Measured CPU zones only: fitting an estimate would learn the estimate.
            if !z.info.kind.is_cpu() || z.info.estimated {
                continue;
            }
            let i = match self.zones.iter().position(|t| t.info.id == z.info.id) {
                Some(i) => i,
                None => {
                    let Ok(fit) = ZoneFit::new(&[Input::Busy]) else {
                        continue;
                    };
                    // First sight: the counter's baseline, no power yet.
                    self.zones.push(ZoneTrack {
                        info: Arc::clone(&z.info),
                        fit,
                        read_errors: z.read_errors,
                        dropped_deltas: z.dropped_deltas,
                    });
                    continue;
                }
            };
            let t = &mut self.zones[i];
            let fresh = z.last_read == Some(snap.at)
                && z.last_error.is_none()
                && z.read_errors == t.read_errors
                && z.dropped_deltas == t.dropped_deltas
                && snap.interval.0 > 0;
            t.read_errors = z.read_errors;
            t.dropped_deltas = z.dropped_deltas;
            if !fresh {
                continue;
            }
            let socket = self
                .socket_busy
                .iter()
                .find(|(s, _)| *s == z.info.index)
                .map(|&(_, u)| u);
            // Psys covers the whole platform; a package with no per-socket times (one
            // socket) follows the node.
            let busy = if z.info.kind == kepler_core::ZoneKind::Psys {
                node_busy
            } else {
                socket.or(node_busy)
            };
            if let Some(u) = busy {
                t.fit.observe(&Features::busy(u), z.power);
            }
        }
    }

    /// The fit of every zone, for the exposition.
    pub(crate) fn stats(&self) -> Vec<ModelFit> {
        self.zones
            .iter()
            .map(|t| {
                let s = t.fit.stats();
                ModelFit {
                    zone: t.info.kind,
                    path: t.info.path.clone(),
                    samples: s.samples,
                    mean_absolute_error_watts: s.mean_absolute_error,
                    r_squared: s.r_squared,
                }
            })
            .collect()
    }

    /// The model as fitted so far; `None` before any zone has a sample.
    pub(crate) fn model(&self) -> Option<PowerModel> {
        let zones: Vec<_> = self
            .zones
            .iter()
            .filter_map(|t| t.fit.to_zone_model(t.info.kind, t.info.index))
            .collect();
        let first = self.zones.first()?;
        (!zones.is_empty()).then(|| {
            PowerModel::new(
                self.cpu.clone(),
                first.fit.inputs(),
                first.fit.knots().to_vec(),
                zones,
            )
        })
    }

    /// Writes the model when its export interval has passed since the last write (the
    /// first write comes one interval after the first tick).
    pub(crate) fn maybe_export(&mut self, at: Timestamp) {
        let Some(export) = &self.export else {
            return;
        };
        let interval = Nanos(u64::try_from(export.interval.as_nanos()).unwrap_or(u64::MAX));
        match self.next_export {
            None => self.next_export = at.checked_add(interval),
            Some(next) if at >= next => {
                self.next_export = at.checked_add(interval);
                self.export_now();
            }
            Some(_) => {}
        }
    }

    /// Writes the model now (at shutdown), when there is one and an export path.
    pub(crate) fn export_now(&mut self) {
        let Some(export) = &self.export else {
            return;
        };
        let Some(model) = self.model() else {
            tracing::info!(path = %export.path.display(), "model.export: no metered samples yet; nothing written");
            return;
        };
        match kepler_sources::trained::write_model(&export.path, &model) {
            Ok(()) => {
                if self.export_failed {
                    tracing::info!(path = %export.path.display(), "model.export: writing again");
                }
                self.export_failed = false;
                tracing::debug!(path = %export.path.display(), model = %model.id, "power model written");
            }
            Err(e) => {
                if !self.export_failed {
                    tracing::warn!(error = %e, "model.export: cannot write the power model");
                }
                self.export_failed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kepler_core::{
        Attributor, Metering, MicroJoules, PowerFrame, ProcessInfo, ProcessSample, Reading,
        SourceKind, ZoneKind,
    };

    /// A metered package whose power is `10 + 40 u` at busy fraction `u`: the trainer
    /// learns it, skips the baseline tick, and writes a model that predicts it.
    #[test]
    fn learns_a_metered_zone_and_exports_it() {
        let zone = Arc::new(
            ZoneInfo::builder("rapl:package-0", ZoneKind::Package, SourceKind::Rapl)
                .energy_counter(Some(MicroJoules(u64::MAX / 2)))
                .build(),
        );
        assert!(matches!(zone.metering, Metering::EnergyCounter { .. }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut trainer = Trainer::new(
            CpuIdentity {
                model_name: "T".into(),
                sockets: 1,
                cores: 1,
            },
            Some(ModelExport {
                path: path.clone(),
                interval: Duration::from_secs(10),
            }),
        );
        let mut engine = Attributor::default();
        let info = Arc::new(ProcessInfo::new("p", "/p"));
        let (mut uj, mut busy, mut total) = (0u64, 0u64, 0u64);
        for t in 0..60u64 {
            let u = (t % 10) as f64 / 10.0;
            if t > 0 {
                uj += ((10.0 + 40.0 * u) * 1e6) as u64;
                busy += (u * 1e9) as u64;
                total += 1_000_000_000;
            }
            let mut power = PowerFrame::default();
            power.push(&zone, Ok(Reading::Energy(MicroJoules(uj))));
            let mut act = ActivityFrame::new(NodeCpu::new(Nanos(busy), Nanos(total)));
            act.processes
                .push(ProcessSample::new(1, 1, Nanos(busy), info.clone()));
            let at = Timestamp(t * 1_000_000_000);
            let snap = engine.step(&power, Some(&act), at);
            trainer.observe(&snap, Some(&act));
            trainer.maybe_export(at);
        }
        let stats = trainer.stats();
        assert_eq!(stats.len(), 1);
        // 60 ticks: the first is the baseline.
        assert_eq!(stats[0].samples, 59);
        assert!(stats[0].r_squared.unwrap() > 0.999, "{stats:?}");
        assert!(
            stats[0].mean_absolute_error_watts.unwrap() < 0.1,
            "{stats:?}"
        );
        // Written at t = 10 s, 20 s...: the file holds a model that predicts the zone.
        let m = kepler_sources::trained::load_model(&path).unwrap();
        let p = m.predictor(0).unwrap();
        let w = p.predict(&Features::busy(0.55)).unwrap();
        assert!((w - 32.0).abs() < 0.2, "{w}");
        assert_eq!(m.cpu.model_name, "T");
    }

    #[test]
    fn estimated_zones_are_not_learnt() {
        let zone = Arc::new(
            ZoneInfo::builder("model:package-0", ZoneKind::Package, SourceKind::Model)
                .metering(Metering::PowerGauge)
                .estimated(true)
                .build(),
        );
        let mut trainer = Trainer::new(CpuIdentity::default(), None);
        let mut engine = Attributor::default();
        for t in 0..5u64 {
            let mut power = PowerFrame::default();
            power.push(
                &zone,
                Ok(Reading::Power(kepler_core::MicroWatts::from_watts(20.0))),
            );
            let act = ActivityFrame::new(NodeCpu::new(Nanos(t), Nanos(t * 2 + 1)));
            let snap = engine.step(&power, Some(&act), Timestamp(t * 1_000_000_000));
            assert!(snap.zones[0].has_reading);
            trainer.observe(&snap, Some(&act));
        }
        assert!(trainer.stats().is_empty());
        assert!(trainer.model().is_none());
    }
}
