//! A power estimate from CPU utilisation, for machines with no meter (VMs, cloud, ARM).
//!
//! Kepler refuses to start without RAPL; kepler-rs starts and says, through
//! `source="model"` and `estimated=true` on every zone, that the numbers are a linear model
//! and not a measurement. Per socket: `idle + (max - idle) * utilisation`, with utilisation
//! taken from the per-CPU lines of `/proc/stat` between two reads.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{
    Metering, MicroWatts, PowerFrame, PowerSource, ReadError, Reading, SourceKind, Timestamp,
    ZoneInfo, ZoneKind,
};

use crate::{Error, ErrorKind};

/// Most watts a socket may be configured to draw; anything above is a unit mistake.
const MAX_SOCKET_WATTS: f64 = 10_000.0;

/// CPU numbers at or above this are refused: per-CPU state is indexed by CPU number, and
/// Linux supports far fewer (NR_CPUS is at most 8192 today), so a larger one is garbage.
const MAX_CPUS: usize = 1 << 16;

/// The linear model's parameters, per socket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelParams {
    /// Power of one socket at 0% utilisation, in watts.
    pub idle_watts: f64,
    /// Power of one socket at 100% utilisation, in watts.
    pub max_watts: f64,
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
        }
    }
}

impl ModelParams {
    /// Checks that both values are finite, `0 <= idle <= max` and `max < 10 kW`.
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
        Ok(())
    }
}

/// Busy and total jiffies of one CPU, cumulative since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Jiffies {
    busy: u64,
    total: u64,
}

/// The utilisation model as a [`PowerSource`]: one estimated package zone per socket.
#[derive(Debug)]
pub struct Model {
    params: ModelParams,
    stat_path: PathBuf,
    zones: Vec<Arc<ZoneInfo>>,
    /// Socket id of each CPU number; CPUs beyond it, or `None`, count for the first socket.
    cpu_socket: Vec<Option<u32>>,
    /// Last counters of each CPU number; empty before the first read.
    prev: Vec<Option<Jiffies>>,
    /// Last utilisation per zone, reused when no time has passed between two reads.
    last_util: Vec<f64>,
    /// Reused read buffer.
    text: String,
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

        let cpu_socket = topology(sysfs_root);
        let sockets: BTreeSet<u32> = cpu_socket.iter().flatten().copied().collect();
        let sockets: Vec<u32> = if sockets.is_empty() {
            vec![0]
        } else {
            sockets.into_iter().collect()
        };
        let max_power = MicroWatts::from_watts(params.max_watts * 2.0);
        let zones: Vec<Arc<ZoneInfo>> = sockets
            .iter()
            .map(|&s| {
                Arc::new(ZoneInfo {
                    id: format!("model:package-{s}"),
                    kind: ZoneKind::Package,
                    index: s,
                    path: "model".to_owned(),
                    source: SourceKind::Model,
                    metering: Metering::PowerGauge,
                    estimated: true,
                    max_power: Some(max_power),
                })
            })
            .collect();
        tracing::info!(
            sockets = zones.len(),
            idle_watts = params.idle_watts,
            max_watts = params.max_watts,
            "using the CPU-utilisation power model: values are estimates"
        );
        Ok(Model {
            params,
            stat_path,
            last_util: vec![0.0; zones.len()],
            zones,
            cpu_socket,
            prev: Vec::new(),
            text: String::new(),
            parsed: Vec::new(),
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> ModelParams {
        self.params
    }

    /// Position in `zones` of the socket of `cpu`.
    fn zone_of(&self, cpu: usize) -> usize {
        let socket = self.cpu_socket.get(cpu).copied().flatten();
        socket
            .and_then(|s| self.zones.iter().position(|z| z.index == s))
            .unwrap_or(0)
    }

    /// Reads `/proc/stat` and returns per-zone (busy, total) deltas since the last read.
    fn deltas(&mut self) -> Result<Vec<Jiffies>, ReadError> {
        let what = self.stat_path.display().to_string();
        self.text.clear();
        std::fs::File::open(&self.stat_path)
            .and_then(|mut f| f.read_to_string(&mut self.text))
            .map_err(|e| io_read_error(&what, &e))?;

        // Parse everything before touching the baselines, so a bad file leaves them as they were.
        self.parsed.clear();
        for line in self.text.lines() {
            let parsed = parse_cpu_line(line).map_err(|detail| ReadError::Parse {
                what: what.clone(),
                detail,
            })?;
            self.parsed.extend(parsed);
        }
        if self.parsed.is_empty() {
            return Err(ReadError::Parse {
                what,
                detail: "no per-CPU lines".to_owned(),
            });
        }

        let first = self.prev.is_empty();
        let mut sums = vec![Jiffies::default(); self.zones.len()];
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

    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        match self.deltas() {
            Ok(sums) => {
                for (i, d) in sums.iter().enumerate() {
                    if d.total > 0 {
                        self.last_util[i] = (d.busy as f64 / d.total as f64).clamp(0.0, 1.0);
                    }
                    let p = self.params;
                    let watts = p.idle_watts + (p.max_watts - p.idle_watts) * self.last_util[i];
                    out.push(
                        &self.zones[i],
                        at,
                        Ok(Reading::Power(MicroWatts::from_watts(watts))),
                    );
                }
            }
            Err(e) => {
                for zone in &self.zones {
                    out.push(zone, at, Err(e.clone()));
                }
            }
        }
    }
}

/// `cpuN user nice system idle iowait irq softirq steal ...` -> `Some((N, jiffies))`; other
/// lines (including the aggregate `cpu` line) -> `None`; a malformed `cpuN` line -> error.
///
/// busy = user + nice + system + irq + softirq + steal; total = busy + idle + iowait. Guest
/// time is already inside user and nice, so it is not added again. Older kernels omit the
/// trailing fields; missing ones count as 0.
fn parse_cpu_line(line: &str) -> Result<Option<(usize, Jiffies)>, String> {
    let mut fields = line.split_ascii_whitespace();
    let Some(label) = fields.next() else {
        return Ok(None);
    };
    let Some(num) = label.strip_prefix("cpu") else {
        return Ok(None);
    };
    if num.is_empty() {
        return Ok(None);
    }
    let cpu: usize = num
        .parse()
        .ok()
        .filter(|&n| n < MAX_CPUS)
        .ok_or_else(|| format!("bad CPU label {label:?}"))?;
    let mut v = [0u64; 8];
    for (i, slot) in v.iter_mut().enumerate() {
        match fields.next() {
            Some(f) => {
                *slot = f
                    .parse()
                    .map_err(|_| format!("{label}: field {} is not a number: {f:?}", i + 1))?;
            }
            None if i >= 4 => break,
            None => return Err(format!("{label}: only {i} fields")),
        }
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = v;
    let busy = [user, nice, system, irq, softirq, steal]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b));
    let total = busy.saturating_add(idle).saturating_add(iowait);
    Ok(Some((cpu, Jiffies { busy, total })))
}

/// Socket id per CPU number from sysfs; empty when unreadable.
fn topology(sysfs_root: &Path) -> Vec<Option<u32>> {
    let dir = sysfs_root.join("devices").join("system").join("cpu");
    let mut map: Vec<Option<u32>> = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        tracing::debug!(dir = %dir.display(), "no CPU topology, assuming one socket");
        return map;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(cpu) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n < MAX_CPUS)
        else {
            continue;
        };
        let id_path = entry.path().join("topology").join("physical_package_id");
        // Some VMs and ARM boards report -1: treat as unknown.
        let socket = std::fs::read_to_string(&id_path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .and_then(|v| u32::try_from(v).ok());
        if map.len() <= cpu {
            map.resize(cpu + 1, None);
        }
        map[cpu] = socket;
    }
    map
}

/// Classifies an I/O error reading `/proc/stat`.
fn io_read_error(what: &str, err: &std::io::Error) -> ReadError {
    match err.kind() {
        std::io::ErrorKind::NotFound => ReadError::Missing {
            what: what.to_owned(),
        },
        std::io::ErrorKind::PermissionDenied => ReadError::NotPermitted {
            what: what.to_owned(),
            needs: "read access to /proc/stat".to_owned(),
        },
        _ => ReadError::Io {
            what: what.to_owned(),
            detail: err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lines() {
        assert_eq!(parse_cpu_line("cpu 1 2 3 4 5 6 7 8 0 0"), Ok(None));
        assert_eq!(parse_cpu_line("intr 1 2 3"), Ok(None));
        assert_eq!(parse_cpu_line(""), Ok(None));
        assert_eq!(
            parse_cpu_line("cpu3 1 2 3 4 5 6 7 8 9 10"),
            Ok(Some((
                3,
                Jiffies {
                    busy: 1 + 2 + 3 + 6 + 7 + 8,
                    total: 1 + 2 + 3 + 6 + 7 + 8 + 4 + 5
                }
            )))
        );
        assert_eq!(
            parse_cpu_line("cpu0 10 0 0 30"),
            Ok(Some((
                0,
                Jiffies {
                    busy: 10,
                    total: 40
                }
            )))
        );
        assert!(parse_cpu_line("cpu0 1 2").is_err());
        assert!(parse_cpu_line("cpu0 1 x 3 4").is_err());
        assert!(parse_cpu_line("cpuX 1 2 3 4").is_err());
        assert!(parse_cpu_line("cpu99999999999 1 2 3 4").is_err());
    }

    #[test]
    fn default_params_are_valid() {
        assert!(ModelParams::default().validate().is_ok());
    }
}
