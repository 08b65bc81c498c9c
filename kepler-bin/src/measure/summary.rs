//! What `kepler run` reports: the command's energy per zone kind with its share of the node's,
//! as text on stderr or one JSON document (schema `kepler-run/v1`, documented in the README).

use std::collections::HashMap;
use std::fmt::Write as _;

use kepler_core::{GpuSnapshot, IdlePolicy, PerKind, Snapshot, ZoneKind};
use serde::Serialize;

use super::confine::Method;

/// The JSON schema name; bumped on any incompatible change.
pub const SCHEMA: &str = "kepler-run/v1";

/// The command's energy as the engine attributed it, tick after tick.
#[derive(Debug)]
pub struct Ledger {
    /// The container id of the command's cgroup, when it has one.
    cgroup_id: Option<String>,
    /// Cgroup energy (cumulative, per kind) at the latest tick.
    cgroup: PerKind,
    /// Process-tree energy: latest cumulative energy of each member (pid, start time).
    /// Kept here because the engine forgets terminated processes after their TTL.
    members: HashMap<(u32, u64), PerKind>,
    /// GPU energy of the command at the latest tick, per device index, µJ.
    gpu: HashMap<usize, u64>,
    /// Ticks taken in.
    pub ticks: u64,
}

impl Ledger {
    /// A ledger for a command in the cgroup reported as container `cgroup_id`, or followed
    /// by its process tree when `None`.
    pub fn new(cgroup_id: Option<String>) -> Ledger {
        Ledger {
            cgroup_id,
            cgroup: PerKind::default(),
            members: HashMap::new(),
            gpu: HashMap::new(),
            ticks: 0,
        }
    }

    /// Takes in one tick; `tree` lists the command's processes (pid, start time) now.
    pub fn observe(&mut self, snapshot: &Snapshot, gpu: Option<&GpuSnapshot>, tree: &[(u32, u64)]) {
        self.ticks += 1;
        if let Some(id) = &self.cgroup_id {
            if let Some(c) = snapshot.containers.iter().find(|c| &*c.info.id == id) {
                self.cgroup = c.energy.total;
            }
        }
        for key in tree {
            self.members.entry(*key).or_default();
        }
        for p in &snapshot.processes {
            if let Some(e) = self.members.get_mut(&(p.pid, p.start_time)) {
                *e = p.energy.total;
            }
        }
        if let Some(g) = gpu {
            let mut per_device: HashMap<usize, u64> = HashMap::new();
            match &self.cgroup_id {
                Some(id) => {
                    for c in g.containers.iter().filter(|c| &*c.info.id == id) {
                        *per_device.entry(c.device).or_default() += c.total.0;
                    }
                }
                None => {
                    for p in &g.processes {
                        if self.members.contains_key(&(p.info.pid, p.info.start_time)) {
                            *per_device.entry(p.device).or_default() += p.total.0;
                        }
                    }
                }
            }
            // Cumulative values never decrease; a terminated entry that expired keeps its last.
            for (d, e) in per_device {
                let slot = self.gpu.entry(d).or_default();
                *slot = (*slot).max(e);
            }
        }
    }

    /// The command's cumulative energy per kind, µJ.
    pub fn energy(&self) -> PerKind {
        if self.cgroup_id.is_some() {
            return self.cgroup;
        }
        let mut sum = PerKind::default();
        for e in self.members.values() {
            sum.add(e);
        }
        sum
    }
}

/// How the command ended, for the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// kepler's own exit code: `code`, or 128+`signal`.
    pub status: u8,
}

/// One zone kind's line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZoneLine {
    /// `package`, `core`, `uncore`, `dram`, `psys`, `platform`.
    pub zone: &'static str,
    /// The command's energy, joules.
    pub joules: f64,
    /// Its average power over the run, watts.
    pub watts: f64,
    /// The node's energy of this kind over the run, joules.
    pub node_joules: f64,
    /// The active part of `node_joules`.
    pub node_active_joules: f64,
    /// The idle part of `node_joules`.
    pub node_idle_joules: f64,
    /// `joules / node_active_joules` under the idle policy `none` (the command gets active
    /// energy only), else `joules / node_joules` (it also gets its part of idle).
    pub share: f64,
}

/// GPU energy of the command on one device.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GpuLine {
    /// The backend's device index.
    pub index: u32,
    /// The device's name.
    pub name: String,
    /// The command's energy on it, joules.
    pub joules: f64,
    /// The device's energy over the run, joules.
    pub node_joules: f64,
}

/// Carbon of the command's total energy.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Carbon {
    /// The intensity given, gCO2e/kWh.
    pub intensity_g_per_kwh: f64,
    /// `total_joules` at that intensity, grams CO2e.
    pub grams: f64,
}

/// The whole report (the JSON document, field for field).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The command and its arguments (lossy UTF-8).
    pub command: Vec<String>,
    /// How it ended.
    pub exit: Exit,
    /// From its start to the exit of its last process, seconds.
    pub duration_seconds: f64,
    /// CPU time of the command and every process it started, seconds.
    pub cpu_seconds: f64,
    /// How its processes were followed: `cgroup-v2`, `cgroup-v1`, `process-tree`.
    pub accounting: &'static str,
    /// Why no cgroup was used, for a process-tree run.
    pub accounting_note: Option<String>,
    /// The CPU meter (`rapl`, `hwmon`, `model`...).
    pub meter: String,
    /// True when the energy is an estimate (the power model), not a measurement.
    pub estimated: bool,
    /// Why the preferred meter was not used, when known (e.g. RAPL readable by root only).
    pub estimated_reason: Option<String>,
    /// `none`, `cpu-share` or `equal`: how idle energy was attributed.
    pub idle_policy: &'static str,
    /// The sampling period, seconds.
    pub interval_seconds: f64,
    /// Readings taken (at least two: at start and at exit).
    pub readings: u64,
    /// Per zone kind.
    pub zones: Vec<ZoneLine>,
    /// The command's total energy (package + dram, or psys / platform without a package
    /// zone, plus GPUs), joules.
    pub total_joules: f64,
    /// `total_joules` over `duration_seconds`.
    pub total_watts: f64,
    /// Per GPU the command used; empty when it used none.
    pub gpu: Vec<GpuLine>,
    /// When an intensity was given.
    pub carbon: Option<Carbon>,
}

/// What the run knows besides the engine's numbers.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The command.
    pub command: Vec<String>,
    /// How it ended.
    pub exit: Exit,
    /// Wall time, seconds.
    pub duration_seconds: f64,
    /// CPU time, seconds.
    pub cpu_seconds: f64,
    /// Accounting method.
    pub method: Method,
    /// Why not a cgroup.
    pub accounting_note: Option<String>,
    /// CPU meter name.
    pub meter: String,
    /// Why the meter is not the preferred one.
    pub estimated_reason: Option<String>,
    /// Sampling period.
    pub interval_seconds: f64,
    /// gCO2e/kWh.
    pub carbon_intensity: Option<f64>,
}

const UJ: f64 = 1e6;

/// Builds the report from the last snapshot and the ledger.
pub fn summarize(
    facts: RunFacts,
    last: &Snapshot,
    gpu: Option<&GpuSnapshot>,
    ledger: &Ledger,
) -> Summary {
    let energy = ledger.energy();
    let policy = last.idle_policy;
    let per_sec = |j: f64| {
        if facts.duration_seconds > 0.0 {
            j / facts.duration_seconds
        } else {
            0.0
        }
    };
    let zones: Vec<ZoneLine> = last
        .kinds
        .iter()
        .map(|&kind| {
            let (total, active, idle) = last.node_energy(kind);
            let joules = energy.get(kind).0 as f64 / UJ;
            let base = if policy == IdlePolicy::None {
                active
            } else {
                total
            };
            ZoneLine {
                zone: kind.label(),
                joules,
                watts: per_sec(joules),
                node_joules: total.0 as f64 / UJ,
                node_active_joules: active.0 as f64 / UJ,
                node_idle_joules: idle.0 as f64 / UJ,
                share: if base.0 > 0 {
                    joules / (base.0 as f64 / UJ)
                } else {
                    0.0
                },
            }
        })
        .collect();
    let gpu_lines: Vec<GpuLine> = match gpu {
        Some(g) => g
            .devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let uj = *ledger.gpu.get(&i)?;
                (uj > 0).then(|| GpuLine {
                    index: d.device.index,
                    name: d.device.name.to_string(),
                    joules: uj as f64 / UJ,
                    node_joules: d.total.0 as f64 / UJ,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let of = |kind: ZoneKind| energy.get(kind).0 as f64 / UJ;
    let has = |kind: ZoneKind| last.kinds.contains(&kind);
    let cpu_total = if has(ZoneKind::Package) {
        of(ZoneKind::Package) + of(ZoneKind::Dram)
    } else if has(ZoneKind::Psys) {
        of(ZoneKind::Psys)
    } else if has(ZoneKind::Platform) {
        of(ZoneKind::Platform)
    } else {
        // Core and dram only (some AMD parts).
        of(ZoneKind::Core) + of(ZoneKind::Dram)
    };
    let total_joules = cpu_total + gpu_lines.iter().map(|g| g.joules).sum::<f64>();
    let estimated = last.zones.iter().any(|z| z.info.estimated);
    Summary {
        schema: SCHEMA,
        command: facts.command,
        exit: facts.exit,
        duration_seconds: facts.duration_seconds,
        cpu_seconds: facts.cpu_seconds,
        accounting: facts.method.label(),
        accounting_note: facts.accounting_note,
        meter: facts.meter,
        estimated,
        estimated_reason: facts.estimated_reason,
        idle_policy: policy.label(),
        interval_seconds: facts.interval_seconds,
        readings: ledger.ticks,
        zones,
        total_joules,
        total_watts: per_sec(total_joules),
        gpu: gpu_lines,
        carbon: facts.carbon_intensity.map(|g| Carbon {
            intensity_g_per_kwh: g,
            grams: total_joules / 3.6e6 * g,
        }),
    }
}

impl Summary {
    /// The text report. Its first line says whether the numbers are measured or estimated.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if self.estimated {
            let _ = write!(s, "kepler run: ESTIMATED by the {} meter", self.meter);
            if let Some(why) = &self.estimated_reason {
                let _ = write!(s, " ({why})");
            }
        } else {
            let _ = write!(s, "kepler run: measured by {}", self.meter);
        }
        let _ = writeln!(
            s,
            "; processes followed by {}; idle policy {}",
            self.accounting, self.idle_policy
        );
        if let Some(note) = &self.accounting_note {
            let _ = writeln!(s, "  no cgroup: {note}");
        }
        let ended = match (self.exit.code, self.exit.signal) {
            (_, Some(sig)) => format!("killed by signal {sig}"),
            (Some(code), _) => format!("exited with {code}"),
            _ => "ended".into(),
        };
        let _ = writeln!(s, "  command   {} ({ended})", self.command.join(" "));
        let cpus = if self.duration_seconds > 0.0 {
            self.cpu_seconds / self.duration_seconds
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "  duration  {:.3} s   CPU time {:.3} s ({:.2} CPUs on average)",
            self.duration_seconds, self.cpu_seconds, cpus
        );
        let share_of = if self.idle_policy == "none" {
            "of node active"
        } else {
            "of node total"
        };
        let _ = writeln!(
            s,
            "  {:<9} {:>12} {:>10} {:>8} {share_of}   node total (active + idle)",
            "zone", "energy", "avg power", "share"
        );
        for z in &self.zones {
            let _ = writeln!(
                s,
                "  {:<9} {:>10.3} J {:>8.3} W {:>7.1}%   {:.3} J ({:.3} + {:.3})",
                z.zone,
                z.joules,
                z.watts,
                z.share * 100.0,
                z.node_joules,
                z.node_active_joules,
                z.node_idle_joules
            );
        }
        for g in &self.gpu {
            let _ = writeln!(
                s,
                "  gpu {:<5} {:>10.3} J {:>8.3} W   of {:.3} J on {}",
                g.index,
                g.joules,
                if self.duration_seconds > 0.0 {
                    g.joules / self.duration_seconds
                } else {
                    0.0
                },
                g.node_joules,
                g.name
            );
        }
        let _ = writeln!(
            s,
            "  total     {:>10.3} J {:>8.3} W",
            self.total_joules, self.total_watts
        );
        if let Some(c) = &self.carbon {
            let _ = writeln!(
                s,
                "  carbon    {:.4} g CO2e at {} g/kWh",
                c.grams, c.intensity_g_per_kwh
            );
        }
        s
    }

    /// The JSON document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
    use kepler_core::{ProcessInfo, Timestamp};
    use kepler_runtime::{Monitor, NamedSource, Options};
    use kepler_sources::gpu::{FakeGpu, FakeGpuDevice};

    use super::*;

    fn process(pid: u32, comm: &str) -> FakeProcess {
        FakeProcess {
            pid,
            start_time: u64::from(pid),
            start: Timestamp(0),
            end: None,
            permille: 1000,
            info: Arc::new(ProcessInfo::new(comm, comm)),
        }
    }

    /// Two processes busy on two CPUs, one of them the command (and on the GPU): the
    /// command gets half of node active energy, its GPU energy, and the carbon of both.
    #[test]
    fn the_command_gets_its_cpu_share_of_active_energy_and_its_gpu_energy() {
        let mut o = Options::new("/nonexistent/sys", "/nonexistent/proc");
        o.gpu = None;
        let mut gpu = FakeGpuDevice::new(0, 200.0);
        gpu.run(&[(101, 50)]);
        let mut m = Monitor::builder(o)
            .power_sources(vec![NamedSource {
                name: "fake".into(),
                source: Box::new(FakePower::constant(
                    &[(ZoneKind::Package, 0, 100.0)],
                    1 << 40,
                )),
            }])
            .activity_source(Box::new(FakeActivity {
                cpus: 2,
                background_permille: 0,
                processes: vec![process(101, "cmd"), process(202, "other")],
                failing: false,
            }))
            .gpu_backend(Box::new(FakeGpu::new(vec![gpu])))
            .build()
            .unwrap();
        let mut ledger = Ledger::new(None);
        let mut last = None;
        for t in 0..=4u64 {
            let tick = m.tick(Timestamp(t * 1_000_000_000));
            ledger.observe(&tick.snapshot, tick.gpu.as_deref(), &[(101, 101)]);
            last = Some(tick);
        }
        let last = last.unwrap();
        let facts = RunFacts {
            command: vec!["cmd".into()],
            exit: Exit {
                code: Some(0),
                signal: None,
                status: 0,
            },
            duration_seconds: 4.0,
            cpu_seconds: 4.0,
            method: Method::ProcessTree,
            accounting_note: None,
            meter: "fake".into(),
            estimated_reason: None,
            interval_seconds: 1.0,
            carbon_intensity: Some(360.0),
        };
        let s = summarize(facts, &last.snapshot, last.gpu.as_deref(), &ledger);
        assert_eq!(s.readings, 5);
        let package = &s.zones[0];
        assert_eq!(package.zone, "package");
        assert!((package.node_joules - 400.0).abs() < 1e-6, "{package:?}");
        assert!(
            (package.node_active_joules + package.node_idle_joules - package.node_joules).abs()
                < 1e-6
        );
        assert!((package.share - 0.5).abs() < 0.01, "{package:?}");
        assert!((package.watts - package.joules / 4.0).abs() < 1e-9);
        assert_eq!(s.gpu.len(), 1, "{s:?}");
        let g = &s.gpu[0];
        assert!(g.joules > 0.0 && g.joules <= g.node_joules, "{g:?}");
        assert!((s.total_joules - package.joules - g.joules).abs() < 1e-9);
        let carbon = s.carbon.as_ref().unwrap();
        assert!(
            (carbon.grams - s.total_joules / 1e4).abs() < 1e-12,
            "360 g/kWh = 1 g per 10 kJ"
        );
        let text = s.text();
        assert!(text.starts_with("kepler run: measured by fake;"), "{text}");
        assert!(text.contains("gpu 0") && text.contains("carbon"), "{text}");
        // Another process only: nothing of it is the command's.
        let mut other = Ledger::new(None);
        other.observe(&last.snapshot, last.gpu.as_deref(), &[(303, 303)]);
        assert!(other.energy().is_zero());
    }
}
