//! A power model learnt from a meter, for machines of the same kind that have none (issue 20).
//!
//! Where a real meter exists, each tick gives one sample per zone: the zone's measured watts
//! and the activity that explains them (the busy fraction of the zone's socket; cycles and
//! instructions rates where a PMU gives them). [`ZoneFit`] fits watts as a ridge-regularised
//! linear function of a fixed basis of those inputs, online and in bounded memory: it keeps
//! the sufficient statistics `X'X`, `X'y`, `y'y`, `Σy` and the count, never the samples, so a
//! year of ticks costs the same few hundred bytes as one.
//!
//! The basis is piecewise linear in the busy fraction `u`: `1, u, (u - k)+` for each knot
//! `k` (0.25, 0.5, 0.75 by default), then one linear term per counter input. Measured
//! servers are concave in load (they rise fastest at low load), so a straight line in `u`
//! misses by watts at mid load; three hinges follow such a curve within a fraction of a watt
//! while staying a linear regression (issue 20 asked for sufficient statistics, which rules
//! out trees or networks). The ridge penalty (`lambda`, scaled by the sample count, never on
//! the intercept) keeps the hinges finite while the data cover only part of the load range:
//! an idle node then gets a flat extrapolation rather than a wild one.
//!
//! Error is reported two ways, both from bounded state:
//! - the **mean absolute error** is prequential: each sample is predicted with the model as
//!   fitted before it, then added. It is error on data the model had not seen, the number a
//!   meterless node using this model can expect, and it is only counted once the fit has
//!   [`ZoneFit::WARMUP`] samples;
//! - **R²** is in-sample, computed exactly from the sufficient statistics.
//!
//! [`PowerModel`] is the versioned, serialisable form (serde; the JSON text is written and
//! read by `kepler-sources`, as this crate does no I/O). It records the CPU it was trained
//! on (`model name`, sockets, cores) so that a node of another kind can refuse it.

use serde::{Deserialize, Serialize};

use crate::activity::CpuInfo;
use crate::zone::ZoneKind;

/// Most terms a basis may have (intercept, busy, three hinges, cycles, instructions and
/// one spare); fixed so that a fit allocates nothing.
pub const MAX_TERMS: usize = 8;

/// Default knots of the busy-fraction hinges.
pub const DEFAULT_KNOTS: [f64; 3] = [0.25, 0.5, 0.75];

/// The `format` field of every model file.
pub const MODEL_FORMAT: &str = "kepler-rs-power-model";

/// The model file version this build writes and reads.
pub const MODEL_VERSION: u32 = 1;

/// Largest coefficient magnitude a model file may hold, in watts per unit of input.
pub const MAX_COEFFICIENT: f64 = 1e6;

/// Default ridge strength, per sample (see the module docs).
pub const DEFAULT_LAMBDA: f64 = 1e-4;

/// One activity input of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Input {
    /// Busy fraction of the zone's socket, 0..=1 (always present; expands to the hinges).
    Busy,
    /// CPU cycles of the socket per second, in units of 10^9 (a PMU counter).
    Cycles,
    /// Instructions retired on the socket per second, in units of 10^9 (a PMU counter).
    Instructions,
}

/// The activity of one zone over one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Features {
    /// Busy fraction of the zone's socket over the tick, 0..=1.
    pub busy: f64,
    /// Cycles per second / 10^9; `None` without a PMU.
    pub cycles: Option<f64>,
    /// Instructions per second / 10^9; `None` without a PMU.
    pub instructions: Option<f64>,
}

impl Features {
    /// Busy fraction only (no hardware counters).
    pub fn busy(busy: f64) -> Features {
        Features {
            busy,
            ..Features::default()
        }
    }
}

/// Why a model file or sample cannot be used. Every message names the bad field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("power model {field}: {message}")]
pub struct ModelError {
    /// The field at fault (`version`, `zones[0].coefficients`...).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn model_error(field: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError {
        field: field.into(),
        message: message.into(),
    }
}

/// The basis: which inputs, and the knots of the busy hinges.
#[derive(Debug, Clone, PartialEq)]
struct Basis {
    knots: [f64; MAX_TERMS],
    n_knots: usize,
    cycles: bool,
    instructions: bool,
}

impl Basis {
    fn new(inputs: &[Input], knots: &[f64]) -> Result<Basis, ModelError> {
        if !inputs.contains(&Input::Busy) {
            return Err(model_error("inputs", "must include busy"));
        }
        let cycles = inputs.contains(&Input::Cycles);
        let instructions = inputs.contains(&Input::Instructions);
        let extra = usize::from(cycles) + usize::from(instructions);
        if knots.len() + 2 + extra > MAX_TERMS {
            return Err(model_error(
                "knots",
                format!(
                    "{} knots with {extra} counter inputs exceed {MAX_TERMS} terms",
                    knots.len()
                ),
            ));
        }
        for (i, &k) in knots.iter().enumerate() {
            if !(k.is_finite() && k > 0.0 && k < 1.0) {
                return Err(model_error(
                    format!("knots[{i}]"),
                    format!("{k} is not inside 0..1"),
                ));
            }
            if i > 0 && k <= knots[i - 1] {
                return Err(model_error(
                    format!("knots[{i}]"),
                    format!("{k} does not increase"),
                ));
            }
        }
        let mut arr = [0.0; MAX_TERMS];
        arr[..knots.len()].copy_from_slice(knots);
        Ok(Basis {
            knots: arr,
            n_knots: knots.len(),
            cycles,
            instructions,
        })
    }

    fn dim(&self) -> usize {
        2 + self.n_knots + usize::from(self.cycles) + usize::from(self.instructions)
    }

    fn inputs(&self) -> Vec<Input> {
        let mut v = vec![Input::Busy];
        if self.cycles {
            v.push(Input::Cycles);
        }
        if self.instructions {
            v.push(Input::Instructions);
        }
        v
    }

    fn knots(&self) -> &[f64] {
        &self.knots[..self.n_knots]
    }

    /// The terms of `f` into `out`; `None` when an input the basis needs is missing or a
    /// value is not finite.
    fn terms(&self, f: &Features, out: &mut [f64; MAX_TERMS]) -> Option<usize> {
        if !f.busy.is_finite() {
            return None;
        }
        let u = f.busy.clamp(0.0, 1.0);
        out[0] = 1.0;
        out[1] = u;
        let mut n = 2;
        for &k in self.knots() {
            out[n] = (u - k).max(0.0);
            n += 1;
        }
        for (on, v) in [(self.cycles, f.cycles), (self.instructions, f.instructions)] {
            if on {
                let v = v.filter(|v| v.is_finite() && *v >= 0.0)?;
                out[n] = v;
                n += 1;
            }
        }
        Some(n)
    }
}

/// What a fit says about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FitStats {
    /// Samples added.
    pub samples: u64,
    /// Prequential mean absolute error in watts; `None` before the warm-up is over.
    pub mean_absolute_error: Option<f64>,
    /// In-sample coefficient of determination; `None` while the target has not varied.
    pub r_squared: Option<f64>,
}

/// Online ridge regression of one zone's watts on its activity (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneFit {
    basis: Basis,
    lambda: f64,
    xtx: [[f64; MAX_TERMS]; MAX_TERMS],
    xty: [f64; MAX_TERMS],
    yty: f64,
    sum_y: f64,
    min_y: f64,
    max_y: f64,
    n: u64,
    coef: [f64; MAX_TERMS],
    solved: bool,
    abs_err: f64,
    abs_n: u64,
}

impl ZoneFit {
    /// Samples before the prequential error starts counting: a fit of a few points
    /// predicts the next one badly, and that says nothing of the model it converges to.
    pub const WARMUP: u64 = 20;

    /// A fit over `inputs` with the default knots and ridge strength.
    pub fn new(inputs: &[Input]) -> Result<ZoneFit, ModelError> {
        ZoneFit::with_basis(inputs, &DEFAULT_KNOTS, DEFAULT_LAMBDA)
    }

    /// A fit over `inputs` with hinges at `knots` (increasing, inside 0..1) and ridge
    /// strength `lambda` (>= 0, per sample).
    pub fn with_basis(inputs: &[Input], knots: &[f64], lambda: f64) -> Result<ZoneFit, ModelError> {
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(model_error("lambda", format!("{lambda} is not >= 0")));
        }
        Ok(ZoneFit {
            basis: Basis::new(inputs, knots)?,
            lambda,
            xtx: [[0.0; MAX_TERMS]; MAX_TERMS],
            xty: [0.0; MAX_TERMS],
            yty: 0.0,
            sum_y: 0.0,
            min_y: f64::INFINITY,
            max_y: f64::NEG_INFINITY,
            n: 0,
            coef: [0.0; MAX_TERMS],
            solved: false,
            abs_err: 0.0,
            abs_n: 0,
        })
    }

    /// Adds one sample: the zone drew `watts` while its activity was `f`. Returns false (and
    /// changes nothing) when the sample is unusable: a missing input, or a value that is not
    /// finite or is negative.
    pub fn observe(&mut self, f: &Features, watts: f64) -> bool {
        let mut x = [0.0; MAX_TERMS];
        let Some(d) = self.basis.terms(f, &mut x) else {
            return false;
        };
        if !(watts.is_finite() && watts >= 0.0) {
            return false;
        }
        if self.solved && self.n >= Self::WARMUP {
            let pred = dot(&self.coef[..d], &x[..d]).max(0.0);
            self.abs_err += (pred - watts).abs();
            self.abs_n += 1;
        }
        for i in 0..d {
            for j in i..d {
                self.xtx[i][j] += x[i] * x[j];
            }
            self.xty[i] += x[i] * watts;
        }
        self.yty += watts * watts;
        self.sum_y += watts;
        self.min_y = self.min_y.min(watts);
        self.max_y = self.max_y.max(watts);
        self.n += 1;
        self.solve();
        true
    }

    /// Re-solves `(X'X + lambda n P) b = X'y` by Cholesky (P: identity but for the
    /// intercept). Keeps the previous coefficients when the system is singular (too few
    /// distinct samples and no penalty).
    // Index loops: the textbook Cholesky, row and column as in the maths.
    #[allow(clippy::needless_range_loop)]
    fn solve(&mut self) {
        let d = self.basis.dim();
        let mut a = [[0.0; MAX_TERMS]; MAX_TERMS];
        let ridge = self.lambda * self.n as f64;
        for i in 0..d {
            for j in i..d {
                a[i][j] = self.xtx[i][j];
                a[j][i] = self.xtx[i][j];
            }
            if i > 0 {
                // A floor keeps the matrix positive definite with lambda = 0 and one sample.
                a[i][i] += ridge.max(1e-12);
            }
        }
        // Cholesky: a = L L' (L in the lower triangle of `a`).
        for j in 0..d {
            let mut s = a[j][j];
            for k in 0..j {
                s -= a[j][k] * a[j][k];
            }
            if s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return;
            }
            let l = s.sqrt();
            a[j][j] = l;
            for i in j + 1..d {
                let mut s = a[i][j];
                for k in 0..j {
                    s -= a[i][k] * a[j][k];
                }
                a[i][j] = s / l;
            }
        }
        let mut z = [0.0; MAX_TERMS];
        for i in 0..d {
            let mut s = self.xty[i];
            for k in 0..i {
                s -= a[i][k] * z[k];
            }
            z[i] = s / a[i][i];
        }
        let mut b = [0.0; MAX_TERMS];
        for i in (0..d).rev() {
            let mut s = z[i];
            for k in i + 1..d {
                s -= a[k][i] * b[k];
            }
            b[i] = s / a[i][i];
        }
        if b[..d].iter().all(|v| v.is_finite()) {
            self.coef = b;
            self.solved = true;
        }
    }

    /// The fitted coefficients, one per basis term; empty before the first sample.
    pub fn coefficients(&self) -> &[f64] {
        if self.solved {
            &self.coef[..self.basis.dim()]
        } else {
            &[]
        }
    }

    /// Predicted watts for `f` (never negative); `None` before the first sample or when an
    /// input the fit uses is missing.
    pub fn predict(&self, f: &Features) -> Option<f64> {
        if !self.solved {
            return None;
        }
        let mut x = [0.0; MAX_TERMS];
        let d = self.basis.terms(f, &mut x)?;
        Some(dot(&self.coef[..d], &x[..d]).max(0.0))
    }

    /// Samples, prequential mean absolute error and in-sample R².
    pub fn stats(&self) -> FitStats {
        let mae = (self.abs_n > 0).then(|| self.abs_err / self.abs_n as f64);
        let r_squared = if self.solved && self.n > 1 {
            let n = self.n as f64;
            let sst = self.yty - self.sum_y * self.sum_y / n;
            let d = self.basis.dim();
            let b = &self.coef[..d];
            // SSE = y'y - 2 b'X'y + b'X'X b, from the upper triangle of X'X.
            let mut quad = 0.0;
            for i in 0..d {
                quad += b[i] * b[i] * self.xtx[i][i];
                for j in i + 1..d {
                    quad += 2.0 * b[i] * b[j] * self.xtx[i][j];
                }
            }
            let sse = (self.yty - 2.0 * dot(b, &self.xty[..d]) + quad).max(0.0);
            // A target that never varied (to rounding) has no variance to explain.
            (sst > 1e-9 * self.yty.max(1.0)).then(|| 1.0 - sse / sst)
        } else {
            None
        };
        FitStats {
            samples: self.n,
            mean_absolute_error: mae,
            r_squared,
        }
    }

    /// The fit as a zone of a model file; `None` before the first sample.
    pub fn to_zone_model(&self, zone: ZoneKind, index: u32) -> Option<ZoneModel> {
        if !self.solved {
            return None;
        }
        let s = self.stats();
        Some(ZoneModel {
            zone: zone.label().to_owned(),
            index,
            coefficients: self.coefficients().to_vec(),
            samples: s.samples,
            mean_absolute_error_watts: s.mean_absolute_error,
            r_squared: s.r_squared,
            min_watts: self.min_y,
            max_watts: self.max_y,
        })
    }

    /// The inputs the fit uses.
    pub fn inputs(&self) -> Vec<Input> {
        self.basis.inputs()
    }

    /// The knots of its busy hinges.
    pub fn knots(&self) -> &[f64] {
        self.basis.knots()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The CPU a model was trained on. Compared field by field before a model is used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuIdentity {
    /// `model name` of `/proc/cpuinfo` (the first non-empty one).
    pub model_name: String,
    /// Sockets (distinct `physical id`s).
    pub sockets: u32,
    /// Physical cores (distinct `physical id`, `core id` pairs).
    pub cores: u32,
}

impl CpuIdentity {
    /// The identity of the machine whose logical CPUs are `cpus`.
    pub fn from_cpus(cpus: &[CpuInfo]) -> CpuIdentity {
        let model_name = cpus
            .iter()
            .map(|c| c.model_name.trim())
            .find(|m| !m.is_empty())
            .unwrap_or("")
            .to_owned();
        let mut sockets: Vec<u32> = cpus.iter().map(|c| c.physical_id).collect();
        sockets.sort_unstable();
        sockets.dedup();
        let mut cores: Vec<(u32, u32)> = cpus.iter().map(|c| (c.physical_id, c.core_id)).collect();
        cores.sort_unstable();
        cores.dedup();
        CpuIdentity {
            model_name,
            sockets: sockets.len() as u32,
            cores: cores.len() as u32,
        }
    }

    /// Why a model trained on `self` does not fit `machine`; `None` when they match.
    pub fn mismatch(&self, machine: &CpuIdentity) -> Option<String> {
        let mut why = Vec::new();
        if self.model_name != machine.model_name {
            why.push(format!(
                "model name {:?} (this machine: {:?})",
                self.model_name, machine.model_name
            ));
        }
        if self.sockets != machine.sockets {
            why.push(format!(
                "sockets {} (this machine: {})",
                self.sockets, machine.sockets
            ));
        }
        if self.cores != machine.cores {
            why.push(format!(
                "cores {} (this machine: {})",
                self.cores, machine.cores
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

/// One zone of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneModel {
    /// Zone kind label (`package`, `dram`, `core`, `uncore`, `psys`).
    pub zone: String,
    /// Socket (the zone's `index`).
    pub index: u32,
    /// One coefficient per basis term: intercept, busy, one per knot, then one per counter
    /// input in the order of `inputs`.
    pub coefficients: Vec<f64>,
    /// Samples the fit saw.
    pub samples: u64,
    /// Prequential mean absolute error when exported, watts.
    pub mean_absolute_error_watts: Option<f64>,
    /// In-sample R² when exported.
    pub r_squared: Option<f64>,
    /// Lowest watts seen in training.
    pub min_watts: f64,
    /// Highest watts seen in training.
    pub max_watts: f64,
}

/// A trained model as written to and read from a file (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerModel {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// File version; this build reads [`MODEL_VERSION`].
    pub version: u32,
    /// Content hash of the model (`pm-` and 16 hex digits): what
    /// `kepler_node_power_source_info` shows, so a dashboard can tell models apart.
    pub id: String,
    /// The CPU it was trained on.
    pub cpu: CpuIdentity,
    /// Activity inputs, `busy` first.
    pub inputs: Vec<Input>,
    /// Knots of the busy hinges.
    pub knots: Vec<f64>,
    /// One entry per zone.
    pub zones: Vec<ZoneModel>,
}

impl PowerModel {
    /// A model of `zones` trained on `cpu`, with its id computed.
    pub fn new(
        cpu: CpuIdentity,
        inputs: Vec<Input>,
        knots: Vec<f64>,
        zones: Vec<ZoneModel>,
    ) -> PowerModel {
        let mut m = PowerModel {
            format: MODEL_FORMAT.to_owned(),
            version: MODEL_VERSION,
            id: String::new(),
            cpu,
            inputs,
            knots,
            zones,
        };
        m.id = m.content_id();
        m
    }

    /// `pm-` and an FNV-1a hash of everything but the id and the error figures: the same
    /// coefficients on the same CPU give the same id.
    pub fn content_id(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(self.cpu.model_name.as_bytes());
        eat(&self.cpu.sockets.to_le_bytes());
        eat(&self.cpu.cores.to_le_bytes());
        for i in &self.inputs {
            eat(&[*i as u8]);
        }
        for k in &self.knots {
            eat(&k.to_bits().to_le_bytes());
        }
        for z in &self.zones {
            eat(z.zone.as_bytes());
            eat(&z.index.to_le_bytes());
            for c in &z.coefficients {
                eat(&c.to_bits().to_le_bytes());
            }
        }
        format!("pm-{h:016x}")
    }

    /// Checks format, version, basis and every zone's coefficients; the error names the
    /// field.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.format != MODEL_FORMAT {
            return Err(model_error(
                "format",
                format!("{:?} is not {MODEL_FORMAT:?}", self.format),
            ));
        }
        if self.version != MODEL_VERSION {
            return Err(model_error(
                "version",
                format!(
                    "{} is not supported (this build reads {MODEL_VERSION})",
                    self.version
                ),
            ));
        }
        let basis = Basis::new(&self.inputs, &self.knots)?;
        if self.zones.is_empty() {
            return Err(model_error("zones", "is empty"));
        }
        for (i, z) in self.zones.iter().enumerate() {
            let kind = ZoneKind::from_name(&z.zone).filter(|k| k.is_cpu());
            if kind.is_none() || ZoneKind::from_name(&z.zone).map(ZoneKind::label) != Some(&z.zone)
            {
                return Err(model_error(
                    format!("zones[{i}].zone"),
                    format!(
                        "{:?} is not a CPU zone (package, core, uncore, dram, psys)",
                        z.zone
                    ),
                ));
            }
            if z.coefficients.len() != basis.dim() {
                return Err(model_error(
                    format!("zones[{i}].coefficients"),
                    format!(
                        "has {} values, the inputs and knots need {}",
                        z.coefficients.len(),
                        basis.dim()
                    ),
                ));
            }
            // No zone draws a megawatt: a bound that also keeps every prediction finite.
            if let Some(c) = z
                .coefficients
                .iter()
                .find(|c| !(c.is_finite() && c.abs() <= MAX_COEFFICIENT))
            {
                return Err(model_error(
                    format!("zones[{i}].coefficients"),
                    format!("{c} is not a finite value within +-{MAX_COEFFICIENT}"),
                ));
            }
            if self.zones[..i]
                .iter()
                .any(|o| o.zone == z.zone && o.index == z.index)
            {
                return Err(model_error(
                    format!("zones[{i}]"),
                    format!("{} {} appears twice", z.zone, z.index),
                ));
            }
        }
        Ok(())
    }

    /// A predictor for zone `i` of `zones`; the model must have passed
    /// [`PowerModel::validate`].
    pub fn predictor(&self, i: usize) -> Result<ZonePredictor, ModelError> {
        let basis = Basis::new(&self.inputs, &self.knots)?;
        let z = self
            .zones
            .get(i)
            .ok_or_else(|| model_error(format!("zones[{i}]"), "does not exist"))?;
        if z.coefficients.len() != basis.dim() {
            return Err(model_error(
                format!("zones[{i}].coefficients"),
                "does not match the basis",
            ));
        }
        let mut coef = [0.0; MAX_TERMS];
        coef[..basis.dim()].copy_from_slice(&z.coefficients);
        Ok(ZonePredictor { basis, coef })
    }
}

/// One zone of a loaded model, ready to estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct ZonePredictor {
    basis: Basis,
    coef: [f64; MAX_TERMS],
}

impl ZonePredictor {
    /// Watts for activity `f` (never negative); `None` when an input the model uses is
    /// missing or not finite.
    pub fn predict(&self, f: &Features) -> Option<f64> {
        let mut x = [0.0; MAX_TERMS];
        let d = self.basis.terms(f, &mut x)?;
        Some(dot(&self.coef[..d], &x[..d]).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic noise in -1..1 (a small LCG), so the tests need no RNG crate.
    fn noise(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    #[test]
    fn fits_a_line_exactly_without_noise() {
        let mut fit = ZoneFit::with_basis(&[Input::Busy], &[], 0.0).unwrap();
        for i in 0..=100 {
            let u = i as f64 / 100.0;
            assert!(fit.observe(&Features::busy(u), 12.0 + 30.0 * u));
        }
        let c = fit.coefficients();
        assert!(
            (c[0] - 12.0).abs() < 1e-6 && (c[1] - 30.0).abs() < 1e-6,
            "{c:?}"
        );
        let s = fit.stats();
        assert_eq!(s.samples, 101);
        assert!(s.r_squared.unwrap() > 0.999_999, "{s:?}");
        assert!(s.mean_absolute_error.unwrap() < 1e-6, "{s:?}");
    }

    #[test]
    fn hinges_follow_a_concave_curve_better_than_a_line() {
        // Fan, Weber and Barroso's shape: 10 + 35 (2u - u^1.4).
        let truth = |u: f64| 10.0 + 35.0 * (2.0 * u - u.powf(1.4));
        let mut line = ZoneFit::with_basis(&[Input::Busy], &[], DEFAULT_LAMBDA).unwrap();
        let mut hinge = ZoneFit::new(&[Input::Busy]).unwrap();
        for i in 0..2000 {
            let u = (i * 37 % 1000) as f64 / 1000.0;
            line.observe(&Features::busy(u), truth(u));
            hinge.observe(&Features::busy(u), truth(u));
        }
        let err = |f: &ZoneFit| {
            (0..=20)
                .map(|i| {
                    let u = i as f64 / 20.0;
                    (f.predict(&Features::busy(u)).unwrap() - truth(u)).abs()
                })
                .fold(0.0, f64::max)
        };
        // Least squares spread the error; the steep start (slope 70 W at u = 0) is where
        // the hinges miss most, by under 1 W of 45.
        let (h, l) = (err(&hinge), err(&line));
        assert!(h < 1.0, "hinge max error {h}");
        assert!(l > 2.0 * h, "line max error {l}, hinge {h}");
    }

    #[test]
    fn unusable_samples_change_nothing() {
        let mut fit = ZoneFit::new(&[Input::Busy, Input::Cycles]).unwrap();
        let before = fit.clone();
        assert!(!fit.observe(&Features::busy(0.5), 10.0), "cycles missing");
        assert!(!fit.observe(&Features::busy(f64::NAN), 10.0));
        let f = Features {
            busy: 0.5,
            cycles: Some(1.0),
            instructions: None,
        };
        assert!(!fit.observe(&f, f64::INFINITY));
        assert!(!fit.observe(&f, -1.0));
        assert_eq!(fit, before);
        assert!(fit.observe(&f, 10.0));
        assert_eq!(fit.stats().samples, 1);
        assert_eq!(fit.predict(&Features::busy(0.5)), None);
    }

    #[test]
    fn constant_target_has_no_r_squared() {
        let mut fit = ZoneFit::new(&[Input::Busy]).unwrap();
        for i in 0..50 {
            fit.observe(&Features::busy(i as f64 / 50.0), 20.0);
        }
        assert_eq!(fit.stats().r_squared, None);
        assert!((fit.predict(&Features::busy(0.3)).unwrap() - 20.0).abs() < 1e-6);
    }

    #[test]
    fn mae_counts_only_after_warmup() {
        let mut fit = ZoneFit::new(&[Input::Busy]).unwrap();
        for i in 0..ZoneFit::WARMUP {
            fit.observe(&Features::busy(i as f64 / 20.0), 5.0 + i as f64);
        }
        assert_eq!(fit.stats().mean_absolute_error, None);
        fit.observe(&Features::busy(0.5), 1000.0);
        // The outlier was predicted from the earlier fit, so its whole miss counts.
        assert!(fit.stats().mean_absolute_error.unwrap() > 900.0);
    }

    #[test]
    fn bad_bases_are_named() {
        assert_eq!(ZoneFit::new(&[Input::Cycles]).unwrap_err().field, "inputs");
        assert_eq!(
            ZoneFit::with_basis(&[Input::Busy], &[0.5, 0.4], 0.0)
                .unwrap_err()
                .field,
            "knots[1]"
        );
        assert_eq!(
            ZoneFit::with_basis(&[Input::Busy], &[1.5], 0.0)
                .unwrap_err()
                .field,
            "knots[0]"
        );
        assert_eq!(
            ZoneFit::with_basis(&[Input::Busy], &[], -1.0)
                .unwrap_err()
                .field,
            "lambda"
        );
    }

    fn trained() -> PowerModel {
        let mut fit = ZoneFit::new(&[Input::Busy]).unwrap();
        let mut s = 7;
        for i in 0..500 {
            let u = (i % 101) as f64 / 100.0;
            fit.observe(&Features::busy(u), 15.0 + 40.0 * u + noise(&mut s));
        }
        let cpu = CpuIdentity {
            model_name: "Test CPU @ 2.0GHz".into(),
            sockets: 1,
            cores: 4,
        };
        PowerModel::new(
            cpu,
            fit.inputs(),
            fit.knots().to_vec(),
            vec![fit.to_zone_model(ZoneKind::Package, 0).unwrap()],
        )
    }

    #[test]
    fn model_predicts_as_its_fit_and_validates() {
        let m = trained();
        m.validate().unwrap();
        assert!(m.id.starts_with("pm-") && m.id.len() == 19, "{}", m.id);
        assert_eq!(m.id, m.content_id());
        let p = m.predictor(0).unwrap();
        let w = p.predict(&Features::busy(0.5)).unwrap();
        assert!((w - 35.0).abs() < 0.5, "{w}");
        assert!(m.predictor(1).is_err());
    }

    #[test]
    fn invalid_models_name_the_field() {
        let base = trained();
        let check = |f: &dyn Fn(&mut PowerModel), field: &str| {
            let mut m = base.clone();
            f(&mut m);
            assert_eq!(m.validate().unwrap_err().field, field);
        };
        check(&|m| m.version = 99, "version");
        check(&|m| m.format = "x".into(), "format");
        check(&|m| m.zones.clear(), "zones");
        check(
            &|m| m.zones[0].coefficients.pop().map(|_| ()).unwrap(),
            "zones[0].coefficients",
        );
        check(
            &|m| m.zones[0].coefficients[1] = f64::NAN,
            "zones[0].coefficients",
        );
        check(&|m| m.zones[0].zone = "gpu".into(), "zones[0].zone");
        check(&|m| m.zones[0].zone = "package-0".into(), "zones[0].zone");
        check(
            &|m| {
                let z = m.zones[0].clone();
                m.zones.push(z)
            },
            "zones[1]",
        );
        check(&|m| m.knots = vec![0.9, 0.1], "knots[1]");
    }

    #[test]
    fn cpu_identity_counts_sockets_and_cores() {
        let cpu = |p: u32, phys: u32, core: u32| CpuInfo {
            processor: p,
            vendor_id: "GenuineIntel".into(),
            model_name: "Xeon".into(),
            physical_id: phys,
            core_id: core,
        };
        // Two sockets, two cores each, two threads per core.
        let cpus: Vec<CpuInfo> = (0..8).map(|p| cpu(p, p / 4, (p % 4) / 2)).collect();
        let id = CpuIdentity::from_cpus(&cpus);
        assert_eq!(
            (id.model_name.as_str(), id.sockets, id.cores),
            ("Xeon", 2, 4)
        );
        assert_eq!(id.mismatch(&id), None);
        let other = CpuIdentity {
            cores: 8,
            ..id.clone()
        };
        let why = id.mismatch(&other).unwrap();
        assert!(why.contains("cores 4 (this machine: 8)"), "{why}");
        assert!(!why.contains("sockets"), "{why}");
    }

    proptest! {
        /// The fit recovers a known linear model in busy, cycles and the hinges from noisy
        /// samples: coefficients within a tolerance that scales with the noise.
        #[test]
        fn recovers_a_known_linear_model(
            b0 in 5.0f64..50.0,
            b1 in 60.0f64..100.0,
            h in prop::array::uniform3(-20.0f64..20.0),
            bc in 0.0f64..10.0,
            noise_w in 0.0f64..2.0,
            seed in any::<u64>(),
        ) {
            // b0 >= 5 W and every segment's slope b1 + (hinges so far) >= 0 keep the truth
            // above the noise, so no sample is clamped or refused.
            let mut fit = ZoneFit::with_basis(&[Input::Busy, Input::Cycles], &DEFAULT_KNOTS, 1e-9).unwrap();
            let mut s = seed | 1;
            let truth = |u: f64, c: f64| {
                b0 + b1 * u
                    + DEFAULT_KNOTS.iter().zip(h).map(|(k, hk)| hk * (u - k).max(0.0)).sum::<f64>()
                    + bc * c
            };
            for _ in 0..4000 {
                let u = (noise(&mut s) + 1.0) / 2.0;
                let c = (noise(&mut s) + 1.0) * 2.0;
                let y = truth(u, c) + noise_w * noise(&mut s);
                let f = Features { busy: u, cycles: Some(c), instructions: None };
                prop_assert!(fit.observe(&f, y));
            }
            let c = fit.coefficients();
            prop_assert!((c[1] - b1).abs() < 1.0 + noise_w, "busy {} vs {}", c[1], b1);
            prop_assert!((c[5] - bc).abs() < 0.2 + 0.2 * noise_w, "cycles {} vs {}", c[5], bc);
            for i in 0..=10 {
                let u = i as f64 / 10.0;
                let f = Features { busy: u, cycles: Some(1.0), instructions: None };
                let p = fit.predict(&f).unwrap();
                let t = truth(u, 1.0);
                prop_assert!((p - t).abs() < 0.1 + 0.2 * noise_w, "u {}: {} vs {}", u, p, t);
            }
            let st = fit.stats();
            // Uniform noise of half-width w has mean absolute value w / 2.
            prop_assert!(st.mean_absolute_error.unwrap() < 0.5 * noise_w + 0.3, "{:?}", st);
        }
    }
}
