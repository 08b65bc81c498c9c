//! hwmon power and energy channels (issue 7): `<sysfs>/class/hwmon/hwmonN`.
//!
//! Each chip has a `name` and channels `powerX_input` / `powerX_average` (µW, gauges) and
//! `energyX_input` (µJ, a counter), with optional `_label` and `_enable` files. Chips are
//! identified by `name` and the target of their `device` link, because the `hwmonN` numbers
//! change between boots. Older drivers keep the attributes in `hwmonN/device/` rather than
//! `hwmonN/`; both are looked at.
//!
//! Which channels measure a CPU, DRAM or the whole platform is decided by case-insensitive
//! substring rules on `"<chip>/<label>"` ([`HwmonRules`], `experimental.hwmon.*`), first CPU
//! then DRAM then platform; everything else is ignored. The defaults cover the common server
//! and ARM chips (Ampere SMpro "CPU power", `amd_energy` "Esocket0", INA2xx rails named
//! `VDD_CPU`, PECI `cpupower`, PMBus PSUs). The ACPI power meter (`power_meter` chips) is left
//! to the `acpi` source so it is never counted twice.
//!
//! Files stay open and are read with `pread` at offset 0 every tick, like RAPL.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    Metering, MicroJoules, MicroWatts, PowerFrame, PowerSource, ReadError, Reading, SourceKind,
    Timestamp, ZoneInfo, ZoneKind,
};

use crate::host::Access;
use crate::sysfs_value::{self, excerpt};
use crate::{Error, ErrorKind};

/// Longest value a channel file may hold (a 64-bit decimal and a newline fit easily).
pub(crate) const READ_BUF: usize = 32;

/// Longest label kept; the rest is cut (labels become `path` parts and log fields).
const MAX_LABEL: usize = 64;

/// The chip name the ACPI power meter driver registers; read by the `acpi` source.
pub(crate) const ACPI_CHIP: &str = "power_meter";

/// Which hwmon channels count as what. Each rule is a case-insensitive substring of
/// `"<chip name>/<channel label>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwmonRules {
    /// Channels that measure a CPU package (`experimental.hwmon.cpu`).
    pub cpu: Vec<String>,
    /// Channels that measure memory (`experimental.hwmon.dram`).
    pub dram: Vec<String>,
    /// Channels that measure the whole machine (`experimental.hwmon.platform`).
    pub platform: Vec<String>,
}

impl Default for HwmonRules {
    /// CPU: `cpu`, `package`, `socket`, `pkg`; DRAM: `dram`, `dimm`, `memory`; platform:
    /// `platform`, `system`, `total`, `psu`, `chassis`, `node`. Chosen from the labels the
    /// kernel drivers of Ampere SMpro, `amd_energy`, INA2xx board rails, PECI and PMBus
    /// supplies use; extend them in the config for other boards.
    fn default() -> HwmonRules {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        HwmonRules {
            cpu: v(&["cpu", "package", "socket", "pkg"]),
            dram: v(&["dram", "dimm", "memory"]),
            platform: v(&["platform", "system", "total", "psu", "chassis", "node"]),
        }
    }
}

impl HwmonRules {
    /// The zone kind of a channel, or `None` when no rule matches.
    pub fn classify(&self, chip: &str, label: &str) -> Option<ZoneKind> {
        let text = format!("{chip}/{label}").to_ascii_lowercase();
        let hit = |rules: &[String]| {
            rules
                .iter()
                .any(|r| !r.is_empty() && text.contains(&r.to_ascii_lowercase()))
        };
        if hit(&self.cpu) {
            Some(ZoneKind::Package)
        } else if hit(&self.dram) {
            Some(ZoneKind::Dram)
        } else if hit(&self.platform) {
            Some(ZoneKind::Platform)
        } else {
            None
        }
    }
}

/// Which zones a [`Hwmon`] source keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwmonRole {
    /// CPU package and DRAM channels: a CPU meter for `cpu.preferredMeters`.
    Cpu,
    /// Platform channels, exported as platform zones next to whichever CPU meter runs.
    Platform,
}

/// Where and what to read.
#[derive(Debug, Clone)]
pub struct HwmonOptions {
    /// The sysfs root (`--host.sysfs`).
    pub sysfs_root: PathBuf,
    /// CPU or platform channels.
    pub role: HwmonRole,
    /// Classification rules.
    pub rules: HwmonRules,
    /// Labels (or chip names) to keep, case-insensitive (`experimental.hwmon.zones`); empty
    /// keeps every classified channel.
    pub zones: Vec<String>,
}

impl HwmonOptions {
    /// Default rules, all zones, for `role`.
    pub fn new(sysfs_root: impl Into<PathBuf>, role: HwmonRole) -> HwmonOptions {
        HwmonOptions {
            sysfs_root: sysfs_root.into(),
            role,
            rules: HwmonRules::default(),
            zones: Vec::new(),
        }
    }
}

/// What a channel reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Quantity {
    Energy,
    Power,
}

/// One open channel file.
#[derive(Debug)]
struct Channel {
    file: File,
    what: String,
    quantity: Quantity,
}

/// Classified channels of hwmon chips, read as zones.
#[derive(Debug)]
pub struct Hwmon {
    zones: Vec<Arc<ZoneInfo>>,
    channels: Vec<Channel>,
}

/// A chip found under `class/hwmon`.
#[derive(Debug, Clone)]
pub(crate) struct Chip {
    /// `hwmonN` as listed.
    pub dir: PathBuf,
    /// Where the attribute files are: `hwmonN` or (older drivers) `hwmonN/device`.
    pub files: PathBuf,
    /// The `name` file's content.
    pub name: String,
    /// A stable path for labels: the resolved `device` link when there is one, else `dir`.
    pub stable: String,
}

/// One classified channel before its file is opened.
#[derive(Debug)]
struct Candidate {
    path: PathBuf,
    stable: String,
    chip: String,
    label: String,
    kind: ZoneKind,
    quantity: Quantity,
    max_power: Option<MicroWatts>,
}

impl Hwmon {
    /// Finds and opens the channels of `opts.role`.
    ///
    /// Errors: [`ErrorKind::NotFound`] when there is no hwmon class directory or no channel
    /// matches; [`ErrorKind::PermissionDenied`] when matching channels exist but none can
    /// be read.
    pub fn discover(opts: &HwmonOptions) -> Result<Hwmon, Error> {
        let base = opts.sysfs_root.join("class").join("hwmon");
        let chips = chips(&base)?;
        let mut found: Vec<Candidate> = Vec::new();
        for chip in &chips {
            if chip.name == ACPI_CHIP {
                continue;
            }
            for c in chip_channels(chip, &opts.rules) {
                let wanted = match opts.role {
                    HwmonRole::Cpu => matches!(c.kind, ZoneKind::Package | ZoneKind::Dram),
                    HwmonRole::Platform => c.kind == ZoneKind::Platform,
                };
                let kept = opts.zones.is_empty()
                    || opts.zones.iter().any(|z| {
                        z.eq_ignore_ascii_case(&c.label) || z.eq_ignore_ascii_case(&c.chip)
                    });
                if wanted && kept {
                    found.push(c);
                }
            }
        }
        if found.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                Some(&base),
                format!("no hwmon {} power channel", role_name(opts.role)),
            ));
        }
        let mut zones = Vec::new();
        let mut channels = Vec::new();
        let mut first_err: Option<Error> = None;
        // Per-kind position gives the index when the label carries no number.
        let mut counts = [0u32; ZoneKind::ALL.len()];
        for c in found {
            let file = match open_channel(&c.path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(channel = %c.path.display(), error = %e, "skipping hwmon channel");
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let n = &mut counts[c.kind.index()];
            let index = trailing_number(&c.label).unwrap_or(*n);
            *n += 1;
            let metering = match c.quantity {
                Quantity::Energy => Metering::EnergyCounter { max_range: None },
                Quantity::Power => Metering::PowerGauge,
            };
            zones.push(Arc::new(
                ZoneInfo::builder(format!("hwmon:{}", c.stable), c.kind, SourceKind::Hwmon)
                    .index(index)
                    .path(c.stable.clone())
                    .metering(metering)
                    .estimated(false)
                    .max_power(c.max_power)
                    .build(),
            ));
            tracing::debug!(chip = %c.chip, label = %c.label, path = %c.stable, kind = %c.kind, "hwmon channel");
            channels.push(Channel {
                file,
                what: c.path.display().to_string(),
                quantity: c.quantity,
            });
        }
        if zones.is_empty() {
            return Err(first_err.unwrap_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    Some(&base),
                    "no readable hwmon channel",
                )
            }));
        }
        Ok(Hwmon { zones, channels })
    }
}

fn role_name(role: HwmonRole) -> &'static str {
    match role {
        HwmonRole::Cpu => "CPU/DRAM",
        HwmonRole::Platform => "platform",
    }
}

impl PowerSource for Hwmon {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, _at: Timestamp, out: &mut PowerFrame) {
        let mut buf = [0u8; READ_BUF];
        for (zone, ch) in self.zones.iter().zip(&self.channels) {
            let reading = read_value(&ch.file, &ch.what, &mut buf).map(|v| match ch.quantity {
                Quantity::Energy => Reading::Energy(MicroJoules(v)),
                Quantity::Power => Reading::Power(MicroWatts(v)),
            });
            out.push(zone, reading);
        }
    }
}

/// One `pread` of a channel file, parsed.
pub(crate) fn read_value(
    file: &File,
    what: &str,
    buf: &mut [u8; READ_BUF],
) -> Result<u64, ReadError> {
    sysfs_value::read_value(file, what, buf, Access::Hwmon, parse_hwmon_value)
}

/// Opens a channel file and reads it once, so an unreadable one is found at start.
pub(crate) fn open_channel(path: &Path) -> Result<File, Error> {
    let file = File::open(path).map_err(|e| Error::io(path, &e))?;
    let mut buf = [0u8; READ_BUF];
    match file.read_at(&mut buf, 0) {
        Ok(_) => Ok(file),
        // No data yet is not a reason to drop the channel.
        Err(e) if e.raw_os_error() == Some(61) => Ok(file),
        Err(e) => Err(Error::io(path, &e)),
    }
}

/// Parses an hwmon attribute value (µW, µJ, ms): decimal digits, surrounding ASCII
/// whitespace ignored. The hwmon ABI prints signed longs, so a leading `-` is understood,
/// but a negative power or energy is an error, as are anything but digits and values beyond
/// `u64::MAX`.
pub fn parse_hwmon_value(buf: &[u8]) -> Result<u64, String> {
    let digits = buf.trim_ascii();
    if digits.is_empty() {
        return Err("empty value".to_owned());
    }
    if let Some(rest) = digits.strip_prefix(b"-") {
        if !rest.is_empty() && rest.iter().all(u8::is_ascii_digit) {
            return Err(format!("negative value: {}", excerpt(digits)));
        }
        return Err(format!("not a decimal number: {}", excerpt(digits)));
    }
    sysfs_value::parse_decimal(digits)
}

/// Cleans a `name` or `_label` file for use in labels and logs: lossy UTF-8, surrounding
/// whitespace trimmed, control characters replaced by `_`, at most 64 characters. `None` when
/// nothing is left.
pub fn parse_hwmon_label(buf: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(buf);
    let cleaned: String = text
        .trim()
        .chars()
        .take(MAX_LABEL)
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim().to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// The number at the end of the label's first run of digits, e.g. `Esocket1` -> 1,
/// `CPU0 power` -> 0.
fn trailing_number(label: &str) -> Option<u32> {
    let start = label.find(|c: char| c.is_ascii_digit())?;
    let digits: String = label[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Lists the chips under `base` (`class/hwmon`), sorted by directory name.
pub(crate) fn chips(base: &Path) -> Result<Vec<Chip>, Error> {
    let entries = std::fs::read_dir(base).map_err(|e| Error::io(base, &e))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let file_name = entry.file_name();
        if !file_name.to_str().is_some_and(|n| n.starts_with("hwmon")) {
            continue;
        }
        let Some((files, name)) = [dir.clone(), dir.join("device")].into_iter().find_map(|d| {
            let name = parse_hwmon_label(&std::fs::read(d.join("name")).ok()?)?;
            Some((d, name))
        }) else {
            tracing::debug!(chip = %dir.display(), "hwmon chip without a readable name, skipped");
            continue;
        };
        let stable = std::fs::canonicalize(dir.join("device"))
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string();
        out.push(Chip {
            dir,
            files,
            name,
            stable,
        });
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

/// The classified channels of one chip. Energy counters win over power gauges with the same
/// label (the same rail seen twice), and `_average` wins over `_input` for one channel.
fn chip_channels(chip: &Chip, rules: &HwmonRules) -> Vec<Candidate> {
    let Ok(entries) = std::fs::read_dir(&chip.files) else {
        return Vec::new();
    };
    // (quantity, channel number, file suffix)
    let mut seen: Vec<(Quantity, u32, String)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let parsed = if let Some(rest) = name.strip_prefix("energy") {
            rest.strip_suffix("_input")
                .map(|n| (Quantity::Energy, n, "input"))
        } else if let Some(rest) = name.strip_prefix("power") {
            rest.strip_suffix("_average")
                .map(|n| (Quantity::Power, n, "average"))
                .or_else(|| {
                    rest.strip_suffix("_input")
                        .map(|n| (Quantity::Power, n, "input"))
                })
        } else {
            None
        };
        let Some((q, num, suffix)) = parsed else {
            continue;
        };
        let Ok(num) = num.parse::<u32>() else {
            continue;
        };
        seen.push((q, num, suffix.to_owned()));
    }
    seen.sort();
    // One file per (quantity, channel): `average` sorts before `input`.
    seen.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);

    let mut out: Vec<Candidate> = Vec::new();
    for (q, num, suffix) in seen {
        let prefix = match q {
            Quantity::Energy => format!("energy{num}"),
            Quantity::Power => format!("power{num}"),
        };
        let attr = |s: &str| chip.files.join(format!("{prefix}_{s}"));
        if std::fs::read(attr("enable"))
            .ok()
            .and_then(|b| parse_hwmon_value(&b).ok())
            == Some(0)
        {
            tracing::debug!(chip = %chip.name, channel = %prefix, "hwmon channel disabled, skipped");
            continue;
        }
        let label = std::fs::read(attr("label"))
            .ok()
            .and_then(|b| parse_hwmon_label(&b))
            .unwrap_or_else(|| prefix.clone());
        let Some(kind) = rules.classify(&chip.name, &label) else {
            tracing::debug!(chip = %chip.name, label = %label, "hwmon channel matches no rule, ignored");
            continue;
        };
        let max_power = ["cap", "max", "crit"]
            .iter()
            .filter(|_| q == Quantity::Power)
            .find_map(|s| parse_hwmon_value(&std::fs::read(attr(s)).ok()?).ok())
            .filter(|&v| v > 0)
            .map(|v| MicroWatts(v.saturating_mul(2)));
        out.push(Candidate {
            path: attr(&suffix),
            stable: format!("{}/{prefix}", chip.stable),
            chip: chip.name.clone(),
            label,
            kind,
            quantity: q,
            max_power,
        });
    }
    // The same rail as an energy counter and a power gauge: keep the counter only.
    let energy_labels: Vec<String> = out
        .iter()
        .filter(|c| c.quantity == Quantity::Energy)
        .map(|c| c.label.clone())
        .collect();
    out.retain(|c| c.quantity == Quantity::Energy || !energy_labels.contains(&c.label));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse_hwmon_value(b"12500000\n"), Ok(12_500_000));
        assert_eq!(parse_hwmon_value(b" 0 "), Ok(0));
        assert!(parse_hwmon_value(b"-5").unwrap_err().contains("negative"));
        assert!(parse_hwmon_value(b"-").is_err());
        assert!(parse_hwmon_value(b"").is_err());
        assert!(parse_hwmon_value(b"1e6").is_err());
        assert!(parse_hwmon_value(b"99999999999999999999").is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_hwmon_label(b"CPU power\n").as_deref(),
            Some("CPU power")
        );
        assert_eq!(parse_hwmon_label(b"a\tb").as_deref(), Some("a_b"));
        assert_eq!(parse_hwmon_label(b"  \n"), None);
        assert_eq!(parse_hwmon_label(&[b'x'; 200]).unwrap().len(), MAX_LABEL);
        assert_eq!(parse_hwmon_label(b"\xffz").as_deref(), Some("\u{fffd}z"));
    }

    #[test]
    fn default_rules() {
        let r = HwmonRules::default();
        assert_eq!(r.classify("smpro", "CPU power"), Some(ZoneKind::Package));
        assert_eq!(
            r.classify("amd_energy", "Esocket1"),
            Some(ZoneKind::Package)
        );
        assert_eq!(r.classify("amd_energy", "Ecore012"), None);
        assert_eq!(r.classify("ina226", "VDD_CPU"), Some(ZoneKind::Package));
        assert_eq!(r.classify("smpro", "DIMM power"), Some(ZoneKind::Dram));
        assert_eq!(r.classify("pmbus", "PSU1 input"), Some(ZoneKind::Platform));
        assert_eq!(r.classify("nct6775", "fan1"), None);
    }

    #[test]
    fn numbers_in_labels() {
        assert_eq!(trailing_number("Esocket1"), Some(1));
        assert_eq!(trailing_number("CPU0 power"), Some(0));
        assert_eq!(trailing_number("total"), None);
    }
}
