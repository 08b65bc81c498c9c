//! The explicit table of meters.
//!
//! Every power source appears here once, with its name (the value users write in
//! `cpu.preferredMeters`), whether it is tried by default, whether its numbers are estimates,
//! and its constructor. There is no registration by side effect: a meter that is not in
//! [`METERS`] does not exist, and a meter behind a disabled cargo feature is simply absent.
//! The binary walks its preferred list (default `[rapl, hwmon, trained, model]`) and uses the first
//! meter that builds.
//!
//! [`PLATFORM_METERS`] lists the meters of the whole machine (the ACPI power meter, hwmon
//! platform chips): they are not CPU meters, and every one that builds is read next to the
//! selected CPU meter and exported as a `platform` zone.

use std::path::PathBuf;

use kepler_core::PowerSource;

#[cfg(feature = "acpi")]
use crate::acpi::AcpiPowerMeter;
#[cfg(feature = "hwmon")]
use crate::hwmon::{Hwmon, HwmonOptions, HwmonRole, HwmonRules};
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
    /// The trained model's file (`model.file`, `model.acceptMismatch`).
    #[cfg(feature = "trained")]
    pub trained: crate::trained::TrainedOptions,
    /// Whether hwmon chips are read at all (`experimental.hwmon.enabled`).
    #[cfg(feature = "hwmon")]
    pub hwmon_enabled: bool,
    /// Which hwmon channels are CPU, DRAM or platform (`experimental.hwmon.*`).
    #[cfg(feature = "hwmon")]
    pub hwmon_rules: HwmonRules,
    /// hwmon labels or chips to keep (`experimental.hwmon.zones`); empty keeps all.
    #[cfg(feature = "hwmon")]
    pub hwmon_zones: Vec<String>,
    /// Zones of the synthetic `fake` meter (`dev.fake-cpu-meter.zones`); empty: its defaults.
    pub fake_zones: Vec<String>,
    /// Where the `passthrough` meter finds its host's tree (`passthrough.path`).
    #[cfg(feature = "passthrough")]
    pub passthrough: crate::passthrough::PassthroughOptions,
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
            #[cfg(feature = "trained")]
            trained: crate::trained::TrainedOptions::default(),
            #[cfg(feature = "hwmon")]
            hwmon_enabled: true,
            #[cfg(feature = "hwmon")]
            hwmon_rules: HwmonRules::default(),
            #[cfg(feature = "hwmon")]
            hwmon_zones: Vec::new(),
            fake_zones: Vec::new(),
            #[cfg(feature = "passthrough")]
            passthrough: crate::passthrough::PassthroughOptions {
                path: PathBuf::from("/var/lib/kepler/passthrough"),
                stale_after: std::time::Duration::from_secs(20),
            },
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
    #[cfg(feature = "hwmon")]
    MeterEntry {
        name: "hwmon",
        enabled_by_default: true,
        estimated: false,
        build: build_hwmon_cpu,
    },
    // A model fitted on a metered twin (issue 20); builds only with `model.file`, so it is
    // tried by default and skipped quietly where no file is configured.
    #[cfg(feature = "trained")]
    MeterEntry {
        name: "trained",
        enabled_by_default: true,
        estimated: true,
        build: build_trained,
    },
    #[cfg(feature = "model")]
    MeterEntry {
        name: "model",
        enabled_by_default: true,
        estimated: true,
        build: build_model,
    },
    // A VM's share of its host's measurement (issue 22); only when named: the tree exists
    // only inside a VM whose host shares it.
    #[cfg(feature = "passthrough")]
    MeterEntry {
        name: "passthrough",
        enabled_by_default: false,
        estimated: false,
        build: build_passthrough,
    },
    // Synthetic numbers for demos and tests (Go Kepler's `fake`); only when named.
    MeterEntry {
        name: "fake",
        enabled_by_default: false,
        estimated: true,
        build: build_fake,
    },
];

/// Meters of the whole machine, all read when they build; `enabled_by_default` false means
/// only on request.
pub static PLATFORM_METERS: &[MeterEntry] = &[
    #[cfg(feature = "acpi")]
    MeterEntry {
        name: "acpi",
        enabled_by_default: true,
        estimated: false,
        build: build_acpi,
    },
    #[cfg(feature = "hwmon")]
    MeterEntry {
        name: "hwmon",
        enabled_by_default: true,
        estimated: false,
        build: build_hwmon_platform,
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

#[cfg(feature = "hwmon")]
fn build_hwmon(ctx: &MeterContext, role: HwmonRole) -> Result<Box<dyn PowerSource>, Error> {
    if !ctx.hwmon_enabled {
        return Err(Error::new(
            crate::ErrorKind::InvalidConfig,
            None,
            "hwmon disabled by experimental.hwmon.enabled=false",
        ));
    }
    let opts = HwmonOptions {
        rules: ctx.hwmon_rules.clone(),
        zones: ctx.hwmon_zones.clone(),
        ..HwmonOptions::new(&ctx.sysfs, role)
    };
    Ok(Box::new(Hwmon::discover(&opts)?))
}

#[cfg(feature = "hwmon")]
fn build_hwmon_cpu(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    build_hwmon(ctx, HwmonRole::Cpu)
}

#[cfg(feature = "hwmon")]
fn build_hwmon_platform(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    build_hwmon(ctx, HwmonRole::Platform)
}

#[cfg(feature = "acpi")]
fn build_acpi(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    Ok(Box::new(AcpiPowerMeter::discover(&ctx.sysfs)?))
}

#[cfg(feature = "model")]
fn build_model(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    Ok(Box::new(Model::new(&ctx.procfs, &ctx.sysfs, ctx.model)?))
}

#[cfg(feature = "trained")]
fn build_trained(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    Ok(Box::new(crate::trained::build(
        &ctx.procfs,
        &ctx.sysfs,
        &ctx.trained,
    )?))
}

#[cfg(feature = "passthrough")]
fn build_passthrough(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    Ok(Box::new(crate::passthrough::Passthrough::discover(
        &ctx.passthrough,
    )?))
}

fn build_fake(ctx: &MeterContext) -> Result<Box<dyn PowerSource>, Error> {
    Ok(Box::new(crate::fake_meter::FakeCpuMeter::new(
        &ctx.fake_zones,
    )?))
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

    #[cfg(all(
        feature = "rapl",
        feature = "model",
        feature = "hwmon",
        feature = "passthrough",
        feature = "trained"
    ))]
    #[test]
    fn measured_before_estimated() {
        let names: Vec<_> = METERS.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            ["rapl", "hwmon", "trained", "model", "passthrough", "fake"]
        );
        assert!(!meter("fake").unwrap().enabled_by_default);
        assert!(!meter("rapl").unwrap().estimated);
        assert!(meter("model").unwrap().estimated);
    }
}
