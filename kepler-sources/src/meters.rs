//! The explicit table of meters.
//!
//! Every power source appears here once, with its name (the value users write in
//! `cpu.preferredMeters`), whether it is tried by default, whether its numbers are estimates,
//! and its constructor. There is no registration by side effect: a meter that is not in
//! [`METERS`] does not exist, and a meter behind a disabled cargo feature is simply absent.
//! The binary walks its preferred list (default `[rapl, model]`) and uses the first meter
//! that builds.

use std::path::PathBuf;

use kepler_core::PowerSource;

#[cfg(feature = "model")]
use crate::model::{Model, ModelParams};
#[cfg(feature = "rapl")]
use crate::rapl::{Rapl, RaplOptions};
use crate::Error;

/// What a meter constructor gets.
#[derive(Debug, Clone)]
pub struct MeterContext {
    /// The sysfs root (`--host.sysfs`).
    pub sysfs: PathBuf,
    /// The procfs root (`--host.procfs`).
    pub procfs: PathBuf,
    /// RAPL zone kinds to keep (`rapl.zones`); empty keeps all.
    pub rapl_zones: Vec<String>,
    /// Parameters of the utilisation model.
    #[cfg(feature = "model")]
    pub model: ModelParams,
}

impl MeterContext {
    /// A context over the given roots with every other setting at its default.
    pub fn new(sysfs: impl Into<PathBuf>, procfs: impl Into<PathBuf>) -> MeterContext {
        MeterContext {
            sysfs: sysfs.into(),
            procfs: procfs.into(),
            rapl_zones: Vec::new(),
            #[cfg(feature = "model")]
            model: ModelParams::default(),
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct MeterEntry {
    /// The name users write in `cpu.preferredMeters`.
    pub name: &'static str,
    /// Whether the default preference list includes it.
    pub enabled_by_default: bool,
    /// Whether its zones are estimates rather than measurements.
    pub estimated: bool,
    /// Builds the meter; the error says why it cannot run here (absent, not permitted...).
    pub build: fn(&MeterContext) -> Result<Box<dyn PowerSource>, Error>,
}

/// Every meter this build knows, in default preference order: measured before estimated.
pub static METERS: &[MeterEntry] = &[
    #[cfg(feature = "rapl")]
    MeterEntry {
        name: "rapl",
        enabled_by_default: true,
        estimated: false,
        build: build_rapl,
    },
    #[cfg(feature = "model")]
    MeterEntry {
        name: "model",
        enabled_by_default: true,
        estimated: true,
        build: build_model,
    },
];

/// The table row named `name` (case-insensitive), or `None` when this build has no such meter.
pub fn meter(name: &str) -> Option<&'static MeterEntry> {
    METERS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

#[cfg(feature = "rapl")]
fn build_rapl(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    let opts = RaplOptions {
        sysfs_root: ctx.sysfs.clone(),
        zones: ctx.rapl_zones.clone(),
    };
    Ok(Box::new(Rapl::discover(&opts)?))
}

#[cfg(feature = "model")]
fn build_model(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    Ok(Box::new(Model::new(&ctx.procfs, &ctx.sysfs, ctx.model)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in METERS.iter().enumerate() {
            assert!(METERS[..i].iter().all(|o| o.name != m.name));
            assert!(std::ptr::eq(meter(m.name).unwrap(), m));
        }
        assert!(meter("nonesuch").is_none());
    }

    #[cfg(all(feature = "rapl", feature = "model"))]
    #[test]
    fn measured_before_estimated() {
        let names: Vec<_> = METERS.iter().map(|m| m.name).collect();
        assert_eq!(names, ["rapl", "model"]);
        assert!(!meter("rapl").unwrap().estimated);
        assert!(meter("model").unwrap().estimated);
    }
}
