//! A power estimate from CPU utilisation, for machines with no meter (VMs, cloud, ARM).
//!
//! Kepler refuses to start without RAPL; kepler-rs starts and says, through
//! `source="model"` and `estimated=true` on every zone, that the numbers are a model and not
//! a measurement. Per socket, utilisation (from the per-CPU lines of `/proc/stat` between two
//! reads) is mapped to watts by a piecewise-linear curve through eleven SPECpower-style points
//! (0 %, 10 %, ... 100 % load). Unless the curve is configured, its points follow the
//! empirical server model of Fan, Weber and Barroso, "Power Provisioning for a
//! Warehouse-sized Computer" (ISCA 2007): `P(u) = idle + (max - idle) * (2u - u^1.4)`, which
//! rises faster at low load than a straight line, as measured servers do. An optional DRAM
//! zone per socket is estimated linearly from the same utilisation (issue 7).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    Metering, MicroWatts, PowerFrame, PowerSource, ReadError, Reading, SourceKind, SourceReport,
    Timestamp, ZoneInfo, ZoneKind, ZoneLabels,
};

use crate::host::{parse_per_cpu, read_error, Access, CpuTopology};
use crate::{Error, ErrorKind};

/// Most watts a socket may be configured to draw; anything above is a unit mistake.
const MAX_SOCKET_WATTS: f64 = 10_000.0;

/// Points of a SPECpower-style curve: watts at 0 %, 10 %, ..., 100 % utilisation.
pub const CURVE_POINTS: usize = 11;

/// The exponent `r` of Fan, Weber and Barroso's model `2u - u^r` (ISCA 2007), fitted there
/// to measured servers.
pub const FAN_EXPONENT: f64 = 1.4;

/// DRAM estimate of one socket, linear in the socket's CPU utilisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DramParams {
    /// Watts at 0 % utilisation.
    pub idle_watts: f64,
    /// Watts at 100 % utilisation.
    pub max_watts: f64,
}

/// The model's parameters, per socket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelParams {
    /// Power of one socket at 0% utilisation, in watts (the curve's first point when no
    /// explicit curve is given).
    pub idle_watts: f64,
    /// Power of one socket at 100% utilisation, in watts (the curve's last point).
    pub max_watts: f64,
    /// Explicit curve (`model.curve`): watts at 0 %, 10 %, ..., 100 %; overrides idle/max.
    pub curve: Option<[f64; CURVE_POINTS]>,
    /// DRAM zones per socket (`model.dram.*`); `None` exports none.
    pub dram: Option<DramParams>,
}

impl Default for ModelParams {
    /// 10 W idle and 45 W at full load per socket. These are conservative placeholders in
    /// the range of a small server or cloud-instance socket, not measurements of any CPU;
    /// tune them per machine type (ideally from a RAPL-metered twin) for useful absolute
    /// numbers. The split between workloads does not depend on them.
    fn default() -> ModelParams {
        ModelParams {
            idle_watts: 10.0,
            max_watts: 45.0,
            curve: None,
            dram: None,
        }
    }
}

impl ModelParams {
    /// The curve in use: the explicit one, else idle and max joined by Fan et al.'s shape.
    pub fn points(&self) -> [f64; CURVE_POINTS] {
        if let Some(c) = self.curve {
            return c;
        }
        let mut out = [0.0; CURVE_POINTS];
        for (i, p) in out.iter_mut().enumerate() {
            let u = i as f64 / (CURVE_POINTS - 1) as f64;
            *p = self.idle_watts
                + (self.max_watts - self.idle_watts) * (2.0 * u - u.powf(FAN_EXPONENT));
        }
        out
    }

    /// Watts of one socket at `util` (clamped to 0..=1), interpolated linearly between the
    /// two neighbouring curve points.
    pub fn socket_watts(&self, util: f64) -> f64 {
        curve_at(&self.points(), util)
    }

    /// The highest watts the curve reaches.
    fn peak(&self) -> f64 {
        self.points().into_iter().fold(0.0, f64::max)
    }

    /// Checks that every value is finite, `0 <= idle <= max`, `max < 10 kW`, an explicit
    /// curve never decreases, and DRAM idle <= max.
    ///
    /// The error ([`ErrorKind::InvalidConfig`]) names the offending field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, why: String| {
            Err(Error::new(
                ErrorKind::InvalidConfig,
                None,
                format!("model {field}: {why}"),
            ))
        };
        if !self.idle_watts.is_finite() || self.idle_watts < 0.0 {
            return bad(
                "idle_watts",
                format!("{} is not a finite value >= 0", self.idle_watts),
            );
        }
        if !self.max_watts.is_finite() || self.max_watts >= MAX_SOCKET_WATTS {
            return bad(
                "max_watts",
                format!(
                    "{} is not a finite value below {MAX_SOCKET_WATTS} W",
                    self.max_watts
                ),
            );
        }
        if self.idle_watts > self.max_watts {
            return bad(
                "max_watts",
                format!("{} is below idle_watts {}", self.max_watts, self.idle_watts),
            );
        }
        if let Some(c) = &self.curve {
            for (i, &w) in c.iter().enumerate() {
                if !w.is_finite() || !(0.0..MAX_SOCKET_WATTS).contains(&w) {
                    return bad(
                        "curve",
                        format!(
                            "point {i} ({}%) = {w} is not within 0..{MAX_SOCKET_WATTS} W",
                            i * 10
                        ),
                    );
                }
                if i > 0 && w < c[i - 1] {
                    return bad(
                        "curve",
                        format!(
                            "point {i} ({}%) = {w} W is below the previous point {} W",
                            i * 10,
                            c[i - 1]
                        ),
                    );
                }
            }
        }
        if let Some(d) = &self.dram {
            if !(d.idle_watts.is_finite() && d.idle_watts >= 0.0) {
                return bad(
                    "dram.idle_watts",
                    format!("{} is not a finite value >= 0", d.idle_watts),
                );
            }
            if !(d.max_watts.is_finite()
                && d.max_watts >= d.idle_watts
                && d.max_watts < MAX_SOCKET_WATTS)
            {
                return bad(
                    "dram.max_watts",
                    format!(
                        "{} is not between dram.idle_watts and {MAX_SOCKET_WATTS}",
                        d.max_watts
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Piecewise-linear interpolation over evenly spaced points from 0 to 1.
fn curve_at(points: &[f64; CURVE_POINTS], util: f64) -> f64 {
    let u = if util.is_finite() {
        util.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = u * (CURVE_POINTS - 1) as f64;
    let i = (x.floor() as usize).min(CURVE_POINTS - 2);
    let frac = x - i as f64;
    points[i] + (points[i + 1] - points[i]) * frac
}

/// Busy and total jiffies of one CPU, cumulative since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Jiffies {
    busy: u64,
    total: u64,
}

/// How a [`Model`] turns a socket's utilisation into watts.
#[derive(Debug)]
enum Estimator {
    /// The fixed curve (and the linear DRAM line) of [`ModelParams`].
    Curve {
        /// `params.points()`, computed once.
        points: [f64; CURVE_POINTS],
    },
    /// A model trained where a meter exists (the `trained` meter, issue 20): one predictor
    /// per zone, in zone order, with the position of the zone's socket in `last_util`.
    Trained {
        predictors: Vec<(kepler_core::ZonePredictor, usize)>,
        /// `model_id` label of every zone in `kepler_node_power_source_info`.
        labels: Arc<[(&'static str, String)]>,
    },
}

/// The utilisation model as a [`PowerSource`]: one estimated package zone per socket.
#[derive(Debug)]
pub struct Model {
    params: ModelParams,
    estimator: Estimator,
    stat_path: PathBuf,
    zones: Vec<Arc<ZoneInfo>>,
    /// Socket of each CPU number; CPUs with no known socket count for the first socket.
    topology: CpuTopology,
    /// The sockets, in `last_util` order.
    sockets: Vec<u32>,
    /// Last counters of each CPU number; empty before the first read.
    prev: Vec<Option<Jiffies>>,
    /// Last utilisation per zone, reused when no time has passed between two reads.
    last_util: Vec<f64>,
    /// Reused read buffer.
    text: Vec<u8>,
    /// Reused parse result: (CPU number, counters).
    parsed: Vec<(usize, Jiffies)>,
}

impl Model {
    /// A model over `<procfs_root>/stat` with the sockets found under
    /// `<sysfs_root>/devices/system/cpu/cpu*/topology/physical_package_id` (one socket when
    /// the topology is unreadable, as in many VMs).
    ///
    /// Fails with [`ErrorKind::InvalidConfig`] on bad `params`, or with the I/O error kind when
    /// `<procfs_root>/stat` cannot be read.
    pub fn new(procfs_root: &Path, sysfs_root: &Path, params: ModelParams) -> Result<Model, Error> {
        params.validate()?;
        let stat_path = procfs_root.join("stat");
        std::fs::File::open(&stat_path).map_err(|e| Error::io(&stat_path, &e))?;

        let (topology, sockets) = Self::sockets(sysfs_root);
        let zone = |kind: ZoneKind, s: u32, peak: f64| {
            Arc::new(
                ZoneInfo::builder(
                    format!("model:{}-{s}", kind.label()),
                    kind,
                    SourceKind::Model,
                )
                .index(s)
                .path("model".to_owned())
                .metering(Metering::PowerGauge)
                .estimated(true)
                .max_power(Some(MicroWatts::from_watts(peak * 2.0)))
                .build(),
            )
        };
        // Packages first (one per socket), then DRAM zones in the same socket order.
        let mut zones: Vec<Arc<ZoneInfo>> = sockets
            .iter()
            .map(|&s| zone(ZoneKind::Package, s, params.peak()))
            .collect();
        if let Some(d) = params.dram {
            zones.extend(
                sockets
                    .iter()
                    .map(|&s| zone(ZoneKind::Dram, s, d.max_watts)),
            );
        }
        tracing::info!(
            sockets = sockets.len(),
            curve = ?params.points(),
            dram = params.dram.is_some(),
            "using the CPU-utilisation power model: values are estimates"
        );
        Ok(Model {
            estimator: Estimator::Curve {
                points: params.points(),
            },
            params,
            stat_path,
            last_util: vec![0.0; sockets.len()],
            sockets,
            zones,
            topology,
            prev: Vec::new(),
            text: Vec::new(),
            parsed: Vec::new(),
        })
    }

    /// The topology and its sockets (one socket 0 when the topology is unreadable).
    fn sockets(sysfs_root: &Path) -> (CpuTopology, Vec<u32>) {
        let topology = CpuTopology::read(sysfs_root);
        let mut sockets = topology.sockets();
        if sockets.is_empty() {
            sockets.push(0);
        }
        (topology, sockets)
    }

    /// A meter that estimates with a trained `model` (the `trained` meter, issue 20): one
    /// zone per zone of the model, `source="model"`, `estimated`, path `trained`, and the
    /// model's id as the `model_id` label of `kepler_node_power_source_info`. The model must
    /// have been validated and matched to this machine's CPU (see `crate::trained`).
    ///
    /// A zone whose socket this machine does not have is estimated from the first socket's
    /// utilisation.
    pub fn trained(
        procfs_root: &Path,
        sysfs_root: &Path,
        model: &kepler_core::PowerModel,
    ) -> Result<Model, Error> {
        let stat_path = procfs_root.join("stat");
        std::fs::File::open(&stat_path).map_err(|e| Error::io(&stat_path, &e))?;
        let (topology, sockets) = Self::sockets(sysfs_root);
        let mut zones = Vec::with_capacity(model.zones.len());
        let mut predictors = Vec::with_capacity(model.zones.len());
        for (i, z) in model.zones.iter().enumerate() {
            let bad = |m: String| Error::new(ErrorKind::InvalidConfig, None, m);
            let kind = ZoneKind::from_name(&z.zone)
                .ok_or_else(|| bad(format!("power model zones[{i}].zone: {:?} unknown", z.zone)))?;
            let predictor = model.predictor(i).map_err(|e| bad(e.to_string()))?;
            let socket = sockets.iter().position(|&s| s == z.index).unwrap_or(0);
            // Twice the highest watts trained on: a bound for implausible values only.
            let max = (z.max_watts * 2.0).clamp(1.0, MAX_SOCKET_WATTS);
            zones.push(Arc::new(
                ZoneInfo::builder(
                    format!("trained:{}-{}", kind.label(), z.index),
                    kind,
                    SourceKind::Model,
                )
                .index(z.index)
                .path("trained".to_owned())
                .metering(Metering::PowerGauge)
                .estimated(true)
                .max_power(Some(MicroWatts::from_watts(max)))
                .build(),
            ));
            predictors.push((predictor, socket));
        }
        tracing::info!(
            model = %model.id,
            zones = zones.len(),
            cpu = %model.cpu.model_name,
            "using a trained power model: values are estimates"
        );
        Ok(Model {
            params: ModelParams::default(),
            estimator: Estimator::Trained {
                predictors,
                labels: Arc::from(vec![("model_id", model.id.clone())]),
            },
            stat_path,
            last_util: vec![0.0; sockets.len()],
            sockets,
            zones,
            topology,
            prev: Vec::new(),
            text: Vec::new(),
            parsed: Vec::new(),
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> ModelParams {
        self.params
    }

    /// Position in `last_util` of the socket of `cpu`.
    fn zone_of(&self, cpu: usize) -> usize {
        let socket = u32::try_from(cpu)
            .ok()
            .and_then(|c| self.topology.socket_of(c));
        socket
            .and_then(|s| self.sockets.iter().position(|&x| x == s))
            .unwrap_or(0)
    }

    /// Reads `/proc/stat` and returns per-zone (busy, total) deltas since the last read.
    fn deltas(&mut self) -> Result<Vec<Jiffies>, ReadError> {
        let what = self.stat_path.display().to_string();
        self.text.clear();
        std::fs::File::open(&self.stat_path)
            .and_then(|mut f| f.read_to_end(&mut self.text))
            .map_err(|e| read_error(&what, &e, Access::Procfs))?;

        // Parse everything before touching the baselines, so a bad file leaves them as they
        // were. A malformed per-CPU line is skipped (the host layer's one rule): that CPU's
        // time since its last good line counts at its next good one.
        self.parsed.clear();
        let parsed = &mut self.parsed;
        let bad = parse_per_cpu(&self.text, |cpu, t| {
            parsed.push((
                cpu as usize,
                Jiffies {
                    busy: t.busy,
                    total: t.total,
                },
            ));
        });
        if bad > 0 {
            tracing::debug!(file = %what, lines = bad, "skipped malformed per-CPU lines");
        }
        if self.parsed.is_empty() {
            return Err(ReadError::Parse {
                what,
                detail: format!("no per-CPU lines ({bad} malformed)"),
            });
        }

        let first = self.prev.is_empty();
        // One sum per socket (the package zones come first in `zones`).
        let mut sums = vec![Jiffies::default(); self.last_util.len()];
        for i in 0..self.parsed.len() {
            let (cpu, cur) = self.parsed[i];
            if self.prev.len() <= cpu {
                self.prev.resize(cpu + 1, None);
            }
            let delta = match self.prev[cpu] {
                Some(p) => Jiffies {
                    busy: cur.busy.saturating_sub(p.busy),
                    total: cur.total.saturating_sub(p.total),
                },
                // First read: utilisation since boot.
                None if first => cur,
                // A CPU that came online: its baseline starts now.
                None => Jiffies::default(),
            };
            self.prev[cpu] = Some(cur);
            let z = self.zone_of(cpu);
            sums[z].busy = sums[z].busy.saturating_add(delta.busy);
            sums[z].total = sums[z].total.saturating_add(delta.total);
        }
        Ok(sums)
    }
}

impl PowerSource for Model {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, _at: Timestamp, out: &mut PowerFrame) {
        match self.deltas() {
            Ok(sums) => {
                for (i, d) in sums.iter().enumerate() {
                    if d.total > 0 {
                        self.last_util[i] = (d.busy as f64 / d.total as f64).clamp(0.0, 1.0);
                    }
                }
                match &self.estimator {
                    Estimator::Curve { points } => {
                        for (i, &util) in self.last_util.iter().enumerate() {
                            let watts = curve_at(points, util);
                            out.push(
                                &self.zones[i],
                                Ok(Reading::Power(MicroWatts::from_watts(watts))),
                            );
                        }
                        if let Some(d) = self.params.dram {
                            let n = self.last_util.len();
                            for i in 0..n {
                                let watts =
                                    d.idle_watts + (d.max_watts - d.idle_watts) * self.last_util[i];
                                out.push(
                                    &self.zones[n + i],
                                    Ok(Reading::Power(MicroWatts::from_watts(watts))),
                                );
                            }
                        }
                    }
                    Estimator::Trained { predictors, .. } => {
                        for (zone, (p, socket)) in self.zones.iter().zip(predictors) {
                            let features = kepler_core::Features::busy(self.last_util[*socket]);
                            // A busy-only model always predicts; a model that needs PMU
                            // counters this meter does not read says so per zone.
                            let reading = match p.predict(&features) {
                                Some(w) => Ok(Reading::Power(MicroWatts::from_watts(w))),
                                None => Err(ReadError::Parse {
                                    what: "trained power model".into(),
                                    detail:
                                        "needs hardware-counter inputs this node does not provide"
                                            .into(),
                                }),
                            };
                            out.push(zone, reading);
                        }
                    }
                }
            }
            Err(e) => {
                for zone in &self.zones {
                    out.push(zone, Err(e.clone()));
                }
            }
        }
    }

    fn report(&self, _at: Timestamp, out: &mut SourceReport) {
        if let Estimator::Trained { labels, .. } = &self.estimator {
            for z in &self.zones {
                out.zones.push(ZoneLabels {
                    zone: Arc::clone(z),
                    labels: Arc::clone(labels),
                    latest: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_params_are_valid() {
        assert!(ModelParams::default().validate().is_ok());
    }

    #[test]
    fn default_curve_follows_fan_weber_barroso() {
        // 10 + 35 * (2u - u^1.4), worked out by hand at three points.
        let p = ModelParams::default().points();
        assert_eq!((p[0], p[10]), (10.0, 45.0));
        assert!((p[5] - 31.7376).abs() < 1e-3, "{}", p[5]);
        assert!((p[1] - 15.6067).abs() < 1e-3, "{}", p[1]);
        // Concave: above the straight line between idle and max everywhere inside.
        for (i, w) in p.iter().enumerate().skip(1).take(9) {
            assert!(*w > 10.0 + 3.5 * i as f64, "point {i}");
        }
    }

    #[test]
    fn curve_interpolates_between_points() {
        let mut c = [0.0; CURVE_POINTS];
        for (i, w) in c.iter_mut().enumerate() {
            *w = (i * i) as f64;
        }
        assert_eq!(curve_at(&c, 0.0), 0.0);
        assert_eq!(curve_at(&c, 1.0), 100.0);
        assert_eq!(curve_at(&c, 0.35), 12.5);
        assert_eq!(curve_at(&c, 2.0), 100.0);
        assert_eq!(curve_at(&c, f64::NAN), 0.0);
    }

    #[test]
    fn bad_curves_are_named() {
        let mut p = ModelParams {
            curve: Some([10.0; CURVE_POINTS]),
            ..ModelParams::default()
        };
        assert!(p.validate().is_ok());
        p.curve.as_mut().unwrap()[4] = 9.0;
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("curve") && e.contains("40%"), "{e}");
        p.curve = None;
        p.dram = Some(DramParams {
            idle_watts: 5.0,
            max_watts: 2.0,
        });
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("dram.max_watts"));
    }
}
