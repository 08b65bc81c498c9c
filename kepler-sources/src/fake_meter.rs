//! The synthetic CPU meter `fake` (Go Kepler's `dev.fake-cpu-meter`): for demos and tests on
//! machines with no meter where the numbers must move but need not be true.
//!
//! Each zone draws a fixed base power (package 40 W, core 25 W, uncore 5 W, dram 8 W, psys
//! 60 W) varied by ±20 % along a sine of period 60 s of the read time, so a dashboard shows a
//! changing line and counters grow at a known average. The power is a function of the read
//! time alone: the same timestamps give the same numbers. Every zone is marked
//! `estimated` with `source="fake"`, so nobody mistakes it for a measurement.

use std::sync::Arc;

use kepler_core::{
    MicroWatts, PowerFrame, PowerSource, Reading, SourceKind, Timestamp, ZoneInfo, ZoneKind,
};

use crate::{Error, ErrorKind};

/// Zones of the fake meter when none are asked for.
pub const FAKE_DEFAULT_ZONES: [ZoneKind; 3] = [ZoneKind::Package, ZoneKind::Core, ZoneKind::Dram];

/// Period of the variation of the fake meter's power.
const PERIOD_SECS: f64 = 60.0;
/// Relative amplitude of the variation.
const SWING: f64 = 0.2;

/// The base watts of a zone of the fake meter.
pub fn fake_base_watts(kind: ZoneKind) -> f64 {
    match kind {
        ZoneKind::Package => 40.0,
        ZoneKind::Core => 25.0,
        ZoneKind::Uncore => 5.0,
        ZoneKind::Dram => 8.0,
        _ => 60.0,
    }
}

/// The fake meter's power for `kind` at time `at`.
pub fn fake_watts(kind: ZoneKind, at: Timestamp) -> f64 {
    let phase = at.0 as f64 / 1e9 / PERIOD_SECS * std::f64::consts::TAU;
    fake_base_watts(kind) * (1.0 + SWING * phase.sin())
}

/// A synthetic CPU meter: one power gauge per zone, see the module docs.
#[derive(Debug)]
pub struct FakeCpuMeter {
    zones: Vec<Arc<ZoneInfo>>,
}

impl FakeCpuMeter {
    /// A meter with the named zones (`package`, `core`, `uncore`, `dram`, `psys`); empty
    /// gives [`FAKE_DEFAULT_ZONES`]. An unknown name is an error naming it.
    pub fn new(zones: &[String]) -> Result<FakeCpuMeter, Error> {
        let kinds: Vec<ZoneKind> = if zones.is_empty() {
            FAKE_DEFAULT_ZONES.to_vec()
        } else {
            zones
                .iter()
                .map(|z| {
                    ZoneKind::from_name(z.trim())
                        .filter(|k| k.is_cpu())
                        .ok_or_else(|| {
                            Error::new(
                                ErrorKind::InvalidConfig,
                                None,
                                format!("fake meter: {z:?} is not one of package, core, uncore, dram, psys"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let zones = kinds
            .into_iter()
            .map(|k| {
                Arc::new(
                    ZoneInfo::builder(format!("fake-{}", k.label()), k, SourceKind::Fake)
                        .path(format!("fake/{}", k.label()))
                        .power_gauge()
                        .estimated(true)
                        .build(),
                )
            })
            .collect();
        Ok(FakeCpuMeter { zones })
    }
}

impl PowerSource for FakeCpuMeter {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        for z in &self.zones {
            let w = fake_watts(z.kind, at);
            out.push(z, Ok(Reading::Power(MicroWatts::from_watts(w))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_follows_the_documented_wave() {
        let mut m = FakeCpuMeter::new(&[]).unwrap();
        assert_eq!(m.zones().len(), 3);
        assert!(m
            .zones()
            .iter()
            .all(|z| z.estimated && z.source == SourceKind::Fake));
        // t = 15 s is a quarter period: base x 1.2.
        let mut f = PowerFrame::default();
        m.read(Timestamp(15_000_000_000), &mut f);
        assert_eq!(f.samples.len(), 3);
        assert!((fake_watts(ZoneKind::Package, Timestamp(15_000_000_000)) - 48.0).abs() < 1e-9);
        assert!((fake_watts(ZoneKind::Dram, Timestamp(0)) - 8.0).abs() < 1e-9);
        let e = FakeCpuMeter::new(&["gpu".into()]).unwrap_err();
        assert!(e.to_string().contains("\"gpu\""), "{e}");
        let m = FakeCpuMeter::new(&["psys".into()]).unwrap();
        assert_eq!(m.zones()[0].kind, ZoneKind::Psys);
    }
}
