//! RAPL energy counters from the Linux powercap tree (issue 3).
//!
//! Zones live under `<sysfs>/class/powercap/`: `intel-rapl:N` for a package (`package-N`) or
//! the platform (`psys`), `intel-rapl:N:M` for its sub-zones (`core`, `uncore`, `dram`). AMD
//! Zen registers the same `intel-rapl` names (package and core, no dram), so one reader serves
//! both. `intel-rapl-mmio:N` is a second interface to a package counter that is already listed,
//! so it is ignored: counting it would double the package energy.
//!
//! Each zone's `energy_uj` stays open for the life of the source and is read with `pread` at
//! offset 0 every tick: sysfs regenerates the value on each read from offset 0, and no reopen
//! means no path walk and no permission check per tick.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    Metering, MicroJoules, MicroWatts, PowerFrame, PowerSource, ReadError, Reading, SourceKind,
    Timestamp, ZoneInfo, ZoneKind,
};

use crate::host::Access;
use crate::powercap::parse_zone_dir;
use crate::sysfs_value;
use crate::{Error, ErrorKind};

/// The privilege that reading `energy_uj` needs, for logs and [`ReadError::NotPermitted`].
const ENERGY_PRIVILEGE: Access = Access::RaplEnergy;

/// Bytes read per tick. A valid value is at most 20 digits and a newline, so a full buffer
/// means the content is not a counter.
const READ_BUF: usize = 64;

/// Where to look for RAPL zones and which to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaplOptions {
    /// The sysfs root (`/sys` on a host, `--host.sysfs` in a container or a test).
    pub sysfs_root: PathBuf,
    /// Zone kinds to keep, e.g. `["package", "dram"]` (Kepler's `rapl.zones`); empty keeps all.
    pub zones: Vec<String>,
}

impl RaplOptions {
    /// All zones under `sysfs_root`.
    pub fn new(sysfs_root: impl Into<PathBuf>) -> RaplOptions {
        RaplOptions {
            sysfs_root: sysfs_root.into(),
            zones: Vec::new(),
        }
    }
}

/// The open `energy_uj` of one zone.
#[derive(Debug)]
struct Counter {
    file: File,
    /// The file's path, for per-zone errors.
    what: String,
}

/// RAPL zones found by [`Rapl::discover`], read as energy counters.
#[derive(Debug)]
pub struct Rapl {
    zones: Vec<Arc<ZoneInfo>>,
    /// Same order as `zones`.
    counters: Vec<Counter>,
}

/// A zone directory that passed the name checks, before its counter is opened.
struct Candidate {
    dir: PathBuf,
    kind: ZoneKind,
    index: u32,
}

impl Rapl {
    /// Finds the RAPL zones under `<sysfs_root>/class/powercap` and opens their counters.
    ///
    /// Zones are ordered by socket, then kind. Errors: [`ErrorKind::NotFound`] when there is no
    /// powercap directory or no `intel-rapl` zone in it; [`ErrorKind::PermissionDenied`] when
    /// zones exist but no `energy_uj` is readable (root-only since CVE-2020-8694). When only
    /// some counters are unreadable, the others are kept and one warning names the rest.
    ///
    /// A zone whose `enabled` file says 0 is kept: that flag switches power *limiting* for the
    /// zone, and the energy counter keeps running either way (several kernels show 0 on
    /// sub-zones whose counters advance normally). Dropping those zones would lose energy.
    pub fn discover(opts: &RaplOptions) -> Result<Rapl, Error> {
        let base = opts.sysfs_root.join("class").join("powercap");
        let filter = kind_filter(&opts.zones);
        let mut candidates = candidates(&base)?;
        if candidates.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                Some(&base),
                "no intel-rapl zone in the powercap tree",
            ));
        }
        if let Some(keep) = &filter {
            candidates.retain(|c| keep.contains(&c.kind));
            if candidates.is_empty() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    Some(&base),
                    format!("no RAPL zone matches rapl.zones {:?}", opts.zones),
                ));
            }
        }
        candidates.sort_by(|a, b| (a.index, a.kind, &a.dir).cmp(&(b.index, b.kind, &b.dir)));

        let mut zones = Vec::with_capacity(candidates.len());
        let mut counters = Vec::with_capacity(candidates.len());
        let mut denied: Vec<PathBuf> = Vec::new();
        let mut first_failure: Option<Error> = None;
        for c in candidates {
            let energy = c.dir.join("energy_uj");
            match open_counter(&energy) {
                Ok(file) => {
                    zones.push(Arc::new(zone_info(&c)));
                    counters.push(Counter {
                        file,
                        what: energy.display().to_string(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::PermissionDenied => denied.push(energy),
                Err(e) => {
                    tracing::warn!(zone = %c.dir.display(), error = %e, "skipping RAPL zone");
                    first_failure.get_or_insert(e);
                }
            }
        }
        if !denied.is_empty() {
            let files: Vec<String> = denied.iter().map(|p| p.display().to_string()).collect();
            tracing::warn!(
                files = %files.join(", "),
                needs = ENERGY_PRIVILEGE.needs(),
                kept = zones.len(),
                "RAPL energy counters are not readable",
            );
        }
        if zones.is_empty() {
            if let Some(path) = denied.first() {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    Some(path),
                    format!("no readable RAPL energy_uj ({})", ENERGY_PRIVILEGE.needs()),
                ));
            }
            return Err(first_failure.unwrap_or_else(|| {
                Error::new(ErrorKind::NotFound, Some(&base), "no usable RAPL zone")
            }));
        }
        Ok(Rapl { zones, counters })
    }
}

impl PowerSource for Rapl {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }

    fn read(&mut self, _at: Timestamp, out: &mut PowerFrame) {
        let mut buf = [0u8; READ_BUF];
        for (zone, counter) in self.zones.iter().zip(&self.counters) {
            let reading = read_counter(counter, &mut buf).map(|v| Reading::Energy(MicroJoules(v)));
            out.push(zone, reading);
        }
    }
}

/// One `pread` of a counter, parsed.
fn read_counter(counter: &Counter, buf: &mut [u8; READ_BUF]) -> Result<u64, ReadError> {
    sysfs_value::read_value(
        &counter.file,
        &counter.what,
        buf,
        ENERGY_PRIVILEGE,
        parse_energy_uj,
    )
}

/// Opens `energy_uj` and reads it once, so a counter that cannot be read at all (no
/// permission, a directory, a dead device) is found at start, not on every tick. Content is
/// not checked here: a bad value is a per-tick, per-zone error.
fn open_counter(path: &Path) -> Result<File, Error> {
    let file = File::open(path).map_err(|e| Error::io(path, &e))?;
    let mut buf = [0u8; READ_BUF];
    file.read_at(&mut buf, 0).map_err(|e| Error::io(path, &e))?;
    Ok(file)
}

/// Parses a powercap counter value (`energy_uj`, `max_energy_range_uj`, `*_power_uw`):
/// decimal digits only, surrounding ASCII whitespace (the trailing newline) ignored.
///
/// Signs, hex and anything beyond `u64::MAX` are errors: the kernel writes none of these, so
/// seeing one means the file is not what we think it is.
pub fn parse_energy_uj(buf: &[u8]) -> Result<u64, String> {
    sysfs_value::parse_decimal(buf)
}

/// The kinds named in `rapl.zones`, or `None` to keep all. Unknown names are warned about
/// and ignored (the binary validates the config; this keeps the library lenient).
fn kind_filter(names: &[String]) -> Option<Vec<ZoneKind>> {
    if names.is_empty() {
        return None;
    }
    let mut kinds = Vec::new();
    for name in names {
        match ZoneKind::from_name(name) {
            Some(k) => kinds.push(k),
            None => tracing::warn!(zone = %name, "unknown RAPL zone name in rapl.zones, ignored"),
        }
    }
    Some(kinds)
}

/// The socket of `package-N` (also `package-N-die-D`); `None` for other names.
fn package_index(name: &str) -> Option<u32> {
    let mut parts = name.split('-');
    if parts.next()? != "package" {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Lists the `intel-rapl` zones under `base` with their kind and socket.
fn candidates(base: &Path) -> Result<Vec<Candidate>, Error> {
    let entries = std::fs::read_dir(base).map_err(|e| Error::io(base, &e))?;
    // (top, sub, dir, name)
    let mut found: Vec<(u32, Option<u32>, PathBuf, String)> = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((top, sub)) = file_name.to_str().and_then(parse_zone_dir) else {
            continue;
        };
        let dir = entry.path();
        match std::fs::read_to_string(dir.join("name")) {
            Ok(name) => found.push((top, sub, dir, name.trim().to_owned())),
            Err(e) => {
                tracing::debug!(zone = %dir.display(), error = %e, "RAPL zone without a readable name, skipped");
            }
        }
    }

    // Sub-zones take their parent's socket, which only the parent's name tells.
    let socket_of = |top: u32| -> u32 {
        found
            .iter()
            .find(|(t, s, _, _)| *t == top && s.is_none())
            .and_then(|(_, _, _, name)| package_index(name))
            .unwrap_or(top)
    };

    let mut out = Vec::new();
    for (top, sub, dir, name) in &found {
        let Some(kind) = ZoneKind::from_name(name) else {
            tracing::debug!(zone = %dir.display(), name = %name, "unknown RAPL zone name, skipped");
            continue;
        };
        let index = match (sub, kind) {
            (None, ZoneKind::Psys) => 0,
            (None, _) => package_index(name).unwrap_or(*top),
            (Some(_), _) => socket_of(*top),
        };
        if read_trimmed(&dir.join("enabled")).as_deref() == Some("0") {
            tracing::debug!(
                zone = %dir.display(),
                "RAPL zone reports enabled=0 (power limiting off); its counter still runs, kept"
            );
        }
        out.push(Candidate {
            dir: dir.clone(),
            kind,
            index,
        });
    }
    Ok(out)
}

/// A file's content without surrounding whitespace, or `None` when unreadable.
fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A number from a powercap file, or `None` when absent or not a number.
fn read_number(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    match parse_energy_uj(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "unparsable powercap value ignored");
            None
        }
    }
}

/// The engine's view of one zone.
fn zone_info(c: &Candidate) -> ZoneInfo {
    let path = c.dir.display().to_string();
    let max_range = read_number(&c.dir.join("max_energy_range_uj"))
        .filter(|&v| v > 0)
        .map(MicroJoules);
    if max_range.is_none() {
        tracing::debug!(zone = %path, "no max_energy_range_uj: counter wraps cannot be unwrapped");
    }
    // The plausibility bound is twice the largest power limit the zone accepts. Constraint 1
    // (short term, PL2) is often well above constraint 0 (long term, PL1/TDP), and a real
    // burst must never be dropped as a reset, hence the generous factor.
    let limit = ["constraint_0_max_power_uw", "constraint_1_max_power_uw"]
        .iter()
        .filter_map(|f| read_number(&c.dir.join(f)))
        .max()
        .filter(|&v| v > 0);
    ZoneInfo::builder(format!("rapl:{path}"), c.kind, SourceKind::Rapl)
        .index(c.index)
        .path(path)
        .metering(Metering::EnergyCounter { max_range })
        .estimated(false)
        .max_power(limit.map(|v| MicroWatts(v.saturating_mul(2))))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::read_error;
    use std::io;

    #[test]
    fn classifies_permission_as_not_permitted() {
        let err = io::Error::from(io::ErrorKind::PermissionDenied);
        let r = read_error(
            "/sys/class/powercap/intel-rapl:0/energy_uj",
            &err,
            ENERGY_PRIVILEGE,
        );
        match r {
            ReadError::NotPermitted { what, needs } => {
                assert!(what.ends_with("energy_uj"));
                assert!(needs.contains("CVE-2020-8694"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn classifies_missing_and_other_io() {
        let r = read_error(
            "x",
            &io::Error::from(io::ErrorKind::NotFound),
            ENERGY_PRIVILEGE,
        );
        assert_eq!(r, ReadError::Missing { what: "x".into() });
        let r = read_error("x", &io::Error::other("boom"), ENERGY_PRIVILEGE);
        assert_eq!(r.kind_label(), "io");
    }

    #[test]
    fn discover_error_classification_for_permission() {
        let err = Error::io(
            Path::new("/x/energy_uj"),
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn package_names() {
        assert_eq!(package_index("package-3"), Some(3));
        assert_eq!(package_index("package-1-die-0"), Some(1));
        assert_eq!(package_index("psys"), None);
        assert_eq!(package_index("dram"), None);
    }

    #[test]
    fn parses_values() {
        assert_eq!(parse_energy_uj(b"123456\n"), Ok(123_456));
        assert_eq!(parse_energy_uj(b"  42 "), Ok(42));
        assert_eq!(parse_energy_uj(b"18446744073709551615"), Ok(u64::MAX));
        assert!(parse_energy_uj(b"18446744073709551616").is_err());
        assert!(parse_energy_uj(b"").is_err());
        assert!(parse_energy_uj(b"\n").is_err());
        assert!(parse_energy_uj(b"-1").is_err());
        assert!(parse_energy_uj(b"+1").is_err());
        assert!(parse_energy_uj(b"0x10").is_err());
        assert!(parse_energy_uj(b"1 2").is_err());
        assert!(parse_energy_uj(b"\xff\xfe").is_err());
    }
}
