//! Config of the meters of issue 7: `experimental.hwmon.*`, `experimental.gpu.*`, and the
//! model's `model.curve` / `model.dram.*`. Parsed here so the shared config files only gain
//! a field or two.

use std::collections::BTreeMap;

use kepler_sources::{DramParams, HwmonRules, CURVE_POINTS};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{err, ConfigError};

type Unknown = BTreeMap<String, IgnoredAny>;

/// `experimental.*`
#[derive(Debug, Default, Deserialize)]
pub struct ExperimentalSection {
    /// `experimental.hwmon.*`
    pub hwmon: Option<HwmonSection>,
    /// `experimental.gpu.*`
    pub gpu: Option<GpuSection>,
    /// `experimental.platform.*` (Redfish, read by its own section)
    pub platform: Option<super::redfish::PlatformSection>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `experimental.hwmon.*`
#[derive(Debug, Default, Deserialize)]
pub struct HwmonSection {
    /// `experimental.hwmon.enabled` (default true).
    pub enabled: Option<bool>,
    /// `experimental.hwmon.zones`: labels or chip names to keep; empty keeps all.
    pub zones: Option<Vec<String>>,
    /// `experimental.hwmon.cpu`: substrings of `chip/label` that mean a CPU package.
    pub cpu: Option<Vec<String>>,
    /// `experimental.hwmon.dram`: substrings that mean memory.
    pub dram: Option<Vec<String>>,
    /// `experimental.hwmon.platform`: substrings that mean the whole machine.
    pub platform: Option<Vec<String>>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `experimental.gpu.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuSection {
    /// `experimental.gpu.enabled` (default true: off by itself where NVML is absent).
    pub enabled: Option<bool>,
    /// `experimental.gpu.idlePower`: watts per GPU; absent or 0 learns it.
    pub idle_power: Option<f64>,
    #[serde(flatten)]
    unknown: Unknown,
}

/// `model.dram.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DramSection {
    /// `model.dram.idleWatts` per socket.
    pub idle_watts: Option<f64>,
    /// `model.dram.maxWatts` per socket.
    pub max_watts: Option<f64>,
    #[serde(flatten)]
    unknown: Unknown,
}

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
}

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig {
            hwmon_enabled: true,
            hwmon_rules: HwmonRules::default(),
            hwmon_zones: Vec::new(),
            gpu_enabled: true,
            gpu_idle_watts: None,
        }
    }
}

/// Validates `experimental.hwmon.*` and `experimental.gpu.*`.
pub fn meter_config(section: Option<&ExperimentalSection>) -> Result<MeterConfig, ConfigError> {
    let mut out = MeterConfig::default();
    if let Some(h) = section.and_then(|s| s.hwmon.as_ref()) {
        out.hwmon_enabled = h.enabled.unwrap_or(true);
        out.hwmon_zones = h.zones.clone().unwrap_or_default();
        for (key, given, slot) in [
            ("experimental.hwmon.cpu", &h.cpu, &mut out.hwmon_rules.cpu),
            (
                "experimental.hwmon.dram",
                &h.dram,
                &mut out.hwmon_rules.dram,
            ),
            (
                "experimental.hwmon.platform",
                &h.platform,
                &mut out.hwmon_rules.platform,
            ),
        ] {
            if let Some(v) = given {
                if v.iter().any(|r| r.trim().is_empty()) {
                    return Err(err(key, "rules must not be empty strings"));
                }
                *slot = v.clone();
            }
        }
    }
    if let Some(g) = section.and_then(|s| s.gpu.as_ref()) {
        out.gpu_enabled = g.enabled.unwrap_or(true);
        match g.idle_power {
            None => {}
            Some(w) if w.is_finite() && w == 0.0 => {}
            Some(w) if w.is_finite() && w > 0.0 && w < 3_000.0 => out.gpu_idle_watts = Some(w),
            Some(w) => {
                return Err(err(
                    "experimental.gpu.idlePower",
                    format!("{w} is not a number of watts between 0 and 3000 (0 learns it)"),
                ))
            }
        }
    }
    Ok(out)
}

/// Validates `model.curve` (exactly eleven non-decreasing watts) and `model.dram.*`.
pub fn model_extras(
    curve: Option<&Vec<f64>>,
    dram: Option<&DramSection>,
) -> Result<(Option<[f64; CURVE_POINTS]>, Option<DramParams>), ConfigError> {
    let curve = match curve {
        None => None,
        Some(v) => {
            let points: [f64; CURVE_POINTS] = v.as_slice().try_into().map_err(|_| {
                err(
                    "model.curve",
                    format!(
                        "needs {CURVE_POINTS} values (watts at 0%, 10%, ..., 100% load), got {}",
                        v.len()
                    ),
                )
            })?;
            for (i, &w) in points.iter().enumerate() {
                if !(w.is_finite() && (0.0..10_000.0).contains(&w)) {
                    return Err(err(
                        "model.curve",
                        format!("value {i} ({}%) = {w} is not between 0 and 10000 W", i * 10),
                    ));
                }
                if i > 0 && w < points[i - 1] {
                    return Err(err(
                        "model.curve",
                        format!(
                            "value {i} ({}%) = {w} W is below the one before it; power must not fall as load rises",
                            i * 10
                        ),
                    ));
                }
            }
            Some(points)
        }
    };
    let dram = match dram {
        None => None,
        Some(d) => {
            let idle = d.idle_watts.unwrap_or(0.0);
            let max = d
                .max_watts
                .ok_or_else(|| err("model.dram.maxWatts", "is required when model.dram is set"))?;
            if !(idle.is_finite() && idle >= 0.0) {
                return Err(err("model.dram.idleWatts", "must be a number >= 0"));
            }
            if !(max.is_finite() && max >= idle && max < 10_000.0) {
                return Err(err(
                    "model.dram.maxWatts",
                    "must be a number between model.dram.idleWatts and 10000",
                ));
            }
            Some(DramParams {
                idle_watts: idle,
                max_watts: max,
            })
        }
    };
    Ok((curve, dram))
}

/// Dotted paths of the unknown keys under `experimental.` and `model.dram.`.
pub fn unknown_keys(
    experimental: Option<&ExperimentalSection>,
    dram: Option<&DramSection>,
    out: &mut Vec<String>,
) {
    let mut add = |prefix: &str, u: &Unknown| out.extend(u.keys().map(|k| format!("{prefix}{k}")));
    if let Some(e) = experimental {
        add("experimental.", &e.unknown);
        if let Some(h) = &e.hwmon {
            add("experimental.hwmon.", &h.unknown);
        }
        if let Some(g) = &e.gpu {
            add("experimental.gpu.", &g.unknown);
        }
    }
    if let Some(d) = dram {
        add("model.dram.", &d.unknown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> ExperimentalSection {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn hwmon_and_gpu_keys() {
        let e = parse(
            "hwmon:\n  enabled: false\n  zones: [VDD_CPU]\n  cpu: [vdd_cpu]\n  colour: red\ngpu:\n  idlePower: 55.5\n",
        );
        let c = meter_config(Some(&e)).unwrap();
        assert!(!c.hwmon_enabled);
        assert_eq!(c.hwmon_zones, ["VDD_CPU"]);
        assert_eq!(c.hwmon_rules.cpu, ["vdd_cpu"]);
        assert_eq!(c.hwmon_rules.platform, HwmonRules::default().platform);
        assert_eq!(c.gpu_idle_watts, Some(55.5));
        assert!(c.gpu_enabled);
        let mut unknown = Vec::new();
        unknown_keys(Some(&e), None, &mut unknown);
        assert_eq!(unknown, ["experimental.hwmon.colour"]);
        assert_eq!(meter_config(None).unwrap(), MeterConfig::default());
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = parse("gpu:\n  idlePower: -3\n");
        assert_eq!(
            meter_config(Some(&e)).unwrap_err().key,
            "experimental.gpu.idlePower"
        );
        let e = parse("hwmon:\n  cpu: ['']\n");
        assert_eq!(
            meter_config(Some(&e)).unwrap_err().key,
            "experimental.hwmon.cpu"
        );
        let e = model_extras(Some(&vec![1.0; 3]), None).unwrap_err();
        assert_eq!(e.key, "model.curve");
        assert!(e.message.contains("got 3"), "{}", e.message);
        let mut falling = vec![10.0; CURVE_POINTS];
        falling[7] = 5.0;
        let e = model_extras(Some(&falling), None).unwrap_err();
        assert!(e.message.contains("70%"), "{}", e.message);
        let d = DramSection {
            idle_watts: Some(3.0),
            max_watts: None,
            unknown: Unknown::new(),
        };
        assert_eq!(
            model_extras(None, Some(&d)).unwrap_err().key,
            "model.dram.maxWatts"
        );
    }

    #[test]
    fn a_good_curve_and_dram() {
        let curve: Vec<f64> = (0..CURVE_POINTS).map(|i| 50.0 + i as f64 * 10.0).collect();
        let d = DramSection {
            idle_watts: None,
            max_watts: Some(8.0),
            unknown: Unknown::new(),
        };
        let (c, dram) = model_extras(Some(&curve), Some(&d)).unwrap();
        assert_eq!(c.unwrap()[10], 150.0);
        assert_eq!(
            dram,
            Some(DramParams {
                idle_watts: 0.0,
                max_watts: 8.0
            })
        );
    }
}
