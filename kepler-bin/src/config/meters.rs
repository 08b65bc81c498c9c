//! Config of the meters of issue 7: `experimental.hwmon.*`, `experimental.gpu.*`, and the
//! model estimate's `model.*` (with issue 20's trained model: `model.file`, `model.export`); issue 22's `passthrough.*` (guest) and `vm.passthrough.*` (host).

use std::path::PathBuf;
use std::time::Duration;

use kepler_sources::{DramParams, HwmonRules, ModelParams};

use super::keys::*;
use super::{err, ConfigError, RawConfig};

/// The validated meter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterConfig {
    /// `experimental.hwmon.enabled`
    pub hwmon_enabled: bool,
    /// `experimental.hwmon.{cpu,dram,platform}` over the defaults.
    pub hwmon_rules: HwmonRules,
    /// `experimental.hwmon.zones`
    pub hwmon_zones: Vec<String>,
    /// `experimental.gpu.enabled`
    pub gpu_enabled: bool,
    /// `experimental.gpu.idlePower` in watts; `None` learns it.
    pub gpu_idle_watts: Option<f64>,
    /// `dev.fake-cpu-meter.zones`: zones of the `fake` meter.
    pub fake_zones: Vec<String>,
    /// `passthrough.path`: the guest's mount of its host's tree.
    pub passthrough_path: PathBuf,
    /// `passthrough.staleAfter`
    pub passthrough_stale_after: Duration,
    /// `vm.passthrough.dir` when `vm.passthrough.enabled`.
    pub vm_passthrough_dir: Option<PathBuf>,
    /// `vm.passthrough.maxEnergyRangeUJ`
    pub vm_passthrough_max_range_uj: u64,
    /// `model.file`: the `trained` meter's model.
    pub model_file: Option<PathBuf>,
    /// `model.acceptMismatch`
    pub model_accept_mismatch: bool,
    /// `model.export`: where the fitted model is written.
    pub model_export: Option<PathBuf>,
    /// `model.exportInterval`
    pub model_export_interval: Duration,
}

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig {
            hwmon_enabled: true,
            hwmon_rules: HwmonRules::default(),
            hwmon_zones: Vec::new(),
            gpu_enabled: true,
            gpu_idle_watts: None,
            fake_zones: Vec::new(),
            passthrough_path: PathBuf::from("/var/lib/kepler/passthrough"),
            passthrough_stale_after: Duration::from_secs(20),
            vm_passthrough_dir: None,
            vm_passthrough_max_range_uj: kepler_sources::passthrough::DEFAULT_MAX_ENERGY_RANGE_UJ,
            model_file: None,
            model_accept_mismatch: false,
            model_export: None,
            model_export_interval: Duration::from_secs(600),
        }
    }
}

/// `experimental.hwmon.*` and `experimental.gpu.*`.
pub fn meter_config(
    raw: &RawConfig,
    warnings: &mut Vec<String>,
) -> Result<MeterConfig, ConfigError> {
    if raw
        .get::<String>(&GPU_DCGM_ENDPOINT)?
        .is_some_and(|u| !u.trim().is_empty())
    {
        warnings.push(
            "experimental.gpu.dcgmEndpoint is accepted but not read yet: MIG instances that \
             run processes share their GPU's active energy equally"
                .into(),
        );
    }
    let mut rules = HwmonRules::default();
    for (key, slot) in [
        (&HWMON_CPU, &mut rules.cpu),
        (&HWMON_DRAM, &mut rules.dram),
        (&HWMON_PLATFORM, &mut rules.platform),
    ] {
        if let Some(v) = raw.get(key)? {
            *slot = v;
        }
    }
    Ok(MeterConfig {
        hwmon_enabled: raw.value(&HWMON_ENABLED)?,
        hwmon_rules: rules,
        hwmon_zones: raw.get(&HWMON_ZONES)?.unwrap_or_default(),
        gpu_enabled: raw.value(&GPU_ENABLED)?,
        // 0 learns it, like no value.
        gpu_idle_watts: raw.get::<f64>(&GPU_IDLE_POWER)?.filter(|w| *w > 0.0),
        fake_zones: raw.get(&FAKE_CPU_METER_ZONES)?.unwrap_or_default(),
        passthrough_path: PathBuf::from(raw.value::<String>(&PASSTHROUGH_PATH)?),
        passthrough_stale_after: raw.value(&PASSTHROUGH_STALE_AFTER)?,
        vm_passthrough_dir: match raw.value::<bool>(&VM_PASSTHROUGH_ENABLED)? {
            true => Some(PathBuf::from(raw.value::<String>(&VM_PASSTHROUGH_DIR)?)),
            false => None,
        },
        vm_passthrough_max_range_uj: raw.value::<i64>(&VM_PASSTHROUGH_MAX_ENERGY_RANGE)? as u64,
        model_file: raw.get::<String>(&MODEL_FILE)?.map(PathBuf::from),
        model_accept_mismatch: raw.value(&MODEL_ACCEPT_MISMATCH)?,
        model_export: raw.get::<String>(&MODEL_EXPORT)?.map(PathBuf::from),
        model_export_interval: raw.value(&MODEL_EXPORT_INTERVAL)?,
    })
}

/// `model.*`: the estimator's line or curve, and its optional DRAM zone.
pub fn model(raw: &RawConfig) -> Result<ModelParams, ConfigError> {
    let idle_watts: f64 = raw.value(&MODEL_IDLE_WATTS)?;
    let max_watts: f64 = raw.value(&MODEL_MAX_WATTS)?;
    if !(max_watts.is_finite() && max_watts >= idle_watts && max_watts < 10_000.0) {
        return Err(err(
            MODEL_MAX_WATTS.path,
            "must be a number between model.idleWatts and 10000",
        ));
    }
    let curve = raw
        .get::<Vec<f64>>(&MODEL_CURVE)?
        .and_then(|v| v.try_into().ok());
    let dram = if raw.is_set(&MODEL_DRAM_IDLE_WATTS) || raw.is_set(&MODEL_DRAM_MAX_WATTS) {
        let idle: f64 = raw.get(&MODEL_DRAM_IDLE_WATTS)?.unwrap_or(0.0);
        let max: f64 = raw.get(&MODEL_DRAM_MAX_WATTS)?.ok_or_else(|| {
            err(
                MODEL_DRAM_MAX_WATTS.path,
                "is required when model.dram is set",
            )
        })?;
        if !(max.is_finite() && max >= idle && max < 10_000.0) {
            return Err(err(
                MODEL_DRAM_MAX_WATTS.path,
                "must be a number between model.dram.idleWatts and 10000",
            ));
        }
        Some(DramParams {
            idle_watts: idle,
            max_watts: max,
        })
    } else {
        None
    };
    Ok(ModelParams {
        idle_watts,
        max_watts,
        curve,
        dram,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::build;
    use super::*;
    use kepler_sources::CURVE_POINTS;

    fn meters(yaml: &str) -> Result<MeterConfig, ConfigError> {
        build(&[], Some(&format!("experimental:\n{yaml}"))).map(|c| c.meters)
    }

    #[test]
    fn hwmon_and_gpu_keys() {
        let c = build(
            &[],
            Some("experimental:\n  hwmon:\n    enabled: false\n    zones: [VDD_CPU]\n    cpu: [vdd_cpu]\n    colour: red\n  gpu:\n    idlePower: 55.5\n"),
        )
        .unwrap();
        let m = &c.meters;
        assert!(!m.hwmon_enabled);
        assert_eq!(m.hwmon_zones, ["VDD_CPU"]);
        assert_eq!(m.hwmon_rules.cpu, ["vdd_cpu"]);
        assert_eq!(m.hwmon_rules.platform, HwmonRules::default().platform);
        assert_eq!(m.gpu_idle_watts, Some(55.5));
        assert!(m.gpu_enabled);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("\"experimental.hwmon.colour\""));
        assert_eq!(build(&[], None).unwrap().meters, MeterConfig::default());
        assert_eq!(
            meters("  gpu:\n    idlePower: 0\n").unwrap().gpu_idle_watts,
            None
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = meters("  gpu:\n    idlePower: -3\n").unwrap_err();
        assert_eq!(e.key, "experimental.gpu.idlePower");
        let e = meters("  hwmon:\n    cpu: ['']\n").unwrap_err();
        assert_eq!(e.key, "experimental.hwmon.cpu");
        let e = build(&[], Some("model:\n  curve: [1, 1, 1]\n")).unwrap_err();
        assert_eq!(e.key, "model.curve");
        assert!(e.message.contains("got 3"), "{}", e.message);
        let mut falling = ["10"; CURVE_POINTS];
        falling[7] = "5";
        let e = build(
            &[],
            Some(&format!("model:\n  curve: [{}]\n", falling.join(", "))),
        )
        .unwrap_err();
        assert!(e.message.contains("70%"), "{}", e.message);
        let e = build(&[], Some("model:\n  dram:\n    idleWatts: 3\n")).unwrap_err();
        assert_eq!(e.key, "model.dram.maxWatts");
    }

    #[test]
    fn a_good_curve_and_dram() {
        let curve: Vec<String> = (0..CURVE_POINTS)
            .map(|i| (50 + i * 10).to_string())
            .collect();
        let c = build(
            &[],
            Some(&format!(
                "model:\n  curve: [{}]\n  dram:\n    maxWatts: 8\n",
                curve.join(", ")
            )),
        )
        .unwrap();
        assert_eq!(c.model.curve.unwrap()[10], 150.0);
        assert_eq!(
            c.model.dram,
            Some(DramParams {
                idle_watts: 0.0,
                max_watts: 8.0
            })
        );
    }
}
