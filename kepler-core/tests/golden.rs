//! Differential test of the engine (issue 14): a fixed, rich and deterministic scenario is
//! stepped under several configurations, and a digest of every snapshot is compared with the
//! digest the engine gave before `Attributor::step` was split into stages. Any change to a
//! single microjoule, counter or state anywhere in any tick changes the digest.
//!
//! The scenario has counter wraps, resets without a range, implausible jumps, failed reads,
//! a power gauge polled in the background (repeated timestamps), two sockets with per-CPU
//! times, process churn, exits, PID reuse, CPU-time regressions, children reaped at once, a
//! tick late or never, containers with and without cgroup accounting (regressions,
//! duplicates, gaps), pods whose names fill in late, VMs, ticks without an activity frame
//! and frames without details.
//!
//! When a change is meant to alter results, print the new digests with
//! `GOLDEN_PRINT=1 cargo test -p kepler-core --test golden -- --nocapture`, and say why in
//! the commit. `GOLDEN_DUMP=<dir>` writes the rendered snapshots there, for diffing.

use std::fmt::Write as _;
use std::sync::Arc;

use kepler_core::*;

/// Deterministic xorshift64*; the scenario must not depend on any outside randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `permille`/1000.
    fn chance(&mut self, permille: u64) -> bool {
        self.below(1000) < permille
    }
}

fn zone(
    id: &str,
    kind: ZoneKind,
    index: u32,
    metering: Metering,
    max_w: Option<f64>,
) -> Arc<ZoneInfo> {
    Arc::new(
        ZoneInfo::builder(id, kind, SourceKind::Fake)
            .index(index)
            .path(format!("golden/{id}"))
            .metering(metering)
            .estimated(false)
            .max_power(max_w.map(MicroWatts::from_watts))
            .build(),
    )
}

fn counter(max_range: Option<u64>) -> Metering {
    Metering::EnergyCounter {
        max_range: max_range.map(MicroJoules),
    }
}

/// The zones: wraps (pkg0 every ~1.5 ticks), a counter without a range (resets are
/// dropped), tight power bounds (uncore1), a background-polled gauge (platform).
fn sim_zones() -> Vec<SimZone> {
    let gauge = Metering::PowerGauge;
    #[rustfmt::skip]
    let table = [
        ("pkg0", ZoneKind::Package, 0, counter(Some(30_000_000)), None, 25),
        ("pkg1", ZoneKind::Package, 1, counter(Some(1_000_000_000)), Some(400.0), 18),
        ("core0", ZoneKind::Core, 0, counter(None), None, 12),
        ("dram0", ZoneKind::Dram, 0, counter(Some(5_000_000_000)), None, 4),
        ("dram1", ZoneKind::Dram, 1, counter(Some(5_000_000_000)), None, 3),
        ("psys", ZoneKind::Psys, 0, counter(Some(262_143_328_850)), None, 60),
        ("platform", ZoneKind::Platform, 0, gauge, Some(500.0), 150),
        ("uncore1", ZoneKind::Uncore, 1, counter(Some(1 << 32)), Some(1.5), 1),
    ];
    table
        .into_iter()
        .map(|(id, kind, index, metering, max_w, watts)| SimZone {
            info: zone(id, kind, index, metering, max_w),
            watts,
            value: 0,
            polled: Timestamp(0),
        })
        .collect()
}

/// A zone with its simulated counter.
struct SimZone {
    info: Arc<ZoneInfo>,
    /// Mean power, W.
    watts: u64,
    value: u64,
    /// Last time the (gauge) zone was sampled by its "background poller".
    polled: Timestamp,
}

struct SimProc {
    pid: u32,
    start_time: u64,
    cpu: u64,
    /// Share of one CPU, per mille.
    permille: u64,
    ppid: u32,
    children: u64,
    /// Children's time the process reaps at the next tick (a late `wait`).
    reaping: u64,
    last_cpu: u32,
    info: Arc<ProcessInfo>,
    /// Index of its container in `Sim::containers`, if any.
    container: Option<usize>,
}

struct SimContainer {
    info: ContainerInfo,
    /// Cgroup usage; `None`: no cgroup accounting for this container.
    usage: Option<u64>,
}

struct Sim {
    rng: Rng,
    t: u64,
    zones: Vec<SimZone>,
    procs: Vec<SimProc>,
    containers: Vec<SimContainer>,
    vms: Vec<VmInfo>,
    next_start: u64,
    ticks: u64,
    node_busy: u64,
    node_total: u64,
    cpus: [NodeCpu; 8],
    /// Load factor, per mille: quiet phases teach the learned idle baseline.
    load: u64,
}

fn pod(i: usize, named: bool) -> PodInfo {
    PodInfo::new(
        format!("pod-{i}"),
        if named {
            format!("web-{i}")
        } else {
            String::new()
        },
        if named { "default" } else { "" },
    )
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let runtimes = [
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Docker,
            Runtime::Podman,
        ];
        let containers = (0..8)
            .map(|i| SimContainer {
                info: {
                    let mut v =
                        ContainerInfo::new(format!("{i:064x}"), format!("c{i}"), runtimes[i % 4]);
                    v.pod = (i < 6).then(|| pod(i / 2, i % 4 != 0));
                    v
                },
                usage: (i < 5).then_some(0),
            })
            .collect();
        let zones = sim_zones();
        let vms = (0..2)
            .map(|i| VmInfo::new(format!("vm-uuid-{i}"), format!("guest{i}"), "qemu"))
            .collect();
        let mut sim = Sim {
            rng: Rng(seed),
            t: 1_000_000_000,
            zones,
            procs: Vec::new(),
            containers,
            vms,
            next_start: 100,
            ticks: 0,
            node_busy: 0,
            node_total: 0,
            cpus: [NodeCpu::default(); 8],
            load: 1000,
        };
        for _ in 0..30 {
            sim.spawn();
        }
        sim
    }

    fn info(&self, comm: &str, container: Option<usize>, vm: Option<usize>) -> Arc<ProcessInfo> {
        Arc::new({
            let mut v = ProcessInfo::new(comm, format!("/usr/bin/{comm}"));
            v.container = container.map(|c| self.containers[c].info.clone());
            v.vm = vm.map(|v| self.vms[v].clone());
            v
        })
    }

    fn spawn(&mut self) {
        // A small pid space, so pids are reused with new start times.
        let pid = 10 + self.rng.below(50) as u32;
        let container = match self.rng.below(10) {
            0..=5 => Some(self.rng.below(8) as usize),
            _ => None,
        };
        let vm = (container.is_none() && self.rng.chance(200)).then(|| self.rng.below(2) as usize);
        let comm = format!("p{}", self.rng.below(7));
        let info = self.info(&comm, container, vm);
        self.next_start += 1 + self.rng.below(5);
        let permille = match self.rng.below(4) {
            0 => 0,
            1 => self.rng.below(50),
            _ => self.rng.below(700),
        };
        self.procs.push(SimProc {
            pid,
            start_time: self.next_start,
            cpu: self.rng.below(3_000_000_000),
            permille,
            ppid: if self.rng.chance(500) {
                1
            } else {
                10 + self.rng.below(50) as u32
            },
            children: 0,
            reaping: 0,
            last_cpu: self.rng.below(8) as u32,
            info,
            container,
        });
    }

    /// Advances the simulated machine by `dt` ns.
    fn advance(&mut self, dt: u64) {
        self.t += dt;
        self.exits_and_spawns();
        let busy = self.run(dt);
        self.name_pods();
        let background = dt * self.rng.below(800) / 1000 * self.load / 1000;
        self.node_total += 8 * dt;
        self.node_busy += (busy + background).min(8 * dt);
        for (i, cpu) in self.cpus.iter_mut().enumerate() {
            let share = (busy + background).min(8 * dt) / 8 + (i as u64) * dt / 100;
            cpu.busy.0 += share.min(dt);
            cpu.total.0 += dt;
        }
        for z in &mut self.zones {
            let jitter = self.rng.below(z.watts * 200_000 + 1);
            z.value += z.watts * dt / 1000 + jitter;
        }
    }

    fn exits_and_spawns(&mut self) {
        let mut i = 0;
        while i < self.procs.len() {
            if self.rng.chance(60) {
                let p = self.procs.swap_remove(i);
                // Exited work reaches the cgroup, and the parent's cutime when it waits:
                // at once, a tick late, or never.
                if let Some(c) = p.container {
                    if let Some(u) = &mut self.containers[c].usage {
                        *u += self.rng.below(50_000_000);
                    }
                }
                let wait = self.rng.below(3);
                if let Some(parent) = self.procs.iter_mut().find(|q| q.pid == p.ppid) {
                    match wait {
                        0 => parent.children += p.cpu + p.children,
                        1 => parent.reaping += p.cpu + p.children,
                        _ => {}
                    }
                }
            } else {
                i += 1;
            }
        }
        for _ in 0..self.rng.below(5) {
            if self.procs.len() < 60 {
                self.spawn();
            }
        }
    }

    /// Processes (and short-lived work only the cgroups see) run for `dt`; returns the busy
    /// time of the processes.
    fn run(&mut self, dt: u64) -> u64 {
        // Every 40 ticks, 10 quiet ones.
        self.ticks += 1;
        self.load = if self.ticks % 40 < 10 { 40 } else { 1000 };
        let mut busy = 0;
        for p in &mut self.procs {
            p.children += std::mem::take(&mut p.reaping);
            let d = dt * p.permille / 1000 * self.load / 1000;
            p.cpu += d;
            busy += d;
            if self.rng.chance(100) {
                p.children += self.rng.below(200_000_000);
            }
            if self.rng.chance(300) {
                p.last_cpu = self.rng.below(8) as u32;
            }
            if let Some(c) = p.container {
                if let Some(u) = &mut self.containers[c].usage {
                    *u += d;
                }
            }
        }
        // Short-lived work only the cgroups saw.
        for c in &mut self.containers {
            if let Some(u) = &mut c.usage {
                if self.rng.chance(200) {
                    *u += self.rng.below(100_000_000);
                }
            }
        }
        busy
    }

    fn name_pods(&mut self) {
        // Pods learn their names in the background (issue 8): info changes mid-life.
        if self.rng.chance(50) {
            let c = self.rng.below(6) as usize;
            let p = self.containers[c].info.pod.as_ref().map(|p| p.id.clone());
            if let Some(id) = p {
                let i: usize = id.trim_start_matches("pod-").parse().unwrap();
                self.containers[c].info.pod = Some(pod(i, true));
                for k in 0..self.procs.len() {
                    if self.procs[k].container == Some(c) {
                        let comm = self.procs[k].info.comm.to_string();
                        self.procs[k].info = self.info(&comm, Some(c), None);
                    }
                }
            }
        }
    }

    fn power(&mut self, frame: &mut PowerFrame) {
        frame.clear();
        let at = Timestamp(self.t);
        for i in 0..self.zones.len() {
            let roll = self.rng.below(1000);
            let z = &mut self.zones[i];
            let reading = match z.info.metering {
                Metering::PowerGauge => {
                    // A background poller: often hands back the previous sample again.
                    if roll >= 300 {
                        z.polled = at;
                    }
                    let w = if roll < 20 { 5_000 } else { z.watts };
                    Ok(Reading::Power(MicroWatts::from_watts(
                        w as f64 + (roll % 7) as f64 * 0.37,
                    )))
                }
                Metering::EnergyCounter { max_range } => {
                    if roll < 40 {
                        Err(ReadError::Io {
                            what: z.info.id.clone(),
                            detail: "injected".into(),
                        })
                    } else {
                        if roll < 55 {
                            // A reset (or, with a known range, what looks like a huge wrap).
                            z.value /= 3;
                        }
                        let v = match max_range {
                            Some(r) => z.value % (r.0 + 1),
                            None => z.value,
                        };
                        Ok(Reading::Energy(MicroJoules(v)))
                    }
                }
                // A metering this rig does not know (the enum may grow): no reading.
                _ => Err(ReadError::Io {
                    what: z.info.id.clone(),
                    detail: "unknown metering".into(),
                }),
            };
            match z.info.metering {
                Metering::PowerGauge => frame.push_sampled(&z.info, z.polled, reading),
                _ => frame.push(&z.info, reading),
            }
        }
    }

    fn activity(&mut self, frame: &mut ActivityFrame) {
        frame.clear();
        // The frame once carried its own read time, up to 3 ms before the step's; the
        // engine now takes the step's. The draw stays so the scenario's later draws do not
        // shift.
        let _ = self.rng.below(3_000_000);
        frame.node = NodeCpu {
            busy: Nanos(self.node_busy),
            total: Nanos(self.node_total),
        };
        let with_details = !self.rng.chance(100);
        for p in &self.procs {
            // Now and then a counter reads back (a racing read): no progress.
            let cpu = if self.rng.chance(10) {
                p.cpu / 2
            } else {
                p.cpu
            };
            frame.processes.push(ProcessSample::new(
                p.pid,
                p.start_time,
                Nanos(cpu),
                Arc::clone(&p.info),
            ));
            if with_details {
                frame.details.push(ProcessDetail::new(
                    p.ppid,
                    Nanos(p.children),
                    (p.last_cpu != 7 || p.pid % 2 == 0).then_some(p.last_cpu),
                ));
            }
        }
        for c in &self.containers {
            let Some(mut usage) = c.usage else { continue };
            if self.rng.chance(20) {
                continue; // its cgroup file vanished mid-read
            }
            if self.rng.chance(10) {
                usage /= 2; // recreated under the same id
            }
            frame
                .containers
                .push(ContainerUsage::new(c.info.clone(), Nanos(usage)));
            if self.rng.chance(10) {
                frame
                    .containers
                    .push(ContainerUsage::new(c.info.clone(), Nanos(usage + 7)));
            }
        }
        if !self.rng.chance(150) {
            for (i, t) in self.cpus.iter().enumerate() {
                frame.cpus.push(CpuTime::new(i as u32, (i / 4) as u32, *t));
            }
        }
    }
}

/// Every field of a snapshot that the engine computes (`gpu` is the caller's), as text.
fn render(s: &Snapshot, out: &mut String) {
    writeln!(
        out,
        "at={:?} interval={:?} ratio={:?}",
        s.at,
        s.interval,
        s.usage_ratio.to_bits()
    )
    .unwrap();
    writeln!(
        out,
        "kinds={:?} idle={:?} stats={:?}",
        s.kinds, s.idle_policy, s.stats
    )
    .unwrap();
    writeln!(
        out,
        "unattributed={:?} exited={:?}",
        s.unattributed, s.exited
    )
    .unwrap();
    for z in &s.zones {
        writeln!(
            out,
            "zone {} total={} active={} idle={} p={:?}/{:?}/{:?} ok={} err={:?} errs={} dropped={} wraps={} read={:?}",
            z.info.id,
            z.total.0,
            z.active.0,
            z.idle.0,
            z.power.to_bits(),
            z.active_power.to_bits(),
            z.idle_power.to_bits(),
            z.has_reading,
            z.last_error,
            z.read_errors,
            z.dropped_deltas,
            z.wraps,
            z.last_read
        )
        .unwrap();
    }
    for p in &s.processes {
        writeln!(
            out,
            "proc {} {} {:?} {:?} {:?} {:?}",
            p.pid, p.start_time, p.info, p.cpu_time, p.state, p.energy
        )
        .unwrap();
    }
    for c in &s.containers {
        writeln!(out, "container {c:?}").unwrap();
    }
    for p in &s.pods {
        writeln!(out, "pod {p:?}").unwrap();
    }
    for v in &s.vms {
        writeln!(out, "vm {v:?}").unwrap();
    }
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Runs the scenario with `config` and returns the digest of all its snapshots.
fn run(name: &str, seed: u64, ticks: usize, config: AttributorConfig) -> u64 {
    let mut sim = Sim::new(seed);
    let mut engine = Attributor::new(config);
    let mut power = PowerFrame::default();
    let mut activity = ActivityFrame::default();
    let mut text = String::new();
    for tick in 0..ticks {
        let dt = match sim.rng.below(20) {
            0 => 0,
            1 => 30_000_000_000,
            _ => 500_000_000 + sim.rng.below(2_500_000_000),
        };
        sim.advance(dt);
        sim.power(&mut power);
        let failed = sim.rng.chance(50);
        sim.activity(&mut activity);
        let snap = engine.step(&power, (!failed).then_some(&activity), Timestamp(sim.t));
        writeln!(text, "# tick {tick}").unwrap();
        render(&snap, &mut text);
    }
    if let Some(dir) = std::env::var_os("GOLDEN_DUMP") {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.txt")),
            &text,
        )
        .unwrap();
    }
    let digest = fnv1a(text.as_bytes());
    if std::env::var_os("GOLDEN_PRINT").is_some() {
        println!("{name}: {digest:#018x} ({} bytes)", text.len());
    }
    digest
}

fn configs() -> Vec<(&'static str, u64, AttributorConfig)> {
    vec![
        ("default", 1, AttributorConfig::default()),
        (
            "cpu_share_learned_capped",
            2,
            AttributorConfig::builder()
                .idle(IdlePolicy::CpuShare)
                .idle_power(IdlePower::Learned {
                    max_usage_permille: 300,
                    decay: Nanos::from_secs(60),
                })
                .terminated_ttl(Nanos::from_secs(3))
                .max_terminated(Some(5))
                .build(),
        ),
        (
            "equal_uncapped_low_power",
            3,
            AttributorConfig::builder()
                .idle(IdlePolicy::Equal)
                .idle_power(IdlePower::LEARNED_DEFAULT)
                .max_terminated(None)
                .terminated_ttl(Nanos::from_secs(20))
                .default_max_power(MicroWatts::from_watts(40.0))
                .build(),
        ),
        (
            "cpu_share_usage_tiny_cap",
            4,
            AttributorConfig::builder()
                .idle(IdlePolicy::CpuShare)
                .max_terminated(Some(0))
                .build(),
        ),
    ]
}

/// Digests recorded from the engine as of 88da745, before `step` was split into stages,
/// then re-recorded once for one timestamp per tick (issue 14): the activity frame lost its
/// own time, so each snapshot's `interval` is now measured between steps instead of between
/// the frames' (jittered) read times. A dump before and after differed in `interval` only
/// (`GOLDEN_DUMP`); every energy, counter and state was byte-identical.
/// Re-recorded for issue 17, which added `cpu_time` to groups: with `, cpu_time: Nanos(..)`
/// removed from the dump, the text hashed to the previous digests exactly.
const EXPECTED: [(&str, u64); 4] = [
    ("default", 0xb05337a0feca6393),
    ("cpu_share_learned_capped", 0x217bad4a4fcdfdb8),
    ("equal_uncapped_low_power", 0x25d3bf66fd92cddd),
    ("cpu_share_usage_tiny_cap", 0xd4e94ce466291f1f),
];

#[test]
fn snapshots_match_the_engine_before_the_stage_split_issue_14() {
    let mut got = Vec::new();
    for (name, seed, config) in configs() {
        got.push((name, run(name, seed, 300, config)));
    }
    assert_eq!(got, EXPECTED);
}

/// GPU devices of the GPU scenario: shared, exclusive and MIG.
fn gpu_devices() -> Vec<Arc<GpuDevice>> {
    (0..3)
        .map(|i| {
            Arc::new(GpuDevice {
                index: i,
                uuid: format!("GPU-{i:04}").into(),
                name: "golden".into(),
                vendor: "nvidia".into(),
                source: SourceKind::Fake,
            })
        })
        .collect()
}

/// One GPU frame: counters with resets, read errors, a device that vanishes, processes
/// the CPU snapshot knows and some it does not, MIG instances.
fn gpu_frame(
    rng: &mut Rng,
    devices: &[Arc<GpuDevice>],
    energy: &mut [u64],
    at: u64,
    pids: &[u32],
) -> GpuFrame {
    let mut frame = GpuFrame::default();
    for (i, d) in devices.iter().enumerate() {
        if rng.chance(40) {
            continue; // vanished this tick
        }
        energy[i] += 50_000_000 + rng.below(200_000_000);
        if rng.chance(20) {
            energy[i] /= 4; // driver reload
        }
        let reading = if rng.chance(40) {
            Err(ReadError::Stale {
                what: d.uuid.to_string(),
            })
        } else {
            Ok(Reading::Energy(MicroJoules(energy[i])))
        };
        let mode = [GpuMode::Shared, GpuMode::Exclusive, GpuMode::Mig][i];
        let mut processes = Vec::new();
        for _ in 0..rng.below(4) {
            let pid = if rng.chance(800) && !pids.is_empty() {
                pids[rng.below(pids.len() as u64) as usize]
            } else {
                90_000 + rng.below(5) as u32
            };
            processes.push(GpuProcessSample::new(
                pid,
                rng.below(3) as u32 * 30,
                (mode == GpuMode::Mig)
                    .then(|| rng.below(3) as u32)
                    .filter(|&g| g < 2),
            ));
        }
        let instances = if mode == GpuMode::Mig {
            vec![
                GpuInstance { id: 0, weight: 3 },
                GpuInstance { id: 1, weight: 4 },
            ]
        } else {
            Vec::new()
        };
        frame.samples.push(
            GpuSample::new(Arc::clone(d), Timestamp(at), reading, mode)
                .with_processes(processes)
                .with_instances(instances),
        );
    }
    frame
}

/// Runs the CPU scenario with a GPU accountant beside it; returns the digest of the GPU
/// snapshots.
fn run_gpu(seed: u64, ticks: usize, config: GpuConfig) -> u64 {
    let mut sim = Sim::new(seed);
    let mut engine = Attributor::default();
    let mut gpus = GpuAttributor::new(config);
    let devices = gpu_devices();
    let mut energy = vec![0u64; devices.len()];
    let mut gpu_rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let (mut power, mut activity) = (PowerFrame::default(), ActivityFrame::default());
    let mut text = String::new();
    for tick in 0..ticks {
        let dt = 500_000_000 + sim.rng.below(2_000_000_000);
        sim.advance(dt);
        sim.power(&mut power);
        sim.activity(&mut activity);
        let snap = engine.step(&power, Some(&activity), Timestamp(sim.t));
        let pids: Vec<u32> = snap.processes.iter().map(|p| p.pid).collect();
        let frame = gpu_frame(&mut gpu_rng, &devices, &mut energy, sim.t, &pids);
        let g = gpus.step(&frame, &snap, Timestamp(sim.t));
        writeln!(text, "# tick {tick}").unwrap();
        writeln!(text, "{g:?}").unwrap();
    }
    if let Some(dir) = std::env::var_os("GOLDEN_DUMP") {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("gpu{seed}.txt")),
            &text,
        )
        .unwrap();
    }
    if std::env::var_os("GOLDEN_PRINT").is_some() {
        println!(
            "gpu {seed}: {:#018x} ({} bytes)",
            fnv1a(text.as_bytes()),
            text.len()
        );
    }
    fnv1a(text.as_bytes())
}

#[test]
fn gpu_snapshots_match_the_accountant_before_the_split_issue_14() {
    let learned = run_gpu(5, 200, GpuConfig::default());
    let fixed = run_gpu(
        6,
        200,
        GpuConfig::builder()
            .idle_power(Some(MicroWatts::from_watts(30.0)))
            .terminated_ttl(Nanos::from_secs(4))
            .max_power(MicroWatts::from_watts(400.0))
            .build(),
    );
    assert_eq!((learned, fixed), (0xb492df3a07991fb4, 0x096ffc07c876f078));
}
