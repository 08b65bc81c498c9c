//! The ACPI power meter (ACPI0000D devices, Linux driver `power_meter`), a platform zone.
//!
//! The driver registers an hwmon chip named `power_meter` whose `power1_average` (µW) is the
//! firmware's average over `power1_average_interval` (ms); it covers the whole machine, so it
//! is exported as a `platform` zone with `source="acpi"`. Devices are found both through
//! `<sysfs>/bus/acpi/drivers/power_meter/<device>` (attributes on the device itself on older
//! kernels, or in its `hwmon/hwmonN`) and through `<sysfs>/class/hwmon/*/name`, and the same
//! file reached both ways is read once. Reads can be slow (the firmware answers) and may fail
//! with `ENODATA` until the first average exists: that is a per-zone, per-tick error.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    Metering, MicroWatts, PowerFrame, PowerSource, Reading, SourceKind, Timestamp, ZoneInfo,
    ZoneKind,
};

use crate::hwmon::{self, parse_hwmon_value, ACPI_CHIP};
use crate::{Error, ErrorKind};

/// One ACPI power meter found.
#[derive(Debug)]
struct Meter {
    file: File,
    what: String,
}

/// Every ACPI power meter of the machine, as platform zones.
#[derive(Debug)]
pub struct AcpiPowerMeter {
    zones: Vec<Arc<ZoneInfo>>,
    meters: Vec<Meter>,
}

impl AcpiPowerMeter {
    /// Finds the meters under `sysfs_root`.
    ///
    /// Errors: [`ErrorKind::NotFound`] when there is none (most machines), or the open error
    /// of the first meter when none can be opened.
    pub fn discover(sysfs_root: &Path) -> Result<AcpiPowerMeter, Error> {
        // Directories that hold `power1_average`, by canonical path.
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let driver = sysfs_root
            .join("bus")
            .join("acpi")
            .join("drivers")
            .join(ACPI_CHIP);
        if let Ok(entries) = std::fs::read_dir(&driver) {
            for entry in entries.flatten() {
                let dev = entry.path();
                if !entry.file_name().to_str().is_some_and(|n| n.contains(':')) {
                    continue; // bind, unbind, uevent, module
                }
                let mut candidates = vec![dev.clone()];
                if let Ok(hw) = std::fs::read_dir(dev.join("hwmon")) {
                    candidates.extend(hw.flatten().map(|e| e.path()));
                }
                for c in candidates {
                    if c.join("power1_average").is_file() {
                        dirs.insert(canonical(&c));
                    }
                }
            }
        }
        let class = sysfs_root.join("class").join("hwmon");
        if let Ok(chips) = hwmon::chips(&class) {
            for chip in chips.into_iter().filter(|c| c.name == ACPI_CHIP) {
                if chip.files.join("power1_average").is_file() {
                    dirs.insert(canonical(&chip.files));
                }
            }
        }
        if dirs.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                Some(&driver),
                "no ACPI power meter",
            ));
        }
        let mut zones = Vec::new();
        let mut meters = Vec::new();
        let mut first_err = None;
        for (i, dir) in dirs.iter().enumerate() {
            let avg = dir.join("power1_average");
            let file = match hwmon::open_channel(&avg) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(meter = %avg.display(), error = %e, "skipping ACPI power meter");
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let read_num = |name: &str| {
                std::fs::read(dir.join(name))
                    .ok()
                    .and_then(|b| parse_hwmon_value(&b).ok())
            };
            let interval_ms = read_num("power1_average_interval");
            let cap = read_num("power1_cap").filter(|&v| v > 0);
            tracing::info!(meter = %dir.display(), interval_ms = ?interval_ms, "ACPI power meter: platform zone");
            let path = format!("{}/power1", dir.display());
            zones.push(Arc::new(
                ZoneInfo::builder(format!("acpi:{path}"), ZoneKind::Platform, SourceKind::Acpi)
                    .index(i as u32)
                    .path(path)
                    .metering(Metering::PowerGauge)
                    .estimated(false)
                    .max_power(cap.map(|v| MicroWatts(v.saturating_mul(2))))
                    .build(),
            ));
            meters.push(Meter {
                file,
                what: avg.display().to_string(),
            });
        }
        if zones.is_empty() {
            return Err(first_err.unwrap_or_else(|| {
                Error::new(ErrorKind::NotFound, Some(&driver), "no ACPI power meter")
            }));
        }
        Ok(AcpiPowerMeter { zones, meters })
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl PowerSource for AcpiPowerMeter {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, _at: Timestamp, out: &mut PowerFrame) {
        let mut buf = [0u8; 32];
        for (zone, m) in self.zones.iter().zip(&self.meters) {
            let reading = hwmon::read_value(&m.file, &m.what, &mut buf)
                .map(|v| Reading::Power(MicroWatts(v)));
            out.push(zone, reading);
        }
    }
}
